/**
 * The KV cache: the keys and values of every position seen so far, for `batch` sequences
 * side by side, in the memory the plan set aside (see `MemoryPlan.cache`). Every sequence
 * of the batch holds the same number of positions.
 */
import { KEY_BLOCK, type MemoryPlan } from "./backend/wasm/memory_plan.ts";

/**
 * Where feature d of the key at position j lies in a head's keys (floats from the first):
 * blocks of KEY_BLOCK positions, each laid out [d / 4][j % 4][d % 4] for the first
 * dHead & ~3 features and [d][j % 4] for the rest, as asm/attention.ts reads them. Values
 * are plain rows: feature d of position j at j · dHead + d.
 */
export function keyIndex(j: number, d: number, dHead: number): number {
  const block = Math.floor(j / KEY_BLOCK) * KEY_BLOCK * dHead;
  const slot = j % KEY_BLOCK;
  const vectorEnd = dHead & ~3;
  if (d < vectorEnd) return block + (d & ~3) * KEY_BLOCK + slot * 4 + (d & 3);
  return block + d * KEY_BLOCK + slot;
}

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
