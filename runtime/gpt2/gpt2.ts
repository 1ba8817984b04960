/**
 * One GPT-2 on one backend: its parameters, the activations of a pass, and a KV cache of
 * `slots` sequences, each with its own length. Like the original `model(X, past)`, a pass
 * appends the new positions' keys and values to the cache and returns logits.
 *
 * @module
 */
import type { Backend, Tensor } from "../backend/backend.ts";
import type { TensorSource } from "../io/tensor_source.ts";
import { type Activations, blocks, finalNorm, head } from "./forward.ts";
import type { HParams } from "./hparams.ts";
import { loadParams } from "./load.ts";
import { allocateParams, type ParamBinding, type Params } from "./params.ts";
import { type Gpt2Options, gpt2Plan } from "./plan.ts";
import type { NameMap } from "./tensor_names.ts";

export type { Gpt2Options } from "./plan.ts";

/** One sequence of a pass: its cache slot and its new tokens. */
export interface SequenceStep {
  readonly slot: number;
  readonly tokens: ArrayLike<number>;
}

/** Options of {@linkcode Gpt2.forward}. */
export interface ForwardOptions {
  /** Return the logits of every new position, (B, T, n_vocab), not only the last, (B, n_vocab). */
  allPositions?: boolean;
  /**
   * Write the logits into this array (its first elements) and return a view of them,
   * instead of a fresh array: a decoding loop that reuses one saves allocating and
   * faulting in B · n_vocab new floats every step.
   */
  out?: Float32Array;
}

/** GPT-2 on a backend, with a KV cache of `slots` sequences. */
export class Gpt2 implements Disposable {
  readonly slots: number;
  readonly chunk: number;
  readonly #params: Params;
  readonly #bindings: ParamBinding[];
  readonly #act: Activations;
  readonly #cache: Tensor;
  readonly #lengths: number[];

