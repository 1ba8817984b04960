/**
 * The WebGPU device and everything the ops share: buffers as tensors, one command encoder
 * that records a whole forward step, the uniform and upload rings it draws from, cached
 * bind groups, the read-back that submits it, and the counters a benchmark prints.
 *
 * @module
 */
import type { Tensor } from "../backend.ts";
import { BackendError } from "../../errors.ts";

/** A tensor the WebGPU backend owns: one GPU buffer, or one per KV-cache layer. */
export class GpuTensor implements Tensor {
  /** A tensor over `buffers`; made by `GpuContext.tensor`. */
  constructor(
    readonly shape: readonly number[],
    readonly type: string,
    readonly bytes: number,
    /** The storage; a KV cache has one buffer per layer. */
    readonly buffers: readonly GPUBuffer[],
    /** A number that names the tensor in bind-group cache keys. */
    readonly id: number,
  ) {}

  /** The storage of a one-buffer tensor. */
  get buffer(): GPUBuffer {
    return this.buffers[0];
  }
}

/** A byte range of a buffer, bound to one shader variable. */
export interface Binding {
  /** The tensor whose storage is bound. */
  readonly tensor: GpuTensor;
  /** Which of the tensor's buffers (a KV-cache layer), 0 for others. */
  readonly part?: number;
  /** The first byte bound, a multiple of minStorageBufferOffsetAlignment (default 0). */
  readonly offset?: number;
  /** Bytes bound; the rest of the buffer from `offset` when left out. */
  readonly size?: number;
}

/** Work done since the counters were last reset. */
export interface WebGpuStats {
  /** Compute dispatches recorded. */
  dispatches: number;
  /** Command buffers submitted to the queue. */
  submits: number;
  /** Bytes copied back from the GPU to the host. */
  bytesRead: number;
  /** Bytes of token ids, positions and slots written to the GPU (weights excluded). */
  bytesWritten: number;
}

/** Bytes of one uniform block: eight u32 sizes. */
export const UNIFORM_BYTES = 32;
const UNIFORM_SLOTS = 4096;
const UPLOAD_BYTES = 1 << 16;
/** Read-back buffers kept for reuse between reads. */
const MAX_FREE_READBACKS = 4;

/** A compute pipeline and its bind-group layout: binding 0 is the uniform block. */
export interface Kernel {
  /** The compiled compute pipeline. */
  readonly pipeline: GPUComputePipeline;
  /** Its bind-group layout. */
  readonly layout: GPUBindGroupLayout;
  /** A number that names it in bind-group cache keys. */
  readonly id: number;
}

/** Owns the device, records ops into one encoder, and submits when something is read. */
export class GpuContext {
  /** Work recorded and moved so far; the backend resets it. */
  readonly stats: WebGpuStats = { dispatches: 0, submits: 0, bytesRead: 0, bytesWritten: 0 };
  #buffers = new Set<GPUBuffer>();
  #tensors = new WeakSet<GpuTensor>();
  #bindGroups = new Map<string, GPUBindGroup>();
  #nextId = 1;
  #encoder: GPUCommandEncoder | null = null;
  #pass: GPUComputePassEncoder | null = null;
  #uniformStride: number;
  #uniform: GPUBuffer;
  #uniformHost: Uint32Array<ArrayBuffer>;
  #uniformUsed = 0;
  #upload: GPUBuffer;
  #uploadHost: Uint8Array<ArrayBuffer>;
  #uploadUsed = 0;
  /** Read-back buffers not in use, unmapped. */
  #readbacks: GPUBuffer[] = [];
  #error: string | null = null;
  #lost: string | null = null;
  /** Settles with false when the device is lost, so a read waiting on it stops. */
  #lostSignal: Promise<false>;
  #disposed = false;

