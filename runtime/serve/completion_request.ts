/**
 * The body of `POST /v1/completions`, checked field by field as OpenAI's API does: the
 * fields it shares with chat (request_fields.ts), then its own: `prompt` (one or a batch),
 * `max_tokens`, `logprobs`, `echo`. A wrong type, a value out of range, an empty prompt, a
 * prompt and `max_tokens` that do not fit the context, or an unknown model is a 400 whose
 * message and `param` name the field. Fields OpenAI has but this server does not implement
 * are accepted only at their neutral values (`best_of: 1`, `suffix: ""`, ...).
 *
 * @module
 */
import { invalidField } from "./api_error.ts";
import { MAX_TOP_LOGPROBS } from "../generate/logprobs.ts";
import {
  checkFields,
  describe,
  neutral,
  optionalBoolean,
  optionalInteger,
  parseSharedFields,
  present,
  type RequestLimits,
  type SharedFields,
} from "./request_fields.ts";

export type { RequestLimits } from "./request_fields.ts";

/** One prompt: its tokens (at least one) and its text (as given, or the decoded ids). */
export interface Prompt {
  readonly ids: readonly number[];
  readonly text: string;
}

/**
 * A checked request for completions, what both endpoints run (a chat request is rendered
 * into one): `n` choices for each prompt, choice `p × n + i` being prompt p's i-th.
 */
export interface CompletionRequest extends SharedFields {
  /** The prompts, one or more. */
  readonly prompts: readonly Prompt[];
  /** Tokens to generate at most (completions' default 16, as OpenAI's). */
  readonly maxTokens: number;
  /** Alternatives to report per token, or null for no logprobs. */
  readonly logprobs: number | null;
  /** Whether the text starts with the prompt. */
  readonly echo: boolean;
}

/**
 * Checks `body` (parsed JSON) against the completions API and `limits`.
 * @throws {ApiError} 400 naming the field at fault
 */
export function parseCompletionRequest(body: unknown, limits: RequestLimits): CompletionRequest {
  const b = checkFields(body, "completions");
  const shared = parseSharedFields(b, limits);
  const echo = optionalBoolean(b, "echo", false);
  const maxTokens = optionalInteger(b, "max_tokens", 16, 0, limits.contextLength);
  const logprobs = present(b, "logprobs")
    ? optionalInteger(b, "logprobs", 0, 0, MAX_TOP_LOGPROBS)
    : null;
  if (echo && logprobs !== null && !limits.promptLogprobs) {
    throw invalidField(
      "echo",
      "echo with logprobs is not supported by this model: ask for one or the other",
    );
  }
  neutral(b, "best_of", (v) => v === 1 || v === shared.n, "1 (or n)");
  neutral(b, "suffix", (v) => v === "", "an empty string");

  const prompts = parsePrompts(b.prompt, limits);
  for (const [p, prompt] of prompts.entries()) {
    checkContext(prompt, maxTokens, limits, prompts.length > 1 ? `prompt[${p}]` : "the prompt");
  }
  return { ...shared, prompts, maxTokens, logprobs, echo };
}

/**
 * Checks that `prompt` and `maxTokens` more tokens fit the context.
 * @throws {ApiError} 400 naming `max_tokens`
 */
export function checkContext(
  prompt: Prompt,
  maxTokens: number,
  limits: RequestLimits,
  what: string,
): void {
  if (prompt.ids.length + maxTokens > limits.contextLength) {
    throw invalidField(
      "max_tokens",
      `This model's context is ${limits.contextLength} tokens, but ${what} has ${prompt.ids.length} and max_tokens asks for ${maxTokens} more: shorten the prompt or lower max_tokens`,
    );
  }
}

/**
 * The prompts: a string, an array of token ids, or an array of either (a batch, at most
 * `limits.maxPrompts`); none of them empty.
 */
function parsePrompts(prompt: unknown, limits: RequestLimits): Prompt[] {
  const kinds = "a string, an array of token ids, or an array of strings or of token-id arrays";
  if (prompt === undefined || prompt === null) {
    throw invalidField("prompt", `You must provide a prompt: ${kinds}`);
  }
  if (typeof prompt === "string" || isTokenArray(prompt)) {
    return [parseOne(prompt, "prompt", limits)];
  }
  if (Array.isArray(prompt) && prompt.length === 0) {
    throw invalidField("prompt", "The prompt is empty: give at least one token");
  }
  if (
    Array.isArray(prompt) &&
    (prompt.every((p) => typeof p === "string") || prompt.every(isTokenArray))
  ) {
    if (prompt.length > limits.maxPrompts) {
      throw invalidField(
        "prompt",
        `prompt batches at most ${limits.maxPrompts} prompts, got ${prompt.length}: send the rest in another request`,
      );
    }
    return prompt.map((p, i) => parseOne(p, `prompt[${i}]`, limits));
  }
  throw invalidField("prompt", `prompt must be ${kinds}, got ${describe(prompt)}`);
}

function isTokenArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((x) => typeof x === "number");
}

/** One prompt, named `name` in messages: a non-empty string or array of token ids. */
function parseOne(prompt: string | number[], name: string, limits: RequestLimits): Prompt {
  if (prompt.length === 0) {
    throw invalidField("prompt", `${name} is empty: give at least one token`);
  }
  if (typeof prompt === "string") return { ids: limits.encode(prompt), text: prompt };
  const bad = prompt.findIndex((id) => !Number.isInteger(id) || id < 0 || id >= limits.vocabSize);
  if (bad >= 0) {
    throw invalidField(
      "prompt",
      `${name}[${bad}] is ${
        prompt[bad]
      }, not a token id: ids are integers in [0, ${limits.vocabSize})`,
    );
  }
  return { ids: prompt, text: limits.decode(prompt) };
}
