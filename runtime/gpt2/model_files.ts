/**
 * Finds and opens a model in any of three formats, with nothing converted on disk:
 * - OpenAI's folder, as `download_model.py` fetches it: `hparams.json`, `checkpoint`,
 *   `model.ckpt.index` + `model.ckpt.data-00000-of-00001`, `encoder.json`, `vocab.bpe`;
 * - Hugging Face's folder: `config.json`, `model.safetensors`, `vocab.json`, `merges.txt`;
 * - a GGUF file of architecture `gpt2` (llama.cpp's), or a folder holding one, whose
 *   metadata carries the hyperparameters and the tokenizer.
 *
 * The model is a path on disk, an `http:` or `https:` URL, or any `FileSource` (files a
 * page's user picked, say). Every file is read through the `FileSource`. A folder is
 * recognised by its listing where it has one; a folder over HTTP cannot be listed, so
 * there a GGUF model's URL names the `.gguf` file itself.
 */
import { type GgufFile, type GgufValue, openGguf } from "../io/gguf.ts";
import { openSafetensors } from "../io/safetensors.ts";
import type { TensorSource } from "../io/tensor_source.ts";
import { type Float32Convertible, TYPE_LAYOUTS } from "../io/tensor_types.ts";
import { checkpointPrefix, openTfBundle } from "../io/tf_bundle.ts";
import { type FileSource, openOrThrow, type SourceFile } from "../io/file_source.ts";
import { httpFiles, type HttpFilesOptions } from "../io/http_files.ts";
import { localFiles, splitPath } from "../io/local_files.ts";
import { ModelFileError } from "../errors.ts";
import { Tokenizer } from "../tokenizer/tokenizer.ts";
import { type HParams, validateHParams } from "./hparams.ts";
import { ggufNames, gpt2Tensors, hfNames, type NameMap, tfNames } from "./tensor_names.ts";
import { ggufWeightTypes } from "./gguf_types.ts";
import type { WeightType } from "../backend/backend.ts";

/** An open model: its shape, its weights and how their names map, and its tokenizer. */
export interface ModelFiles extends Disposable {
  /** The folder or `.gguf` file opened, as a path or URL, for messages. */
  readonly dir: string;
  readonly format: "tensorflow" | "safetensors" | "gguf";
  readonly hparams: HParams;
  readonly source: TensorSource;
  readonly names: NameMap;
  /**
   * What loading does with stored block types that the backend does not keep as they are
   * (`kept`, its `Backend.blockType`), as one line for a tool's stderr
   * (`token_embd, blk.*: Q4_1 converted to f32 while loading`); `undefined` when every
   * matrix is float32, float16, bfloat16 or of the kept type.
   */
  conversion(kept?: string): string | undefined;
  /**
   * The weight types that dtype `"auto"` tries, in order, when the format says (a GGUF
   * file: its own type first, `ggufWeightTypes`); absent: the backend's usual order.
   */
  readonly weightTypes?: readonly WeightType[];
  /** Reads the tokenizer: the folder's tokenizer files, or the GGUF file's metadata. */
  tokenizer(): Promise<Tokenizer>;
}

/** Where a model is: a folder or `.gguf` file on disk, the URL of either, or a `FileSource`. */
export type ModelLocation = string | URL | FileSource;

/** A string that names a URL rather than a path. */
const URL_PATTERN = /^(https?|blob):/i;

/** A path or URL path that names a GGUF file rather than a folder. */
const GGUF_NAME = /\.gguf$/i;

/**
 * The files of the model at `location`: a URL (or a string starting `http:`, `https:` or
 * `blob:`) is read with `fetch` (with `http`'s headers and cache), any other string is on
 * disk. A location that names a `.gguf` file is its folder, listed as holding that file
 * alone, so that {@linkcode openModelFiles} finds it there as in a folder of one.
 */
