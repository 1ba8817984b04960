/**
 * A scratch memory for tests of single wasm kernels the backend does not call as ops
 * (`exp`, `gelu`, `softmax`): one instance on a fresh shared memory, and a bump allocator
 * that copies arrays in and reads them back.
 */
import {
  instantiate,
  type KernelExports,
  kernelModule,
} from "../runtime/backend/wasm/kernel_module.ts";
import { RESERVED_BYTES } from "../runtime/backend/wasm/worker_pool.ts";
import type { Rng } from "../runtime/generate/random.ts";

export class Harness {
  #next = RESERVED_BYTES;
  private constructor(readonly memory: WebAssembly.Memory, readonly exports: KernelExports) {}

  static async create(bytes = 64 << 20): Promise<Harness> {
    const pages = Math.ceil(bytes / 65536);
    const memory = new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
    return new Harness(memory, instantiate(await kernelModule(), memory).exports);
  }

  /** Frees everything allocated so far. */
  reset(): void {
    this.#next = RESERVED_BYTES;
  }

  /** Places `data` (or `n` zeros) in memory and returns its byte offset. */
  put(data: Float32Array | number): number {
    const n = typeof data === "number" ? data : data.length;
    const at = this.#next;
    this.#next = Math.ceil((at + n * 4) / 64) * 64;
    if (this.#next > this.memory.buffer.byteLength) throw new RangeError("harness memory is full");
    const view = new Float32Array(this.memory.buffer, at, n);
    if (typeof data === "number") view.fill(0);
    else view.set(data);
    return at;
  }

  /** A copy of `n` floats at `offset`. */
  get(offset: number, n: number): Float32Array {
    return new Float32Array(this.memory.buffer, offset, n).slice();
  }
}

/** `n` floats ~ N(0, scale²) from a seeded generator. */
export function randn(rng: Rng, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * scale;
  return a;
}

/** An integer in [lo, hi]. */
export function randint(rng: Rng, lo: number, hi: number): number {
  return lo + Math.floor(rng.next() * (hi - lo + 1));
}
