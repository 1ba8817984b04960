/**
 * The one check of what a generation is asked to run, made where the library is entered
 * (`Model`'s methods and the scheduler) before anything runs, with one wording. `Gpt2`
 * trusts what passes it; the server maps these errors to a 400 naming its field.
 *
 * @module
 */
import type { HParams } from "../gpt2/hparams.ts";

/** What the checks need to know of the model. */
export type PromptLimits = Pick<HParams, "n_vocab" | "n_ctx">;

/**
 * Checks that `ids` is a prompt: at least one token, each an id in the vocabulary.
 * @throws {RangeError} saying which
 */
export function checkPrompt(hp: PromptLimits, ids: readonly number[]): void {
  if (ids.length === 0) throw new RangeError("The prompt is empty: give at least one token");
  const bad = ids.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= hp.n_vocab);
  if (bad >= 0) {
    throw new RangeError(
      `Token ${
        ids[bad]
      } at position ${bad} of the prompt is outside the vocabulary [0, ${hp.n_vocab})`,
    );
  }
}

/**
 * Checks that a prompt of `promptLength` tokens and `length` more fit the context window.
 * @throws {RangeError} if they do not
 */
export function checkContext(hp: PromptLimits, promptLength: number, length: number): void {
  if (promptLength + length <= hp.n_ctx) return;
  throw new RangeError(
    length > 0
      ? `A prompt of ${promptLength} tokens and ${length} more to generate do not fit the context window of ${hp.n_ctx}: shorten the prompt or generate fewer tokens`
      : `A prompt of ${promptLength} tokens does not fit the context window of ${hp.n_ctx}: shorten it`,
  );
}

/**
 * Checks a generation of `length` tokens after `ids`: `length` a positive integer, `ids` a
 * prompt, and both within the context window.
 * @throws {RangeError} saying which
 */
export function checkGeneration(hp: PromptLimits, ids: readonly number[], length: number): void {
  if (!Number.isInteger(length) || length < 1) {
    throw new RangeError(`length must be a positive integer, got ${length}`);
  }
  checkPrompt(hp, ids);
  checkContext(hp, ids.length, length);
}