export function modelFileSource(location: ModelLocation, http: HttpFilesOptions = {}): FileSource {
  if (typeof location !== "string" && !(location instanceof URL)) return location;
  if (location instanceof URL || URL_PATTERN.test(location)) {
    const url = new URL(location);
    if (!GGUF_NAME.test(url.pathname)) return httpFiles(url, http);
    const name = decodeURIComponent(url.pathname.slice(url.pathname.lastIndexOf("/") + 1));
    return holdingOnly(httpFiles(new URL(".", url), http), name);
  }
  if (!GGUF_NAME.test(location)) return localFiles(location);
  const { files, name } = splitPath(location);
  return holdingOnly(files, name);
}

/** `files`, listed as holding the file `name` alone. */
function holdingOnly(files: FileSource, name: string): FileSource {
  return {
    path: files.pathOf(name),
    pathOf: (n) => files.pathOf(n),
    open: (n) => files.open(n),
    readText: (n) => files.readText(n),
    list: () => Promise.resolve([name]),
  };
}

/**
 * Opens the model at `location`, checking that its hyperparameters are complete and sound.
 * A folder holds OpenAI's files (`hparams.json`), Hugging Face's (`config.json`) or exactly
 * one `.gguf` file; where it cannot be listed (HTTP), only the first two are found.
 */
export async function openModelFiles(location: ModelLocation): Promise<ModelFiles> {
  if (typeof location === "string" && !URL_PATTERN.test(location)) await checkLocal(location);
  const files = modelFileSource(location);
  const dir = files.path;
  const listed = await files.list();
  /** The text of `name`; a folder that lists its files is not asked for one it lacks. */
  const text = (name: string) =>
    listed !== undefined && !listed.includes(name)
      ? Promise.resolve(undefined)
      : files.readText(name);
  const hparamsText = await text("hparams.json");
  if (hparamsText !== undefined) {
    const hparams = parseHParams(files.pathOf("hparams.json"), hparamsText, (v) => v);
    const source = await openTfBundle(await checkpointPrefix(files), files);
    return folderFiles(files, "tensorflow", hparams, source, tfNames);
  }
  const configText = await text("config.json");
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
    return folderFiles(files, "safetensors", hparams, source, hfNames(prefix));
  }
  const ggufs = (listed ?? []).filter((name) => GGUF_NAME.test(name)).sort();
  if (ggufs.length === 1) {
    return await openGgufModel(await openOrThrow(files, ggufs[0], "a GGUF file"));
  }
  if (ggufs.length > 1) {
    throw new ModelFileError(
      `"${dir}" holds ${ggufs.length} GGUF files (${ggufs.join(", ")}): name the one to use, ` +
        `e.g. "${files.pathOf(ggufs[0])}"`,
    );
  }
  const unlisted = listed === undefined
    ? "; over HTTP a GGUF model's URL must name its .gguf file"
    : "";
  throw new ModelFileError(
    `No GPT-2 model in "${dir}": expected hparams.json and model.ckpt.* (OpenAI's files), ` +
      `config.json and model.safetensors (Hugging Face's) or a .gguf file (llama.cpp's)` +
      `${unlisted} (${downloadHint(dir)})`,
  );
}

/** Refuses a path on disk that is neither a folder nor a `.gguf` file, saying what to do. */
async function checkLocal(path: string): Promise<void> {
  let stat: Deno.FileInfo;
  try {
    stat = await Deno.stat(path);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory)) throw e;
    throw new ModelFileError(`Cannot find the model folder "${path}" (${downloadHint(path)})`);
  }
  if (stat.isFile && !GGUF_NAME.test(path)) {
    throw new ModelFileError(
      `Cannot use "${path}": it is a file, expected a model folder or a .gguf file`,
    );
  }
}

function folderFiles(
  files: FileSource,
  format: ModelFiles["format"],
  hparams: HParams,
  source: TensorSource,
  names: NameMap,
): ModelFiles {
  return {
    dir: files.path,
    format,
    hparams,
    source,
    names,
    conversion: () => undefined,
    tokenizer: () => Tokenizer.load(files),
    [Symbol.dispose]: () => source[Symbol.dispose](),
  };
}

/** The layer-norm epsilon of every GPT-2, the one the backends' layer norm uses. */
const LAYER_NORM_EPSILON = 1e-5;

