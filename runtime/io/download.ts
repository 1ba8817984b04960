/**
 * Downloads a GPT-2 checkpoint as OpenAI published it: seven files per model size, fetched
 * from `<baseUrl>/models/<size>/<file>` into `<modelsDir>/<size>/`.
 *
 * Each file is written to `<file>.part` first and renamed only once every byte the server
 * announced has arrived, so a file under its final name is always complete. A file that is
 * already present with the size the server reports is skipped.
 *
 * An interrupted download resumes: a `<file>.part` left by an earlier run is continued with
 * an HTTP `Range: bytes=<size>-` request, and the answer is checked against the server's
 * size (`Content-Range`, `Content-Length`). If the server ignores `Range`, or its answer does
 * not continue the `.part` file exactly (a `.part` file larger than the file, a wrong total),
 * the file is downloaded again from its first byte.
 *
 * @module
 */
import { join } from "node:path";
import { DownloadError } from "../errors.ts";

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
  /** Bytes of the file on disk so far, resumed ones included; never decreases for one file. */
  received: number;
  /** The file's size as the server announced it, or `undefined` if it sent no usable one. */
  total: number | undefined;
  /** Bytes already in the `.part` file when this run resumed it; 0 for a fresh download. */
  resumedFrom: number;
  /**
   * Average rate of the bytes received since this file's request started (resumed bytes not
   * counted); 0 before any time has passed.
   */
  bytesPerSecond: number;
  /**
   * `"downloading"` while bytes arrive (the first report has `received` equal to
   * `resumedFrom`), then exactly one `"done"` once the file is in place, or a single
   * `"skipped"` if it was already complete. A `.part` file found complete gives just `"done"`.
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
  /**
   * Aborts the download; the promise rejects with the reason, and the bytes received stay in
   * the `.part` file for the next run to resume.
   */
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
 * skipping any already present with the size the server reports and resuming any with a
 * `.part` file from an interrupted run.
 *
 * @param size one of {@linkcode MODEL_SIZES}, e.g. `"124M"`
 * @throws {RangeError} if `size` is not a published model size
 * @throws {DownloadError} naming the file and URL if a file cannot be fetched completely:
 *   the host is unreachable, the server answers with an error status, or the body is cut short
 *   (its bytes are kept in the `.part` file, and the message says to run again to resume)
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
    throw new RangeError(`Unknown model size "${size}", expected one of ${MODEL_SIZES.join(", ")}`);
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

/**
 * What the first request for a file's bytes settled: write the response's body at `offset`
 * of the `.part` file (0 to start over, the `.part` file's size to resume), or the `.part`
 * file already holds all `total` bytes.
 */
type Transfer =
  | { kind: "write"; response: Response; offset: number; total: number | undefined }
  | { kind: "complete"; total: number };

/**
 * Downloads one file into `dir`, or skips it if it is already complete, resuming from its
 * `.part` file when there is one.
 */
