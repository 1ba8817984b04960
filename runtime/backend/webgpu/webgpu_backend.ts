/**
 * The WebGPU backend: every op as a WGSL compute shader on the device `navigator.gpu`
 * gives. Ops are recorded into one command encoder and run when something is read, so a
 * forward step is one submit and one read-back.
 *
 * @module
 */
import type {
  ActivationType,
  Backend,
  Fit,
  KVCacheShape,
  ModelPlan,
  Tensor,
  WeightRole,
  WeightType,
} from "../backend.ts";
import { BackendError } from "../../errors.ts";
import { AttentionOp, MAX_HEAD_DIM } from "./attention.ts";
import { type Binding, GpuContext, type GpuTensor, type WebGpuStats } from "./context.ts";
import { EmbedOp } from "./embed.ts";
import { LayerNormOp } from "./layer_norm.ts";
import { MatmulOp } from "./matmul.ts";
import { bytesPerElement, type WeightStorage } from "./weight_storage.ts";

export type { WebGpuStats } from "./context.ts";

/** How `WebGpuBackend.create` sets up the device. */
export interface WebGpuOptions {
  /**
   * The most bytes of the token embedding (and of the logits) one dispatch binds; the
   * output head and the embedding are split by vocabulary ranges to stay under it.
   * Defaults to the adapter's maxStorageBufferBindingSize; tests set it small.
   */
  vocabularySplitBytes?: number;
  /** Milliseconds to wait for an adapter and a device before giving up (default 20000). */
  timeoutMs?: number;
  /**
   * The element type of Conv1D weights and the token embedding: `"f32"` (default) as the
   * checkpoint gives them, or `"f16"`, half the bytes each step streams. Biases, norms and
   * position embeddings stay float32.
   */
  weightType?: "f32" | "f16";
  /**
   * Whether float16 weights are read as WGSL `f16` where the adapter has `shader-f16`
   * (default true); false reads them as u32 pairs through `unpack2x16float` as on
   * adapters without it (tests use it to run that path anywhere).
   */
  shaderF16?: boolean;
  /**
   * A device to run on instead of requesting one (an application that already has one);
   * the backend takes it over, and `dispose` destroys it.
   */
  device?: GPUDevice;
  /** The adapter to request the device from, as `probe()` found it (default: a new request). */
  adapter?: GPUAdapter;
}

/** The limits of an adapter that decide whether a model fits it. */
export interface WebGpuLimits {
  /** The most bytes one buffer holds. */
  readonly maxBufferSize: number;
  /** The most bytes one shader variable binds. */
  readonly maxStorageBufferBindingSize: number;
}

/** What one adapter request found: the adapter, what kind it is, and its limits. */
export interface WebGpuProbe {
  readonly adapter: GPUAdapter;
  readonly kind: Exclude<AdapterKind, "none">;
  readonly limits: WebGpuLimits;
}

/** What kind of WebGPU adapter this machine offers. */
export type AdapterKind = "gpu" | "fallback" | "none";

const STORAGE = GPUBufferUsage.STORAGE | GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST;
const FIX = 'use backend "wasm"';