/**
 * Opens a GGUF file of architecture `gpt2`: hyperparameters from `gpt2.*`, n_vocab from
 * the token list, and an output head of its own when `output.weight` is there and differs
 * from `token_embd.weight`.
 */
async function openGgufModel(gguf: SourceFile): Promise<ModelFiles> {
  const path = gguf.path;
  const file = await openGguf(gguf);
  try {
    const fail = (detail: string) => new ModelFileError(`Cannot use "${path}": ${detail}`);
    const meta = file.metadata;
    const architecture = meta.get("general.architecture");
    if (architecture !== "gpt2") {
      throw fail(
        `its general.architecture is ${describe(architecture)}, expected "gpt2" (this ` +
          `runtime runs GPT-2 only)`,
      );
    }
    const tokenizerModel = meta.get("tokenizer.ggml.model");
    if (tokenizerModel !== "gpt2") {
      throw fail(
        `its tokenizer.ggml.model is ${describe(tokenizerModel)}, expected "gpt2" (GPT-2's ` +
          `byte-level BPE)`,
      );
    }
    const tokens = stringArray(meta, "tokenizer.ggml.tokens", fail);
    const merges = stringArray(meta, "tokenizer.ggml.merges", fail);
    const integer = (key: string) => {
      const v = meta.get(key);
      if (v === undefined) throw fail(`its metadata lacks "${key}"`);
      if (typeof v === "bigint" && v <= BigInt(Number.MAX_SAFE_INTEGER)) return Number(v);
      if (typeof v === "number" && Number.isInteger(v)) return v;
      throw fail(`its "${key}" is ${describe(v)}, expected an integer`);
    };
    const shape = validateHParams({
      n_vocab: tokens.length,
      n_ctx: integer("gpt2.context_length"),
      n_embd: integer("gpt2.embedding_length"),
      n_head: integer("gpt2.attention.head_count"),
      n_layer: integer("gpt2.block_count"),
    }, `"${path}"`);
    const hparams = await separateHead(file) ? { ...shape, untied_head: true } : shape;
    if (meta.has("gpt2.feed_forward_length")) {
      const ff = integer("gpt2.feed_forward_length");
      if (ff !== 4 * hparams.n_embd) {
        throw fail(
          `its gpt2.feed_forward_length is ${ff}; GPT-2's MLP is 4 × n_embd = ${
            4 * hparams.n_embd
          }`,
        );
      }
    }
    const epsilon = meta.get("gpt2.attention.layer_norm_epsilon");
    if (epsilon === undefined) throw fail(`its metadata lacks "gpt2.attention.layer_norm_epsilon"`);
    // The file stores it as float32: compare with GPT-2's 1e-5 rounded the same way.
    if (typeof epsilon !== "number" || Math.fround(epsilon) !== Math.fround(LAYER_NORM_EPSILON)) {
      throw fail(
        `its gpt2.attention.layer_norm_epsilon is ${describe(epsilon)}; this runtime's ` +
          `layer norm uses GPT-2's ${LAYER_NORM_EPSILON}`,
      );
    }
    return {
      dir: path,
      format: "gguf",
      hparams,
      source: file,
      names: ggufNames,
      conversion: (kept) => conversionLine(file, hparams, kept),
      weightTypes: ggufWeightTypes(matrixTypes(file, hparams)),
      tokenizer: () => Promise.resolve(ggufTokenizer(path, tokens, merges)),
      [Symbol.dispose]: () => file[Symbol.dispose](),
    };
  } catch (e) {
    file[Symbol.dispose]();
    if (e instanceof RangeError) throw new ModelFileError(`Cannot use ${e.message}`);
    throw e;
  }
}

/** The string array at `key`, or a ModelFileError saying what it is instead. */
function stringArray(
  meta: ReadonlyMap<string, GgufValue>,
  key: string,
  fail: (detail: string) => ModelFileError,
): string[] {
  const v = meta.get(key);
  if (v === undefined) throw fail(`its metadata lacks "${key}"`);
  if (!Array.isArray(v) || !v.every((s) => typeof s === "string")) {
    throw fail(`its "${key}" is ${describe(v)}, expected an array of strings`);
  }
  return v as string[];
}

