/**
 * Finds and opens a model folder in either format, with nothing converted:
 * - OpenAI's, as `download_model.py` fetches it: `hparams.json`, `checkpoint`,
 *   `model.ckpt.index` + `model.ckpt.data-00000-of-00001`, `encoder.json`, `vocab.bpe`;
 * - Hugging Face's: `config.json`, `model.safetensors`, `vocab.json`, `merges.txt`.
 */
import { openSafetensors } from "../io/safetensors.ts";
import type { TensorSource } from "../io/tensor_source.ts";
import { openTfBundle, resolveCheckpointPrefix } from "../io/tf_bundle.ts";
import { ModelFileError } from "../errors.ts";
import { type HParams, validateHParams } from "./hparams.ts";
import { hfNames, type NameMap, tfNames } from "./tensor_names.ts";

/** An open model folder: its shape and its weights, and how their names map. */
export interface ModelFiles extends Disposable {
  readonly dir: string;
  readonly format: "tensorflow" | "safetensors";
  readonly hparams: HParams;
  readonly source: TensorSource;
  readonly names: NameMap;
}

/** Opens the model in `dir`, checking that its hyperparameters are complete and sound. */
export async function openModelFiles(dir: string): Promise<ModelFiles> {
  let entries: Set<string>;
  try {
    entries = new Set([...Deno.readDirSync(dir)].map((e) => e.name));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory)) throw e;
    throw new ModelFileError(`Cannot find the model folder "${dir}" (${downloadHint(dir)})`);
  }
  if (entries.has("hparams.json")) {
    const hparams = await readHParams(`${dir}/hparams.json`, (v) => v);
    const source = await openTfBundle(await resolveCheckpointPrefix(dir));
    return files(dir, "tensorflow", hparams, source, tfNames);
  }
  if (entries.has("config.json")) {
    const hparams = await readHParams(`${dir}/config.json`, (c) => ({
      n_vocab: c.vocab_size,
      n_ctx: c.n_positions ?? c.n_ctx,
      n_embd: c.n_embd,
      n_head: c.n_head,
      n_layer: c.n_layer,
    }));
    const source = await openSafetensors(`${dir}/model.safetensors`);
    const prefix = source.tensors.has("transformer.wte.weight") ? "transformer." : "";
    return files(dir, "safetensors", hparams, source, hfNames(prefix));
  }
  throw new ModelFileError(
    `No GPT-2 model in "${dir}": expected hparams.json and model.ckpt.* (OpenAI's files) or ` +
      `config.json and model.safetensors (Hugging Face's) (${downloadHint(dir)})`,
  );
}

function files(
  dir: string,
  format: ModelFiles["format"],
  hparams: HParams,
  source: TensorSource,
  names: NameMap,
): ModelFiles {
  return { dir, format, hparams, source, names, [Symbol.dispose]: () => source[Symbol.dispose]() };
}

/** The download command for a folder named like a released size, else a general hint. */
function downloadHint(dir: string): string {
  const size = dir.replace(/\/+$/, "").split("/").pop() ?? "";
  return /^(124|355|774|1558)M$/.test(size)
    ? `download it with: deno task download ${size}`
    : "download a model with: deno task download 124M";
}

async function readHParams(
  path: string,
  pick: (json: Record<string, number | undefined>) => unknown,
): Promise<HParams> {
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    throw new ModelFileError(`Cannot read "${path}": file not found`);
  }
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
