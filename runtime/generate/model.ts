/**
 * A loaded GPT-2: weights in WebAssembly memory, its tokenizer, and generation on top of
 * the forward pass, the way OpenAI's `sample_sequence` runs it: one pass over the prompt,
 * then one token per pass with the KV cache. Concurrent generations share the decoding
 * steps (continuous batching, runtime/scheduler.ts): each has a KV-cache slot of its own.
 */
import { yieldToEventLoop } from "./event_loop.ts";
import { BACKEND_NAMES, type BackendName, backendTargets } from "../backend/create.ts";
import { ModelFileError } from "../errors.ts";
import { Gpt2 } from "../gpt2/gpt2.ts";
import type { HParams } from "../gpt2/hparams.ts";
import { type ModelLocation, openModelFiles } from "../gpt2/model_files.ts";
import { Sampler, type SamplerOptions } from "./sampler.ts";
import { WEIGHT_TYPES, type WeightType } from "../backend/backend.ts";
import { checkContext, checkGeneration, checkPrompt } from "./prompt_check.ts";
import { type GenerationStep, Scheduler } from "./scheduler.ts";
import { place } from "./placement.ts";
import { type StepLogprobs, stepLogprobs } from "./logprobs.ts";
import type { Tokenizer } from "../tokenizer/tokenizer.ts";
import { decodeStream } from "./text.ts";

/** Options of {@linkcode loadModel}. */
export interface LoadOptions {
  /**
   * The backend that runs the model (default `"wasm"`, WebAssembly SIMD on worker
   * threads; `"auto"`: WebGPU on a hardware GPU, else wasm); an unknown name is a
   * `RangeError`.
   */
  backend?: BackendName;
  /**
   * How the backend stores the model's matrices: `"f32"`, `"f16"`, `"q8"` (ggml's Q8_0: int8
   * in blocks of 32 with a float16 scale each; wasm only), `"q4"` (ggml's Q4_0, 4 bits in blocks of 32 with
   * a float16 scale each; wasm only; faster, and less accurate), or `"auto"` (the
   * default): float32 when the model, its KV cache and activations fit the backend's
   * memory, else float16, else q8 (never q4), decided from the backend's estimate before
   * anything is allocated; for a GGUF file, the file's own type first (F32 f32, F16 and
   * BF16 f16, Q8_0 q8, Q4_0 q4, any other type q8). `model.dtype` says which was used; an
   * unknown name is a `RangeError`.
   */
  dtype?: WeightType | "auto";
  /** Sequences decoded side by side by `generateBatch` (default 1). */
  batch?: number;
  /**
   * Generations that decode at once, each in a KV-cache slot of its own; more wait for a
   * slot (default 4, or as many as the backend's memory holds if fewer).
   */
  slots?: number;
  /** Threads that run the kernels (default: one per logical CPU); results do not depend on it. */
  threads?: number;
}

/** Options of {@linkcode Model.generate} and its kin. */
export interface GenerateOptions extends SamplerOptions {
  /** Tokens to generate (default n_ctx / 2, as the original). */
  length?: number;
  /** Stop after a sequence samples `<|endoftext|>` (default false, as the original). */
  stopAtEndOfText?: boolean;
  /** Aborting stops generation between two tokens; the generator then throws the reason. */
  signal?: AbortSignal;
  /**
   * Reuse the longest prefix of the prompt that a free KV-cache slot still holds from an
   * earlier generation, running only the rest (default true; the tokens are the same).
   */
  cachePrompt?: boolean;
}

/** Options of {@linkcode Model.generateSteps}: those of `generate`, and what to report per token. */
export interface GenerateStepsOptions extends GenerateOptions {
  /**
   * Report each token's log-probability and those of the `logprobs` most likely tokens
   * (0 to 5, as OpenAI's completions API); absent: no log-probabilities.
   */
  logprobs?: number;
}