/** Races `p` against a timer that is cleared either way, so no timer keeps the process up. */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new BackendError(`webgpu backend: ${what} timed out after ${ms} ms; ${FIX}`)),
      ms,
    );
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function elements(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function gcd(a: number, b: number): number {
  return b === 0 ? a : gcd(b, a % b);
}

/** GPT-2 on a GPU through WebGPU. */
export class WebGpuBackend implements Backend {
  /** The name it is selected by. */
  readonly name = "webgpu";
  /** How it stores the model's matrices: `"f32"` or `"f16"`. */
  readonly weightType: "f32" | "f16";
  /** The weight types it stores, most faithful first. */
  static readonly weightTypes: readonly WeightType[] = ["f32", "f16"];
  /** Its products for a few rows split their sums another way than its tiled ones. */
  readonly splitInvariant = false;
  #ctx: GpuContext;
  #splitBytes: number;
  #embed: EmbedOp;
  #layerNorm: LayerNormOp;
  #bias: MatmulOp;
  #gelu: MatmulOp;
  #residual: MatmulOp;
  #head: MatmulOp;
  #attention: AttentionOp;
  #caches = new WeakMap<GpuTensor, KVCacheShape>();
  /** How float16 weights are read, or null when weights are float32. */
  #half: WeightStorage | null;

  private constructor(
    device: GPUDevice,
    /** The adapter's description, e.g. "llvmpipe (LLVM 15.0.6, 256 bits)". */
    readonly adapter: string,
    /** Whether the adapter is a software fallback (such as Mesa's llvmpipe). */
    readonly isFallbackAdapter: boolean,
    options: WebGpuOptions,
  ) {
    this.#ctx = new GpuContext(device);
    this.weightType = options.weightType ?? "f32";
    this.#half = options.weightType === "f16"
      ? (device.features.has("shader-f16") && options.shaderF16 !== false ? "f16" : "f16-packed")
      : null;
    this.#splitBytes = Math.min(options.vocabularySplitBytes ?? Infinity, this.#ctx.maxBinding);
    this.#embed = new EmbedOp(this.#ctx);
    this.#layerNorm = new LayerNormOp(this.#ctx);
    this.#bias = new MatmulOp(this.#ctx, "bias");
    this.#gelu = new MatmulOp(this.#ctx, "gelu");
    this.#residual = new MatmulOp(this.#ctx, "residual");
    this.#head = new MatmulOp(this.#ctx, "head");
    this.#attention = new AttentionOp(this.#ctx);
  }

  /**
   * Requests an adapter and a device with the adapter's largest storage binding and
   * buffer sizes (and shader-f16 where it has it), and compiles the layer-norm and
   * attention kernels; the others compile on first use, one per weight storage.
   * @throws {BackendError} when there is no WebGPU, no adapter, or no device
   */
  static async create(options: WebGpuOptions = {}): Promise<WebGpuBackend> {
    if (options.device) {
      const info = (options.device as GPUDevice & { adapterInfo?: GPUAdapterInfo }).adapterInfo;
      const fallback = (info as { isFallbackAdapter?: boolean } | undefined)?.isFallbackAdapter;
      return new WebGpuBackend(
        options.device,
        info?.description || "a given device",
        fallback ?? false,
        options,
      );
    }
    const ms = options.timeoutMs ?? 20000;
    const adapter = options.adapter ?? (await WebGpuBackend.probe(ms)).adapter;
    const limits = adapter.limits;
    let device: GPUDevice;
    try {
      const features: GPUFeatureName[] = adapter.features.has("shader-f16") ? ["shader-f16"] : [];
      device = await within(
        adapter.requestDevice({
          requiredFeatures: features,
          requiredLimits: {
            maxStorageBufferBindingSize: limits.maxStorageBufferBindingSize,
            maxBufferSize: limits.maxBufferSize,
          },
        }),
        ms,
        "requesting a device",
      );
    } catch (e) {
      if (e instanceof BackendError) throw e;
      throw new BackendError(`webgpu backend: no device (${(e as Error).message}); ${FIX}`);
    }
    const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
    const fallback = info.isFallbackAdapter ??
      (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false;
    return new WebGpuBackend(device, info.description || info.vendor, fallback, options);
  }

  /**
   * Requests an adapter (no device): what kind it is and the limits a model must fit,
   * for `fit` and for `create({ adapter })`.
   * @throws {BackendError} when there is no WebGPU or no adapter
   */
  static async probe(timeoutMs = 20000): Promise<WebGpuProbe> {
    const adapter = await requestAdapter(timeoutMs);
    if (!adapter) {
      throw new BackendError(
        "webgpu backend: no WebGPU adapter found (install a GPU driver, or Mesa's " +
          `mesa-vulkan-drivers for a software one); ${FIX}`,
      );
    }
    const info = adapter.info as GPUAdapterInfo & { isFallbackAdapter?: boolean };
    const fallback = info.isFallbackAdapter ??
      (adapter as GPUAdapter & { isFallbackAdapter?: boolean }).isFallbackAdapter ?? false;
    const { maxBufferSize, maxStorageBufferBindingSize } = adapter.limits;
    return {
      adapter,
      kind: fallback ? "fallback" : "gpu",
      limits: { maxBufferSize, maxStorageBufferBindingSize },
    };
  }

  /**
   * Whether this machine has a hardware WebGPU adapter, only a software fallback, or none:
   * what `--backend auto` chooses by. Requests no device.
   */
  static async adapterKind(): Promise<AdapterKind> {
    try {
      return (await WebGpuBackend.probe(5000)).kind;
    } catch {
      return "none";
    }
  }

  /**
   * How a model that allocates `plan` fits an adapter of `limits` with `weightType`
   * weights, before a device is requested: the bytes of its buffers, and the first buffer
   * or binding that would exceed a limit. WebGPU reports no memory size, so a device that
   * runs out of memory shows only when the buffers are made.
   */
  static fit(plan: ModelPlan, weightType: WeightType, limits: WebGpuLimits): Fit {
    let bytes = 0;
    const over: string[] = [];
    if (!WebGpuBackend.weightTypes.includes(weightType)) {
      over.push(`The webgpu backend has no ${weightType} weights`);
    }
    const cacheMisfit = kvCacheMisfit(plan.cache, limits);
    if (cacheMisfit) over.push(cacheMisfit);
    bytes += plan.cache.layers * kvLayerBytes(plan.cache);
    const half = weightType === "f16";
    for (const { role, shape } of plan.weights) {
      const b = weightBytes(role, shape, half);
      bytes += b;
      // The embedding is bound a vocabulary range at a time: one row at least.
      const bound = role === "embedding" ? b / shape[0] : b;
      const misfit = bufferMisfit(`A ${role} weight [${shape.join(", ")}]`, b, bound, limits);
      if (misfit) over.push(misfit);
    }
    for (const { shape } of plan.activations) {
      const b = 4 * elements(shape);
      bytes += b;
      const misfit = bufferMisfit(`An activation [${shape.join(", ")}]`, b, b, limits);
      if (misfit) over.push(misfit);
    }
    return over.length === 0 ? { bytes } : { bytes, misfit: over[0] };
  }

  /** The device's maxStorageBufferBindingSize: the most bytes one shader variable binds. */
  get bindingLimit(): number {
    return this.#ctx.maxBinding;
  }

  /** Dispatches, submits and bytes moved since the last `resetStats`. */
  stats(): WebGpuStats {
    return { ...this.#ctx.stats };
  }

  /** Zeroes the counters `stats` reports. */
  resetStats(): void {
    Object.assign(this.#ctx.stats, { dispatches: 0, submits: 0, bytesRead: 0, bytesWritten: 0 });
  }

  tensor(shape: readonly number[], type: ActivationType = "f32"): Tensor {
    const bytes = elements(shape) * 4;
    return this.#ctx.tensor(shape, type, bytes, [this.#ctx.buffer(bytes, STORAGE)]);
  }

  /** The storage of weight `t`'s elements. */
  #storage(t: GpuTensor): WeightStorage {
    return t.type === "f16" ? this.#half! : "f32";
  }

  weight(role: WeightRole, shape: readonly number[]): Tensor {
    const bytes = weightBytes(role, shape, this.#half !== null);
    const type = role === "plain" || this.#half === null ? "f32" : "f16";
    return this.#ctx.tensor(shape, type, bytes, [this.#ctx.buffer(bytes, STORAGE)]);
  }

  async loadWeight(weight: Tensor, read: (dest: Float32Array) => Promise<void>): Promise<void> {
    const w = this.#own(weight);
    const n = elements(w.shape);
    const dest = new Float32Array(n);
    await read(dest);
    if (w.type !== "f16") {
      this.#ctx.device.queue.writeBuffer(w.buffer, 0, dest);
      return;
    }
    // Round to nearest float16 (ties to even), padded to whole u32 words.
    const half = new Float16Array(n + (n & 1));
    half.set(dest);
    this.#ctx.device.queue.writeBuffer(w.buffer, 0, half.buffer);
  }

  kvCache(shape: KVCacheShape): Tensor {
    const { layers, slots, positions, heads, headDim } = shape;
    const misfit = kvCacheMisfit(shape, this.#ctx.device.limits);
    if (misfit) throw new BackendError(`${misfit}: use fewer slots, or ${FIX}`);
    const layerBytes = kvLayerBytes(shape);
    const buffers = Array.from({ length: layers }, () => this.#ctx.buffer(layerBytes, STORAGE));
    const t = this.#ctx.tensor(
      [layers, slots, 2, heads, positions, headDim],
      "f32",
      layerBytes * layers,
      buffers,
    );
    this.#caches.set(t, shape);
    return t;
  }

  write(t: Tensor, data: Int32Array): void {
    const own = this.#own(t);
    if (data.byteLength > own.bytes) {
      throw new RangeError(
        `webgpu backend: cannot write ${data.length} values to a tensor of shape [${t.shape}]`,
      );
    }
    const bytes = new Uint8Array(data.buffer, data.byteOffset, data.byteLength);
    this.#ctx.write(own.buffer, bytes);
  }

  read(t: Tensor, into: Float32Array): Promise<void> {
    const own = this.#own(t);
    if (into.byteLength > own.bytes) {
      throw new RangeError(
        `webgpu backend: cannot read ${into.length} floats from a tensor of shape [${t.shape}]`,
      );
    }
    return this.#ctx.read(
      own.buffer,
      new Uint8Array(into.buffer, into.byteOffset, into.byteLength),
    );
  }

  embed(
    out: Tensor,
    tokens: Tensor,
    positions: Tensor,
    wte: Tensor,
    wpe: Tensor,
    rows: number,
  ): void {
    const e = this.#own(wte);
    const [V, C] = e.shape;
    for (const part of this.#vocabularyParts(e)) {
      this.#embed.record(
        this.#own(out),
        this.#own(tokens),
        this.#own(positions),
        part.binding,
        this.#storage(e),
        this.#own(wpe),
        { rows, C, vStart: part.start, vCount: Math.min(part.count, V - part.start) },
      );
    }
  }

  layerNorm(out: Tensor, inp: Tensor, gain: Tensor, bias: Tensor, rows: number): void {
    this.#layerNorm.record(
      this.#own(out),
      this.#own(inp),
      this.#own(gain),
      this.#own(bias),
      rows,
    );
  }

  conv1d(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor, rows: number): void {
    this.#conv(this.#bias, out, inp, weight, bias, rows);
  }

  conv1dGelu(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor, rows: number): void {
    this.#conv(this.#gelu, out, inp, weight, bias, rows);
  }

  conv1dResidual(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor, rows: number): void {
    this.#conv(this.#residual, out, inp, weight, bias, rows);
  }

  attention(
    out: Tensor,
    qkv: Tensor,
    cache: Tensor,
    layer: number,
    seqs: Tensor,
    B: number,
    T: number,
  ): void {
    const c = this.#own(cache);
    const shape = this.#caches.get(c);
    if (!shape) throw new TypeError("webgpu backend: attention's cache is not a KV cache");
    this.#attention.record(this.#own(out), this.#own(qkv), c, layer, this.#own(seqs), {
      B,
      T,
      H: shape.heads,
      D: shape.headDim,
      P: shape.positions,
    });
  }

  logits(out: Tensor, h: Tensor, wte: Tensor, rows: number): void {
    const o = this.#own(out);
    const x = this.#own(h);
    const e = this.#own(wte);
    const [V, C] = e.shape;
    // Rows of logits per dispatch, so the bound slice of `out` (and of `h`) stays under
    // the split limit and starts on the storage offset alignment.
    const step = this.#alignedRows(V * 4) * this.#alignedRows(C * 4) /
      gcd(this.#alignedRows(V * 4), this.#alignedRows(C * 4));
    const fit = Math.floor(this.#splitBytes / (V * 4) / step) * step;
    const block = rows * V * 4 <= this.#splitBytes ? rows : fit;
    if (block === 0) {
      throw new BackendError(
        `webgpu backend: a row of ${V} logits does not fit the ${this.#splitBytes}-byte ` +
          `binding limit; ${FIX}`,
      );
    }
    const parts = this.#vocabularyParts(e);
    for (let r0 = 0; r0 < rows; r0 += block) {
      const n = Math.min(block, rows - r0);
      const outRows: Binding = { tensor: o, offset: r0 * V * 4, size: n * V * 4 };
      const inRows: Binding = { tensor: x, offset: r0 * C * 4, size: n * C * 4 };
      for (const part of parts) {
        this.#head.record(outRows, inRows, part.binding, this.#storage(e), null, {
          rows: n,
          K: C,
          N: Math.min(part.count, V - part.start),
          ldOut: V,
          colOff: part.start,
        });
      }
    }
  }

  gatherRows(out: Tensor, inp: Tensor, rows: readonly number[]): void {
    const o = this.#own(out);
    const x = this.#own(inp);
    if (o.buffer === x.buffer) throw new TypeError("webgpu backend: gatherRows needs out ≠ inp");
    const rowBytes = x.shape[x.shape.length - 1] * 4;
    // Runs of consecutive rows are one copy each.
    for (let i = 0; i < rows.length;) {
      let j = i + 1;
      while (j < rows.length && rows[j] === rows[j - 1] + 1) j++;
      this.#ctx.copy(x.buffer, rows[i] * rowBytes, o.buffer, i * rowBytes, (j - i) * rowBytes);
      i = j;
    }
  }

  /** Destroys every buffer and the device. */
  dispose(): void {
    this.#ctx.dispose();
  }

  /** The same as `dispose`, for `using`. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  #conv(
    op: MatmulOp,
    out: Tensor,
    inp: Tensor,
    weight: Tensor,
    bias: Tensor,
    rows: number,
  ): void {
    const w = this.#own(weight);
    const [K, N] = w.shape.slice(-2);
    op.record(
      { tensor: this.#own(out) },
      { tensor: this.#own(inp) },
      { tensor: w },
      this.#storage(w),
      { tensor: this.#own(bias) },
      { rows, K, N, ldOut: N, colOff: 0 },
    );
  }

  /** The smallest number of rows of `rowBytes` whose bytes are a multiple of the alignment. */
  #alignedRows(rowBytes: number): number {
    const align = this.#ctx.device.limits.minStorageBufferOffsetAlignment;
    return align / gcd(rowBytes, align);
  }

  /**
   * Vocabulary ranges of the (V, C) embedding that each fit one binding of at most the
   * split limit and start on the storage offset alignment.
   */
  #vocabularyParts(wte: GpuTensor): { start: number; count: number; binding: Binding }[] {
    const [V, C] = wte.shape;
    const rowBytes = C * bytesPerElement(this.#storage(wte));
    if (V * rowBytes <= this.#splitBytes) {
      return [{ start: 0, count: V, binding: { tensor: wte } }];
    }
    const step = this.#alignedRows(rowBytes);
    const count = Math.floor(this.#splitBytes / rowBytes / step) * step;
    if (count === 0) {
      throw new BackendError(
        `webgpu backend: an embedding row of ${rowBytes} bytes does not fit the ` +
          `${this.#splitBytes}-byte binding limit; ${FIX}`,
      );
    }
    const parts = [];
    for (let start = 0; start < V; start += count) {
      const n = Math.min(count, V - start);
      // The last range binds the rest of the buffer: its whole u32 words.
      const size = start + n === V ? undefined : n * rowBytes;
      parts.push({ start, count: n, binding: { tensor: wte, offset: start * rowBytes, size } });
    }
    return parts;
  }

  #own(t: Tensor): GpuTensor {
    if (!this.#ctx.owns(t)) {
      throw new TypeError("webgpu backend: the tensor was made by another backend");
    }
    return t;
  }
}

