/**
 * The body of `POST /v1/completions`, checked field by field as OpenAI's API does: the
 * fields it shares with chat (request_fields.ts: model, sampling, `stop`, `cache_prompt`,
 * ...), then its own: `prompt` (one or a batch), `max_tokens`, `logprobs`, `echo`. A wrong
 * type, a value out of range, or an unknown model is a 400 whose message and `param` name
 * the field; the prompts and `max_tokens` are checked by the library's prompt check, whose
 * message the 400 carries, naming the field (and the prompt of a batch). Fields OpenAI has
 * but this server does not implement are accepted only at their neutral values
 * (`best_of: 1`, `suffix: ""`).
 *
 * @module
 */
import { invalidField } from "./api_error.ts";
import { MAX_TOP_LOGPROBS } from "../generate/logprobs.ts";
import { checkContext, checkPrompt } from "../generate/prompt_check.ts";
import {
  asField,
  checkFields,
  describe,
  neutral,
  optionalBoolean,
  optionalInteger,
  parseSharedFields,
  present,
  promptLimits,
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
    const label = prompts.length > 1 ? `max_tokens (prompt[${p}])` : "max_tokens";
    asField(
      "max_tokens",
      () => checkContext(promptLimits(limits), prompt.ids.length, maxTokens),
      label,
    );
  }
  return { ...shared, prompts, maxTokens, logprobs, echo };
}

/**
 * The prompts: a string, an array of token ids, or an array of either (a batch, at most
 * `limits.maxPrompts`); each one then checked by the library (not empty, ids in the
 * vocabulary).
 */
function parsePrompts(prompt: unknown, limits: RequestLimits): Prompt[] {
  const kinds = "a string, an array of token ids, or an array of strings or of token-id arrays";
  if (prompt === undefined || prompt === null) {
    throw invalidField("prompt", `You must provide a prompt: ${kinds}`);
  }
  if (typeof prompt === "string" || isTokenArray(prompt)) {
    return [parseOne(prompt, "prompt", limits)];
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

/** An array of numbers, which the library then checks as token ids (`[]` is one, empty). */
function isTokenArray(v: unknown): v is number[] {
  return Array.isArray(v) && v.every((x) => typeof x === "number");
}

/** One prompt, checked by the library; `label` names it in messages (`"prompt[2]"`). */
function parseOne(prompt: string | number[], label: string, limits: RequestLimits): Prompt {
  const ids = typeof prompt === "string" ? limits.encode(prompt) : prompt;
  asField("prompt", () => checkPrompt(promptLimits(limits), ids), label);
  return { ids, text: typeof prompt === "string" ? prompt : limits.decode(prompt) };
}
