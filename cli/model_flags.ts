/**
 * The flags every tool that runs a model takes (`--backend`, `--dtype`, `--threads`), their
 * checks, and the line that says what `auto` chose.
 *
 * @module
 */
import { BACKEND_NAMES } from "../runtime/backend/create.ts";
import { UsageError } from "./usage_error.ts";
import {
  checkLoadOptions,
  DTYPE_CHOICES,
  type LoadOptions,
  type Model,
} from "../runtime/generate/model.ts";
import type { NumberFlag, StringFlag } from "./flags.ts";

/** The flags of {@linkcode MODEL_FLAGS}. */
export type ModelFlags = {
  readonly backend: StringFlag;
  readonly dtype: StringFlag;
  readonly threads: NumberFlag;
};

/** `--backend`, `--dtype` and `--threads`, with their defaults. */
export const MODEL_FLAGS: ModelFlags = {
  backend: {
    type: "string",
    default: "wasm",
    help: `what runs the model: ${BACKEND_NAMES.join(", ")} (auto: WebGPU on a GPU, else wasm)`,
  },
  dtype: {
    type: "string",
    default: "auto",
    help: `weights as ${
      DTYPE_CHOICES.join(", ")
    } (q8: int8, as ggml's Q8_0; q4: 4-bit, as Q4_0); auto: f32 if it fits the backend, else f16, else q8 (a GGUF file: its own type)`,
  },
  threads: {
    type: "int",
    default: navigator.hardwareConcurrency,
    help: "threads that run the model; the samples do not depend on it",
  },
};

/**
 * The model flags as `loadModel` options, checked by the library's own check: its
 * `RangeError` (an unknown backend or dtype, a count below 1) becomes a usage error, the
 * one line a tool prints.
 * @throws {UsageError} with the library's message
 */
export function modelOptions(
  flags: { backend: string; dtype: string; threads?: number },
): LoadOptions {
  const options = {
    backend: flags.backend,
    dtype: flags.dtype,
    threads: flags.threads,
  } as LoadOptions;
  try {
    checkLoadOptions(options);
  } catch (e) {
    if (e instanceof RangeError) throw new UsageError(e.message);
    throw e;
  }
  return options;
}

/**
 * The line a tool prints on stderr at start when `auto` chose the backend or the weight
 * type, e.g. `Running on wasm with f32 weights (--dtype auto)`; empty when nothing was
 * chosen for the user.
 */
export function choiceLine(flags: { backend: string; dtype: string }, model: Model): string {
  const auto = (["backend", "dtype"] as const).filter((f) => flags[f] === "auto");
  if (auto.length === 0) return "";
  return `Running on ${model.backend} with ${model.dtype} weights (${
    auto.map((f) => `--${f} auto`).join(", ")
  })`;
}

/**
 * The lines a tool prints on stderr once its model has loaded: what loading converted for
 * lack of kernels (`token_embd, blk.*: Q4_0 converted to f32 while loading`, then the
 * backend's own type if it is not f32), and what `auto` chose.
 */
export function loadNotes(flags: { backend: string; dtype: string }, model: Model): string[] {
  const notes: string[] = [];
  if (model.conversion !== undefined) {
    notes.push(model.conversion + (model.dtype === "f32" ? "" : `, then stored as ${model.dtype}`));
  }
  const chose = choiceLine(flags, model);
  if (chose) notes.push(chose);
  return notes;
}
