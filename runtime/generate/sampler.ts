/**
 * Picks the next token from a row of logits, as GPT-2's `sample_sequence` does, with the
 * controls people reach for since: penalties and bias on the raw logits (penalties.ts),
 * then divide by the temperature, keep the top k (`top_k_logits`), keep the nucleus (top
 * p), keep the tokens at least min-p as likely as the best, and draw from the softmax of
 * what is left. A temperature of 0 means greedy: the arg max of the penalised logits.
 * The order is documented once, in sampling_controls.ts.
 */
import { Rng } from "./random.ts";
import { hasPenalties, TokenHistory } from "./penalties.ts";
import {
  type ResolvedSampling,
  type SamplingOptions,
  validateSampling,
} from "./sampling_controls.ts";

export type { SamplingOptions };

/** Index of the largest value; the first one on ties, like `argmax`. */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  let top = x[0];
  for (let i = 1; i < x.length; i++) {
    if (x[i] > top) {
      top = x[i];
      best = i;
    }
  }
  return best;
}

/**
 * Scratch for `sampleToken`, reused from call to call so that sampling a token allocates
 * nothing in the common cases: `scaled` holds the logits divided by the temperature, `kept`
 * the indices of the tokens top-k keeps, in order, and `weights` their e^(logit - max).
 */
let scaled = new Float32Array(0);
/** The penalised row, for a `Sampler` whose penalties are on. */
let penalised = new Float32Array(0);
let kept = new Int32Array(0);
let weights = new Float64Array(0);
/** The copy `kthLargest` partitions, for k above 64. */
let selection = new Float32Array(0);

/** Draws one token from `logits` (n_vocab) with the given options and generator. */
export function sampleToken(logits: Float32Array, options: ResolvedSampling, rng: Rng): number {
  const { temperature, topK, topP, minP } = options;
  if (temperature === 0) return argmax(logits);
  const n = logits.length;
  if (kept.length < n) {
    scaled = new Float32Array(n);
    kept = new Int32Array(n);
    weights = new Float64Array(n);
  }
  let x = logits;
  if (temperature !== 1) {
    x = scaled.subarray(0, n);
    for (let i = 0; i < n; i++) x[i] = logits[i] / temperature;
  }
  const m = maxOf(x);
  let threshold = topK > 0 && topK < n ? kthLargest(x, topK) : -Infinity;
  // p_i ≥ minP · p_max is x_i ≥ m + ln(minP); with no nucleus to cut first it is one more
  // bound on what the loop below keeps.
  const minLogit = minP > 0 ? m + Math.log(minP) : -Infinity;
  if (topP === 1) threshold = Math.max(threshold, minLogit);
  // The kept tokens and their weights, once: the nucleus and the draw both sum them. A
  // banned token (-∞) is never kept.
  let count = 0;
  let total = 0;
  for (let i = 0; i < n; i++) {
    if (!(x[i] >= threshold) || x[i] === -Infinity) continue;
    const e = Math.exp(x[i] - m);
    kept[count] = i;
    weights[count++] = e;
    total += e;
  }
  if (topP < 1) {
    threshold = Math.max(nucleusThreshold(x, count, m, topP * total), minLogit);
    total = 0;
    for (let j = 0; j < count; j++) if (x[kept[j]] >= threshold) total += weights[j];
  }
  const u = rng.next() * total;
  let sum = 0;
  let last = 0;
  for (let j = 0; j < count; j++) {
    const i = kept[j];
    if (x[i] < threshold) continue;
    sum += weights[j];
    last = i;
    if (u < sum) return i;
  }
  return last; // rounding left u at the very top of the range
}

/**
 * The smallest logit of the nucleus: walking the first `count` tokens of `kept` from the
 * most likely down, the one at which their weights reach `target`; ties with it are kept
 * too, like the original. Sorting every kept token can take milliseconds, so it sorts only
 * those within d nats of the best (`m`), for d = 4, 8, 16, 40, until they hold the
 * target, and all of them only if they must. The walk is the same whichever d ends it:
 * those tokens are the top of the full order.
 */
function nucleusThreshold(x: Float32Array, count: number, m: number, target: number): number {
  const threshold = lowest(x, count);
  for (const d of [4, 8, 16, 40, Infinity]) {
    const cutoff = Math.max(threshold, m - d);
    let mass = 0;
    let within = 0;
    for (let j = 0; j < count; j++) {
      if (x[kept[j]] >= cutoff) {
        mass += weights[j];
        within++;
      }
    }
    if (mass < target && cutoff > threshold) continue;
    const sorted = new Float32Array(within);
    for (let j = 0, s = 0; j < count; j++) if (x[kept[j]] >= cutoff) sorted[s++] = x[kept[j]];
    sorted.sort().reverse();
    let sum = 0;
    for (const v of sorted) {
      sum += Math.exp(v - m);
      if (sum >= target) return v;
    }
    if (cutoff === threshold) return sorted[sorted.length - 1]; // rounding: keep all
  }
  return threshold;
}

