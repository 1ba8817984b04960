/**
 * The fields the generation endpoints share, in one table: which endpoint takes each one
 * (`POST /v1/completions`, `POST /v1/chat/completions`), and one reader for the fields both
 * take (model, sampling, `stop`, `seed`, `n`, `stream`, `cache_prompt`, ...), so that a
 * field means the same on both and is checked by the same code. A wrong type or a value
 * out of range is a 400 whose message and `param` name the field; a field the endpoint
 * does not take is refused, so that a typo is not silently ignored.
 *
 * @module
 */
import { ApiError, invalidField } from "./api_error.ts";
import type { PromptLimits } from "../generate/prompt_check.ts";
import type { SamplingOptions } from "../generate/sampling_controls.ts";
import { parseSamplingFields, SAMPLING_FIELDS } from "./sampling_fields.ts";

/** The endpoints whose bodies these fields make up. */
export type Endpoint = "completions" | "chat";

/** A request body: a JSON object. */
export type Body = Record<string, unknown>;

const BOTH: readonly Endpoint[] = ["completions", "chat"];

/**
 * Every field of a generation request and the endpoints that take it. The sampling fields,
 * which both take, come from the library's table (`SAMPLING_FIELDS`, sampling_fields.ts);
 * the README's API list follows these two.
 */
export const REQUEST_FIELDS: Readonly<Record<string, readonly Endpoint[]>> = {
  model: BOTH,
  max_tokens: BOTH,
  stop: BOTH,
  seed: BOTH,
  n: BOTH,
  stream: BOTH,
  stream_options: BOTH,
  logprobs: BOTH, // an integer for completions, a boolean for chat
  user: BOTH,
  cache_prompt: BOTH,
  prompt: ["completions"],
  echo: ["completions"],
  best_of: ["completions"],
  suffix: ["completions"],
  messages: ["chat"],
  max_completion_tokens: ["chat"],
  top_logprobs: ["chat"],
  response_format: ["chat"],
};

/** What checking a request needs to know about the model and the server. */
export interface RequestLimits {
  /** The id `model` must equal. */
  readonly modelId: string;
  /** The context window (n_ctx): a prompt plus `max_tokens` must fit it. */
  readonly contextLength: number;
  readonly vocabSize: number;
  /** The largest `n` the server takes. */
  readonly maxChoices: number;
  /** The most prompts one completions request may batch. */
  readonly maxPrompts: number;
  /** Turns text into token ids. */
  encode(text: string): number[];
  /** Turns token ids back into text. */
  decode(ids: readonly number[]): string;
  /** Whether the model gives the prompt's own logprobs, which `echo` with `logprobs` needs. */
  readonly promptLogprobs: boolean;
}

/** The fields both endpoints read the same way. */
export interface SharedFields {
  /** The model id, as `/v1/models` lists it. */
  readonly model: string;
  /** The sampling controls the request sets (temperature, top_p, penalties, ...). */
  readonly sampling: SamplingOptions;
  /** Up to four strings; the text ends before the first of them to appear. */
  readonly stop: readonly string[];
  /** The seed of a prompt's choice 0; its choice i uses seed + i. Random if absent. */
  readonly seed: number | undefined;
  readonly stream: boolean;
  /** With `stream`: a last event with the usage (`stream_options.include_usage`). */
  readonly includeUsage: boolean;
  /** Completions to generate for each prompt. */
  readonly n: number;
  /** Reuse what a KV-cache slot holds of a prompt (llama.cpp's `cache_prompt`, default true). */
  readonly cachePrompt: boolean;
}

/** Most `stop` strings, as OpenAI's API. */
export const MAX_STOP = 4;

/**
 * Checks that `body` is a JSON object whose every field `endpoint` takes.
 * @throws {ApiError} 400 naming the first unknown field
 */