/**
 * Whether the file's output head is a matrix of its own. GPT-2 ties its head to the token
 * embedding, and llama.cpp's converter writes no `output.weight` for it; older converters
 * wrote a copy, which is still tied: its bytes are compared a MiB at a time.
 */
async function separateHead(file: GgufFile): Promise<boolean> {
  const head = file.tensors.get("output.weight");
  const embedding = file.tensors.get("token_embd.weight");
  if (head === undefined || embedding === undefined) return false; // the loader names a missing one
  if (head.dtype !== embedding.dtype || head.byteLength !== embedding.byteLength) return true;
  const chunk = 1 << 20;
  const a = new Uint8Array(Math.min(chunk, head.byteLength));
  const b = new Uint8Array(a.length);
  for (let offset = 0; offset < head.byteLength; offset += chunk) {
    const n = Math.min(chunk, head.byteLength - offset);
    await Promise.all([
      file.readPart(head.name, offset, a.subarray(0, n)),
      file.readPart(embedding.name, offset, b.subarray(0, n)),
    ]);
    for (let i = 0; i < n; i++) if (a[i] !== b[i]) return true;
  }
  return false;
}

/** The stored types of the GPT-2 matrices (Conv1D weights, token embedding) in `file`. */
function matrixTypes(file: GgufFile, hp: HParams): Float32Convertible[] {
  return gpt2Tensors(hp).filter((spec) => spec.role !== "plain").flatMap((spec) => {
    const info = file.tensors.get(ggufNames(spec.name, spec.shape).name);
    return info === undefined ? [] : [info.dtype];
  });
}

/**
 * One line naming the GPT-2 tensors of a quantized type other than `kept`, which load as
 * float32 (the backend then stores them in its own weight type), grouped by type: blocks
 * as `blk.*`.
 */
function conversionLine(file: GgufFile, hp: HParams, kept?: string): string | undefined {
  const groups = new Map<string, Set<string>>();
  for (const spec of gpt2Tensors(hp)) {
    const info = file.tensors.get(ggufNames(spec.name, spec.shape).name);
    if (info === undefined || TYPE_LAYOUTS[info.dtype].blockSize === 1) continue;
    if (info.dtype === kept && spec.role !== "plain") continue;
    const group = info.name.startsWith("blk.") ? "blk.*" : info.name.replace(/\.weight$/, "");
    const set = groups.get(info.ggmlType) ?? new Set<string>();
    groups.set(info.ggmlType, set.add(group));
  }
  if (groups.size === 0) return undefined;
  return [...groups].map(([type, names]) =>
    `${[...names].join(", ")}: ${type} converted to f32 while loading`
  ).join("; ");
}

/** GPT-2's tokenizer from a GGUF file's token list and merges. */
function ggufTokenizer(path: string, tokens: readonly string[], merges: readonly string[]) {
  const encoder = new Map<string, number>();
  for (const [id, token] of tokens.entries()) {
    const other = encoder.get(token);
    if (other !== undefined) {
      throw new ModelFileError(
        `Cannot use the tokenizer of "${path}": tokens ${other} and ${id} are both ` +
          `${JSON.stringify(token)}`,
      );
    }
    encoder.set(token, id);
  }
  try {
    return new Tokenizer(encoder, merges);
  } catch (e) {
    if (!(e instanceof ModelFileError)) throw e;
    const problem = e.message.replace(/^Invalid tokenizer data: /, "");
    throw new ModelFileError(`Cannot use the tokenizer of "${path}": ${problem}`);
  }
}

/** A metadata value, shortened for messages. */
function describe(v: GgufValue | undefined): string {
  if (v === undefined) return "missing";
  if (Array.isArray(v)) return `an array of ${v.length}`;
  const text = typeof v === "string" ? JSON.stringify(v) : String(v);
  return text.length > 40 ? `${text.slice(0, 40)}...` : text;
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