/**
 * Loads the model at `location`: OpenAI's TensorFlow checkpoint folder, Hugging Face's, or
 * a GGUF file of architecture `gpt2` (or a folder holding one). `location` is a path on
 * disk, an HTTP URL (read with `Range` requests; a GGUF model's URL names the `.gguf`
 * file, since a folder cannot be listed over HTTP), or any `FileSource`.
 */
export async function loadModel(
  location: ModelLocation,
  options: LoadOptions = {},
): Promise<Model> {
  checkLoadOptions(options);
  using files = await openModelFiles(location);
  const gpt2 = await createGpt2(files.hparams, { ...options, autoTypes: files.weightTypes });
  // The tokenizer loads while the weights wait on the disk.
  const [tokenizer, weights] = await Promise.allSettled([
    files.tokenizer(),
    gpt2.load(files.source, files.names),
  ]);
  try {
    if (tokenizer.status === "rejected") throw tokenizer.reason;
    if (weights.status === "rejected") throw weights.reason;
    if (tokenizer.value.vocabSize !== files.hparams.n_vocab) {
      throw new ModelFileError(
        `The tokenizer in "${files.dir}" has ${tokenizer.value.vocabSize} tokens, but the model's n_vocab is ${files.hparams.n_vocab}`,
      );
    }
  } catch (e) {
    gpt2[Symbol.dispose]();
    throw e;
  }
  const conversion = files.conversion(gpt2.backend.blockType);
  return new LoadedModel(gpt2, tokenizer.value, options.batch, conversion);
}

/** Prompt positions per pass of `promptLogprobs`. */
const PROMPT_CHUNK = 64;

/** The values `LoadOptions.dtype` takes. */
export const DTYPE_CHOICES: readonly (WeightType | "auto")[] = [...WEIGHT_TYPES, "auto"];

/**
 * Checks the names and counts in `options`, the one place they are checked: what
 * `loadModel` does first, and what a tool can call to check its flags before it reads a
 * model.
 * @throws {RangeError} naming the option, the value and what it takes
 */
export function checkLoadOptions(options: LoadOptions): void {
  const { backend, dtype } = options;
  if (backend !== undefined && !(BACKEND_NAMES as readonly unknown[]).includes(backend)) {
    throw new RangeError(
      `Unknown backend ${JSON.stringify(backend)}: choose one of ${BACKEND_NAMES.join(", ")}`,
    );
  }
  if (dtype !== undefined && !(DTYPE_CHOICES as readonly unknown[]).includes(dtype)) {
    throw new RangeError(
      `Unknown dtype ${JSON.stringify(dtype)}: choose one of ${DTYPE_CHOICES.join(", ")}`,
    );
  }
  for (const key of ["batch", "slots", "threads"] as const) {
    const value = options[key];
    if (value !== undefined && !(Number.isInteger(value) && value >= 1)) {
      throw new RangeError(`${key} must be a positive integer, got ${value}`);
    }
  }
}

/** Options of {@linkcode createGpt2}: `loadModel`'s, and the most tokens a pass takes. */
export interface CreateOptions extends LoadOptions {
  /** The most new tokens per sequence in one pass (default min(n_ctx, 256)). */
  chunk?: number;
  /**
   * The weight types dtype `"auto"` tries, in order (default `AUTO_WEIGHT_TYPES`; a GGUF
   * file's own order, from runtime/gpt2/gguf_types.ts).
   */
  autoTypes?: readonly WeightType[];
}

/**
 * A `Gpt2` of shape `hp` on the backend `options.backend` names, created once: its weight
 * type (with `"auto"`, the most faithful that fits) and slots (by default DEFAULT_SLOTS,
 * halved while they do not fit; `generateBatch` needs `batch` of them) are decided first
 * from the backend's estimate of the model's memory (placement.ts). A type that fits with
 * fewer slots is preferred to a less faithful one.
 * @throws {RangeError} for an unknown backend or dtype, or a count that is not positive
 * @throws {BackendError} when the model fits the backend in no way asked for
 */
