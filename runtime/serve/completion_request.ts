/**
 * The body of `POST /v1/completions`, checked field by field as OpenAI's API does: a
 * wrong type, a value out of range, an empty prompt, a prompt and `max_tokens` that do
 * not fit the context, or an unknown model is a 400 whose message and `param` name the
 * field. The sampling fields come from the library's table (sampling_fields.ts). Fields
 * OpenAI has but this server does not implement are accepted only at their neutral values
 * (`best_of: 1`, `suffix: ""`), and unknown fields are refused, so that a typo is not
 * silently ignored.
 *
 * @module
 */
import { ApiError, invalidField } from "./api_error.ts";
import { MAX_TOP_LOGPROBS } from "../generate/logprobs.ts";
import { checkContext, checkPrompt, type PromptLimits } from "../generate/prompt_check.ts";
import type { SamplingOptions } from "../generate/sampling_controls.ts";
import { parseSamplingFields, SAMPLING_FIELDS } from "./sampling_fields.ts";

/** A checked completion request. */
export interface CompletionRequest {
  /** The model id, as `/v1/models` lists it. */
  readonly model: string;
  /** The prompt's tokens (at least one). */
  readonly promptIds: readonly number[];
  /** The prompt as text: as given, or the decoded token ids. */
  readonly promptText: string;
  /** Tokens to generate at most (default 16, as OpenAI's). */
  readonly maxTokens: number;
  /** The sampling controls the request sets (temperature, top_p, penalties, ...). */
  readonly sampling: SamplingOptions;
  /** Up to four strings; the text ends before the first of them to appear. */
  readonly stop: readonly string[];
  /** The seed of choice 0; choice i uses seed + i. Random if absent. */
  readonly seed: number | undefined;
  readonly stream: boolean;
  /** With `stream`: a last event with the usage (`stream_options.include_usage`). */
  readonly includeUsage: boolean;
  /** Completions to generate for the prompt. */
  readonly n: number;
  /** Alternatives to report per token, or null for no logprobs. */
  readonly logprobs: number | null;
  /** Whether the text starts with the prompt. */
  readonly echo: boolean;
  /** Reuse what a KV-cache slot holds of the prompt (llama.cpp's `cache_prompt`, default true). */
  readonly cachePrompt: boolean;
}

/** What checking a request needs to know about the model and the server. */
export interface RequestLimits {
  /** The id `model` must equal. */
  readonly modelId: string;
  /** The context window (n_ctx): prompt plus `max_tokens` must fit it. */
  readonly contextLength: number;
  readonly vocabSize: number;
  /** The largest `n` the server takes. */
  readonly maxChoices: number;
  /** Turns a string prompt into token ids. */
  encode(text: string): number[];
  /** Turns token ids back into text. */
  decode(ids: readonly number[]): string;
  /** Whether the model gives the prompt's own logprobs, which `echo` with `logprobs` needs. */
  readonly promptLogprobs: boolean;
}

const KNOWN_FIELDS = new Set([
  "model",
  "prompt",
  "max_tokens",
  ...SAMPLING_FIELDS,
  "stop",
  "seed",
  "stream",
  "stream_options",
  "n",
  "logprobs",
  "echo",
  "cache_prompt",
  "best_of",
  "suffix",
  "user",
]);

/** Most `stop` strings, as OpenAI's API. */
const MAX_STOP = 4;

/**
 * Checks `body` (parsed JSON) against the completions API and `limits`.
 * @throws {ApiError} 400 naming the field at fault
 */
