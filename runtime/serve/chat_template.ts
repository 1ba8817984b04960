/**
 * How a chat becomes text for GPT-2, which was trained on no chat format: each message is
 * a line `Speaker: content` (System, User or Assistant), and an `Assistant:` line is left
 * open for the reply. The reply ends where the model starts the next speaker's line (a
 * newline and one of the speakers), or at `<|endoftext|>`; its content is trimmed of the
 * white space around it (the space after `Assistant:` above all).
 *
 * ```text
 * System: You are a helpful assistant.
 * User: Hello!
 * Assistant: Hi. How can I help?
 * User: Tell me a joke.
 * Assistant:
 * ```
 *
 * @module
 */

/** The roles a message may have, and the speaker each is written as. */
export const SPEAKERS: Readonly<Record<string, string>> = {
  system: "System",
  developer: "System", // OpenAI's newer name for the system role
  user: "User",
  assistant: "Assistant",
};

/** One message of a chat, its content as plain text. */
export interface ChatMessage {
  /** One of `SPEAKERS`' roles. */
  readonly role: string;
  readonly content: string;
}

/** The line the reply is written on. */
export const REPLY_LINE = "Assistant:";

/** Where the reply ends: the model starting the next speaker's line. */
export const SPEAKER_STOPS: readonly string[] = [...new Set(Object.values(SPEAKERS))].map(
  (speaker) => `\n${speaker}:`,
);

/**
 * The transcript of `messages` with the reply's line open at its end.
 *
 * @example
 * ```ts
 * import { renderTranscript } from "./chat_template.ts";
 * const text = renderTranscript([
 *   { role: "system", content: "Be brief." },
 *   { role: "user", content: "Hi" },
 * ]);
 * if (text !== "System: Be brief.\nUser: Hi\nAssistant:") throw new Error(text);
 * ```
 */
export function renderTranscript(messages: readonly ChatMessage[]): string {
  return messages.map((m) => `${SPEAKERS[m.role]}: ${m.content}\n`).join("") + REPLY_LINE;
}

/**
 * A reply streamed in pieces, trimmed as it comes: white space before its first character
 * is dropped, and white space at the end of what has come is held back until more text
 * follows it (at the end it is dropped), so the streamed pieces add up to the trimmed whole.
 *
 * @example
 * ```ts
 * import { ReplyText } from "./chat_template.ts";
 * const r = new ReplyText();
 * const pieces = [r.push(" Hi"), r.push(" there\n"), r.push("")];
 * if (pieces.join("") !== "Hi there") throw new Error(pieces.join("|"));
 * ```
 */
export class ReplyText {
  #started = false;
  #held = "";

  /** Adds `text`; returns what can be shown now. */
  push(text: string): string {
    if (!this.#started) {
      text = text.trimStart();
      if (text === "") return "";
      this.#started = true;
    }
    const whole = this.#held + text;
    const end = whole.trimEnd().length;
    this.#held = whole.slice(end);
    return whole.slice(0, end);
  }
}
