/**
 * GPT-2 in a browser tab, with the API `loadModel` has in Deno: the same kernels, worker
 * pool, tokenizer and sampler, run in an engine worker so that the page never waits.
 * Weights stream over HTTP (or from files the user picked) into the worker's wasm memory,
 * and are kept in the origin-private file system so that a reload fetches none of them.
 *
 * Build it with `deno task bundle` (web/dist/gpt2.js and the files beside it). Threads need
 * a cross-origin isolated page, served with `Cross-Origin-Opener-Policy: same-origin` and
 * `Cross-Origin-Embedder-Policy: require-corp`; elsewhere the model runs on one thread.
 *
 * @example A page that loads a model and writes what it generates
 * ```ts ignore
 * import { loadModel } from "./dist/gpt2.js";
 *
 * const model = await loadModel("/models/124M/", {
 *   onProgress: ({ loaded, total }) => console.log(`${loaded} of ${total} bytes`),
 * });
 * for await (const text of model.generateText("Hello", { length: 40, topK: 40 })) {
 *   document.body.append(text);
 * }
 * ```
 *
 * @module
 */
import { assetUrl } from "../assets.ts";
import {
  checkLoadOptions,
  type GenerateOptions,
  type GenerateStepsOptions,
  type LoadOptions,
  type Model,
} from "../generate/model.ts";
import type { GenerationStep } from "../generate/scheduler.ts";
import type { HParams } from "../gpt2/hparams.ts";
import type { WeightType } from "../backend/backend.ts";
import type { StepLogprobs } from "../generate/logprobs.ts";
import type { ReadProgress } from "../io/file_source.ts";
import { Tokenizer } from "../tokenizer/tokenizer.ts";
import { decodeStream } from "../generate/text.ts";
import {
  type EngineInfo,
  type EngineLoad,
  type EngineLocation,
  type EngineReply,
  type EngineRequest,
  type EngineResults,
  fromWire,
} from "./protocol.ts";

export type { ReadProgress } from "../io/file_source.ts";
export { chatChoices } from "./chat.ts";

/** The most threads a tab's model runs on by default. */
export const MAX_THREADS = 8;

/** Options of the tab's {@linkcode loadModel}: Deno's, and what loading over HTTP adds. */
export interface TabLoadOptions extends LoadOptions {
  /** Called as the weights come in: bytes read, and the sizes of the files opened so far. */
  onProgress?: (progress: ReadProgress) => void;
  /**
   * Keep the fetched weights in the origin-private file system and read them from there
   * next time (default true; files the user picked are never kept).
   */
  cache?: boolean;
  /** Headers sent with every request for the model's files, e.g. `Authorization`. */
  headers?: Record<string, string>;
  /** Aborting stops the load, ends the engine worker and rejects with the reason. */
  signal?: AbortSignal;
}

/** What this page can give a model. */
export interface TabEnvironment {
  /** Whether the page is cross-origin isolated, so that threads can share memory. */
  readonly isolated: boolean;
  /** Threads a model gets by default: one per core up to MAX_THREADS, or 1 without isolation. */
  readonly threads: number;
  /** Whether the page has WebGPU (`navigator.gpu`); whether it gives an adapter is another matter. */
  readonly webgpu: boolean;
  /** Whether the page has an origin-private file system to keep weights in. */
  readonly opfs: boolean;
}

