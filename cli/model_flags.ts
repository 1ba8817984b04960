/**
 * The flags every tool that runs a model takes (`--backend`, `--dtype`, `--threads`), their
 * checks, and the line that says what `auto` chose.
 *
 * @module
 */
import { BACKEND_NAMES } from "../runtime/backend/create.ts";
import { UsageError } from "./usage_error.ts";
import { DTYPE_CHOICES, type LoadOptions, type Model } from "../runtime/generate/model.ts";
import type { FlagSpec } from "./flags.ts";

/** `--backend`, `--dtype` and `--threads`, with their defaults. */
export const MODEL_FLAGS = {
  backend: {
    type: "string",
    default: "wasm",
    help: `what runs the model: ${BACKEND_NAMES.join(", ")} (auto: WebGPU on a GPU, else wasm)`,
  },
  dtype: {
    type: "string",
    default: "auto",
    help: "weights as f32, f16 or q8 (int8); auto: f32 if it fits the backend, else f16, else q8",
  },
  threads: {
    type: "int",
    default: navigator.hardwareConcurrency,
    help: "threads that run the model; the samples do not depend on it",
  },
} satisfies Record<string, FlagSpec>;

/**
 * Checks the model flags and returns them as `loadModel` options.
 * @throws {UsageError} naming the flag that is wrong
 */
export function modelOptions(
  flags: { backend: string; dtype: string; threads?: number },
): LoadOptions {
  if (!(flags.threads! >= 1)) {
    throw new UsageError(`--threads must be at least 1, got ${flags.threads}`);
  }
  if (!(BACKEND_NAMES as readonly string[]).includes(flags.backend)) {
    throw new UsageError(
      `Unknown --backend "${flags.backend}": choose one of ${BACKEND_NAMES.join(", ")}`,
    );
  }
  if (!DTYPE_CHOICES.includes(flags.dtype)) {
    throw new UsageError(
      `Unknown --dtype "${flags.dtype}": choose one of ${DTYPE_CHOICES.join(", ")}`,
    );
  }
  return { backend: flags.backend, dtype: flags.dtype, threads: flags.threads };
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
