/**
 * The chat API's replies generated in the tab: a request body as `/v1/chat/completions`
 * takes it, checked and turned into text by the server's own code (its transcript, speaker
 * stops and trimming), so a reply in the tab is the reply the server streams.
 *
 * @module
 */
import { chatFormat } from "../serve/chat_format.ts";
import { parseChatRequest } from "../serve/chat_request.ts";
import { type CompletionModel, generateChoice } from "../serve/completion.ts";

/** The model id a tab's requests name (the server's is its model's name). */
const TAB_MODEL_ID = "tab";

/**
 * The `choices` entries of the chunks `/v1/chat/completions` would stream for `body` (its
 * `messages`, sampling fields, `max_completion_tokens`, `logprobs`, …; `model`, `stream`
 * and `n` are the tab's own), the first choice's, as `model` generates them.
 * @throws {ApiError} for a field the chat API refuses, naming it
 *
 * @example
 * ```ts ignore
 * import { chatChoices, loadModel } from "./mod.ts";
 * const model = await loadModel("models/124M/");
 * const messages = [{ role: "user", content: "Hello!" }];
 * let reply = "";
 * for await (const choice of chatChoices(model, { messages, temperature: 0 })) {
 *   reply += (choice as { delta: { content?: string } }).delta.content ?? "";
 * }
 * ```
 */
export async function* chatChoices(
  model: CompletionModel,
  body: Record<string, unknown>,
  signal?: AbortSignal,
): AsyncGenerator<unknown> {
  const { tokenizer, hparams } = model;
  const request = parseChatRequest({ ...body, model: TAB_MODEL_ID, stream: true, n: 1 }, {
    modelId: TAB_MODEL_ID,
    contextLength: hparams.n_ctx,
    vocabSize: hparams.n_vocab,
    maxChoices: 1,
    maxPrompts: 1,
    encode: (text) => tokenizer.encode(text),
    decode: (ids) => tokenizer.decode(ids),
    promptLogprobs: model.promptLogprobs !== undefined,
  });
  const choice = chatFormat(request, tokenizer).choice(0);
  for await (const step of generateChoice(model, request, 0, signal)) yield* choice.push(step);
}
