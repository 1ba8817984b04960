/**
 * Log-probabilities of a sampled token and of the most likely alternatives, from the
 * logits the sampler saw: the log-softmax of the model's row, before temperature, top-k
 * or top-p (as OpenAI's API and vLLM report them), so they describe the model, not the
 * sampling settings.
 *
 * @module
 */

/** One token and its log-probability. */
export interface TokenLogprob {
  /** The token id. */
  readonly token: number;
  /** Its natural log-probability, at most 0. */
  readonly logprob: number;
}

/** What a step's logprobs say: the chosen token's, and the `top` most likely tokens'. */
export interface StepLogprobs {
  /** The chosen token and its log-probability. */
  readonly chosen: TokenLogprob;
  /** The most likely tokens, most likely first (ties: lower id first); may be empty. */
  readonly top: readonly TokenLogprob[];
}

/** How many alternatives `stepLogprobs` reports at most, as OpenAI's completions API. */
export const MAX_TOP_LOGPROBS = 5;

/**
 * Checks a number of alternatives to report.
 * @throws {RangeError} unless `top` is an integer in `[0, MAX_TOP_LOGPROBS]`
 */
export function checkLogprobs(top: number): void {
  if (!(Number.isInteger(top) && top >= 0 && top <= MAX_TOP_LOGPROBS)) {
    throw new RangeError(`logprobs must be an integer in [0, ${MAX_TOP_LOGPROBS}], got ${top}`);
  }
}

/**
 * The log-softmax of `logits` at `token`, and at the `top` largest logits.
 *
 * @param logits one row (n_vocab) of logits
 * @param token  the sampled token, in `[0, logits.length)`
 * @param top    alternatives to report, in `[0, MAX_TOP_LOGPROBS]`
 *
 * @example
 * ```ts
 * import { stepLogprobs } from "./logprobs.ts";
 * const { chosen, top } = stepLogprobs(new Float32Array([0, Math.log(3)]), 0, 1);
 * if (Math.abs(chosen.logprob - Math.log(0.25)) > 1e-6) throw new Error();
 * if (top[0].token !== 1 || Math.abs(top[0].logprob - Math.log(0.75)) > 1e-6) throw new Error();
 * ```
 */
export function stepLogprobs(logits: Float32Array, token: number, top: number): StepLogprobs {
  checkLogprobs(top);
  if (!(Number.isInteger(token) && token >= 0 && token < logits.length)) {
    throw new RangeError(`Token ${token} is outside the logits' range [0, ${logits.length})`);
  }
  // log-softmax(x)_i = x_i - (max + log Σ e^(x_j - max)), summed in float64.
  let max = -Infinity;
  for (let i = 0; i < logits.length; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += Math.exp(logits[i] - max);
  const logZ = max + Math.log(sum);
  // The `top` largest, kept in descending order; a later equal value does not displace.
  const best: number[] = [];
  for (let i = 0; i < logits.length && top > 0; i++) {
    const v = logits[i];
    if (best.length === top && !(v > logits[best[top - 1]])) continue;
    let j = best.length < top ? best.length : top - 1;
    while (j > 0 && v > logits[best[j - 1]]) j--;
    best.splice(j, 0, i);
    if (best.length > top) best.pop();
  }
  return {
    chosen: { token, logprob: logits[token] - logZ },
    top: best.map((i) => ({ token: i, logprob: logits[i] - logZ })),
  };
}
