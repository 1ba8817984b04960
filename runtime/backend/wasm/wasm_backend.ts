/**
 * The WebAssembly backend: the SIMD kernels of asm/ on a worker pool over one shared
 * memory, which grows as tensors are allocated. Conv1D weights are packed into panels of
 * `PANEL` columns, biases padded to whole panels, and the KV cache holds each head's keys
 * in blocks of `KEY_BLOCK` positions; no byte offset leaves this file. The Conv1D weights
 * and the token embedding (also the output head) are stored in the backend's `weightType`,
 * converted as they load; its entry in weight_formats.ts says how many bytes they take,
 * how they are packed and which kernels run them.
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
import { UnstorableWeightError } from "../backend.ts";
import { BackendError } from "../../errors.ts";
import { type KernelConstants, kernelModule } from "./kernel_module.ts";
import { KEY_BLOCK, PANEL, panels, Q8_BLOCK } from "./layout.ts";
import { TYPE_LAYOUTS } from "../../io/tensor_types.ts";
import { type Op, type OpArgs, OPS } from "./ops.ts";
import { WEIGHT_FORMATS, type WeightFormat } from "./weight_formats.ts";
import { type OpProfile, RESERVED_BYTES, WorkerPool } from "./worker_pool.ts";

/** Options of `WasmBackend.create`. */
export interface WasmBackendOptions {
  /** Threads that run the kernels (default: one per logical CPU). */
  threads?: number;
  /**
   * A kernel call that reads and writes fewer floats than this runs on the calling thread
   * alone (default 32768; 0 splits every call, as the tests do).
   */
  serialBelow?: number;
  /** µs a thread spins before it blocks while waiting for another (default 1000). */
  spinMicros?: number;
  /** Time every kernel call per thread, for `profile()` (default false). */
  profile?: boolean;
  /**
   * The element type of the `"conv1d"` and `"embedding"` weights (default "f32"):
   * "f16", IEEE binary16 (rounded to nearest even); "q8", ggml's Q8_0 (int8 in blocks of
   * 32 input features with a float16 scale each), the products' inputs quantised to 8 bits
   * per block as they run; "q4", ggml's Q4_0 (4 bits in blocks of 32 with a float16 scale
   * each), the products' inputs quantised to int8 per block. Other weights stay f32. Its
   * format is `WEIGHT_FORMATS[weightType]`.
   */
  weightType?: WeightType;
}

/** Bytes a WebAssembly memory can hold: 65536 pages of 64 KiB. */
const MAX_MEMORY_BYTES = 65536 * 65536;
const PAGE_BYTES = 65536;
/** Tensors start on a cache line. */
const ALIGN = 64;
/** Conv1D weights in flight while loading: one read, one checksummed, one packed. */
const STAGING_BUFFERS = 3;

/** Where a KV cache keeps slot s, layer l (floats from its start): s·slotStride + l·layerStride. */
interface CacheLayout {
  readonly layers: number;
  readonly slots: number;
  readonly heads: number;
  readonly headDim: number;
  /** Positions per head: n_ctx rounded up to a whole block of keys. */
  readonly positions: number;
  readonly layerStride: number;
  readonly slotStride: number;
  /** Bytes of the whole cache. */
  readonly bytes: number;
}

/** A tensor in a `WasmBackend`'s memory; its byte offset is known to that backend only. */
class WasmTensor implements Tensor {
  readonly #owner: WasmBackend;
  readonly #ptr: number;
  readonly #role: WeightRole | undefined;
  readonly #cache: CacheLayout | undefined;

  constructor(
    owner: WasmBackend,
    ptr: number,
    readonly shape: readonly number[],
    readonly type: string,
    readonly bytes: number,
    role?: WeightRole,
    cache?: CacheLayout,
  ) {
    this.#owner = owner;
    this.#ptr = ptr;
    this.#role = role;
    this.#cache = cache;
    Object.freeze(this);
  }

  /** `t` as a tensor of `owner`, or a TypeError if another backend made it. */
  static of(t: Tensor, owner: WasmBackend): WasmTensor {
    if (!(t instanceof WasmTensor) || t.#owner !== owner) {
      throw new TypeError("The tensor belongs to another backend: use the backend that made it");
    }
    return t;
  }

  static ptr(t: WasmTensor): number {
    return t.#ptr;
  }

  static role(t: WasmTensor): WeightRole | undefined {
    return t.#role;
  }