export function checkFields(body: unknown, endpoint: Endpoint): Body {
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new ApiError(400, "The request body must be a JSON object", { code: "invalid_json" });
  }
  for (const key of Object.keys(body)) {
    const takes = REQUEST_FIELDS[key] ?? (SAMPLING_FIELDS.includes(key) ? BOTH : []);
    if (!takes.includes(endpoint)) {
      throw invalidField(key, `Unrecognized request argument supplied: ${key}`);
    }
  }
  return body as Body;
}

/** Whether `b[key]` is given (JSON `null` counts as absent, as OpenAI's API reads it). */
export function present(b: Body, key: string): boolean {
  return b[key] !== undefined && b[key] !== null;
}

/**
 * Reads the fields both endpoints take.
 * @throws {ApiError} 400 naming the field at fault
 */
export function parseSharedFields(b: Body, limits: RequestLimits): SharedFields {
  if (!present(b, "model")) throw invalidField("model", "You must provide a model parameter");
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
  const sampling = parseSamplingFields(b, limits.vocabSize);
  const stream = optionalBoolean(b, "stream", false);
  const cachePrompt = optionalBoolean(b, "cache_prompt", true);
  const n = optionalInteger(b, "n", 1, 1, limits.maxChoices);
  const seed = present(b, "seed")
    ? optionalInteger(b, "seed", 0, Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER)
    : undefined;

  let stop: string[] = [];
  if (present(b, "stop")) {
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
  if (present(b, "stream_options")) {
    const o = b.stream_options;
    if (!stream) {
      throw invalidField("stream_options", "stream_options is only allowed with stream: true");
    }
    if (typeof o !== "object" || o === null || Array.isArray(o)) {
      throw invalidField("stream_options", `stream_options must be an object, got ${describe(o)}`);
    }
    includeUsage = optionalBoolean(o as Body, "include_usage", false);
  }
  if (present(b, "user") && typeof b.user !== "string") {
    throw invalidField("user", `user must be a string, got ${describe(b.user)}`);
  }
  return { model: b.model, sampling, stop, seed, stream, includeUsage, n, cachePrompt };
}

/** The library's prompt check's view of `limits`. */
export function promptLimits(limits: RequestLimits): PromptLimits {
  return { n_vocab: limits.vocabSize, n_ctx: limits.contextLength };
}

/**
 * Runs one of the library's prompt checks (prompt_check.ts); its RangeError becomes a 400
 * whose `param` is `field` and whose message starts with `label` (the field, or which
 * prompt of a batch).
 * @throws {ApiError} 400 naming `field`
 */
export function asField(field: string, check: () => void, label: string = field): void {
  try {
    check();
  } catch (e) {
    if (e instanceof RangeError) throw invalidField(field, `${label}: ${e.message}`);
    throw e;
  }
}

export function optionalBoolean(b: Body, key: string, fallback: boolean): boolean {
  const v = b[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "boolean") {
    throw invalidField(key, `${key} must be a boolean, got ${describe(v)}`);
  }
  return v;
}

/** `b[key]` as a number in [min, max] (a whole one if `integer`), or `fallback` when absent. */
export function optionalNumber(
  b: Body,
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
export function optionalInteger(
  b: Body,
  key: string,
  fallback: number,
  min: number,
  max: number,
): number {
  return optionalNumber(b, key, fallback, min, max, true);
}

/** Refuses `b[key]` unless absent or `ok` (a field taken only where it changes nothing). */
export function neutral(b: Body, key: string, ok: (v: unknown) => boolean, value: string): void {
  const v = b[key];
  if (v === undefined || v === null || ok(v)) return;
  throw invalidField(
    key,
    `${key} is not supported by this server: leave it out or set it to ${value}`,
  );
}

/** A short description of a JSON value for messages: its type and, if short, itself. */
export function describe(v: unknown): string {
  const type = v === null ? "null" : Array.isArray(v) ? "an array" : typeof v;
  const text = JSON.stringify(v);
  return text !== undefined && text.length <= 40 ? `${type} ${text}` : type;
}
