/**
 * The body of `POST /v1/chat/completions`, checked as OpenAI's API does: the fields chat
 * shares with completions (request_fields.ts), then `messages` (system, developer, user and
 * assistant messages whose content is a string or an array of text parts),
 * `max_completion_tokens` (or the older `max_tokens`), and `logprobs` with `top_logprobs`.
 * The messages are rendered into one transcript (chat_template.ts), and the request is
 * then a completion of it that stops at the next speaker's line; the library's prompt
 * check says whether the transcript and the reply's length fit the context.
 *
 * @module
 */
import { invalidField } from "./api_error.ts";
import { MAX_TOP_LOGPROBS } from "../generate/logprobs.ts";
import { type ChatMessage, renderTranscript, SPEAKER_STOPS, SPEAKERS } from "./chat_template.ts";
import type { CompletionRequest } from "./completion_request.ts";
import { checkContext } from "../generate/prompt_check.ts";
import {
  asField,
  type Body,
  checkFields,
  describe,
  neutral,
  optionalBoolean,
  optionalInteger,
  parseSharedFields,
  present,
  promptLimits,
  type RequestLimits,
} from "./request_fields.ts";

/**
 * Fields a message may carry that mean nothing here, taken only when null or empty (a
 * client may send back the assistant message it was given).
 */
const EMPTY_MESSAGE_FIELDS = new Set([
  "refusal",
  "tool_calls",
  "function_call",
  "audio",
  "annotations",
]);

/**
 * Checks `body` (parsed JSON) against the chat completions API and `limits`.
 * @throws {ApiError} 400 naming the field at fault
 */
export function parseChatRequest(body: unknown, limits: RequestLimits): CompletionRequest {
  const b = checkFields(body, "chat");
  const shared = parseSharedFields(b, limits);
  const messages = parseMessages(b.messages);
  neutral(
    b,
    "response_format",
    (v) => typeof v === "object" && v !== null && (v as Body).type === "text",
    '{"type": "text"}',
  );

  const logprobs = optionalBoolean(b, "logprobs", false);
  let top = 0;
  if (present(b, "top_logprobs")) {
    top = optionalInteger(b, "top_logprobs", 0, 0, MAX_TOP_LOGPROBS);
    if (!logprobs) {
      throw invalidField("top_logprobs", "top_logprobs needs logprobs: true");
    }
  }

  const text = renderTranscript(messages);
  const ids = limits.encode(text);
  // The library's check of the transcript as a prompt, with room for a token of the reply.
  asField(
    "messages",
    () => checkContext(promptLimits(limits), ids.length, 1),
    "messages (as one transcript)",
  );
  const maxTokens = parseMaxTokens(b, limits, ids.length);
  return {
    ...shared,
    stop: [...shared.stop, ...SPEAKER_STOPS],
    prompts: [{ ids, text }],
    maxTokens,
    logprobs: logprobs ? top : null,
    echo: false,
  };
}

/**
 * `max_completion_tokens`, or the older `max_tokens` (both given, they must agree); absent,
 * the reply may fill the rest of the context, as OpenAI's has no limit of its own.
 */
function parseMaxTokens(b: Body, limits: RequestLimits, promptTokens: number): number {
  const context = limits.contextLength;
  const fields = ["max_completion_tokens", "max_tokens"].filter((k) => present(b, k));
  const values = fields.map((k) => optionalInteger(b, k, 0, 0, context));
  if (values.length === 2 && values[0] !== values[1]) {
    throw invalidField(
      "max_completion_tokens",
      `max_completion_tokens is ${values[0]} but max_tokens is ${values[1]}: give one of them`,
    );
  }
  if (values.length === 0) return context - promptTokens;
  asField(fields[0], () => checkContext(promptLimits(limits), promptTokens, values[0]));
  return values[0];
}

/** The messages: a non-empty array of `{role, content}` with text content. */
function parseMessages(value: unknown): ChatMessage[] {
  if (value === undefined || value === null) {
    throw invalidField("messages", "You must provide messages: an array of {role, content}");
  }
  if (!Array.isArray(value)) {
    throw invalidField("messages", `messages must be an array, got ${describe(value)}`);
  }
  if (value.length === 0) {
    throw invalidField("messages", "messages is empty: give at least one message");
  }
  return value.map((m, i) => parseMessage(m, `messages[${i}]`));
}

function parseMessage(m: unknown, name: string): ChatMessage {
  if (typeof m !== "object" || m === null || Array.isArray(m)) {
    throw invalidField(name, `${name} must be an object {role, content}, got ${describe(m)}`);
  }
  const message = m as Body;
  const roles = Object.keys(SPEAKERS).join(", ");
  if (typeof message.role !== "string" || !Object.hasOwn(SPEAKERS, message.role)) {
    throw invalidField(
      `${name}.role`,
      `${name}.role must be one of ${roles}, got ${
        describe(message.role)
      }: GPT-2 has no tools or functions`,
    );
  }
  for (const [key, v] of Object.entries(message)) {
    if (key === "role" || key === "content") continue;
    if (key === "name" && typeof v === "string") continue;
    const empty = v === null || (Array.isArray(v) && v.length === 0);
    if (EMPTY_MESSAGE_FIELDS.has(key) && empty) continue;
    throw invalidField(
      `${name}.${key}`,
      `${name}.${key} is not supported by this server: a message has a role, content and a name`,
    );
  }
  return { role: message.role, content: parseContent(message.content, `${name}.content`) };
}

/** A message's content: a string, or an array of `{type: "text", text}` parts, joined. */
function parseContent(content: unknown, name: string): string {
  if (typeof content === "string") return content;
  if (!Array.isArray(content)) {
    throw invalidField(
      name,
      `${name} must be a string or an array of text parts, got ${describe(content)}`,
    );
  }
  return content.map((part, j) => {
    const at = `${name}[${j}]`;
    if (typeof part !== "object" || part === null || Array.isArray(part)) {
      throw invalidField(at, `${at} must be a part {type: "text", text}, got ${describe(part)}`);
    }
    const p = part as Body;
    if (p.type !== "text") {
      throw invalidField(
        `${at}.type`,
        `${at}.type is ${
          describe(p.type)
        }: GPT-2 reads text, so only parts of type "text" are taken`,
      );
    }
    if (typeof p.text !== "string") {
      throw invalidField(`${at}.text`, `${at}.text must be a string, got ${describe(p.text)}`);
    }
    return p.text;
  }).join("");
}