async function requestAdapter(ms: number): Promise<GPUAdapter | null> {
  const gpu = (navigator as Navigator & { gpu?: GPU }).gpu;
  if (!gpu) {
    throw new BackendError(`webgpu backend: this runtime has no navigator.gpu; ${FIX}`);
  }
  vulkanOnLinux();
  return await within(
    gpu.requestAdapter({ powerPreference: "high-performance" }),
    ms,
    "requesting an adapter",
  );
}

/** The variable that chooses Deno's wgpu backends, read once, at the first adapter request. */
export const WGPU_BACKEND_VARIABLE = "DENO_WEBGPU_BACKEND";

/**
 * On Linux, Deno asks for Vulkan alone unless the user chose: with every backend, wgpu
 * also loads OpenGL's libEGL, whose destructor at process exit corrupts the heap while
 * other threads exit (an abort after the program has finished; see the README's Known
 * issues). Vulkan is what runs compute there. Needs the permission to set the variable.
 */
function vulkanOnLinux(): void {
  const deno = (globalThis as { Deno?: typeof Deno }).Deno;
  if (deno?.build.os !== "linux") return;
  const env = { name: "env", variable: WGPU_BACKEND_VARIABLE } as const;
  if (deno.permissions.querySync(env).state !== "granted") return;
  if (deno.env.get(WGPU_BACKEND_VARIABLE) === undefined) {
    deno.env.set(WGPU_BACKEND_VARIABLE, "vulkan");
  }
}

