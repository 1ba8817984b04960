/**
 * Downloads a GPT-2 checkpoint as OpenAI published it: seven files per model size, fetched
 * from `<baseUrl>/models/<size>/<file>` into `<modelsDir>/<size>/`.
 *
 * Each file is written to `<file>.part` first and renamed only once every byte the server
 * announced has arrived, so a file under its final name is always complete. A file that is
 * already present with the size the server reports is skipped.
 *
 * @module
 */
import { join } from "node:path";
import { DownloadError, UsageError } from "./errors.ts";

/** The model sizes OpenAI published, smallest first. */
export const MODEL_SIZES = ["124M", "355M", "774M", "1558M"] as const;

/** One of {@linkcode MODEL_SIZES}. */
export type ModelSize = typeof MODEL_SIZES[number];

/** The files that make up one model, in the order they are downloaded. */
export const MODEL_FILES = [
  "checkpoint",
  "encoder.json",
  "hparams.json",
  "model.ckpt.data-00000-of-00001",
  "model.ckpt.index",
  "model.ckpt.meta",
  "vocab.bpe",
] as const;

/** Where OpenAI hosts the models; a file's URL is `<base>/models/<size>/<file>`. */
export const DEFAULT_BASE_URL = "https://openaipublic.blob.core.windows.net/gpt-2";

/** Suffix of the temporary name a file is written under until it is complete. */
export const PARTIAL_SUFFIX = ".part";

/** A snapshot of one file's download, passed to {@linkcode DownloadOptions.onProgress}. */
export interface DownloadProgress {
  /** The file's name, e.g. `"encoder.json"`. */
  file: string;
  /** Bytes received so far; never decreases for one file. */
  received: number;
  /** Bytes the server announced, or `undefined` if it sent no usable `content-length`. */
  total: number | undefined;
  /** Average rate since this file's request started; 0 before any time has passed. */
  bytesPerSecond: number;
  /**
   * `"downloading"` while bytes arrive (the first report has `received` 0), then exactly one
   * `"done"` once the file is in place, or a single `"skipped"` if it was already complete.
   */
  state: "downloading" | "done" | "skipped";
}

/** Options for {@linkcode downloadModel}. */
export interface DownloadOptions {
  /** Server and path prefix; files are fetched from `<baseUrl>/models/<size>/<file>`. */
  baseUrl?: string;
  /** Folder that holds one subfolder per model size; `"models"` by default. */
  modelsDir?: string;
  /** Called as each file starts, for every chunk received, and when it is done or skipped. */
  onProgress?: (progress: DownloadProgress) => void;
  /** Aborts the download; the partial file is removed and the promise rejects with the reason. */
  signal?: AbortSignal;
  /** The `fetch` to use; the global one by default. Tests may pass a stub. */
  fetch?: typeof fetch;
}

/** What happened to one file. */
export interface DownloadedFile {
  /** The file's name, e.g. `"encoder.json"`. */
  file: string;
  /** Where it now is, e.g. `"models/124M/encoder.json"`. */
  path: string;
  /** Its size in bytes. */
  bytes: number;
  /** Whether it was already complete and so not downloaded again. */
  skipped: boolean;
}

/** The result of {@linkcode downloadModel}. */
export interface DownloadResult {
  /** The folder the model is in, e.g. `"models/124M"`. */
  dir: string;
  /** One entry per file, in {@linkcode MODEL_FILES} order. */
  files: DownloadedFile[];
}

/**
 * Whether `size` names a published model.
 *
 * @example
 * ```ts
 * import { isModelSize } from "./download.ts";
 * import assert from "node:assert/strict";
 * assert.ok(isModelSize("124M"));
 * assert.ok(!isModelSize("117M"));
 * ```
 */
export function isModelSize(size: string): size is ModelSize {
  return (MODEL_SIZES as readonly string[]).includes(size);
}

/**
 * The URL of one model file.
 *
 * @example
 * ```ts
 * import { modelFileUrl } from "./download.ts";
 * import assert from "node:assert/strict";
 * assert.equal(
 *   modelFileUrl("https://example.com/gpt-2/", "124M", "vocab.bpe"),
 *   "https://example.com/gpt-2/models/124M/vocab.bpe",
 * );
 * ```
 */
export function modelFileUrl(baseUrl: string, size: string, file: string): string {
  return `${baseUrl.replace(/\/+$/, "")}/models/${size}/${file}`;
}

/**
 * Downloads the seven files of a GPT-2 model into `<modelsDir>/<size>/`, one after another,
 * skipping any already present with the size the server reports.
 *
 * @param size one of {@linkcode MODEL_SIZES}, e.g. `"124M"`
 * @throws {UsageError} if `size` is not a published model size
 * @throws {DownloadError} naming the file and URL if a file cannot be fetched completely:
 *   the host is unreachable, the server answers with an error status, or the body is cut short
 *
 * @example
 * ```ts ignore
 * import { downloadModel } from "./download.ts";
 * const { dir } = await downloadModel("124M", {
 *   onProgress: (p) => p.state !== "downloading" && console.log(p.file, p.state),
 * });
 * console.log(`model is in ${dir}`);
 * ```
 */
export async function downloadModel(
  size: string,
  options: DownloadOptions = {},
): Promise<DownloadResult> {
  if (!isModelSize(size)) {
    throw new UsageError(`Unknown model size "${size}", expected one of ${MODEL_SIZES.join(", ")}`);
  }
  const baseUrl = options.baseUrl ?? DEFAULT_BASE_URL;
  const dir = join(options.modelsDir ?? "models", size);
  await fileSystem(dir, () => Deno.mkdir(dir, { recursive: true }));
  const files: DownloadedFile[] = [];
  for (const file of MODEL_FILES) {
    options.signal?.throwIfAborted();
    files.push(await downloadFile(file, modelFileUrl(baseUrl, size, file), dir, options));
  }
  return { dir, files };
}