export async function createGpt2(hp: HParams, options: CreateOptions = {}): Promise<Gpt2> {
  checkLoadOptions(options);
  const targets = await backendTargets(options.backend ?? "wasm");
  const { target, weightType, plan } = await place(targets, hp, options);
  const backend = await target.create({ threads: options.threads, weightType });
  try {
    return Gpt2.create(backend, hp, { slots: plan.slots, chunk: plan.chunk });
  } catch (e) {
    backend[Symbol.dispose]();
    throw e;
  }
}

/** A GPT-2 model ready to run, from {@linkcode loadModel}. Dispose it to free its memory and threads. */
export interface Model extends Disposable {
  /** n_vocab, n_ctx, n_embd, n_head, n_layer. */
  readonly hparams: HParams;
  /** The backend that runs it (`"wasm"`, …). */
  readonly backend: string;
  /** How the backend stores its matrices (`"f32"`, `"f16"` or `"q8"`). */
  readonly dtype: WeightType;
  /** Sequences `generateBatch` decodes side by side. */
  readonly batch: number;
  /** Generations that decode at once; more wait for a slot. */
  readonly slots: number;
  /** Threads that run the kernels (1 for a backend that runs on a device). */
  readonly threads: number;
  /** Generations holding a slot now. */
  readonly slotsBusy: number;
  /** Generations (and `generateBatch` or `logits` calls) waiting for slots now. */
  readonly waiting: number;
  /** Its tokenizer, as `encoder.py`. */
  readonly tokenizer: Tokenizer;
  /**
   * What loading did with stored types the backend has no kernels for, as one line
   * (`token_embd, blk.*: Q4_0 converted to f32 while loading`); `undefined` if nothing.
   */
  readonly conversion?: string;
  /** The logits (n_vocab) after the last of `ids`, starting from an empty context. */
  logits(ids: readonly number[]): Promise<Float32Array>;
  /**
   * For each of `ids` after the first, its log-probability given those before it, and the
   * `top` (at most 5) most likely tokens' there: what OpenAI's `echo` with `logprobs`
   * reports for a prompt.
   */
  promptLogprobs(ids: readonly number[], top: number): Promise<StepLogprobs[]>;
  /**
   * Generates token ids after `ids`. Concurrent calls decode together, each in a slot of
   * its own (or waiting for one); each gets the tokens it gets alone. Returning early
   * frees the slot.
   */
  generate(ids: readonly number[], options?: GenerateOptions): AsyncGenerator<number>;
  /**
   * `generate`, yielding for each token what its step produced: the token, and with
   * `options.logprobs` its log-probability and the most likely tokens' (the log-softmax
   * of the model's logits, before temperature or any other sampling control).
   */
  generateSteps(
    ids: readonly number[],
    options?: GenerateStepsOptions,
  ): AsyncGenerator<GenerationStep>;
  /**
   * Generates `batch` sequences after the same `ids`, side by side: each step yields one
   * new token per sequence. With `stopAtEndOfText`, it ends once every sequence has
   * sampled `<|endoftext|>` (a finished sequence keeps yielding its tokens meanwhile).
   * It holds `batch` slots, and concurrent `generate` calls wait, until it ends.
   */
  generateBatch(ids: readonly number[], options?: GenerateOptions): AsyncGenerator<number[]>;
  /** Generates text after `prompt`, streamed as it decodes: never half a character. */
  generateText(prompt: string, options?: GenerateOptions): AsyncGenerator<string>;
}

class LoadedModel implements Model {
  readonly #scheduler: Scheduler;
  readonly #batch: number;

