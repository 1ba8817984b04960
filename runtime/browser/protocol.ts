/**
 * The messages between a page's {@linkcode TabModel} (mod.ts) and its engine worker
 * (engine_worker.ts), and how an error crosses between them with its type.
 *
 * @module
 */
import { BackendError, DownloadError, ModelFileError } from "../errors.ts";
import type { GenerateStepsOptions, LoadOptions } from "../generate/model.ts";
import type { HParams } from "../gpt2/hparams.ts";
import type { WeightType } from "../backend/backend.ts";
import type { ReadProgress } from "../io/file_source.ts";
import type { StepLogprobs } from "../generate/logprobs.ts";
import type { GenerationStep } from "../generate/scheduler.ts";

/** Where the worker loads the model from: a folder's URL, or files the user picked. */
export type EngineLocation = { readonly url: string } | { readonly files: readonly File[] };

/** Page → worker. */
export type EngineRequest =
  | {
    readonly type: "load";
    readonly location: EngineLocation;
    readonly options: LoadOptions;
    /** Keep fetched weights in the OPFS, and read them from there when kept. */
    readonly cache: boolean;
    readonly headers?: Record<string, string>;
  }
  | { readonly type: "forget"; readonly id: number; readonly prefix: string }
  | { readonly type: "kept"; readonly id: number; readonly prefix: string }
  | { readonly type: "logits"; readonly id: number; readonly ids: readonly number[] }
  | {
    readonly type: "promptLogprobs";
    readonly id: number;
    readonly ids: readonly number[];
    readonly top: number;
  }
  | {
    readonly type: "generateSteps" | "generateBatch";
    readonly id: number;
    readonly ids: readonly number[];
    readonly options: WireGenerateOptions;
  }
  /** Stops the generation `id` before its next token. */
  | { readonly type: "cancel"; readonly id: number };

/** The options of a generation that can cross to the worker (all but the signal). */
export type WireGenerateOptions = Omit<GenerateStepsOptions, "signal">;

/** What the page learns of the model once it is loaded. */
export interface EngineInfo {
  readonly hparams: HParams;
  readonly backend: string;
  readonly dtype: WeightType;
  readonly batch: number;
  readonly slots: number;
  readonly threads: number;
  /** What loading converted for lack of kernels (`Model.conversion`). */
  readonly conversion?: string;
  /** The tokenizer the engine read (from the folder's files or the GGUF metadata). */
  readonly vocabulary: { readonly tokens: string[]; readonly merges: string[] };
  /** Bytes of weights read from the cache rather than fetched. */
  readonly cachedBytes: number;
  /** Whether the fetched weights are kept in the cache. */
  readonly cache: boolean;
}

/** An error as it crosses: its class's name and its message. */
export interface WireError {
  readonly name: string;
  readonly message: string;
}

/** How busy the engine's scheduler is (`Model.slotsBusy` and `Model.waiting`). */
export interface EngineLoad {
  readonly slotsBusy: number;
  readonly waiting: number;
}

/** Worker → page; once a model is loaded, each reply says how busy the engine is. */
export type EngineReply =
  & (
    | ({ readonly type: "progress" } & ReadProgress)
    | { readonly type: "loaded"; readonly info: EngineInfo }
    | { readonly type: "failed"; readonly error: WireError }
    | { readonly type: "result"; readonly id: number; readonly value: unknown }
    | { readonly type: "token"; readonly id: number; readonly value: GenerationStep | number[] }
    | { readonly type: "done"; readonly id: number }
    | { readonly type: "error"; readonly id: number; readonly error: WireError }
  )
  & { readonly load?: EngineLoad };

/** Results of the calls that answer once. */
export interface EngineResults {
  readonly logits: Float32Array;
  readonly promptLogprobs: StepLogprobs[];
  readonly forget: undefined;
  readonly kept: number;
}

/** `e` as it crosses to the page. */
export function toWire(e: unknown): WireError {
  if (e instanceof Error) return { name: e.name, message: e.message };
  return { name: "Error", message: String(e) };
}

/** The errors that keep their class when they cross. */
const CLASSES: Record<string, new (message: string) => Error> = {
  ModelFileError,
  BackendError,
  DownloadError,
  RangeError,
  TypeError,
};

/** The error `wire` describes, of its own class where it is one of the library's. */
export function fromWire(wire: WireError): Error {
  if (wire.name === "AbortError") return new DOMException(wire.message, "AbortError");
  const Class = CLASSES[wire.name] ?? Error;
  return new Class(wire.message);
}