  static cache(t: WasmTensor): CacheLayout {
    if (!t.#cache) throw new TypeError("Expected a KV cache from kvCache()");
    return t.#cache;
  }
}

/** Staging memory for Conv1D weights on their way to being packed. */
interface Staging {
  /** Byte offset of each buffer. */
  readonly buffers: readonly number[];
  /** Floats each buffer holds. */
  readonly floats: number;
  /** The KV cache whose memory the buffers borrow, if they do. */
  readonly cache: WasmTensor | undefined;
}

/**
 * The wasm backend.
 *
 * @example
 * ```ts
 * import { WasmBackend } from "./wasm_backend.ts";
 *
 * using backend = await WasmBackend.create({ threads: 1 });
 * const x = backend.tensor([1, 4]);
 * const g = backend.weight("plain", [4]);
 * const b = backend.weight("plain", [4]);
 * await backend.loadWeight(g, (dest) => Promise.resolve(dest.set([1, 1, 1, 1])));
 * const out = backend.tensor([1, 4]);
 * backend.layerNorm(out, x, g, b, 1);
 * const got = new Float32Array(4);
 * await backend.read(out, got); // zeros: the norm of a constant row
 * ```
 */
export class WasmBackend implements Backend {
  /** The name it is selected by. */
  readonly name = "wasm";
  /** Every kernel sums a row's terms in one order, whatever the rows around it. */
  readonly splitInvariant = true;
  readonly #memory: WebAssembly.Memory;
  readonly #pool: WorkerPool;
  readonly #constants: KernelConstants;
  /** Views of the whole memory, made again whenever it grows. */
  #f32: Float32Array;
  #i32: Int32Array;
  /** One past the last allocated byte. */
  #end = RESERVED_BYTES;
  /** The largest Conv1D weight declared, in floats: the size of a staging buffer. */
  #largestConv1d = 0;
  /** The largest KV cache that has held nothing yet: where staging buffers may go. */
  #emptyCache: WasmTensor | undefined;
  /** Bytes at the start of `#emptyCache` that staged weights have written. */
  #dirtyBytes = 0;
  #staging: Staging | undefined;
  #freeBuffers: number[] = [];
  /** Loads waiting for a staging buffer, first come first served. */
  #waiting: ((buffer: number) => void)[] = [];
  #scratch = { ptr: 0, floats: 0 };
  /** The products' input rows, quantised by the format's `quantize` op. */
  #quantScratch = { ptr: 0, bytes: 0 };
  /** The bytes of the largest activation allocated so far, quantised by the format. */
  #quantized = 0;
  /** The products' per-thread scratch (the format's `threadScratchBytes`), all threads'. */
  #threadScratch = { ptr: 0, bytes: 0 };
  /** The largest per-thread scratch of the weights declared so far. */
  #threadScratchBytes = 0;
  /** Where in a KV cache an embedding was read as f32 before it was packed. */
  #embeddingStage: { ptr: number; bytes: number; tailOf: WasmTensor } | undefined;

  /** The element type of the `"conv1d"` and `"embedding"` weights. */
  readonly weightType: WeightType;
  /** How they are stored and which kernels run them. */
  readonly #format: WeightFormat;
  /** The ggml block type the weight type stores as it is, if any (`loadBlocks`). */
  readonly blockType: string | undefined;

  private constructor(memory: WebAssembly.Memory, pool: WorkerPool, weightType: WeightType) {
    this.weightType = weightType;
    this.#format = WEIGHT_FORMATS[weightType];
    this.blockType = this.#format.blocks?.ggmlType;
    this.#memory = memory;
    this.#pool = pool;
    this.#constants = pool.kernels.constants;
    this.#f32 = new Float32Array(memory.buffer);
    this.#i32 = new Int32Array(memory.buffer);
  }

  /** Starts the kernels on `threads` threads (default: one per logical CPU). */
  static async create(options: WasmBackendOptions = {}): Promise<WasmBackend> {
    const threads = options.threads ?? navigator.hardwareConcurrency;
    if (!Number.isInteger(threads) || threads < 1) {
      throw new RangeError(`threads must be a positive integer, got ${threads}`);
    }
    const weightType = options.weightType ?? "f32";
    if (!(weightType in WEIGHT_FORMATS)) {
      throw new TypeError(`No weight format ${JSON.stringify(weightType)} in weight_formats.ts`);
    }
    // A page that is not cross-origin isolated has no shared memory: one thread then.
    const shared = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated !== false;
    if (!shared && threads > 1) {
      throw new BackendError(
        `The wasm backend runs ${threads} threads only in a cross-origin isolated page ` +
          `(served with Cross-Origin-Opener-Policy: same-origin and ` +
          `Cross-Origin-Embedder-Policy: require-corp): use threads: 1 or those headers`,
      );
    }
    const memory = new WebAssembly.Memory({
      initial: RESERVED_BYTES / PAGE_BYTES,
      maximum: MAX_MEMORY_BYTES / PAGE_BYTES,
      shared,
    });
    const pool = await WorkerPool.create(await kernelModule(shared), memory, threads, {
      serialBelow: options.serialBelow,
      spinMicros: options.spinMicros,
      profile: options.profile,
    });
    checkLayout(pool.kernels.constants);
    return new WasmBackend(memory, pool, weightType);
  }