/** Downloads one file into `dir`, or skips it if it is already complete. */
async function downloadFile(
  file: string,
  url: string,
  dir: string,
  options: DownloadOptions,
): Promise<DownloadedFile> {
  const doFetch = options.fetch ?? fetch;
  const { onProgress, signal } = options;
  const path = join(dir, file);
  const fail = (what: string, cause?: unknown) =>
    new DownloadError(`Cannot download ${file} from ${url}: ${what}`, { cause });
  const request = async (method: "GET" | "HEAD"): Promise<Response> => {
    try {
      // Identity encoding, so that content-length counts the bytes the body yields.
      return await doFetch(url, { method, signal, headers: { "accept-encoding": "identity" } });
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      throw fail(unreachableMessage(url, e), e);
    }
  };

  // Skip a file already present with the size the server reports. A HEAD request keeps the
  // check cheap; if it fails or gives no size, the GET below decides.
  const existing = await fileSize(path);
  if (existing !== undefined) {
    const head = await request("HEAD");
    await head.body?.cancel();
    if (head.ok && contentLength(head) === existing) {
      onProgress?.({
        file,
        received: existing,
        total: existing,
        bytesPerSecond: 0,
        state: "skipped",
      });
      return { file, path, bytes: existing, skipped: true };
    }
  }

  const start = performance.now();
  const response = await request("GET");
  if (!response.ok) {
    await response.body?.cancel();
    throw fail(`${response.status} ${response.statusText}`.trim());
  }
  const total = contentLength(response);
  let received = 0;
  const report = (state: DownloadProgress["state"]) => {
    const seconds = (performance.now() - start) / 1000;
    const bytesPerSecond = seconds > 0 ? received / seconds : 0;
    onProgress?.({ file, received, total, bytesPerSecond, state });
  };

  const partPath = path + PARTIAL_SUFFIX;
  const out = await fileSystem(
    partPath,
    () => Deno.open(partPath, { write: true, create: true, truncate: true }),
  );
  let complete = false;
  try {
    report("downloading");
    if (response.body) {
      const reader = response.body.getReader();
      try {
        while (true) {
          let chunk: ReadableStreamReadResult<Uint8Array>;
          try {
            chunk = await reader.read();
          } catch (e) {
            if (signal?.aborted) throw signal.reason;
            throw fail(`connection dropped: ${gotBytes(received, total)}`, e);
          }
          if (chunk.done) break;
          await fileSystem(partPath, () => writeAll(out, chunk.value));
          received += chunk.value.length;
          report("downloading");
        }
      } finally {
        await reader.cancel().catch(() => {});
      }
    }
    if (total !== undefined && received !== total) {
      const what = received < total ? "body ended early" : "body longer than announced";
      throw fail(`${what}: ${gotBytes(received, total)}`);
    }
    complete = true;
  } finally {
    out.close();
    if (!complete) await Deno.remove(partPath).catch(() => {});
  }
  try {
    await fileSystem(path, () => Deno.rename(partPath, path));
  } catch (e) {
    await Deno.remove(partPath).catch(() => {});
    throw e;
  }
  report("done");
  return { file, path, bytes: received, skipped: false };
}

/** The body size a response announces, if it announces a usable one. */
function contentLength(response: Response): number | undefined {
  // A compressed body yields more bytes than content-length counts, so the count is useless.
  const encoding = response.headers.get("content-encoding");
  if (encoding !== null && encoding !== "identity") return undefined;
  const header = response.headers.get("content-length");
  if (header === null || !/^\d+$/.test(header.trim())) return undefined;
  return Number(header);
}

/** The size of the file at `path`, or `undefined` if there is none. */
async function fileSize(path: string): Promise<number | undefined> {
  try {
    const info = await Deno.stat(path);
    return info.isFile ? info.size : undefined;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return undefined;
    throw e;
  }
}

/**
 * Runs a file-system step, turning its failure (no permission, disk full) into a
 * {@linkcode DownloadError} that names the path.
 */
async function fileSystem<T>(path: string, step: () => Promise<T>): Promise<T> {
  try {
    return await step();
  } catch (e) {
    throw new DownloadError(`Cannot write ${path}: ${e instanceof Error ? e.message : e}`, {
      cause: e,
    });
  }
}

/** Writes every byte of `bytes`; `write` may write fewer than asked. */
async function writeAll(out: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  for (let written = 0; written < bytes.length;) {
    written += await out.write(bytes.subarray(written));
  }
}

function gotBytes(received: number, total: number | undefined): string {
  return total === undefined ? `got ${received} bytes` : `got ${received} of ${total} bytes`;
}

/**
 * Says that the host of `url` could not be reached. A failed `fetch` wraps the real reason
 * in `cause`, e.g. `"... tcp connect error: Connection refused (os error 111)"`; its last
 * part is kept as a hint.
 */
function unreachableMessage(url: string, error: unknown): string {
  const host = new URL(url).host;
  const detail = error instanceof Error && error.cause instanceof Error
    ? error.cause.message
    : error instanceof Error
    ? error.message
    : String(error);
  const hint = detail.split(": ").at(-1)?.trim();
  const suffix = hint ? ` (${hint})` : "";
  return `cannot reach ${host}: check your network connection${suffix}`;
}
