/**
 * Generated tokens as text, shared by the library's model and the tab's.
 *
 * @module
 */
import type { Tokenizer } from "../tokenizer/tokenizer.ts";

/** Decodes `ids` as they come into whole characters, stopping at `<|endoftext|>` if asked. */
export async function* decodeStream(
  tokenizer: Tokenizer,
  ids: AsyncIterable<number>,
  stopAtEndOfText = false,
): AsyncGenerator<string> {
  const decoder = tokenizer.decoder();
  for await (const id of ids) {
    if (stopAtEndOfText && id === tokenizer.endOfText) break;
    const text = decoder.push(id);
    if (text) yield text;
  }
  const rest = decoder.flush();
  if (rest) yield rest;
}