/** What this page can give a model: isolation, threads, WebGPU, storage. */
export function tabEnvironment(): TabEnvironment {
  const isolated = (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated === true;
  const nav = navigator as { gpu?: unknown; storage?: { getDirectory?: unknown } };
  return {
    isolated,
    threads: isolated ? Math.max(1, Math.min(navigator.hardwareConcurrency || 1, MAX_THREADS)) : 1,
    webgpu: nav.gpu !== undefined,
    opfs: typeof nav.storage?.getDirectory === "function",
  };
}

/** Where a tab's model comes from: a folder's or `.gguf` file's URL, or files the user picked. */
export type TabModelLocation = string | URL | Iterable<File>;

/**
 * Loads the model at `location` in an engine worker of its own: a URL relative to the page
 * (a folder of OpenAI's or Hugging Face's files, or a `.gguf` file, named as such since a
 * folder cannot be listed over HTTP), or the files the user picked (a folder's, or one
 * `.gguf` file).
 * @throws {ModelFileError} for a missing, truncated or corrupt file, as in Deno
 * @throws {RangeError} for an unknown backend or dtype, or a count that is not positive,
 *   before a worker starts (Deno's `checkLoadOptions`)
 * @throws {BackendError} for a model too large for the tab's memory, threads without
 *   isolation, or a backend the tab does not have
 */
export async function loadModel(
  location: TabModelLocation,
  options: TabLoadOptions = {},
): Promise<TabModel> {
  const { onProgress, cache = true, headers, signal, ...load } = options;
  checkLoadOptions(load);
  signal?.throwIfAborted();
  const where: EngineLocation = typeof location === "string" || location instanceof URL
    ? { url: new URL(location, globalThis.location?.href).href }
    : { files: [...location] };
  const engine = new Engine();
  const abort = () => engine.stop(signal!.reason);
  signal?.addEventListener("abort", abort, { once: true });
  try {
    const info = await engine.load({
      type: "load",
      location: where,
      options: { threads: tabEnvironment().threads, ...load },
      cache,
      headers,
    }, onProgress);
    // The engine's tokenizer, whichever files it came from (a folder's, a GGUF file's).
    const { tokens, merges } = info.vocabulary;
    const tokenizer = new Tokenizer(new Map(tokens.map((t, id) => [t, id])), merges);
    return new TabModel(engine, info, tokenizer);
  } catch (e) {
    engine.stop(e);
    throw e;
  } finally {
    signal?.removeEventListener("abort", abort);
  }
}

/**
 * Removes the weights kept for the model at `url` (every model's, without one) from the
 * origin-private file system; the next load fetches them again.
 */
export async function forgetModel(url?: string | URL): Promise<void> {
  const prefix = url === undefined ? "" : new URL(url, globalThis.location?.href).href;
  await oneCall("forget", prefix);
}

/** Bytes kept of the model at `url` (of every model, without one). */
export async function keptBytes(url?: string | URL): Promise<number> {
  const prefix = url === undefined ? "" : new URL(url, globalThis.location?.href).href;
  return await oneCall("kept", prefix);
}

/** Runs one cache call in an engine worker of its own (the OPFS opens files in workers only). */
async function oneCall<K extends "forget" | "kept">(
  type: K,
  prefix: string,
): Promise<EngineResults[K]> {
  const engine = new Engine();
  try {
    return await engine.call(type, { prefix });
  } finally {
    engine.stop(new Error("done"));
  }
}

/** A generation in flight: where its tokens go. */
interface Stream {
  push(value: GenerationStep | number[]): void;
  end(error?: Error): void;
}

/** The engine worker and the calls waiting for it. */
class Engine {
  readonly worker: Worker;
  #nextId = 1;
  readonly #calls = new Map<number, PromiseWithResolvers<unknown>>();
  readonly #streams = new Map<number, Stream>();
  #loading: PromiseWithResolvers<EngineInfo> | undefined;
  #onProgress: ((progress: ReadProgress) => void) | undefined;
  #stopped: Error | undefined;
  /** How busy the engine was at its last reply. */
  busy: EngineLoad = { slotsBusy: 0, waiting: 0 };

  constructor() {
    this.worker = new Worker(assetUrl("engineWorker"), { type: "module" });
    this.worker.onmessage = (e: MessageEvent<EngineReply>) => this.#receive(e.data);
    this.worker.onerror = (e: ErrorEvent) => {
      e.preventDefault();
      this.stop(new Error(`The engine worker failed: ${e.message || "it could not start"}`));
    };
  }

  load(
    request: Extract<EngineRequest, { type: "load" }>,
    onProgress?: (progress: ReadProgress) => void,
  ): Promise<EngineInfo> {
    this.#loading = Promise.withResolvers();
    this.#onProgress = onProgress;
    this.post(request);
    return this.#loading.promise;
  }

  /** Sends a call that answers once, and waits for its answer. */
  call<K extends keyof EngineResults>(
    type: K,
    args: Record<string, unknown>,
  ): Promise<EngineResults[K]> {
    const id = this.#nextId++;
    const result = Promise.withResolvers<unknown>();
    this.#calls.set(id, result);
    this.post({ type, id, ...args } as EngineRequest);
    return result.promise as Promise<EngineResults[K]>;
  }

  /** Starts a generation; its tokens go to `stream`. Returns its id. */
  stream(
    request: Omit<Extract<EngineRequest, { type: "generateSteps" | "generateBatch" }>, "id">,
    stream: Stream,
  ): number {
    const id = this.#nextId++;
    this.#streams.set(id, stream);
    this.post({ ...request, id } as EngineRequest);
    return id;
  }

  /** Stops generation `id` before its next token. */
  cancel(id: number): void {
    if (this.#streams.delete(id)) this.post({ type: "cancel", id });
  }

  post(request: EngineRequest): void {
    if (this.#stopped) throw this.#stopped;
    this.worker.postMessage(request);
  }

  /** Ends the worker; everything waiting rejects with `reason`. */
  stop(reason: unknown): void {
    if (this.#stopped) return;
    this.#stopped = reason instanceof Error ? reason : new Error(String(reason));
    this.worker.terminate();
    this.#loading?.reject(reason);
    for (const call of this.#calls.values()) call.reject(this.#stopped);
    for (const stream of this.#streams.values()) stream.end(this.#stopped);
    this.#calls.clear();
    this.#streams.clear();
  }

  #receive(reply: EngineReply): void {
    if (reply.load) this.busy = reply.load;
    switch (reply.type) {
      case "progress":
        this.#onProgress?.({ loaded: reply.loaded, total: reply.total });
        return;
      case "loaded":
        this.#loading?.resolve(reply.info);
        return;
      case "failed":
        this.#loading?.reject(fromWire(reply.error));
        return;
      case "result":
        this.#calls.get(reply.id)?.resolve(reply.value);
        this.#calls.delete(reply.id);
        return;
      case "token":
        this.#streams.get(reply.id)?.push(reply.value);
        return;
      case "done":
      case "error": {
        const error = reply.type === "error" ? fromWire(reply.error) : undefined;
        const call = this.#calls.get(reply.id);
        if (call && error) call.reject(error);
        this.#calls.delete(reply.id);
        this.#streams.get(reply.id)?.end(error);
        this.#streams.delete(reply.id);
        return;
      }
    }
  }
}

/**
 * A model loaded in a tab's engine worker: the Deno `Model`'s API, each call a message to
 * the worker. Dispose it to end the worker and free its memory.
 */
export class TabModel implements Model {
  readonly #engine: Engine;
  readonly #info: EngineInfo;

  /** Made by `loadModel`, over its engine worker and what loading reported. */
  constructor(engine: Engine, info: EngineInfo, readonly tokenizer: Tokenizer) {
    this.#engine = engine;
    this.#info = info;
  }

  /** n_vocab, n_ctx, n_embd, n_head, n_layer. */
  get hparams(): HParams {
    return this.#info.hparams;
  }
  /** The backend that runs it (`"wasm"` or `"webgpu"`). */
  get backend(): string {
    return this.#info.backend;
  }
  /** How the backend stores its matrices. */
  get dtype(): WeightType {
    return this.#info.dtype;
  }
  /** Sequences `generateBatch` decodes side by side. */
  get batch(): number {
    return this.#info.batch;
  }
  /** Generations that decode at once. */
  get slots(): number {
    return this.#info.slots;
  }
  /** Threads that run the kernels. */
  get threads(): number {
    return this.#info.threads;
  }
  /** Generations holding a slot, as of the engine's last reply (each token, each answer). */
  get slotsBusy(): number {
    return this.#engine.busy.slotsBusy;
  }
  /** Generations waiting for a slot, as of the engine's last reply. */
  get waiting(): number {
    return this.#engine.busy.waiting;
  }
  /** What loading converted for lack of kernels, as one line; `undefined` if nothing. */
  get conversion(): string | undefined {
    return this.#info.conversion;
  }
  /** Bytes of weights the load read from the browser's cache instead of fetching them. */
  get cachedBytes(): number {
    return this.#info.cachedBytes;
  }
  /** Whether the fetched weights are kept in the browser's cache. */
  get cached(): boolean {
    return this.#info.cache;
  }

  logits(ids: readonly number[]): Promise<Float32Array> {
    return this.#engine.call("logits", { ids: [...ids] });
  }

  promptLogprobs(ids: readonly number[], top: number): Promise<StepLogprobs[]> {
    return this.#engine.call("promptLogprobs", { ids: [...ids], top });
  }

  async *generate(ids: readonly number[], options: GenerateOptions = {}): AsyncGenerator<number> {
    for await (const step of this.generateSteps(ids, options)) yield step.token;
  }

  generateSteps(
    ids: readonly number[],
    options: GenerateStepsOptions = {},
  ): AsyncGenerator<GenerationStep> {
    return this.#stream<GenerationStep>("generateSteps", ids, options);
  }

  generateBatch(ids: readonly number[], options: GenerateOptions = {}): AsyncGenerator<number[]> {
    return this.#stream<number[]>("generateBatch", ids, options);
  }

  generateText(prompt: string, options: GenerateOptions = {}): AsyncGenerator<string> {
    const ids = this.generate(this.tokenizer.encode(prompt), options);
    return decodeStream(this.tokenizer, ids, options.stopAtEndOfText);
  }

  async *#stream<T extends GenerationStep | number[]>(
    type: "generateSteps" | "generateBatch",
    ids: readonly number[],
    options: GenerateStepsOptions,
  ): AsyncGenerator<T> {
    const { signal, ...wire } = options;
    signal?.throwIfAborted();
    const queue: T[] = [];
    let ended = false;
    let failure: Error | undefined;
    let wake: (() => void) | undefined;
    const id = this.#engine.stream({ type, ids: [...ids], options: wire }, {
      push: (value) => {
        queue.push(value as T);
        wake?.();
      },
      end: (error) => {
        ended = true;
        failure = error;
        wake?.();
      },
    });
    // An abort cancels the worker's generation, whose stream then says no more, and wakes
    // this generator to throw the abort's reason, as Deno's Model does, between two tokens.
    const onAbort = () => {
      this.#engine.cancel(id);
      wake?.();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    try {
      for (;;) {
        signal?.throwIfAborted();
        if (queue.length > 0) {
          yield queue.shift()!;
          continue;
        }
        if (ended) break;
        await new Promise<void>((resolve) => wake = resolve);
        wake = undefined;
      }
      if (failure) throw failure;
    } finally {
      signal?.removeEventListener("abort", onAbort);
      if (!ended) this.#engine.cancel(id);
    }
  }

  /** Ends the engine worker; calls and generations under way reject. */
  [Symbol.dispose](): void {
    this.#engine.stop(new Error("The model has been disposed"));
  }
}
