/**
 * The shapes of `POST /v1/completions`' answers: a `text_completion` with each choice's
 * `text`, `index`, `logprobs` and `finish_reason`; streamed, one chunk per step.
 *
 * @module
 */
import type { AnswerFormat, ChoiceFormat } from "./answer.ts";
import {
  appendLogprobs,
  type ChoiceStep,
  type FinishReason,
  type LogprobsObject,
} from "./completion.ts";
import type { CompletionRequest } from "./completion_request.ts";

/** The completions API's shapes for `request`. */
export function completionFormat(request: CompletionRequest): AnswerFormat {
  return {
    object: "text_completion",
    chunkObject: "text_completion",
    idPrefix: "cmpl-",
    choice: (index) => new CompletionChoice(index, request.logprobs !== null),
  };
}

class CompletionChoice implements ChoiceFormat {
  #text = "";
  #finish: FinishReason = "length";
  readonly #logprobs: LogprobsObject | null;

  constructor(readonly index: number, logprobs: boolean) {
    this.#logprobs = logprobs
      ? { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] }
      : null;
  }

  push(step: ChoiceStep): unknown[] {
    this.#text += step.text;
    if (this.#logprobs && step.logprobs) appendLogprobs(this.#logprobs, step.logprobs);
    if (step.finishReason) this.#finish = step.finishReason;
    return [{
      text: step.text,
      index: step.index,
      logprobs: step.logprobs,
      finish_reason: step.finishReason,
    }];
  }

  result(): unknown {
    return {
      text: this.#text,
      index: this.index,
      logprobs: this.#logprobs,
      finish_reason: this.#finish,
    };
  }
}