  /** Threads that run each kernel call. */
  get threads(): number {
    return this.#pool.threads;
  }

  /** Bytes of wasm memory in use: the reserved bytes and every tensor allocated so far. */
  get allocatedBytes(): number {
    return this.#end;
  }

  /** The weight types the backend stores, most faithful first: its formats. */
  static readonly weightTypes: readonly WeightType[] = Object.keys(WEIGHT_FORMATS) as WeightType[];

  /**
   * How a model that allocates `plan` fits a wasm backend storing its weights as
   * `weightType`, before any is created: the bytes `allocatedBytes` comes to once the
   * model is created, loaded and has run (the weights in the type's format, the
   * activations, the KV cache, the attention and activation-quantisation scratch, the
   * products' scratch of each of `threads` threads (default: one per logical CPU, as
   * `create`'s), and the staging buffers when the cache cannot lend its memory to them),
   * against the 4 GiB of a wasm32 memory. Every size comes from the functions the
   * allocating methods use.
   */
  static fit(
    plan: ModelPlan,
    weightType: WeightType,
    threads: number = navigator.hardwareConcurrency,
  ): Fit {
    const format = WEIGHT_FORMATS[weightType];
    let bytes = RESERVED_BYTES;
    let largestConv1d = 0;
    let threadScratch = 0;
    for (const { role, shape } of plan.weights) {
      bytes += aligned(weightBytes(format, role, shape));
      if (role === "conv1d") largestConv1d = Math.max(largestConv1d, elements(shape));
      threadScratch = Math.max(threadScratch, threadScratchBytes(format, role, shape));
    }
    let quantized = 0;
    for (const { shape, type } of plan.activations) {
      bytes += aligned(4 * elements(shape));
      quantized = Math.max(quantized, quantizedBytes(format, shape, type));
    }
    const cache = cacheLayout(plan.cache);
    bytes += aligned(cache.bytes) + aligned(4 * attentionScratchFloats(cache));
    if (quantized > 0) bytes += aligned(quantized);
    if (threadScratch > 0) bytes += aligned(threads * threadScratch);
    const staging = STAGING_BUFFERS * aligned(4 * largestConv1d);
    if (largestConv1d > 0 && cache.bytes < staging) bytes += staging;
    if (bytes <= MAX_MEMORY_BYTES) return { bytes };
    return {
      bytes,
      misfit: `The model needs ${gib(bytes)} GiB of wasm memory, more than the 4 GiB a ` +
        `WebAssembly memory holds`,
    };
  }