async function downloadFile(
  file: string,
  url: string,
  dir: string,
  options: DownloadOptions,
): Promise<DownloadedFile> {
  const doFetch = options.fetch ?? fetch;
  const { onProgress, signal } = options;
  const path = join(dir, file);
  const partPath = path + PARTIAL_SUFFIX;
  const fail = (what: string, cause?: unknown) =>
    new DownloadError(`Cannot download ${file} from ${url}: ${what}`, { cause });
  const request = async (method: "GET" | "HEAD", range?: string): Promise<Response> => {
    // Identity encoding, so that content-length and byte ranges count the file's own bytes.
    const headers: Record<string, string> = { "accept-encoding": "identity" };
    if (range !== undefined) headers.range = range;
    try {
      return await doFetch(url, { method, signal, headers });
    } catch (e) {
      if (signal?.aborted) throw signal.reason;
      throw fail(unreachableMessage(url, e), e);
    }
  };
  const statusError = async (response: Response) => {
    await response.body?.cancel();
    return fail(`${response.status} ${response.statusText}`.trim());
  };
  /** The size a HEAD request reports, or `undefined` if it fails or gives none. */
  const headSize = async (): Promise<number | undefined> => {
    const head = await request("HEAD");
    await head.body?.cancel();
    return head.ok ? contentLength(head) : undefined;
  };

  // Skip a file already present with the size the server reports. A HEAD request keeps the
  // check cheap; if it fails or gives no size, the GET below decides.
  const existing = await fileSize(path);
  if (existing !== undefined && await headSize() === existing) {
    onProgress?.({
      file,
      received: existing,
      total: existing,
      resumedFrom: existing,
      bytesPerSecond: 0,
      state: "skipped",
    });
    return { file, path, bytes: existing, skipped: true };
  }

  /**
   * Asks for the bytes the `.part` file lacks (`part` bytes are there) and checks the answer
   * against the server's size; anything that does not continue the `.part` file exactly
   * means starting over with a plain GET.
   */
  const begin = async (part: number): Promise<Transfer> => {
    if (part > 0) {
      const response = await request("GET", `bytes=${part}-`);
      if (response.status === 206) {
        const range = parseContentRange(response.headers.get("content-range"));
        const length = contentLength(response);
        // The rest of the file, from exactly where the .part file ends, and nothing else.
        if (
          range?.start === part && range.total !== undefined && range.end === range.total - 1 &&
          (length === undefined || length === range.end - range.start + 1) &&
          isIdentityEncoded(response)
        ) {
          return { kind: "write", response, offset: part, total: range.total };
        }
        await response.body?.cancel();
      } else if (response.status === 416) {
        // Nothing lies past the .part file's end: it is complete if it has the server's
        // size, else larger than the file and so not a beginning of it.
        await response.body?.cancel();
        const total = parseContentRange(response.headers.get("content-range"))?.total ??
          await headSize();
        if (total === part) return { kind: "complete", total };
      } else if (response.ok) {
        // The server ignored Range and sends the whole file: write it from the start.
        return { kind: "write", response, offset: 0, total: contentLength(response) };
      } else {
        throw await statusError(response);
      }
    }
    const response = await request("GET");
    if (!response.ok) throw await statusError(response);
    return { kind: "write", response, offset: 0, total: contentLength(response) };
  };

  const start = performance.now();
  const transfer = await begin(await fileSize(partPath) ?? 0);
  const total = transfer.total;
  const resumedFrom = transfer.kind === "write" ? transfer.offset : transfer.total;
  let received = resumedFrom;
  const report = (state: DownloadProgress["state"]) => {
    const seconds = (performance.now() - start) / 1000;
    // The rate counts only this request's bytes, so that time left is right when resuming.
    const bytesPerSecond = seconds > 0 ? (received - resumedFrom) / seconds : 0;
    onProgress?.({ file, received, total, resumedFrom, bytesPerSecond, state });
  };

  if (transfer.kind === "write") {
    const { response, offset } = transfer;
    // Truncating to the offset starts over at 0, and resumes from exactly the bytes counted.
    const out = await fileSystem(partPath, async () => {
      const out = await Deno.open(partPath, { write: true, create: true });
      await out.truncate(offset);
      await out.seek(offset, Deno.SeekMode.Start);
      return out;
    });
    // A .part file that is a true beginning of the file is kept for the next run to resume
    // (after a dropped connection, an abort or a full disk); one known to be wrong is not.
    let discard = false;
    const resumeHint = `; run again to resume from ${partPath}`;
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
              throw fail(`connection dropped: ${gotBytes(received, total)}${resumeHint}`, e);
            }
            if (chunk.done) break;
            if (total !== undefined && received + chunk.value.length > total) {
              discard = true;
              throw fail(`body longer than the ${total} bytes announced; run again to start over`);
            }
            await fileSystem(partPath, () => writeAll(out, chunk.value));
            received += chunk.value.length;
            report("downloading");
          }
        } finally {
          await reader.cancel().catch(() => {});
        }
      }
      if (total !== undefined && received < total) {
        throw fail(`body ended early: ${gotBytes(received, total)}${resumeHint}`);
      }
    } finally {
      out.close();
      if (discard) await Deno.remove(partPath).catch(() => {});
    }
  }
  await fileSystem(path, () => Deno.rename(partPath, path));
  report("done");
  return { file, path, bytes: received, skipped: false };
}

/** A `Content-Range` header: which bytes a response holds and the file's size, if known. */
export interface ContentRange {
  /** First byte sent, or `undefined` in the unsatisfied-range form a 416 answer carries. */
  start: number | undefined;
  /** Last byte sent (inclusive), or `undefined` as for `start`. */
  end: number | undefined;
  /** The whole file's size, or `undefined` if the server sent `*`. */
  total: number | undefined;
}

/**
 * Parses a `Content-Range` header (RFC 9110 §14.4), e.g. `bytes 100-199/1000`, or a 416
 * answer's unsatisfied range (`bytes *` then `/1000`); `undefined` if it is absent or malformed, including a
 * range that ends before it starts or past the total.
 *
 * @example
 * ```ts
 * import { parseContentRange } from "./download.ts";
 * import assert from "node:assert/strict";
 * assert.deepEqual(parseContentRange("bytes 100-199/1000"), { start: 100, end: 199, total: 1000 });
 * assert.equal(parseContentRange("bytes 100-199/150"), undefined);
 * ```
 */
export function parseContentRange(header: string | null): ContentRange | undefined {
  const match = header?.trim().match(/^bytes\s+(?:(\d+)-(\d+)|\*)\/(\d+|\*)$/i);
  if (!match) return undefined;
  const [start, end] = match[1] === undefined ? [] : [Number(match[1]), Number(match[2])];
  const total = match[3] === "*" ? undefined : Number(match[3]);
  if (start === undefined && total === undefined) return undefined;
  if (start !== undefined && end !== undefined) {
    if (end < start || (total !== undefined && end >= total)) return undefined;
  }
  return { start, end, total };
}

/** Whether a response's body is the file's own bytes, not a compressed form of them. */
function isIdentityEncoded(response: Response): boolean {
  const encoding = response.headers.get("content-encoding");
  return encoding === null || encoding === "identity";
}

/** The body size a response announces, if it announces a usable one. */
function contentLength(response: Response): number | undefined {
  // A compressed body yields more bytes than content-length counts, so the count is useless.
  if (!isIdentityEncoded(response)) return undefined;
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
