/**
 * The shapes of `POST /v1/chat/completions`' answers: a `chat.completion` whose choices
 * hold an assistant `message` and `logprobs.content` (one entry per generated token, with
 * its bytes and its `top_logprobs`); streamed, `chat.completion.chunk`s: first a `delta`
 * with the role, then `delta.content` pieces, then an empty `delta` with the
 * `finish_reason`. The reply is trimmed as chat_template.ts says.
 *
 * @module
 */
import type { AnswerFormat, ChoiceFormat } from "./answer.ts";
import { ReplyText } from "./chat_template.ts";
import type { ChoiceStep, FinishReason } from "./completion.ts";
import type { CompletionRequest } from "./completion_request.ts";
import type { StepLogprobs } from "../generate/logprobs.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";

/** A token's log-probability in the chat API's shape. */
export interface ChatTokenLogprob {
  /** The token as text (a part of a character shows as U+FFFD). */
  token: string;
  logprob: number;
  /** The token's UTF-8 bytes. */
  bytes: number[];
}

/** One generated token's entry of `logprobs.content`. */
export interface ChatLogprob extends ChatTokenLogprob {
  /** The most likely tokens at its position, most likely first. */
  top_logprobs: ChatTokenLogprob[];
}

/** The chat API's shapes for `request`. */
export function chatFormat(request: CompletionRequest, tokenizer: Tokenizer): AnswerFormat {
  return {
    object: "chat.completion",
    chunkObject: "chat.completion.chunk",
    idPrefix: "chatcmpl-",
    choice: (index) => new ChatChoice(index, request.logprobs !== null, tokenizer),
  };
}

const lossyUtf8 = new TextDecoder("utf-8");

function tokenLogprob(tokenizer: Tokenizer, token: number, logprob: number): ChatTokenLogprob {
  const bytes = tokenizer.tokenBytes(token);
  return { token: lossyUtf8.decode(bytes), logprob, bytes: [...bytes] };
}

/** `lp` as an entry of the chat API's `logprobs.content`. */
export function chatLogprob(tokenizer: Tokenizer, lp: StepLogprobs): ChatLogprob {
  return {
    ...tokenLogprob(tokenizer, lp.chosen.token, lp.chosen.logprob),
    top_logprobs: lp.top.map((t) => tokenLogprob(tokenizer, t.token, t.logprob)),
  };
}

class ChatChoice implements ChoiceFormat {
  readonly #reply = new ReplyText();
  #content = "";
  #finish: FinishReason = "length";
  #started = false;
  readonly #logprobs: ChatLogprob[] | null;

  constructor(readonly index: number, logprobs: boolean, readonly tokenizer: Tokenizer) {
    this.#logprobs = logprobs ? [] : null;
  }

  push(step: ChoiceStep): unknown[] {
    const out: unknown[] = [];
    const entry = (delta: Record<string, string>, logprobs: unknown, finish: string | null) => ({
      index: this.index,
      delta,
      logprobs,
      finish_reason: finish,
    });
    if (!this.#started) {
      this.#started = true;
      out.push(entry({ role: "assistant", content: "" }, null, null));
    }
    const text = this.#reply.push(step.text);
    this.#content += text;
    const lp = this.#logprobs && step.tokenLogprobs
      ? [chatLogprob(this.tokenizer, step.tokenLogprobs)]
      : null;
    if (lp) this.#logprobs!.push(...lp);
    if (text !== "" || lp) {
      out.push(entry({ content: text }, lp && { content: lp, refusal: null }, null));
    }
    if (step.finishReason) {
      this.#finish = step.finishReason;
      out.push(entry({}, null, step.finishReason));
    }
    return out;
  }

  result(): unknown {
    return {
      index: this.index,
      message: { role: "assistant", content: this.#content, refusal: null },
      logprobs: this.#logprobs && { content: this.#logprobs, refusal: null },
      finish_reason: this.#finish,
    };
  }
}