  tensor(shape: readonly number[], type: ActivationType = "f32"): Tensor {
    if (type !== "f32" && type !== "i32") {
      throw new TypeError(`An activation's type is "f32" or "i32", got ${JSON.stringify(type)}`);
    }
    const bytes = 4 * elements(shape);
    this.#quantized = Math.max(this.#quantized, quantizedBytes(this.#format, shape, type));
    return new WasmTensor(this, this.#alloc(bytes), [...shape], type, bytes);
  }

  weight(role: WeightRole, shape: readonly number[]): Tensor {
    const bytes = weightBytes(this.#format, role, shape);
    if (role === "conv1d") this.#largestConv1d = Math.max(this.#largestConv1d, elements(shape));
    this.#threadScratchBytes = Math.max(
      this.#threadScratchBytes,
      threadScratchBytes(this.#format, role, shape),
    );
    const type = role === "plain" ? "f32" : this.weightType;
    return new WasmTensor(this, this.#alloc(bytes), [...shape], type, bytes, role);
  }

  async loadWeight(weight: Tensor, read: (dest: Float32Array) => Promise<void>): Promise<void> {
    const w = WasmTensor.of(weight, this);
    const role = WasmTensor.role(w);
    if (role === undefined) throw new TypeError("loadWeight() takes a tensor from weight()");
    const n = elements(w.shape);
    const ptr = WasmTensor.ptr(w);
    const format = formatOf(w);
    if (role === "plain" || (role === "embedding" && !format.packEmbedding)) {
      await read(this.#f32.subarray(ptr / 4, ptr / 4 + n));
      return;
    }
    if (role === "embedding") {
      await this.#loadEmbedding(w, read, format.packEmbedding!);
      return;
    }
    const [C, OC] = w.shape;
    const buffer = await this.#acquireBuffer(n);
    try {
      await read(this.#f32.subarray(buffer / 4, buffer / 4 + n));
      checkFit(format, this.#run(format.packConv1d, { dst: ptr, src: buffer, C, OC }));
    } finally {
      this.#releaseBuffer(buffer);
    }
  }

  async loadBlocks(
    weight: Tensor,
    ggmlType: string,
    read: (dest: Uint8Array) => Promise<void>,
  ): Promise<void> {
    const w = WasmTensor.of(weight, this);
    const role = WasmTensor.role(w);
    const blocks = formatOf(w).blocks;
    if (role !== "conv1d" && role !== "embedding") {
      throw new TypeError('loadBlocks() takes a "conv1d" or "embedding" tensor from weight()');
    }
    if (blocks === undefined || blocks.ggmlType !== ggmlType) {
      throw new TypeError(`The wasm backend's ${w.type} weights do not store ${ggmlType} blocks`);
    }
    const { blockSize, blockBytes } = TYPE_LAYOUTS[blocks.ggmlType];
    // The matrix as ggml stores it: rows along the input features C.
    const [C, rows] = role === "conv1d" ? w.shape : [w.shape[1], w.shape[0]];
    if (C % blockSize !== 0) {
      throw new RangeError(`Rows of ${C} values are not whole ${ggmlType} blocks of ${blockSize}`);
    }
    const rowBytes = (C / blockSize) * blockBytes;
    const bytes = rows * rowBytes;
    const dst = WasmTensor.ptr(w);
    const u8 = (at: number, n: number) => new Uint8Array(this.#memory.buffer, at, n);
    if (role === "conv1d") {
      const buffer = await this.#acquireBuffer(Math.ceil(bytes / 4));
      try {
        await read(u8(buffer, bytes));
        this.#run(blocks.packConv1d, { dst, src: buffer, C, OC: rows });
      } finally {
        this.#releaseBuffer(buffer);
      }
      return;
    }
    // The embedding, staged as an f32 one is (`#loadEmbedding`): in the empty KV cache, or
    // from the JS heap a chunk of whole panels at a time through a staging buffer.
    const all = panels(rows);
    const stage = this.#embeddingInCache(Math.ceil(bytes / 4));
    if (stage !== undefined) {
      await read(u8(stage, bytes));
      this.#run(blocks.packEmbedding, { dst, src: stage, C, V: rows, first: 0, panels: all });
      return;
    }
    const raw = new Uint8Array(bytes);
    await read(raw);
    const panelBytes = PANEL * rowBytes;
    const perChunk = Math.max(1, Math.floor((4 * this.#largestConv1d) / panelBytes));
    const buffer = await this.#acquireBuffer(Math.ceil(Math.min(all, perChunk) * panelBytes / 4));
    try {
      for (let first = 0; first < all; first += perChunk) {
        const count = Math.min(perChunk, all - first);
        const chunk = raw.subarray(first * panelBytes, (first + count) * panelBytes);
        u8(buffer, chunk.byteLength).set(chunk);
        this.#run(blocks.packEmbedding, { dst, src: buffer, C, V: rows, first, panels: count });
      }
    } finally {
      this.#releaseBuffer(buffer);
      raw.buffer.transfer(0);
    }
  }

  /**
   * The KV cache, and with it the scratch of attention, the products' per-thread scratch
   * for the weights declared so far, and, for a format that quantises the products'
   * inputs, room for the largest activation allocated so far quantised (a model declares
   * its weights and allocates its activations first, as Gpt2 does).
   */
  kvCache(shape: KVCacheShape): Tensor {
    const layout = cacheLayout(shape);
    const { layers, slots, heads, headDim, bytes } = layout;
    const cache = new WasmTensor(
      this,
      this.#alloc(bytes),
      [layers, slots, 2, heads, shape.positions, headDim],
      "f32",
      bytes,
      undefined,
      layout,
    );
    this.#ensureScratch(attentionScratchFloats(layout));
    this.#ensureQuantScratch(this.#quantized);
    this.#ensureThreadScratch(this.#threadScratchBytes);
    if (!this.#emptyCache || bytes > this.#emptyCache.bytes) this.#emptyCache = cache;
    return cache;
  }

  write(t: Tensor, data: Int32Array): void {
    const w = WasmTensor.of(t, this);
    if (data.length * 4 > w.bytes) {
      throw new RangeError(`Cannot write ${data.length} values into a tensor of ${w.bytes / 4}`);
    }
    this.#i32.set(data, WasmTensor.ptr(w) / 4);
  }

  read(t: Tensor, into: Float32Array): Promise<void> {
    const w = WasmTensor.of(t, this);
    if (into.length * 4 > w.bytes) {
      return Promise.reject(
        new RangeError(`Cannot read ${into.length} values from a tensor of ${w.bytes / 4}`),
      );
    }
    this.#useCache(w);
    const at = WasmTensor.ptr(w) / 4;
    into.set(this.#f32.subarray(at, at + into.length));
    return Promise.resolve();
  }

  embed(
    out: Tensor,
    tokens: Tensor,
    positions: Tensor,
    wte: Tensor,
    wpe: Tensor,
    rows: number,
  ): void {
    this.#run(formatOf(WasmTensor.of(wte, this)).embed, {
      out: this.#ptr(out),
      tokens: this.#ptr(tokens),
      positions: this.#ptr(positions),
      wte: this.#ptr(wte),
      wpe: this.#ptr(wpe),
      rows,
      C: wte.shape[1],
    });
  }

  layerNorm(out: Tensor, inp: Tensor, gain: Tensor, bias: Tensor, rows: number): void {
    this.#run(OPS.layerNorm, {
      out: this.#ptr(out),
      inp: this.#ptr(inp),
      gain: this.#ptr(gain),
      bias: this.#ptr(bias),
      rows,
      C: gain.shape[0],
    });
  }

  conv1d(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor, rows: number): void {
    this.#conv1d(this.#constants.modes.store, out, inp, weight, bias, rows);
  }

  conv1dGelu(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor, rows: number): void {
    this.#conv1d(this.#constants.modes.gelu, out, inp, weight, bias, rows);
  }

  conv1dResidual(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor, rows: number): void {
    this.#conv1d(this.#constants.modes.residual, out, inp, weight, bias, rows);
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
    const c = WasmTensor.of(cache, this);
    const layout = WasmTensor.cache(c);
    this.#useCache(c);
    const { heads, headDim, positions } = layout;
    this.#ensureScratch(B * heads * positions);
    const seqsAt = this.#ptr(seqs);
    let keys = 0;
    for (let b = 0; b < B; b++) keys = Math.max(keys, this.#i32[seqsAt / 4 + 2 * b + 1] + T);
    this.#run(OPS.attention, {
      out: this.#ptr(out),
      qkv: this.#ptr(qkv),
      cache: WasmTensor.ptr(c) + 4 * layer * layout.layerStride,
      scratch: this.#scratch.ptr,
      seqs: seqsAt,
      B,
      T,
      heads,
      headDim,
      positions,
      slotStride: layout.slotStride,
      keys,
    });
  }

  logits(out: Tensor, h: Tensor, wte: Tensor, rows: number): void {
    const e = WasmTensor.of(wte, this);
    const format = formatOf(e);
    const [V, C] = e.shape;
    this.#run(format.logits, {
      out: this.#ptr(out),
      h: this.#input(format, h, rows, C),
      wte: WasmTensor.ptr(e),
      rows,
      C,
      V,
      scratch: this.#scratchFor(format, C),
    });
  }

  gatherRows(out: Tensor, inp: Tensor, rows: readonly number[]): void {
    const C = inp.shape[inp.shape.length - 1];
    const to = this.#ptr(out) / 4;
    const from = this.#ptr(inp) / 4;
    for (let i = 0; i < rows.length; i++) {
      const r = from + rows[i] * C;
      this.#f32.copyWithin(to + i * C, r, r + C);
    }
  }

  /**
   * A probe of the memory's read bandwidth as the kernels see it: `gbPerS()` runs
   * `read_sum` (plain SIMD loads on every thread) over `bytes` (rounded up to whole
   * blocks; fewer, nine tenths of what is left, when the wasm memory cannot hold that
   * many beside the model) five times and returns the median rate in GB/s. The bytes read
   * are allocated and filled once, here, and stay resident for the backend's life:
   * `resident` says how many, for callers that leave them out of the model's memory use.
   */
  readBandwidthProbe(bytes: number): { gbPerS(): number; readonly resident: number } {
    const blockBytes = 4 * this.#constants.READ_BLOCK;
    const room = Math.floor((0.9 * (MAX_MEMORY_BYTES - this.#end)) / (blockBytes + 4));
    const blocks = Math.max(1, Math.min(room, Math.ceil(bytes / blockBytes)));
    const inp = this.#alloc(blocks * blockBytes);
    const out = this.#alloc(4 * blocks);
    this.#f32.fill(1, inp / 4, (inp + blocks * blockBytes) / 4);
    return {
      resident: blocks * blockBytes + 4 * blocks,
      gbPerS: () => {
        const times: number[] = [];
        for (let r = 0; r < 5; r++) {
          const t0 = performance.now();
          this.#run(OPS.readSum, { out, inp, blocks });
          times.push((performance.now() - t0) / 1000);
        }
        times.sort((a, b) => a - b);
        return blocks * blockBytes / times[2] / 1e9;
      },
    };
  }

  /**
   * With `profile` on: where the kernels' time went since creation or `resetProfile()`,
   * by op and sizes, with each thread's busy time; undefined otherwise.
   */
  profile(): OpProfile[] | undefined {
    return this.#pool.profile();
  }

  /** Starts the profile afresh. */
  resetProfile(): void {
    this.#pool.resetProfile();
  }

  /** Stops the worker pool; the backend can no longer run ops. */
  [Symbol.dispose](): void {
    this.#pool[Symbol.dispose]();
  }

  #ptr(t: Tensor): number {
    return WasmTensor.ptr(WasmTensor.of(t, this));
  }

  /** Runs `op` on the pool's threads; returns its count (`WorkerPool.run`). */
  #run<A extends string>(op: Op<A>, args: OpArgs<A>): number {
    return this.#pool.run(op, args);
  }

  /** A Conv1D in one of the kernels' modes, with the kernel of the weight's format. */
  #conv1d(
    mode: number,
    out: Tensor,
    inp: Tensor,
    weight: Tensor,
    bias: Tensor,
    rows: number,
  ): void {
    const w = WasmTensor.of(weight, this);
    if (WasmTensor.role(w) !== "conv1d") {
      throw new TypeError('conv1d() takes a weight of role "conv1d"');
    }
    const format = formatOf(w);
    const [C, OC] = w.shape;
    this.#run(format.conv1d, {
      out: this.#ptr(out),
      inp: this.#input(format, inp, rows, C),
      weight: WasmTensor.ptr(w),
      bias: this.#ptr(bias),
      rows,
      C,
      OC,
      mode,
      scratch: this.#scratchFor(format, C),
    });
  }

  /**
   * The per-thread scratch of a product of `format` over C features, allocated if none
   * as large was (Gpt2's is, with its KV cache); 0 for a format that needs none.
   */
  #scratchFor(format: WeightFormat, C: number): number {
    if (!format.threadScratchBytes) return 0;
    this.#ensureThreadScratch(format.threadScratchBytes(C));
    return this.#threadScratch.ptr;
  }

  /**
   * Where a product of `format` reads its input `rows` rows of C floats from: the tensor
   * itself, or, for a format that quantises them, the scratch its quantiser wrote them to.
   */
  #input(format: WeightFormat, inp: Tensor, rows: number, C: number): number {
    const ptr = this.#ptr(inp);
    if (!format.quantize) return ptr;
    this.#ensureQuantScratch(rows * format.quantize.rowBytes(C));
    const dst = this.#quantScratch.ptr;
    this.#run(format.quantize.op, { dst, inp: ptr, rows, C });
    return dst;
  }

  /**
   * Loads an embedding wte that its format packs (V, C): read as f32 into the end of the KV cache while
   * that holds nothing yet and has room past the Conv1D staging buffers at its start, and
   * converted from there; else read into the JS heap (detached, so freed, once packed) and
   * converted a chunk of whole panels at a time through a Conv1D staging buffer, so that no
   * wasm memory, which is never freed, holds a second copy. Both give the same bytes.
   */
  async #loadEmbedding(
    w: WasmTensor,
    read: (dest: Float32Array) => Promise<void>,
    pack: WeightFormat["packEmbedding"] & object,
  ): Promise<void> {
    const [V, C] = w.shape;
    const n = V * C;
    const dst = WasmTensor.ptr(w);
    const all = panels(V);
    const stage = this.#embeddingInCache(n);
    if (stage !== undefined) {
      await read(this.#f32.subarray(stage / 4, stage / 4 + n));
      checkFit(formatOf(w), this.#run(pack, { dst, src: stage, C, V, first: 0, panels: all }));
      return;
    }
    const wte = new Float32Array(n);
    await read(wte);
    const panelFloats = PANEL * C;
    // As many whole panels as a staging buffer holds (one at least, in a buffer made for it).
    const perChunk = Math.max(1, Math.floor(this.#largestConv1d / panelFloats));
    const buffer = await this.#acquireBuffer(Math.min(all, perChunk) * panelFloats);
    try {
      let misfits = 0;
      for (let first = 0; first < all; first += perChunk) {
        const count = Math.min(perChunk, all - first);
        const rows = wte.subarray(first * panelFloats, (first + count) * panelFloats);
        this.#f32.set(rows, buffer / 4);
        misfits += this.#run(pack, { dst, src: buffer, C, V, first, panels: count });
      }
      checkFit(formatOf(w), misfits);
    } finally {
      this.#releaseBuffer(buffer);
      // Detached, its memory is freed now rather than whenever the GC next runs.
      wte.buffer.transfer(0);
    }
  }

  /**
   * Where in the KV cache an embedding to pack, of `floats` floats can be read before it is
   * converted: its end, while it holds nothing yet and has room past the Conv1D staging
   * buffers at its start; undefined when it cannot.
   */
  #embeddingInCache(floats: number): number | undefined {
    const bytes = 4 * floats;
    const bufferBytes = aligned(4 * this.#largestConv1d);
    const cache = this.#emptyCache;
    if (!cache || cache.bytes < STAGING_BUFFERS * bufferBytes + bytes + ALIGN) return undefined;
    const ptr = WasmTensor.ptr(cache) + cache.bytes - bytes;
    this.#embeddingStage = { ptr: ptr - (ptr % ALIGN), bytes, tailOf: cache };
    return this.#embeddingStage.ptr;
  }

  /**
   * Reserves `bytes` (64-byte aligned) after everything allocated so far, growing the
   * memory to hold them; fresh memory is zero.
   */
  #alloc(bytes: number): number {
    const at = this.#end;
    const end = at + aligned(bytes);
    if (end > MAX_MEMORY_BYTES) {
      throw new BackendError(
        `The model needs at least ${
          gib(end)
        } GiB of wasm memory, more than the 4 GiB a WebAssembly ` +
          `memory holds: use a smaller model, fewer slots or a shorter context`,
      );
    }
    const pages = Math.ceil(end / PAGE_BYTES) - this.#memory.buffer.byteLength / PAGE_BYTES;
    if (pages > 0) {
      try {
        this.#memory.grow(pages);
      } catch (error) {
        throw new BackendError(
          `Cannot grow the wasm memory to ${gib(end)} GiB (${(error as Error).message}): ` +
            `use a smaller model, fewer slots or a shorter context`,
        );
      }
      // A shared buffer never detaches, but views of the old one end at its old length (an
      // unshared one detaches).
      this.#f32 = new Float32Array(this.#memory.buffer);
      this.#i32 = new Int32Array(this.#memory.buffer);
    }
    this.#end = end;
    return at;
  }

  #ensureScratch(floats: number): void {
    if (floats <= this.#scratch.floats) return;
    this.#scratch = { ptr: this.#alloc(4 * floats), floats };
  }

  #ensureQuantScratch(bytes: number): void {
    if (bytes <= this.#quantScratch.bytes) return;
    this.#quantScratch = { ptr: this.#alloc(bytes), bytes };
  }

  /** Per-thread scratch of at least `perThread` bytes for each thread, in one block. */
  #ensureThreadScratch(perThread: number): void {
    const bytes = this.threads * perThread;
    if (bytes <= this.#threadScratch.bytes) return;
    this.#threadScratch = { ptr: this.#alloc(bytes), bytes };
  }

  /**
   * A staging buffer for a Conv1D weight of `floats` floats, when one is free; loads get
   * them in the order they asked. The buffers lie in the KV cache while it holds nothing
   * yet and is big enough, else in memory of their own.
   */
  #acquireBuffer(floats: number): Promise<number> {
    if (!this.#staging || floats > this.#staging.floats) {
      if (this.#staging && this.#freeBuffers.length < STAGING_BUFFERS) {
        // Larger than the buffers in use, declared after loading began: memory of its own.
        return Promise.resolve(this.#alloc(4 * floats));
      }
      this.#planStaging(floats);
    }
    const free = this.#freeBuffers.shift();
    if (free !== undefined) return Promise.resolve(free);
    return new Promise((resolve) => this.#waiting.push(resolve));
  }

  #releaseBuffer(buffer: number): void {
    if (!this.#staging?.buffers.includes(buffer)) return;
    const next = this.#waiting.shift();
    if (next) next(buffer);
    else this.#freeBuffers.push(buffer);
  }

  #planStaging(floats: number): void {
    const bufferFloats = Math.max(floats, this.#largestConv1d);
    const bufferBytes = aligned(4 * bufferFloats);
    const cache = this.#emptyCache && this.#emptyCache.bytes >= STAGING_BUFFERS * bufferBytes
      ? this.#emptyCache
      : undefined;
    const start = cache ? WasmTensor.ptr(cache) : this.#alloc(STAGING_BUFFERS * bufferBytes);
    const buffers = Array.from({ length: STAGING_BUFFERS }, (_, i) => start + i * bufferBytes);
    this.#staging = { buffers, floats: bufferFloats, cache };
    this.#freeBuffers = [...buffers];
    if (cache) this.#dirtyBytes = Math.max(this.#dirtyBytes, STAGING_BUFFERS * bufferBytes);
  }

  /**
   * Called before `cache` is used: zeroes what staging left in it and stops staging
   * there, since from now on it holds keys and values.
   */
  #useCache(cache: WasmTensor): void {
    if (cache !== this.#emptyCache) return;
    if (this.#dirtyBytes > 0) {
      const start = WasmTensor.ptr(cache) / 4;
      this.#f32.fill(0, start, start + this.#dirtyBytes / 4);
      this.#dirtyBytes = 0;
    }
    if (this.#staging?.cache === cache) {
      this.#staging = undefined;
      this.#freeBuffers = [];
    }
    if (this.#embeddingStage?.tailOf === cache) {
      const start = this.#embeddingStage.ptr / 4;
      this.#f32.fill(0, start, (WasmTensor.ptr(cache) + cache.bytes) / 4);
      this.#embeddingStage = undefined;
    }
    this.#emptyCache = undefined;
  }
}

function elements(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) {
      throw new RangeError(`A shape holds non-negative integers, got [${shape.join(", ")}]`);
    }
    n *= d;
  }
  return n;
}

function gib(bytes: number): string {
  return (bytes / 2 ** 30).toFixed(2);
}

/** The format of weight `w`, from its type. */
function formatOf(w: WasmTensor): WeightFormat {
  return WEIGHT_FORMATS[w.type as WeightType];
}

/**
 * Throws for a matrix whose packing into `format` met `misfits` values the format cannot
 * store (the pack op's count).
 * @throws {UnstorableWeightError} saying how many and the fix, when there were any
 */
function checkFit(format: WeightFormat, misfits: number): void {
  if (misfits === 0) return;
  throw new UnstorableWeightError(
    format.misfit?.(misfits) ??
      `it has ${misfits} values that "${format.type}" weights do not hold`,
  );
}

/** Bytes a weight of `role` and `shape` takes in `format`. */
function weightBytes(format: WeightFormat, role: WeightRole, shape: readonly number[]): number {
  const n = elements(shape);
  if (role === "plain") {
    // Zeros up to a whole panel, so that a bias is read as whole panels.
    return 4 * panels(n) * PANEL;
  }
  if (role !== "conv1d" && role !== "embedding") {
    throw new TypeError(`Unknown weight role ${JSON.stringify(role)}`);
  }
  if (shape.length !== 2) {
    throw new RangeError(`A ${role} weight has two dimensions, got [${shape.join(", ")}]`);
  }
  const [rows, cols] = shape;
  return role === "conv1d" ? format.conv1dBytes(rows, cols) : format.embeddingBytes(rows, cols);
}

/** Per-thread scratch bytes that products over a weight of `role` and `shape` take in `format`. */
function threadScratchBytes(
  format: WeightFormat,
  role: WeightRole,
  shape: readonly number[],
): number {
  if (!format.threadScratchBytes || role === "plain") return 0;
  // A Conv1D's input features are its rows (C, OC); the head's are wte's columns (V, C).
  return format.threadScratchBytes(role === "conv1d" ? shape[0] : shape[1]);
}

/**
 * Checks that the kernels lay out memory as layout.ts says, which the sizes here are
 * computed from.
 */
function checkLayout(c: KernelConstants): void {
  const want = { PANEL, QPANEL: PANEL, QBLOCK: Q8_BLOCK, KEY_BLOCK };
  for (const [name, value] of Object.entries(want)) {
    if (c[name as keyof typeof want] !== value) {
      throw new Error(
        `The kernels' ${name} is ${c[name as keyof typeof want]}, layout.ts says ${value}`,
      );
    }
  }
}

/** Bytes `#alloc` takes for `bytes`: whole cache lines, so that every tensor starts on one. */
function aligned(bytes: number): number {
  return Math.ceil(bytes / ALIGN) * ALIGN;
}

/** The layout of a KV cache of `shape`: slot-major, so each sequence's keys and values lie together. */
function cacheLayout(shape: KVCacheShape): CacheLayout {
  const { layers, slots, heads, headDim } = shape;
  const positions = Math.ceil(shape.positions / KEY_BLOCK) * KEY_BLOCK;
  const layerStride = 2 * heads * positions * headDim;
  const slotStride = layers * layerStride;
  return {
    layers,
    slots,
    heads,
    headDim,
    positions,
    layerStride,
    slotStride,
    bytes: 4 * slots * slotStride,
  };
}

/** Floats of attention's scratch for a cache: one score per slot, head and position. */
function attentionScratchFloats(cache: CacheLayout): number {
  return cache.slots * cache.heads * cache.positions;
}

/**
 * Bytes of the rows of an activation of `shape` quantised by `format`, for a product that
 * reads them: 0 when the format does not quantise, or for anything but f32 rows.
 */
function quantizedBytes(format: WeightFormat, shape: readonly number[], type: string): number {
  if (!format.quantize || type !== "f32" || shape.length !== 2) return 0;
  return shape[0] * format.quantize.rowBytes(shape[1]);
}