export function parseCompletionRequest(body: unknown, limits: RequestLimits): CompletionRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new ApiError(400, "The request body must be a JSON object", { code: "invalid_json" });
  }
  const b = body as Record<string, unknown>;
  for (const key of Object.keys(b)) {
    if (!KNOWN_FIELDS.has(key)) {
      throw invalidField(key, `Unrecognized request argument supplied: ${key}`);
    }
  }
  const present = (k: string) => b[k] !== undefined && b[k] !== null;

  if (!present("model")) throw invalidField("model", "You must provide a model parameter");
  if (typeof b.model !== "string") {
    throw invalidField("model", `model must be a string, got ${describe(b.model)}`);
  }
  if (b.model !== limits.modelId) {
    throw new ApiError(
      400,
      `The model "${b.model}" does not exist: this server serves "${limits.modelId}"`,
      { param: "model", code: "model_not_found" },
    );
  }

  const stream = optionalBoolean(b, "stream", false);
  const echo = optionalBoolean(b, "echo", false);
  const cachePrompt = optionalBoolean(b, "cache_prompt", true);
  const n = optionalInteger(b, "n", 1, 1, limits.maxChoices);
  const maxTokens = optionalInteger(b, "max_tokens", 16, 0, limits.contextLength);
  const sampling = parseSamplingFields(b, limits.vocabSize);
  const logprobs = present("logprobs")
    ? optionalInteger(b, "logprobs", 0, 0, MAX_TOP_LOGPROBS)
    : null;
  const seed = present("seed")
    ? optionalInteger(b, "seed", 0, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)
    : undefined;

  if (echo && logprobs !== null && !limits.promptLogprobs) {
    throw invalidField(
      "echo",
      "echo with logprobs is not supported by this model: ask for one or the other",
    );
  }

  let stop: string[] = [];
  if (present("stop")) {
    const s = b.stop;
    stop = typeof s === "string" ? [s] : Array.isArray(s) ? s : [];
    if (!(typeof s === "string" || Array.isArray(s)) || stop.some((x) => typeof x !== "string")) {
      throw invalidField(
        "stop",
        `stop must be a string or an array of strings, got ${describe(s)}`,
      );
    }
    if (stop.length > MAX_STOP) {
      throw invalidField("stop", `stop takes at most ${MAX_STOP} strings, got ${stop.length}`);
    }
    if (stop.some((x) => x === "")) throw invalidField("stop", "stop strings must not be empty");
  }

  let includeUsage = false;
  if (present("stream_options")) {
    const o = b.stream_options;
    if (!stream) {
      throw invalidField("stream_options", "stream_options is only allowed with stream: true");
    }
    if (typeof o !== "object" || o === null || Array.isArray(o)) {
      throw invalidField("stream_options", `stream_options must be an object, got ${describe(o)}`);
    }
    includeUsage = optionalBoolean(o as Record<string, unknown>, "include_usage", false);
  }

  // Fields accepted only where they change nothing.
  neutral(b, "best_of", (v) => v === 1 || v === n, "1 (or n)");
  neutral(b, "suffix", (v) => v === "", "an empty string");
  if (present("user") && typeof b.user !== "string") {
    throw invalidField("user", `user must be a string, got ${describe(b.user)}`);
  }

  const { promptIds, promptText } = parsePrompt(b.prompt, limits);
  asField("max_tokens", () => checkContext(promptLimits(limits), promptIds.length, maxTokens));
  return {
    model: b.model,
    promptIds,
    promptText,
    maxTokens,
    sampling,
    stop,
    seed,
    stream,
    includeUsage,
    n,
    logprobs,
    echo,
    cachePrompt,
  };
}

/** The prompt: a string, or an array of numbers (the library checks them as token ids). */
function parsePrompt(
  prompt: unknown,
  limits: RequestLimits,
): { promptIds: number[]; promptText: string } {
  if (prompt === undefined || prompt === null) {
    throw invalidField("prompt", "You must provide a prompt: a string or an array of token ids");
  }
  if (typeof prompt === "string") {
    const promptIds = limits.encode(prompt);
    asField("prompt", () => checkPrompt(promptLimits(limits), promptIds));
    return { promptIds, promptText: prompt };
  }
  if (Array.isArray(prompt) && prompt.every((x) => typeof x === "number")) {
    asField("prompt", () => checkPrompt(promptLimits(limits), prompt));
    return { promptIds: prompt, promptText: limits.decode(prompt) };
  }
  throw invalidField(
    "prompt",
    `prompt must be a string or an array of token ids, got ${describe(prompt)}`,
  );
}

function promptLimits(limits: RequestLimits): PromptLimits {
  return { n_vocab: limits.vocabSize, n_ctx: limits.contextLength };
}

/** Runs one of the library's checks, its RangeError becoming a 400 that names `field`. */
function asField(field: string, check: () => void): void {
  try {
    check();
  } catch (e) {
    if (e instanceof RangeError) throw invalidField(field, `${field}: ${e.message}`);
    throw e;
  }
}

function optionalBoolean(b: Record<string, unknown>, key: string, fallback: boolean): boolean {
  const v = b[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "boolean") {
    throw invalidField(key, `${key} must be a boolean, got ${describe(v)}`);
  }
  return v;
}

/** `b[key]` as a number in [min, max] (a whole one if `integer`), or `fallback` when absent. */
function optionalNumber(
  b: Record<string, unknown>,
  key: string,
  fallback: number,
  min: number,
  max: number,
  integer = false,
): number {
  const v = b[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "number" || !(integer ? Number.isInteger(v) : Number.isFinite(v))) {
    const kind = integer ? "an integer" : "a number";
    throw invalidField(key, `${key} must be ${kind}, got ${describe(v)}`);
  }
  if (v < min || v > max) throw invalidField(key, `${key} must be in [${min}, ${max}], got ${v}`);
  return v;
}

/** `optionalNumber` for whole numbers. */
function optionalInteger(
  b: Record<string, unknown>,
  key: string,
  fallback: number,
  min: number,
  max: number,
): number {
  return optionalNumber(b, key, fallback, min, max, true);
}

function neutral(
  b: Record<string, unknown>,
  key: string,
  ok: (v: unknown) => boolean,
  value: string,
): void {
  const v = b[key];
  if (v === undefined || v === null || ok(v)) return;
  throw invalidField(
    key,
    `${key} is not supported by this server: leave it out or set it to ${value}`,
  );
}

/** A short description of a JSON value for messages: its type and, if short, itself. */
function describe(v: unknown): string {
  const type = v === null ? "null" : Array.isArray(v) ? "an array" : typeof v;
  const text = JSON.stringify(v);
  return text !== undefined && text.length <= 40 ? `${type} ${text}` : type;
}
