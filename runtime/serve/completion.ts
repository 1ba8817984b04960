/**
 * One choice of a completion, token by token, on the library's `generateSteps`: the text each
 * token adds (never half a character, never part of a stop string), its log-probabilities
 * when asked for, and why the choice ended. The server turns these steps into one
 * response or one server-sent event each; it has no decoding loop of its own.
 *
 * @module
 */
import type { GenerateStepsOptions } from "../generate/model.ts";
import type { GenerationStep } from "../generate/scheduler.ts";
import type { HParams } from "../gpt2/hparams.ts";
import type { StepLogprobs } from "../generate/logprobs.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import type { CompletionRequest } from "./completion_request.ts";
import { StopText } from "./stop_text.ts";

/** What the server needs of a model: its tokenizer, its shape and `generateSteps`. */
export interface CompletionModel {
  /** Its tokenizer, as `encoder.py`. */
  readonly tokenizer: Tokenizer;
  /** Its shape (`n_ctx` bounds a prompt and its completion). */
  readonly hparams: HParams;
  /** Generates after `ids`, one step per token (as `Model.generateSteps`). */
  generateSteps(
    ids: readonly number[],
    options?: GenerateStepsOptions,
  ): AsyncGenerator<GenerationStep>;
  /**
   * For each prompt token after the first, the logprobs of it and of the `top` most likely
   * tokens at its position (what `echo` with `logprobs` reports); optional.
   */
  promptLogprobs?(ids: readonly number[], top: number): Promise<StepLogprobs[]>;
  /** Generations holding a KV-cache slot now (for `/metrics`); optional. */
  readonly slotsBusy?: number;
  /** Generations waiting for a slot (for `/metrics`); optional. */
  readonly waiting?: number;
}

/** OpenAI's `logprobs` object of a choice, or of one step of it when streaming. */
export interface LogprobsObject {
  tokens: string[];
  token_logprobs: (number | null)[];
  top_logprobs: (Record<string, number> | null)[];
  text_offset: number[];
}

/** Why a choice ended: a stop string or `<|endoftext|>`, or `max_tokens`. */
export type FinishReason = "stop" | "length";

/** What one step of a choice adds: one generated token, or the echoed prompt first. */
export interface ChoiceStep {
  readonly index: number;
  /** The text this step adds; `""` while a character or a possible stop string is incomplete. */
  readonly text: string;
  readonly logprobs: LogprobsObject | null;
  /** Set on the choice's last step. */
  readonly finishReason: FinishReason | null;
  /** Tokens this step generated (0 for the echoed prompt). */
  readonly tokens: number;
  /** The library's logprobs of the token this step generated, when asked for. */
  readonly tokenLogprobs?: StepLogprobs;
  /**
   * On a choice's first generated step: how many of its prompt's tokens the model found
   * in its KV cache (prompt reuse), as the library reports it.
   */
  readonly cachedTokens?: number;
}

/**
 * Generates choice `index` of `request`, one step per token: choice `p × n + i` is prompt
 * p's i-th, with the seed + i, so a prompt's choices are the same in a batch as alone.
 * Aborting `signal` ends it (the generator throws the reason).
 */