  /** Takes over `device`: `dispose` destroys it. */
  constructor(readonly device: GPUDevice) {
    const align = device.limits.minUniformBufferOffsetAlignment;
    this.#uniformStride = Math.ceil(UNIFORM_BYTES / align) * align;
    this.#uniform = this.buffer(
      UNIFORM_SLOTS * this.#uniformStride,
      GPUBufferUsage.UNIFORM | GPUBufferUsage.COPY_DST,
    );
    this.#uniformHost = new Uint32Array(UNIFORM_SLOTS * this.#uniformStride / 4);
    this.#upload = this.buffer(UPLOAD_BYTES, GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST);
    this.#uploadHost = new Uint8Array(UPLOAD_BYTES);
    device.addEventListener("uncapturederror", (e) => {
      this.#error ??= (e as GPUUncapturedErrorEvent).error.message.split("\n")[0];
    });
    this.#lostSignal = device.lost.then((info) => {
      if (!this.#disposed) this.#lost = info.message || info.reason || "unknown reason";
      return false;
    });
  }

  /** The largest byte range one storage binding may cover. */
  get maxBinding(): number {
    return this.device.limits.maxStorageBufferBindingSize;
  }

  /** A new buffer of at least `bytes` (rounded up to 4), zero-filled, freed by `dispose`. */
  buffer(bytes: number, usage: number): GPUBuffer {
    if (this.#disposed) throw new TypeError("webgpu backend: used after dispose");
    const size = Math.max(4, Math.ceil(bytes / 4) * 4);
    if (size > this.device.limits.maxBufferSize) {
      throw new BackendError(
        `webgpu backend: a buffer of ${size} bytes exceeds the adapter's maxBufferSize ` +
          `${this.device.limits.maxBufferSize}; use a smaller batch or context, or backend "wasm"`,
      );
    }
    const b = this.device.createBuffer({ size, usage });
    this.#buffers.add(b);
    return b;
  }

  /** A tensor over `buffers`. */
  tensor(
    shape: readonly number[],
    type: string,
    bytes: number,
    buffers: readonly GPUBuffer[],
  ): GpuTensor {
    const t = new GpuTensor(shape, type, bytes, buffers, this.#nextId++);
    this.#tensors.add(t);
    return t;
  }

  /** Whether `t` was made by this context (not by another backend instance). */
  owns(t: unknown): t is GpuTensor {
    return t instanceof GpuTensor && this.#tensors.has(t);
  }

  /** Compiles `code` (entry point `main`) with `bindings` storage buffers after the uniform. */
  kernel(label: string, code: string, bindings: readonly ("read" | "write")[]): Kernel {
    const entries: GPUBindGroupLayoutEntry[] = [{
      binding: 0,
      visibility: GPUShaderStage.COMPUTE,
      buffer: { type: "uniform", hasDynamicOffset: true, minBindingSize: UNIFORM_BYTES },
    }];
    bindings.forEach((access, i) =>
      entries.push({
        binding: i + 1,
        visibility: GPUShaderStage.COMPUTE,
        buffer: { type: access === "read" ? "read-only-storage" : "storage" },
      })
    );
    const layout = this.device.createBindGroupLayout({ label, entries });
    const module = this.device.createShaderModule({ label, code });
    const pipeline = this.device.createComputePipeline({
      label,
      layout: this.device.createPipelineLayout({ bindGroupLayouts: [layout] }),
      compute: { module, entryPoint: "main" },
    });
    return { pipeline, layout, id: this.#nextId++ };
  }

  /**
   * Records one dispatch of `kernel` over `groups` workgroups with `sizes` (up to eight
   * u32) as its uniform block and `bindings` as its storage buffers, in order.
   */
  dispatch(
    kernel: Kernel,
    sizes: readonly number[],
    bindings: readonly Binding[],
    groups: readonly [number, number?, number?],
  ): void {
    if (groups.some((g) => g === 0)) return;
    this.#check();
    if (this.#uniformUsed === UNIFORM_SLOTS) this.flush();
    const slot = this.#uniformUsed++;
    this.#uniformHost.set(sizes, slot * this.#uniformStride / 4);
    const group = this.#bindGroup(kernel, bindings);
    const pass = this.#computePass();
    pass.setPipeline(kernel.pipeline);
    pass.setBindGroup(0, group, [slot * this.#uniformStride]);
    pass.dispatchWorkgroups(groups[0], groups[1] ?? 1, groups[2] ?? 1);
    this.stats.dispatches++;
  }

  /** Records a copy between two distinct buffers, in order with the dispatches. */
  copy(src: GPUBuffer, srcOffset: number, dst: GPUBuffer, dstOffset: number, bytes: number): void {
    if (bytes === 0) return;
    this.#check();
    this.#endPass();
    this.#encoderOf().copyBufferToBuffer(src, srcOffset, dst, dstOffset, bytes);
  }

  /**
   * Records a write of `data` into the start of `dst`, ordered after the ops already
   * recorded (queue.writeBuffer would land before all of them at the next submit).
   */
  write(dst: GPUBuffer, data: Uint8Array): void {
    this.#check();
    const bytes = Math.ceil(data.byteLength / 4) * 4;
    if (this.#uploadUsed + bytes > this.#uploadHost.byteLength) {
      this.flush();
      if (bytes > this.#uploadHost.byteLength) {
        this.#upload.destroy();
        this.#buffers.delete(this.#upload);
        const size = Math.ceil(bytes / UPLOAD_BYTES) * UPLOAD_BYTES;
        this.#upload = this.buffer(size, GPUBufferUsage.COPY_SRC | GPUBufferUsage.COPY_DST);
        this.#uploadHost = new Uint8Array(size);
      }
    }
    const at = this.#uploadUsed;
    this.#uploadHost.set(data, at);
    this.#uploadUsed += bytes;
    this.copy(this.#upload, at, dst, 0, bytes);
    this.stats.bytesWritten += data.byteLength;
  }

  /** Submits what was recorded, after the uniforms and uploads it uses. */
  flush(): void {
    this.#endPass();
    if (!this.#encoder) return;
    const q = this.device.queue;
    if (this.#uniformUsed > 0) {
      q.writeBuffer(
        this.#uniform,
        0,
        this.#uniformHost,
        0,
        this.#uniformUsed * this.#uniformStride / 4,
      );
    }
    if (this.#uploadUsed > 0) q.writeBuffer(this.#upload, 0, this.#uploadHost, 0, this.#uploadUsed);
    q.submit([this.#encoder.finish()]);
    this.#encoder = null;
    this.#uniformUsed = 0;
    this.#uploadUsed = 0;
    this.stats.submits++;
  }

  /** Runs what was recorded and copies `bytes` from the start of `src` into `into`. */
  async read(src: GPUBuffer, into: Uint8Array): Promise<void> {
    const bytes = Math.ceil(into.byteLength / 4) * 4;
    if (bytes === 0) {
      this.flush();
      return;
    }
    // A free read-back buffer large enough, or a new one; reads in flight at once each
    // hold their own.
    const free = this.#readbacks.findIndex((b) => b.size >= bytes);
    const staging = free >= 0
      ? this.#readbacks.splice(free, 1)[0]
      : this.buffer(bytes, GPUBufferUsage.MAP_READ | GPUBufferUsage.COPY_DST);
    this.copy(src, 0, staging, 0, bytes);
    this.flush();
    const mapped = staging.mapAsync(GPUMapMode.READ, 0, bytes).then(() => true, () => false);
    if (!await Promise.race([mapped, this.#lostSignal])) throw this.#failure();
    this.#check();
    into.set(new Uint8Array(staging.getMappedRange(0, bytes), 0, into.byteLength));
    staging.unmap();
    this.#readbacks.push(staging);
    if (this.#readbacks.length > MAX_FREE_READBACKS) {
      const smallest = this.#readbacks.reduce((a, b) => a.size <= b.size ? a : b);
      this.#readbacks.splice(this.#readbacks.indexOf(smallest), 1);
      this.#buffers.delete(smallest);
      smallest.destroy();
    }
    this.stats.bytesRead += into.byteLength;
  }

  /** Destroys every buffer and the device; nothing may be used afterwards. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#pass = null;
    this.#encoder = null;
    this.#bindGroups.clear();
    for (const b of this.#buffers) b.destroy();
    this.#buffers.clear();
    this.device.destroy();
  }

  /** Whether `dispose` ran. */
  get disposed(): boolean {
    return this.#disposed;
  }

  #check(): void {
    if (this.#disposed) throw new TypeError("webgpu backend: used after dispose");
    if (this.#lost !== null || this.#error !== null) throw this.#failure();
  }

  #failure(): BackendError {
    if (this.#lost !== null || this.#error === null) {
      return new BackendError(
        `webgpu backend: the GPU device was lost (${this.#lost ?? "destroyed"}); ` +
          `use backend "wasm"`,
      );
    }
    return new BackendError(`webgpu backend: ${this.#error}; use backend "wasm"`);
  }

  #encoderOf(): GPUCommandEncoder {
    return this.#encoder ??= this.device.createCommandEncoder();
  }

  #computePass(): GPUComputePassEncoder {
    return this.#pass ??= this.#encoderOf().beginComputePass();
  }

  #endPass(): void {
    this.#pass?.end();
    this.#pass = null;
  }

  #bindGroup(kernel: Kernel, bindings: readonly Binding[]): GPUBindGroup {
    let key = `${kernel.id}`;
    for (const b of bindings) key += `|${b.tensor.id}:${b.part ?? 0}:${b.offset ?? 0}:${b.size}`;
    let group = this.#bindGroups.get(key);
    if (!group) {
      const entries: GPUBindGroupEntry[] = [{
        binding: 0,
        resource: { buffer: this.#uniform, offset: 0, size: UNIFORM_BYTES },
      }];
      bindings.forEach((b, i) => {
        const buffer = b.tensor.buffers[b.part ?? 0];
        const offset = b.offset ?? 0;
        const size = b.size ?? buffer.size - offset;
        if (size > this.maxBinding) {
          throw new BackendError(
            `webgpu backend: binding ${size} bytes of a tensor of shape [${b.tensor.shape}] ` +
              `exceeds the adapter's maxStorageBufferBindingSize ${this.maxBinding}; ` +
              `use a smaller batch or chunk, or backend "wasm"`,
          );
        }
        entries.push({ binding: i + 1, resource: { buffer, offset, size } });
      });
      group = this.device.createBindGroup({ layout: kernel.layout, entries });
      this.#bindGroups.set(key, group);
    }
    return group;
  }
}
