/**
 * The sampling fields of a request to either endpoint (`temperature`, `top_p`,
 * `presence_penalty`, `logit_bias`, llama.cpp's `repeat_penalty`, `min_p`, ...), read from
 * the library's table of sampling controls: each field's range and default are the
 * library's (OpenAI's narrower `temperature` range kept), and a bad value is a 400 naming
 * the field.
 *
 * @module
 */
import { invalidField } from "./api_error.ts";
import {
  checkControl,
  SAMPLING_CONTROLS,
  type SamplingOptions,
} from "../generate/sampling_controls.ts";

/** The request fields that set sampling controls. */
export const SAMPLING_FIELDS: readonly string[] = SAMPLING_CONTROLS.map((c) => c.field);

/**
 * The sampling controls `body` sets (absent or null fields are left to the defaults).
 * @throws {ApiError} 400 naming the field at fault
 */
export function parseSamplingFields(
  body: Record<string, unknown>,
  vocabSize: number,
): SamplingOptions {
  const out: Record<string, unknown> = {};
  for (const c of SAMPLING_CONTROLS) {
    const value = body[c.field];
    if (value === undefined || value === null) continue;
    try {
      out[c.option] = checkControl(c, value, { name: c.field, vocabSize, max: c.fieldMax });
    } catch (e) {
      if (e instanceof RangeError) throw invalidField(c.field, e.message);
      throw e;
    }
  }
  return out as SamplingOptions;
}