/** The smallest logit among the first `count` kept tokens. */
function lowest(x: Float32Array, count: number): number {
  let low = Infinity;
  for (let j = 0; j < count; j++) if (x[kept[j]] < low) low = x[kept[j]];
  return low;
}

/** What a `Sampler` is made with. */
export interface SamplerOptions extends SamplingOptions {
  /** Seed of the generator; random if absent. */
  seed?: number;
}

/** What a `Sampler` draws after: the penalties' context, and the vocabulary for checks. */
export interface SamplerContext {
  /** The prompt every row starts from: part of the penalties' context (default none). */
  prompt?: readonly number[];
  /** The model's n_vocab: `logitBias` keys must be below it (unchecked when absent). */
  vocabSize?: number;
}

/**
 * Draws tokens for each row of a batch, in row order, with one generator. Each row is a
 * sequence of its own after `context.prompt`: the tokens drawn for it join its context,
 * which the penalties read.
 */
export class Sampler {
  /** The options in force, defaults filled in. */
  readonly options: ResolvedSampling;
  /** The generator every draw takes its numbers from. */
  readonly rng: Rng;
  /** The seed in use: the one given, or a random one. */
  readonly seed: number;
  readonly #prompt: readonly number[];
  /** Each row's context, when a penalty is on. */
  readonly #histories: TokenHistory[] = [];
  readonly #penalties: boolean;

  /**
   * A sampler for `options`, seeded with `options.seed` or a random seed.
   * @throws {RangeError} naming a bad option
   */
  constructor(options: SamplerOptions = {}, context: SamplerContext = {}) {
    this.options = validateSampling(options, context.vocabSize);
    this.seed = options.seed ?? crypto.getRandomValues(new Uint32Array(1))[0];
    if (!Number.isInteger(this.seed)) {
      throw new RangeError(`seed must be an integer, got ${this.seed}`);
    }
    this.rng = new Rng(this.seed);
    this.#prompt = context.prompt ?? [];
    this.#penalties = hasPenalties(this.options);
  }

  /** One token per row of `logits` (rows, n_vocab); each joins its row's context. */
  sample(logits: Float32Array, rows: number): number[] {
    const V = logits.length / rows;
    const out: number[] = [];
    for (let r = 0; r < rows; r++) {
      let row = logits.subarray(r * V, (r + 1) * V);
      if (!this.#penalties) {
        out.push(sampleToken(row, this.options, this.rng));
        continue;
      }
      const history = this.#histories[r] ??= new TokenHistory(this.#prompt, this.options);
      if (penalised.length < V) penalised = new Float32Array(V);
      history.apply(penalised.subarray(0, V), row);
      row = penalised.subarray(0, V);
      const token = sampleToken(row, this.options, this.rng);
      history.push(token);
      out.push(token);
    }
    return out;
  }
}

function maxOf(x: Float32Array): number {
  let m = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i] > m) m = x[i];
  return m;
}

/**
 * The k-th largest value (k >= 1). For small k, one pass keeping the k largest seen so far
 * in ascending order (a value enters only if it beats the smallest of them: rarely, after
 * the first few thousand); else quickselect on a reused copy, linear time on average.
 */
function kthLargest(x: Float32Array, k: number): number {
  if (k <= 64) {
    const top = new Float32Array(k).fill(-Infinity);
    for (let i = 0; i < x.length; i++) {
      const v = x[i];
      if (!(v > top[0])) continue;
      let j = 1;
      for (; j < k && top[j] < v; j++) top[j - 1] = top[j];
      top[j - 1] = v;
    }
    return top[0];
  }
  if (selection.length < x.length) selection = new Float32Array(x.length);
  const a = selection.subarray(0, x.length);
  a.set(x);
  let lo = 0;
  let hi = a.length - 1;
  const want = k - 1; // index in descending order
  while (lo < hi) {
    const pivot = a[(lo + hi) >>> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] > pivot) i++;
      while (a[j] < pivot) j--;
      if (i <= j) {
        const t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    if (want <= j) hi = j;
    else if (want >= i) lo = i;
    else return a[want];
  }
  return a[want];
}
