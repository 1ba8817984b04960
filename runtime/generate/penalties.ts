/**
 * The controls that act on the raw logits before temperature (steps 1 to 4 of the order
 * in sampling_controls.ts): repetition penalty, presence and frequency penalties, logit
 * bias, n-gram bans. Each touches only the tokens it names: those in the context, those
 * generated, those biased. A sequence's `TokenHistory` keeps the counts they need up to
 * date as tokens come, so a step costs what the context holds, not a pass over it.
 *
 * @module
 */
import type { ResolvedSampling } from "./sampling_controls.ts";

/** Whether any control of steps 1 to 4 is set to other than its neutral value. */
export function hasPenalties(o: ResolvedSampling): boolean {
  return (o.repetitionPenalty !== 1 && o.repeatLastN !== 0) || o.presencePenalty !== 0 ||
    o.frequencyPenalty !== 0 || Object.keys(o.logitBias).length > 0 || o.noRepeatNgramSize > 0;
}

/** One sequence's context (its prompt, then each token drawn), as the penalties see it. */
export class TokenHistory {
  /** The prompt's tokens, then the generated ones. */
  readonly #tokens: number[];
  /** Token → times it occurs in the repetition penalty's window (the last `repeatLastN`). */
  readonly #window = new Map<number, number>();
  /** Token → times it was generated. */
  readonly #generated = new Map<number, number>();
  /** The n-gram size, and each (n−1)-gram's key → the tokens that followed it. */
  readonly #n: number;
  readonly #ngrams = new Map<string, Set<number>>();

  constructor(prompt: readonly number[], readonly options: ResolvedSampling) {
    this.#tokens = [];
    this.#n = options.noRepeatNgramSize;
    for (const token of prompt) this.#add(token);
  }

  /** Records a generated token. */
  push(token: number): void {
    this.#add(token);
    this.#generated.set(token, (this.#generated.get(token) ?? 0) + 1);
  }

  #add(token: number): void {
    const t = this.#tokens;
    t.push(token);
    const { repeatLastN: last } = this.options;
    if (this.options.repetitionPenalty !== 1 && last !== 0) {
      this.#window.set(token, (this.#window.get(token) ?? 0) + 1);
      if (last > 0 && t.length > last) {
        const gone = t[t.length - 1 - last];
        const left = this.#window.get(gone)! - 1;
        if (left === 0) this.#window.delete(gone);
        else this.#window.set(gone, left);
      }
    }
    const n = this.#n;
    if (n > 0 && t.length >= n) {
      const key = t.slice(t.length - n, t.length - 1).join(",");
      let next = this.#ngrams.get(key);
      if (!next) this.#ngrams.set(key, next = new Set());
      next.add(token);
    }
  }

  /**
   * Writes `logits` (n_vocab) with the penalties applied into `out`, in the documented
   * order: repetition, then presence and frequency, then bias, then n-gram bans (-∞; a
   * ban that would leave no token at all is not applied).
   */
  apply(out: Float32Array, logits: Float32Array): void {
    out.set(logits);
    const o = this.options;
    const V = logits.length;
    const p = o.repetitionPenalty;
    for (const token of this.#window.keys()) {
      const v = out[token];
      out[token] = v < 0 ? v * p : v / p;
    }
    if (o.presencePenalty !== 0 || o.frequencyPenalty !== 0) {
      for (const [token, count] of this.#generated) {
        out[token] -= count * o.frequencyPenalty + o.presencePenalty;
      }
    }
    for (const [key, bias] of Object.entries(o.logitBias)) {
      const token = Number(key);
      if (token < V) out[token] += bias;
    }
    const n = this.#n;
    const t = this.#tokens;
    if (n > 0 && t.length >= n - 1) {
      const banned = this.#ngrams.get(t.slice(t.length - n + 1).join(","));
      if (banned && banned.size < V) { for (const token of banned) out[token] = -Infinity; }
    }
  }
}