  private constructor(readonly backend: Backend, readonly hparams: HParams, options: Gpt2Options) {
    // What the plan lists is what a backend's estimate counts.
    const plan = gpt2Plan(hparams, options);
    this.slots = plan.slots;
    this.chunk = plan.chunk;
    ({ params: this.#params, bindings: this.#bindings } = allocateParams(backend, plan.weights));
    this.#act = Object.fromEntries(
      plan.activations.map(({ name, shape, type }) => [name, backend.tensor(shape, type)]),
    ) as Record<keyof Activations, Tensor>;
    this.#cache = backend.kvCache(plan.cache);
    this.#lengths = new Array(this.slots).fill(0);
  }

  /**
   * Allocates a model of shape `hparams` on `backend`, which it then owns: weights,
   * activations and cache, all before any weight is read (so a model too large for the
   * backend fails here). Load its weights with `load`.
   */
  static create(backend: Backend, hparams: HParams, options: Gpt2Options = {}): Gpt2 {
    return new Gpt2(backend, hparams, options);
  }

  /** Reads the weights from `source`, named as `names` says (default: the TF checkpoint's). */
  load(source: TensorSource, names?: NameMap): Promise<void> {
    return loadParams(this.backend, this.#bindings, source, names);
  }

  /** Bytes the backend holds for the weights: what a decoding step reads. */
  get weightBytes(): number {
    return this.#bindings.reduce((sum, { tensor }) => sum + tensor.bytes, 0);
  }

  /** Positions cached in `slot`: the `past` of its next pass. */
  cached(slot: number): number {
    this.#checkSlot(slot);
    return this.#lengths[slot];
  }

  /** Forgets every position of `slot`, or of every slot. */
  reset(slot?: number): void {
    if (slot === undefined) this.#lengths.fill(0);
    else this.truncate(slot, 0);
  }

  /** Keeps the first `length` positions of `slot` and forgets the rest. */
  truncate(slot: number, length: number): void {
    this.#checkSlot(slot);
    if (!Number.isInteger(length) || length < 0 || length > this.#lengths[slot]) {
      throw new RangeError(
        `Cannot truncate slot ${slot} to ${length}: it holds ${this.#lengths[slot]} positions`,
      );
    }
    this.#lengths[slot] = length;
  }

  /**
   * Runs new tokens through the model: for each sequence, its slot and its tokens, all of
   * the same length. Returns the logits after each sequence's last token (B, n_vocab),
   * or of every new position (B, T, n_vocab): a fresh array, or a view of `options.out`.
   */
  async forward(
    seqs: readonly SequenceStep[],
    options: ForwardOptions = {},
  ): Promise<Float32Array> {
    const { n_vocab: V } = this.hparams;
    const B = seqs.length;
    const T = this.#assertPass(seqs);
    const all = options.allPositions ?? false;
    const size = (all ? B * T : B) * V;
    if (options.out && options.out.length < size) {
      throw new RangeError(
        `The output array holds ${options.out.length} floats; these logits need ${size}`,
      );
    }
    const result = options.out?.subarray(0, size) ?? new Float32Array(size);
    const be = this.backend, a = this.#act;
    const rows = all ? new Float32Array(this.slots * V) : undefined;
    for (let start = 0; start < T; start += this.chunk) {
      const n = Math.min(this.chunk, T - start);
      const ids = new Int32Array(B * n), positions = new Int32Array(B * n);
      const slots = new Int32Array(2 * B);
      seqs.forEach(({ slot, tokens }, b) => {
        const past = this.#lengths[slot];
        slots.set([slot, past], 2 * b);
        for (let t = 0; t < n; t++) {
          ids[b * n + t] = tokens[start + t];
          positions[b * n + t] = past + t;
        }
      });
      be.write(a.tokens, ids);
      be.write(a.positions, positions);
      be.write(a.seqs, slots);
      // The logits of this chunk's last position, or of all, or (an earlier chunk) none.
      const wanted = all ? n : (start + n === T ? 1 : 0);
      const { x, rows: kept } = blocks(be, this.#params, a, this.#cache, B, n, wanted === 1);
      for (const { slot } of seqs) this.#lengths[slot] += n;
      if (wanted === 0) continue;
      finalNorm(be, this.#params, a, x, kept);
      const perSeq = kept / B;
      if (!rows) {
        const last = seqs.map((_, b) => b * perSeq + perSeq - 1);
        await head(be, this.#params, a, last, result);
        continue;
      }
      // Every position's logits: `slots` rows per call of the head, which reads the whole
      // token embedding each time (each row's logits are the same in any group).
      for (let first = 0; first < kept; first += this.slots) {
        const group = Array.from(
          { length: Math.min(this.slots, kept - first) },
          (_, i) => first + i,
        );
        await head(be, this.#params, a, group, rows);
        group.forEach((r, i) => {
          const b = Math.floor(r / perSeq), t = r % perSeq;
          result.set(rows.subarray(i * V, (i + 1) * V), (b * T + start + t) * V);
        });
      }
    }
    return result;
  }

  [Symbol.dispose](): void {
    this.backend[Symbol.dispose]();
  }

  /**
   * Asserts what a pass's callers guarantee (the library checks prompts where it is
   * entered): 1 to `slots` sequences in distinct slots, all with the same T ≥ 1 new
   * tokens, each an id in the vocabulary, within the context window. Cheap beside the
   * pass, and what keeps the kernels from reading outside their tensors. Returns T.
   */
  #assertPass(seqs: readonly SequenceStep[]): number {
    const { n_vocab: V, n_ctx } = this.hparams;
    const fail = (what: string) => {
      throw new RangeError(`Gpt2.forward was called with ${what}`);
    };
    if (seqs.length === 0 || seqs.length > this.slots) {
      fail(`${seqs.length} sequences: a pass runs 1 to ${this.slots} (the model's slots)`);
    }
    const T = seqs[0].tokens.length;
    if (T === 0) fail("no tokens");
    const seen = new Set<number>();
    seqs.forEach(({ slot, tokens }, b) => {
      this.#checkSlot(slot);
      if (seen.has(slot)) fail(`slot ${slot} twice`);
      seen.add(slot);
      if (tokens.length !== T) fail(`sequences of ${T} and ${tokens.length} new tokens`);
      for (let t = 0; t < T; t++) {
        const id = tokens[t];
        if (!(Number.isInteger(id) && id >= 0 && id < V)) {
          fail(`token ${id} (sequence ${b}, position ${t}), outside the vocabulary [0, ${V})`);
        }
      }
      if (this.#lengths[slot] + T > n_ctx) {
        fail(`${T} new tokens after ${this.#lengths[slot]} cached ones, past n_ctx ${n_ctx}`);
      }
    });
    return T;
  }

  #checkSlot(slot: number): void {
    if (!Number.isInteger(slot) || slot < 0 || slot >= this.slots) {
      throw new RangeError(`Slot ${slot} is outside the model's slots [0, ${this.slots})`);
    }
  }
}
