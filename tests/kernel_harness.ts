/**
 * A scratch memory for kernel tests: one single-threaded kernel instance on a fresh shared
 * memory, and a bump allocator that copies arrays in and reads them back.
 */
import { RESERVED_BYTES } from "../runtime/backend/wasm/memory_plan.ts";
import { createMemory, kernelModule, WasmKernels } from "../runtime/backend/wasm/wasm_kernels.ts";
import { Rng } from "../runtime/random.ts";

export class Harness {
  #next = RESERVED_BYTES;
  private constructor(readonly kernels: WasmKernels) {}

  static async create(bytes = 64 << 20): Promise<Harness> {
    return new Harness(new WasmKernels(await kernelModule(), createMemory(bytes)));
  }

  get memory(): WebAssembly.Memory {
    return this.kernels.memory;
  }

  /** Frees everything allocated so far. */
  reset(): void {
    this.#next = RESERVED_BYTES;
  }

  /** Places `data` (or `n` zeros) in memory and returns its byte offset. */
  put(data: Float32Array | Int32Array | number): number {
    const n = typeof data === "number" ? data : data.length;
    const at = this.#next;
    this.#next = Math.ceil((at + n * 4 + 4) / 64) * 64;
    if (this.#next > this.memory.buffer.byteLength) throw new RangeError("harness memory is full");
    const view = new Float32Array(this.memory.buffer, at, n);
    if (typeof data === "number") view.fill(0);
    else if (data instanceof Int32Array) new Int32Array(this.memory.buffer, at, n).set(data);
    else view.set(data);
    // A guard value after each array shows whether a kernel wrote past its end.
    new Float32Array(this.memory.buffer, at + n * 4, 1)[0] = 12345;
    return at;
  }

  /** A copy of `n` floats at `offset`. */
  get(offset: number, n: number): Float32Array {
    return new Float32Array(this.memory.buffer, offset, n).slice();
  }

  /** The guard value right after an array of `n` floats at `offset`. */
  guard(offset: number, n: number): number {
    return new Float32Array(this.memory.buffer, offset + n * 4, 1)[0];
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
