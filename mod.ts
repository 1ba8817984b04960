/**
 * GPT-2 in Deno: OpenAI's model run on WebAssembly SIMD kernels, from the checkpoint
 * `download_model.py` fetches, Hugging Face's `model.safetensors` or a GGUF file, on disk,
 * over HTTP or from any `FileSource`.
 *
 * @example Generate text from a model folder
 * ```ts
 * import { loadModel } from "./mod.ts";
 * import { randomWeights, writeModelFolder } from "./testing/random_model.ts";
 *
 * // A tiny random model stands in for models/124M here.
 * const dir = await Deno.makeTempDir();
 * const hparams = { n_vocab: 300, n_ctx: 64, n_embd: 32, n_head: 2, n_layer: 2 };
 * await writeModelFolder(dir, hparams, randomWeights(hparams));
 *
 * using model = await loadModel(dir, { backend: "wasm" });
 * model.hparams.n_ctx; // 64
 * if (model.backend !== "wasm") throw new Error("backend");
 * const ids = model.tokenizer.encode("Hello");
 * if (model.tokenizer.decode(ids) !== "Hello") throw new Error("round trip");
 * const logits = await model.logits(ids); // Float32Array(n_vocab), last position
 * if (logits.length !== 300) throw new Error("logits");
 *
 * const greedy: number[] = [];
 * for await (const id of model.generate(ids, { length: 5, temperature: 0 })) greedy.push(id);
 *
 * let text = "";
 * for await (const piece of model.generateText("Hello", { length: 8, topK: 40, seed: 1 })) {
 *   text += piece;
 * }
 * await Deno.remove(dir, { recursive: true });
 * ```
 *
 * @module
 */
export {
  type GenerateOptions,
  type GenerateStepsOptions,
  loadModel,
  type LoadOptions,
  type Model,
} from "./runtime/generate/model.ts";
export type { GenerationStep } from "./runtime/generate/scheduler.ts";
export { type ModelLocation } from "./runtime/gpt2/model_files.ts";
export {
  type FileSource,
  type ReadOptions,
  type ReadProgress,
  type SourceFile,
  withProgress,
} from "./runtime/io/file_source.ts";
export { localFiles } from "./runtime/io/local_files.ts";
export {
  type ByteCache,
  type CacheEntry,
  httpFiles,
  type HttpFilesOptions,
} from "./runtime/io/http_files.ts";
export { BACKEND_NAMES, type BackendName } from "./runtime/backend/create.ts";
export { WEIGHT_TYPES, type WeightType } from "./runtime/backend/backend.ts";
export { type StreamDecoder, Tokenizer } from "./runtime/tokenizer/tokenizer.ts";
export {
  Sampler,
  type SamplerContext,
  type SamplerOptions,
  type SamplingOptions,
} from "./runtime/generate/sampler.ts";
export {
  type ResolvedSampling,
  SAMPLING_CONTROLS,
  type SamplingControl,
  validateSampling,
} from "./runtime/generate/sampling_controls.ts";
export {
  MAX_TOP_LOGPROBS,
  type StepLogprobs,
  stepLogprobs,
  type TokenLogprob,
} from "./runtime/generate/logprobs.ts";
export { Rng } from "./runtime/generate/random.ts";
export { GPT2_SIZES, type HParams } from "./runtime/gpt2/hparams.ts";
export {
  type DownloadedFile,
  downloadModel,
  type DownloadOptions,
  type DownloadProgress,
  type DownloadResult,
  MODEL_FILES,
  MODEL_SIZES,
} from "./runtime/io/download.ts";
export { BackendError, DownloadError, ModelFileError } from "./runtime/errors.ts";
