/**
 * Finds and opens a model folder in either format, with nothing converted:
 * - OpenAI's, as `download_model.py` fetches it: `hparams.json`, `checkpoint`,
 *   `model.ckpt.index` + `model.ckpt.data-00000-of-00001`, `encoder.json`, `vocab.bpe`;
 * - Hugging Face's: `config.json`, `model.safetensors`, `vocab.json`, `merges.txt`.
 *
 * The folder is a path on disk, an `http:` or `https:` URL, or any `FileSource`.
 */
import { openSafetensors } from "../io/safetensors.ts";
import type { TensorSource } from "../io/tensor_source.ts";
import { checkpointPrefix, openTfBundle } from "../io/tf_bundle.ts";
import { type FileSource, openOrThrow } from "../io/file_source.ts";
import { httpFiles } from "../io/http_files.ts";
import { isLocalFolder, localFiles } from "../io/local_files.ts";
import { ModelFileError } from "../errors.ts";
import { type HParams, validateHParams } from "./hparams.ts";
import { hfNames, type NameMap, tfNames } from "./tensor_names.ts";

/** An open model folder: its shape and its weights, and how their names map. */
export interface ModelFiles extends Disposable {
  /** The folder's path or URL, for messages. */
  readonly dir: string;
  /** Where its files come from: the tokenizer reads its files from here too. */
  readonly files: FileSource;
  readonly format: "tensorflow" | "safetensors";
  readonly hparams: HParams;
  readonly source: TensorSource;
  readonly names: NameMap;
}

/** Where a model is: a folder on disk, the URL of a folder, or a `FileSource`. */
export type ModelLocation = string | URL | FileSource;

/**
 * The files of the model at `location`: a URL (or a string starting `http:`, `https:` or
 * `blob:`) is read with `fetch`, any other string is a folder on disk.
 */
export function modelFileSource(location: ModelLocation): FileSource {
  if (location instanceof URL) return httpFiles(location);
  if (typeof location !== "string") return location;
  return URL_PATTERN.test(location) ? httpFiles(location) : localFiles(location);
}

/** A string that names a URL rather than a path. */
const URL_PATTERN = /^(https?|blob):/i;

/** Opens the model at `location`, checking that its hyperparameters are complete and sound. */
export async function openModelFiles(location: ModelLocation): Promise<ModelFiles> {
  const files = modelFileSource(location);
  const dir = files.path;
  if (typeof location === "string" && !URL_PATTERN.test(location)) {
    if (!(await isLocalFolder(location))) {
      throw new ModelFileError(`Cannot find the model folder "${dir}" (${downloadHint(dir)})`);
    }
  }
  const hparamsText = await files.readText("hparams.json");
  if (hparamsText !== undefined) {
    const hparams = parseHParams(files.pathOf("hparams.json"), hparamsText, (v) => v);
    const source = await openTfBundle(await checkpointPrefix(files), files);
    return modelFiles(files, "tensorflow", hparams, source, tfNames);
  }
  const configText = await files.readText("config.json");
  if (configText !== undefined) {
    const hparams = parseHParams(files.pathOf("config.json"), configText, (c) => ({
      n_vocab: c.vocab_size,
      n_ctx: c.n_positions ?? c.n_ctx,
      n_embd: c.n_embd,
      n_head: c.n_head,
      n_layer: c.n_layer,
    }));
    const source = await openSafetensors(
      await openOrThrow(files, "model.safetensors", "a safetensors file"),
    );
    const prefix = source.tensors.has("transformer.wte.weight") ? "transformer." : "";
    return modelFiles(files, "safetensors", hparams, source, hfNames(prefix));
  }
  throw new ModelFileError(
    `No GPT-2 model in "${dir}": expected hparams.json and model.ckpt.* (OpenAI's files) or ` +
      `config.json and model.safetensors (Hugging Face's) (${downloadHint(dir)})`,
  );
}

function modelFiles(
  files: FileSource,
  format: ModelFiles["format"],
  hparams: HParams,
  source: TensorSource,
  names: NameMap,
): ModelFiles {
  return {
    dir: files.path,
    files,
    format,
    hparams,
    source,
    names,
    [Symbol.dispose]: () => source[Symbol.dispose](),
  };
}

/** The download command for a folder named like a released size, else a general hint. */
function downloadHint(dir: string): string {
  const size = dir.replace(/\/+$/, "").split("/").pop() ?? "";
  return /^(124|355|774|1558)M$/.test(size)
    ? `download it with: deno task download ${size}`
    : "download a model with: deno task download 124M";
}

function parseHParams(
  path: string,
  text: string,
  pick: (json: Record<string, number | undefined>) => unknown,
): HParams {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ModelFileError(`Cannot read "${path}": not valid JSON (${(e as Error).message})`);
  }
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw new ModelFileError(`Cannot read "${path}": expected a JSON object`);
  }
  try {
    return validateHParams(pick(json as Record<string, number>), `"${path}"`);
  } catch (e) {
    if (e instanceof RangeError) throw new ModelFileError(`Cannot use ${e.message}`);
    throw e;
  }
}