export async function* generateChoice(
  model: CompletionModel,
  request: CompletionRequest,
  index: number,
  signal?: AbortSignal,
): AsyncGenerator<ChoiceStep> {
  const { tokenizer } = model;
  const prompt = request.prompts[Math.floor(index / request.n)];
  let offset = 0;
  if (request.echo) {
    let logprobs: LogprobsObject | null = null;
    if (request.logprobs !== null && model.promptLogprobs) {
      logprobs = await promptObject(model, prompt.ids, request.logprobs);
    }
    offset = prompt.text.length;
    yield {
      index,
      text: prompt.text,
      logprobs,
      finishReason: request.maxTokens === 0 ? "length" : null,
      tokens: 0,
    };
  } else if (request.maxTokens === 0) {
    yield { index, text: "", logprobs: null, finishReason: "length", tokens: 0 };
  }
  if (request.maxTokens === 0) return;

  const decoder = tokenizer.decoder();
  const stop = new StopText(request.stop);
  const options: GenerateStepsOptions = {
    ...request.sampling,
    length: request.maxTokens,
    seed: request.seed === undefined ? undefined : request.seed + index % request.n,
    stopAtEndOfText: true,
    signal,
    logprobs: request.logprobs ?? undefined,
    cachePrompt: request.cachePrompt,
  };
  let count = 0;
  for await (const step of model.generateSteps(prompt.ids, options)) {
    const { token, logprobs: lp, cachedTokens } = step;
    count++;
    const last = count === request.maxTokens;
    if (token === tokenizer.endOfText) {
      const rest = stop.push(decoder.flush()).text + stop.flush();
      yield { index, text: rest, logprobs: null, finishReason: "stop", tokens: 1, cachedTokens };
      return;
    }
    const piece = decoder.push(token);
    let { text, stopped } = stop.push(piece);
    if (last && !stopped) {
      const end = stop.push(decoder.flush());
      text += end.text + (end.stopped ? "" : stop.flush());
      stopped = end.stopped;
    }
    const logprobs = lp === undefined ? null : stepObject(tokenizer, lp, offset);
    offset += piece.length;
    const finishReason = stopped ? "stop" : last ? "length" : null;
    yield { index, text, logprobs, finishReason, tokens: 1, tokenLogprobs: lp, cachedTokens };
    if (finishReason) return;
  }
}

/**
 * The prompt's entries of OpenAI's `logprobs` object: every prompt token, the first with
 * no logprob (nothing comes before it), the others with theirs given what precedes them.
 */
async function promptObject(
  model: CompletionModel,
  ids: readonly number[],
  top: number,
): Promise<LogprobsObject> {
  const { tokenizer } = model;
  const steps = await model.promptLogprobs!(ids, top);
  const object: LogprobsObject = {
    tokens: [],
    token_logprobs: [],
    top_logprobs: [],
    text_offset: [],
  };
  const decoder = tokenizer.decoder();
  let offset = 0;
  ids.forEach((id, i) => {
    object.tokens.push(tokenString(tokenizer, id));
    object.text_offset.push(offset);
    offset += decoder.push(id).length;
    if (i === 0) {
      object.token_logprobs.push(null);
      object.top_logprobs.push(null);
      return;
    }
    const step = stepObject(tokenizer, steps[i - 1], 0);
    object.token_logprobs.push(step.token_logprobs[0]);
    object.top_logprobs.push(step.top_logprobs[0]);
  });
  return object;
}

/** One token's entry of OpenAI's `logprobs` object. */
function stepObject(tokenizer: Tokenizer, lp: StepLogprobs, offset: number): LogprobsObject {
  const top: Record<string, number> = {};
  for (const t of lp.top) top[tokenString(tokenizer, t.token)] ??= t.logprob;
  return {
    tokens: [tokenString(tokenizer, lp.chosen.token)],
    token_logprobs: [lp.chosen.logprob],
    top_logprobs: [top],
    text_offset: [offset],
  };
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

/**
 * A token as text: its characters, or, for a token that holds part of a character,
 * `bytes:` and its bytes as `\xNN` (the form OpenAI's API uses).
 */
export function tokenString(tokenizer: Tokenizer, id: number): string {
  const bytes = tokenizer.tokenBytes(id);
  try {
    return strictUtf8.decode(bytes);
  } catch {
    return "bytes:" + [...bytes].map((b) => "\\x" + b.toString(16).padStart(2, "0")).join("");
  }
}

/** Appends one step's logprobs to a choice's. */
export function appendLogprobs(into: LogprobsObject, step: LogprobsObject): void {
  into.tokens.push(...step.tokens);
  into.token_logprobs.push(...step.token_logprobs);
  into.top_logprobs.push(...step.top_logprobs);
  into.text_offset.push(...step.text_offset);
}
