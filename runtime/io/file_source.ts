/**
 * Where a model's files come from, as the checkpoint readers, the tokenizer and
 * `model_files.ts` see it: files opened by name, each with a size and positioned reads in
 * chunks, and small text files read whole. A folder on disk (`local_files.ts`), a folder
 * served over HTTP (`http_files.ts`) and files a page's user picked (`blob_files.ts`) all
 * offer it, so the readers know nothing of Deno, `fetch` or the DOM.
 *
 * @module
 */
import { ModelFileError } from "../errors.ts";

/** How {@linkcode SourceFile.read} hands over what it reads. */
export interface ReadOptions {
  /**
   * Bytes per chunk given to `each` (default: the whole read as one): each chunk is handed
   * over as soon as it is in, while the next one is read.
   */
  readonly chunk?: number;
  /** Called with every chunk of the destination, in order, once its bytes are in. */
  readonly each?: (part: Uint8Array) => void;
}

/** One file open for reading. Dispose it to release what it holds (handles, a cache entry). */
export interface SourceFile extends Disposable {
  /** Its path or URL, for messages. */
  readonly path: string;
  /** Its size in bytes. */
  readonly size: number;
  /**
   * Reads `dest.byteLength` bytes from byte `offset` straight into `dest` (which may be a
   * view on shared WebAssembly memory), and returns how many were read: fewer if the file
   * ends first. Several reads may run at once.
   * @throws {ModelFileError} if the file cannot be read (a network or I/O failure)
   */
  read(offset: number, dest: Uint8Array, options?: ReadOptions): Promise<number>;
}

/** A model's folder: its files by name (`model.safetensors`, `vocab.bpe`, …). */
export interface FileSource {
  /** The folder's path or URL, for messages. */
  readonly path: string;
  /** The path or URL of the file `name`, for messages. */
  pathOf(name: string): string;
  /**
   * Opens the file `name`, or resolves to `undefined` if there is none.
   * @throws {ModelFileError} if it exists but cannot be opened
   */
  open(name: string): Promise<SourceFile | undefined>;
  /**
   * The whole of the small file `name` as UTF-8 text, or `undefined` if there is none.
   * @throws {ModelFileError} if it exists but cannot be read
   */
  readText(name: string): Promise<string | undefined>;
  /** The names of the files in the folder, or `undefined` where it cannot be listed (HTTP). */
  list(): Promise<string[] | undefined>;
}

/**
 * Opens the file `name` of `files`.
 * @param expected what the file should be, for the message when it is missing
 *   (e.g. `"a safetensors file"`)
 * @throws {ModelFileError} `Cannot read "<path>": file not found, expected <expected>`
 */
export async function openOrThrow(
  files: FileSource,
  name: string,
  expected: string,
): Promise<SourceFile> {
  const file = await files.open(name);
  if (file === undefined) {
    throw new ModelFileError(
      `Cannot read "${files.pathOf(name)}": file not found, expected ${expected}`,
    );
  }
  return file;
}

/**
 * Reads a whole `file` as text through its positioned reads: what a `FileSource` without a
 * faster way of its own does for `readText`.
 */
export async function readWholeText(file: SourceFile): Promise<string> {
  const bytes = new Uint8Array(file.size);
  const got = await file.read(0, bytes);
  return new TextDecoder().decode(bytes.subarray(0, got));
}

/** How far a load has read, as {@linkcode withProgress} reports it. */
export interface ReadProgress {
  /** Bytes read so far, from every file opened. */
  readonly loaded: number;
  /** The sizes of the files opened so far, added up. */
  readonly total: number;
}

/** Bytes between two progress reports, at most. */
const PROGRESS_CHUNK = 4 << 20;

/**
 * `files`, with `onProgress` told after every chunk read through it (of at most 4 MiB)
 * how many bytes have been read and how many the files opened so far hold.
 */
export function withProgress(
  files: FileSource,
  onProgress: (progress: ReadProgress) => void,
): FileSource {
  let loaded = 0;
  let total = 0;
  return {
    path: files.path,
    pathOf: (name) => files.pathOf(name),
    readText: (name) => files.readText(name),
    list: () => files.list(),
    async open(name: string): Promise<SourceFile | undefined> {
      const file = await files.open(name);
      if (file === undefined) return undefined;
      total += file.size;
      onProgress({ loaded, total });
      return {
        path: file.path,
        size: file.size,
        read(offset, dest, options = {}) {
          return file.read(offset, dest, {
            chunk: Math.min(options.chunk ?? Infinity, PROGRESS_CHUNK),
            each: (part) => {
              loaded += part.byteLength;
              onProgress({ loaded, total });
              options.each?.(part);
            },
          });
        },
        [Symbol.dispose]: () => file[Symbol.dispose](),
      };
    },
  };
}