/**
 * Bytes of a weight's buffer: float32, or with `half` the `"conv1d"` and `"embedding"`
 * weights as float16 pairs in u32 words (the last word padded).
 */
function weightBytes(role: WeightRole, shape: readonly number[], half: boolean): number {
  const n = elements(shape);
  return role === "plain" || !half ? 4 * n : Math.ceil(n / 2) * 4;
}

/** Bytes of one layer's KV cache, one buffer: keys and values of every slot. */
function kvLayerBytes(shape: KVCacheShape): number {
  return shape.slots * 2 * shape.heads * shape.positions * shape.headDim * 4;
}

/** Why a KV cache of `shape` cannot run on an adapter of `limits`, if it cannot. */
function kvCacheMisfit(shape: KVCacheShape, limits: WebGpuLimits): string | undefined {
  if (shape.headDim > MAX_HEAD_DIM) {
    return `The webgpu backend's attention takes heads of at most ${MAX_HEAD_DIM} ` +
      `features, and this model's have ${shape.headDim}`;
  }
  const bytes = kvLayerBytes(shape);
  const limit = Math.min(limits.maxStorageBufferBindingSize, limits.maxBufferSize);
  if (bytes > limit) {
    return `One layer's KV cache for ${shape.slots} slot${shape.slots === 1 ? "" : "s"} ` +
      `is ${bytes} bytes, more than the ${limit} bytes the adapter binds at once`;
  }
  return undefined;
}

/** Why a buffer of `bytes`, bound `bound` bytes at a time, exceeds `limits`, if it does. */
function bufferMisfit(
  what: string,
  bytes: number,
  bound: number,
  limits: WebGpuLimits,
): string | undefined {
  if (bytes > limits.maxBufferSize) {
    return `${what} is ${bytes} bytes, more than the ${limits.maxBufferSize} bytes an ` +
      `adapter buffer holds`;
  }
  if (bound > limits.maxStorageBufferBindingSize) {
    return `${what} is ${bytes} bytes, more than the ${limits.maxStorageBufferBindingSize} ` +
      `bytes the adapter binds at once`;
  }
  return undefined;
}
