/**
 * Picks the next token from a row of logits, as GPT-2's `sample_sequence` does: divide by
 * the temperature, keep the top k (`top_k_logits`), keep the nucleus (top p), then draw
 * from the softmax of what is left. A temperature of 0 means greedy: the arg max.
 */
import { Rng } from "./random.ts";

export interface SamplingOptions {
  /** Divides the logits; 0 picks the most likely token (default 1). */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 keeps all (default 0). */
  topK?: number;
  /**
   * Keep the smallest set of most likely tokens whose probability reaches p, and always at
   * least one; 1 keeps all (default 1).
   */
  topP?: number;
}

/** Checks sampling options, throwing a `RangeError` that names the bad one. */
export function validateSampling(options: SamplingOptions): Required<SamplingOptions> {
  const { temperature = 1, topK = 0, topP = 1 } = options;
  if (!(Number.isFinite(temperature) && temperature >= 0)) {
    throw new RangeError(`temperature must be a number >= 0, got ${temperature}`);
  }
  if (!(Number.isInteger(topK) && topK >= 0)) {
    throw new RangeError(`top_k must be an integer >= 0, got ${topK}`);
  }
  if (!(topP > 0 && topP <= 1)) throw new RangeError(`top_p must be in (0, 1], got ${topP}`);
  return { temperature, topK, topP };
}

/** Index of the largest value; the first one on ties, like `argmax`. */
export function argmax(x: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < x.length; i++) if (x[i] > x[best]) best = i;
  return best;
}

/**
 * The smallest logit a token may have and still be kept by top-k and then top-p, over
 * `logits` already divided by the temperature. Like the original, ties at the threshold
 * are all kept.
 */
export function keepThreshold(logits: Float32Array, topK: number, topP: number): number {
  let threshold = -Infinity;
  if (topK > 0 && topK < logits.length) threshold = kthLargest(logits, topK);
  if (topP >= 1) return threshold;
  const m = maxOf(logits);
  let full = 0;
  for (const v of logits) if (v >= threshold) full += Math.exp(v - m);
  const target = topP * full;
  // Tokens more than 40 nats below the best weigh under e^-40 each: the nucleus is almost
  // always found among the rest, so sort those first and all kept tokens only if needed.
  for (const cutoff of [Math.max(threshold, m - 40), threshold]) {
    const sorted = logits.filter((v) => v >= cutoff).sort().reverse();
    let sum = 0;
    for (const v of sorted) {
      sum += Math.exp(v - m);
      if (sum >= target) return v;
    }
    if (cutoff === threshold) return sorted[sorted.length - 1]; // rounding: keep all
  }
  return threshold;
}

/** Draws one token from `logits` (n_vocab) with the given options and generator. */
export function sampleToken(
  logits: Float32Array,
  options: Required<SamplingOptions>,
  rng: Rng,
): number {
  const { temperature, topK, topP } = options;
  if (temperature === 0) return argmax(logits);
  const scaled = temperature === 1 ? logits : logits.map((v) => v / temperature);
  const threshold = keepThreshold(scaled, topK, topP);
  const m = maxOf(scaled);
  let total = 0;
  for (let i = 0; i < scaled.length; i++) {
    if (scaled[i] >= threshold) total += Math.exp(scaled[i] - m);
  }
  const u = rng.next() * total;
  let sum = 0;
  let last = 0;
  for (let i = 0; i < scaled.length; i++) {
    if (scaled[i] < threshold) continue;
    sum += Math.exp(scaled[i] - m);
    last = i;
    if (u < sum) return i;
  }
  return last; // rounding left u at the very top of the range
}

/** Draws tokens for each row of a batch, in row order, with one generator. */
export class Sampler {
  readonly options: Required<SamplingOptions>;
  readonly rng: Rng;
  /** The seed in use: the one given, or a random one. */
  readonly seed: number;

  constructor(options: SamplingOptions & { seed?: number } = {}) {
    this.options = validateSampling(options);
    this.seed = options.seed ?? crypto.getRandomValues(new Uint32Array(1))[0];
    if (!Number.isInteger(this.seed)) {
      throw new RangeError(`seed must be an integer, got ${this.seed}`);
    }
    this.rng = new Rng(this.seed);
  }

  /** One token per row of `logits` (rows, n_vocab). */
  sample(logits: Float32Array, rows: number): number[] {
    const V = logits.length / rows;
    const out: number[] = [];
    for (let r = 0; r < rows; r++) {
      out.push(sampleToken(logits.subarray(r * V, (r + 1) * V), this.options, this.rng));
    }
    return out;
  }
}

function maxOf(x: Float32Array): number {
  let m = -Infinity;
  for (let i = 0; i < x.length; i++) if (x[i] > m) m = x[i];
  return m;
}

/** The k-th largest value (k >= 1) by quickselect on a copy: linear time on average. */
function kthLargest(x: Float32Array, k: number): number {
  const a = Float32Array.from(x);
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