  constructor(
    readonly gpt2: Gpt2,
    readonly tokenizer: Tokenizer,
    batch = 1,
    readonly conversion?: string,
  ) {
    this.#scheduler = new Scheduler(gpt2, {
      endOfText: tokenizer.endOfText,
      // A cached prefix stands for the prompt only where it gives the same bits.
      promptReuse: gpt2.backend.splitInvariant,
    });
    this.#batch = batch;
  }

  get hparams(): HParams {
    return this.gpt2.hparams;
  }

  get backend(): string {
    return this.gpt2.backend.name;
  }

  get dtype(): WeightType {
    return this.gpt2.backend.weightType;
  }

  get batch(): number {
    return this.#batch;
  }

  get slots(): number {
    return this.gpt2.slots;
  }

  get threads(): number {
    return (this.gpt2.backend as { readonly threads?: number }).threads ?? 1;
  }

  get slotsBusy(): number {
    return this.#scheduler.active;
  }

  get waiting(): number {
    return this.#scheduler.waiting;
  }

  async logits(ids: readonly number[]): Promise<Float32Array> {
    checkPrompt(this.hparams, ids);
    checkContext(this.hparams, ids.length, 0);
    using lease = await this.#scheduler.lease(1);
    return await this.gpt2.forward([{ slot: lease.slots[0], tokens: ids }]);
  }

  async promptLogprobs(ids: readonly number[], top: number): Promise<StepLogprobs[]> {
    checkPrompt(this.hparams, ids);
    checkContext(this.hparams, ids.length, 0);
    const V = this.hparams.n_vocab;
    using lease = await this.#scheduler.lease(1);
    const slot = lease.slots[0];
    const out: StepLogprobs[] = [];
    // Row t of a pass holds the logits after token t, which predict token t + 1; passes of
    // PROMPT_CHUNK positions bound the logits held to PROMPT_CHUNK × n_vocab floats.
    for (let start = 0; start < ids.length - 1; start += PROMPT_CHUNK) {
      const tokens = ids.slice(start, Math.min(start + PROMPT_CHUNK, ids.length - 1));
      const logits = await this.gpt2.forward([{ slot, tokens }], { allPositions: true });
      tokens.forEach((_, t) => {
        out.push(stepLogprobs(logits.subarray(t * V, (t + 1) * V), ids[start + t + 1], top));
      });
    }
    return out;
  }

  async *generate(ids: readonly number[], options: GenerateOptions = {}): AsyncGenerator<number> {
    for await (const step of this.generateSteps(ids, options)) yield step.token;
  }

  generateSteps(
    ids: readonly number[],
    options: GenerateStepsOptions = {},
  ): AsyncGenerator<GenerationStep> {
    const length = options.length ?? Math.floor(this.hparams.n_ctx / 2);
    return this.#scheduler.generate(ids, { ...options, length });
  }

  async *generateBatch(
    ids: readonly number[],
    options: GenerateOptions = {},
  ): AsyncGenerator<number[]> {
    const { n_ctx } = this.hparams;
    const length = options.length ?? Math.floor(n_ctx / 2);
    checkGeneration(this.hparams, ids, length);
    const sampler = new Sampler(options, { prompt: ids, vocabSize: this.hparams.n_vocab });
    const eot = this.tokenizer.endOfText;
    const ended = new Array<boolean>(this.batch).fill(false);
    // The batch's slots, with no other generation stepping until it ends.
    using lease = await this.#scheduler.lease(this.batch, options.signal);
    const { slots } = lease;
    // One array for every step's logits: the sampler is done with them before the next.
    const out = new Float32Array(this.batch * this.hparams.n_vocab);
    let logits = await this.gpt2.forward(slots.map((slot) => ({ slot, tokens: ids })), { out });
    for (let i = 0; i < length; i++) {
      const next = sampler.sample(logits, this.batch);
      yield next;
      next.forEach((t, b) => ended[b] ||= t === eot);
      if (i === length - 1 || (options.stopAtEndOfText && ended.every(Boolean))) return;
      // Let timers and signal handlers run, so that `signal` can be aborted meanwhile.
      await yieldToEventLoop();
      options.signal?.throwIfAborted();
      logits = await this.gpt2.forward(slots.map((slot, b) => ({ slot, tokens: [next[b]] })), {
        out,
      });
    }
  }

  generateText(prompt: string, options: GenerateOptions = {}): AsyncGenerator<string> {
    const ids = this.generate(this.tokenizer.encode(prompt), options);
    return decodeStream(this.tokenizer, ids, options.stopAtEndOfText);
  }

  [Symbol.dispose](): void {
    this.gpt2[Symbol.dispose]();
  }
}
