/**
 * Writing a generation's answer, the same for completions and chat: its choices run side
 * by side (the scheduler decodes them together), and their steps become either one JSON
 * answer once all have ended or server-sent events as they come, then `[DONE]`. Each
 * endpoint gives only its shapes (`AnswerFormat`); `usage` is counted here.
 *
 * @module
 */
import { ApiError } from "./api_error.ts";
import type { ChoiceStep } from "./completion.ts";
import type { CompletionRequest } from "./completion_request.ts";
import { merge } from "./merge.ts";

/** An endpoint's shapes: what its answers and chunks are called, and its choices. */
export interface AnswerFormat {
  /** The whole answer's `object`, such as `"chat.completion"`. */
  readonly object: string;
  /** A streamed chunk's `object`, such as `"chat.completion.chunk"`. */
  readonly chunkObject: string;
  /** How the answer's `id` starts, such as `"chatcmpl-"`. */
  readonly idPrefix: string;
  /** A new choice numbered `index`, to push its steps into. */
  choice(index: number): ChoiceFormat;
}

/** One choice in an endpoint's shape, built step by step. */
export interface ChoiceFormat {
  /** Adds `step`; returns the `choices` entries of the chunks to stream for it, in order. */
  push(step: ChoiceStep): unknown[];
  /** The choice as the whole answer gives it, after its last step. */
  result(): unknown;
}

/** Who else counts tokens as they come (the server's metrics). */
export interface TokenCounter {
  generated(tokens: number): void;
  cached(tokens: number): void;
}

/**
 * A request's `usage`, counted as its steps come. Its `cached_tokens` (prompt reuse) is,
 * for each prompt, the fewest of its tokens any of its `n` choices found in the KV cache
 * (each choice reports it on its first step; what every choice was spared, counted once as
 * the prompt is), summed over the prompts; a prompt counts once all its choices have
 * reported, and is 0 until then.
 */
export class Usage {
  /** The prompts' tokens, each prompt counted once whatever `n`. */
  readonly promptTokens: number;
  completionTokens = 0;
  /** When the first token came (`performance.now()`). */
  firstTokenAt: number | undefined;
  /** Per prompt: the fewest cached tokens its choices reported so far, and how many did. */
  readonly #cached: { fewest: number; reported: number }[];
  #cachedTokens = 0;

  constructor(readonly request: CompletionRequest, readonly counter?: TokenCounter) {
    this.promptTokens = request.prompts.reduce((sum, p) => sum + p.ids.length, 0);
    this.#cached = request.prompts.map(() => ({ fewest: Infinity, reported: 0 }));
  }

  /** Counts what `step` adds. */
  add(step: ChoiceStep): void {
    if (step.tokens > 0) {
      this.completionTokens += step.tokens;
      this.firstTokenAt ??= performance.now();
      this.counter?.generated(step.tokens);
    }
    if (step.cachedTokens !== undefined) {
      const prompt = this.#cached[Math.floor(step.index / this.request.n)];
      prompt.fewest = Math.min(prompt.fewest, step.cachedTokens);
      if (++prompt.reported === this.request.n) {
        this.#cachedTokens += prompt.fewest;
        this.counter?.cached(prompt.fewest);
      }
    }
  }

  /** Prompt tokens found in the KV cache, summed over the prompts whose choices all said. */
  get cachedTokens(): number {
    return this.#cachedTokens;
  }

  /** OpenAI's `usage` object, with `prompt_tokens_details.cached_tokens`. */
  toJSON(): Record<string, unknown> {
    return {
      prompt_tokens: this.promptTokens,
      completion_tokens: this.completionTokens,
      total_tokens: this.promptTokens + this.completionTokens,
      prompt_tokens_details: { cached_tokens: this.cachedTokens },
    };
  }
}

/** What an answer is made of. */
export interface Answer {
  readonly request: CompletionRequest;
  readonly format: AnswerFormat;
  /** The answer's id, the same in every chunk. */
  readonly id: string;
  /** Seconds since the epoch, as OpenAI's `created`. */
  readonly created: number;
  /** Every choice's steps, choice i at index i. */
  readonly choices: AsyncGenerator<ChoiceStep>[];
  readonly usage: Usage;
}

/** The whole answer, once every choice has ended. */
export async function collectAnswer(answer: Answer): Promise<Record<string, unknown>> {
  const { format, usage } = answer;
  const results = await Promise.all(answer.choices.map(async (steps, index) => {
    const choice = format.choice(index);
    for await (const step of steps) {
      usage.add(step);
      choice.push(step);
    }
    return choice.result();
  }));
  return {
    id: answer.id,
    object: format.object,
    created: answer.created,
    model: answer.request.model,
    choices: results,
    usage: usage.toJSON(),
  };
}

/**
 * The answer as server-sent events: a chunk for each entry its choices' steps give, as
 * they come; with `include_usage` a last chunk with no choices and the usage (and
 * `usage: null` on the others, as OpenAI's); then `[DONE]`. If generation fails, the last
 * event is the error instead (a client that went away gets nothing more). `onEnd` is
 * called once, when the stream ends for any reason, with why it ended early (or null).
 */
export function streamAnswer(
  answer: Answer,
  signal: AbortSignal,
  onEnd: (error: string | null) => void,
): ReadableStream<Uint8Array> {
  const { format, usage, request } = answer;
  const encoder = new TextEncoder();
  const event = (data: unknown) => encoder.encode(`data: ${JSON.stringify(data)}\n\n`);
  const chunk = (choices: unknown[], extra: Record<string, unknown> = {}) =>
    event({
      id: answer.id,
      object: format.chunkObject,
      created: answer.created,
      model: request.model,
      choices,
      ...(request.includeUsage ? { usage: null } : {}),
      ...extra,
    });
  let ended = false;
  let why: string | null = null;
  const end = () => {
    if (ended) return;
    ended = true;
    onEnd(why);
  };
  async function* events(): AsyncGenerator<Uint8Array> {
    const choices = answer.choices.map((_, i) => format.choice(i));
    try {
      for await (const step of merge(answer.choices)) {
        usage.add(step);
        for (const entry of choices[step.index].push(step)) yield chunk([entry]);
      }
      if (request.includeUsage) yield chunk([], { usage: usage.toJSON() });
      yield encoder.encode("data: [DONE]\n\n");
    } catch (e) {
      const reason = signal.reason;
      // A client that went away reads nothing more; anyone else learns why it ended.
      if (signal.aborted && !(reason instanceof ApiError)) {
        why = "client disconnected";
        return;
      }
      const error = reason instanceof ApiError
        ? reason
        : e instanceof ApiError
        ? e
        : new ApiError(500, "Generation failed", { type: "server_error" });
      if (!(e instanceof ApiError) && !signal.aborted) console.error("Generation failed:", e);
      why = error.message;
      yield event(error.toJSON());
    } finally {
      end();
    }
  }
  const it = events();
  return new ReadableStream<Uint8Array>({
    async pull(controller) {
      const { done, value } = await it.next();
      if (done) controller.close();
      else controller.enqueue(value);
    },
    async cancel() {
      // A generator never started runs no `finally`: the stream's end is noted here too.
      why ??= "client disconnected";
      await it.return(undefined);
      end();
    },
  });
}
