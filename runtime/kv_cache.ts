/**
 * The KV cache: the keys and values of every position seen so far, for `batch` sequences
 * side by side, in the memory the plan set aside: (batch, n_layer, 2, n_head, n_ctx,
 * d_head) f32. Every sequence of the batch holds the same number of positions.
 */
import type { MemoryPlan } from "./memory_plan.ts";

export class KVCache {
  #length = 0;

  constructor(readonly plan: MemoryPlan) {}

  /** Positions cached per sequence: the `past` of the next forward pass. */
  get length(): number {
    return this.#length;
  }

  /** The most positions a sequence can hold (n_ctx). */
  get capacity(): number {
    return this.plan.hparams.n_ctx;
  }

  /** Sequences side by side. */
  get batch(): number {
    return this.plan.batch;
  }

  /** Byte offset of layer `layer`'s cache of sequence 0. */
  layerOffset(layer: number): number {
    return this.plan.cache + layer * this.plan.cacheLayerStride * 4;
  }

  /** Forgets every position. */
  reset(): void {
    this.#length = 0;
  }

  /** Keeps the first `length` positions and forgets the rest. */
  truncate(length: number): void {
    if (!Number.isInteger(length) || length < 0 || length > this.#length) {
      throw new RangeError(
        `Cannot truncate the cache to ${length}: it holds ${this.#length} positions`,
      );
    }
    this.#length = length;
  }

  /** Records that a forward pass appended `n` positions. */
  advance(n: number): void {
    if (this.#length + n > this.capacity) {
      throw new RangeError(
        `Cannot cache ${this.#length + n} positions: the context window is ${this.capacity}`,
      );
    }
    this.#length += n;
  }
}
