/**
 * A model folder served over HTTP as a {@linkcode FileSource}: a file is opened with a
 * `HEAD` request (its size, and the `ETag` or `Last-Modified` that says which version it
 * is), and each read is a `GET` with a `Range` header whose body streams straight into
 * the destination, chunk by chunk, with no copy of the whole file in between. Optionally a
 * {@linkcode ByteCache} keeps what was read, so that reading it again sends no `GET`.
 *
 * Works wherever `fetch` does: Deno, a page, a worker.
 *
 * @module
 */
import { ModelFileError } from "../errors.ts";
import type { FileSource, ReadOptions, SourceFile } from "./file_source.ts";

/**
 * Bytes of fetched files kept across runs (in a browser, its origin-private file system),
 * each file under its URL and version.
 */
export interface ByteCache {
  /**
   * The kept bytes of the file at `url` if they are of this `version`, else a new empty
   * entry for it (what was kept of an older version is dropped); `undefined` if the cache
   * cannot be used now (e.g. another tab holds the entry).
   */
  open(url: string, size: number, version: string): Promise<CacheEntry | undefined>;
}

/** The kept bytes of one file. Dispose it to save what it learned and release it. */
export interface CacheEntry extends Disposable {
  /** Reads `dest.byteLength` bytes from `offset` if every one of them is kept; else false. */
  read(offset: number, dest: Uint8Array): Promise<boolean>;
  /** Keeps `bytes`, fetched from `offset`; they count once `complete` says so. */
  write(offset: number, bytes: Uint8Array): Promise<void>;
  /** Records that every byte of [begin, end) has been written. */
  complete(begin: number, end: number): Promise<void>;
}

/** Options of {@linkcode httpFiles}. */
export interface HttpFilesOptions {
  /** Headers sent with every request, e.g. `Authorization`. */
  readonly headers?: HeadersInit;
  /** Where what is read is kept, so that a second read of it sends no request. */
  readonly cache?: ByteCache;
  /** The `fetch` to use (default: the global one). */
  readonly fetch?: typeof fetch;
}

/** Statuses that mean the file is not there. */
const ABSENT = new Set([404, 410]);

/**
 * The folder at `url` (a trailing `/` is added if missing), read with `fetch`.
 *
 * @example
 * ```ts ignore
 * import { httpFiles } from "./http_files.ts";
 * const files = httpFiles("https://example.com/models/124M/");
 * using data = await files.open("model.ckpt.data-00000-of-00001");
 * const head = new Uint8Array(16);
 * await data!.read(0, head);
 * ```
 */
export function httpFiles(url: string | URL, options: HttpFilesOptions = {}): FileSource {
  const base = new URL(url);
  if (!base.pathname.endsWith("/")) base.pathname += "/";
  const http = new Http(options);
  const pathOf = (name: string) => new URL(name, base).href;
  return {
    path: base.href,
    pathOf,
    async open(name: string): Promise<SourceFile | undefined> {
      const url = pathOf(name);
      const head = await http.request(url, { method: "HEAD" });
      if (ABSENT.has(head.status)) return undefined;
      let size = Number(head.headers.get("content-length") ?? NaN);
      if (!head.ok || !Number.isSafeInteger(size)) size = await http.probeSize(url);
      const version = `${size} ${head.headers.get("etag") ?? head.headers.get("last-modified")}`;
      const entry = await options.cache?.open(url, size, version);
      return new HttpFile(http, url, size, entry);
    },
    async readText(name: string): Promise<string | undefined> {
      const url = pathOf(name);
      const response = await http.request(url);
      if (ABSENT.has(response.status)) {
        await response.body?.cancel();
        return undefined;
      }
      http.check(url, response);
      try {
        return await response.text();
      } catch (e) {
        throw http.failure(url, e);
      }
    },
    list: () => Promise.resolve(undefined),
  };
}

/** Requests with the options' headers, and their failures as ModelFileErrors. */
class Http {
  readonly #fetch: typeof fetch;
  readonly #headers: HeadersInit;

  constructor(options: HttpFilesOptions) {
    // Called unbound: a browser's fetch must not get another `this`.
    this.#fetch = options.fetch ?? ((input, init) => fetch(input, init));
    this.#headers = options.headers ?? {};
  }

  async request(url: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(this.#headers);
    for (const [k, v] of new Headers(init.headers)) headers.set(k, v);
    try {
      return await this.#fetch(url, { ...init, headers });
    } catch (e) {
      throw this.failure(url, e);
    }
  }

  /** Throws unless `response` is a success. */
  check(url: string, response: Response): void {
    if (response.ok) return;
    response.body?.cancel();
    throw new ModelFileError(
      `Cannot read "${url}": the server answered HTTP ${response.status}` +
        (response.statusText ? ` ${response.statusText}` : ""),
    );
  }

  failure(url: string, e: unknown): ModelFileError {
    if (e instanceof ModelFileError) return e;
    return new ModelFileError(`Cannot read "${url}": ${(e as Error).message ?? e}`);
  }

  /** The size of `url` from a one-byte range request, for servers that answer no HEAD. */
  async probeSize(url: string): Promise<number> {
    const response = await this.request(url, { headers: { range: "bytes=0-0" } });
    this.check(url, response);
    await response.body?.cancel();
    const range = /\/(\d+)\s*$/.exec(response.headers.get("content-range") ?? "");
    const size = Number(range?.[1] ?? response.headers.get("content-length") ?? NaN);
    if (!Number.isSafeInteger(size)) {
      throw new ModelFileError(`Cannot read "${url}": the server says neither its size nor range`);
    }
    return size;
  }
}

/** One file over HTTP, and what the cache keeps of it. */
class HttpFile implements SourceFile {
  constructor(
    readonly http: Http,
    readonly path: string,
    readonly size: number,
    readonly cache: CacheEntry | undefined,
  ) {}

  async read(offset: number, dest: Uint8Array, options: ReadOptions = {}): Promise<number> {
    const end = Math.min(offset + dest.byteLength, this.size);
    if (end <= offset) return 0;
    const want = dest.subarray(0, end - offset);
    const chunk = Math.max(options.chunk ?? want.byteLength, 1);
    const each = options.each;
    if (await this.cache?.read(offset, want)) {
      for (let at = 0; each && at < want.byteLength; at += chunk) {
        each(want.subarray(at, at + chunk));
      }
      return want.byteLength;
    }
    const whole = offset === 0 && end === this.size;
    const response = await this.http.request(this.path, {
      headers: whole ? {} : { range: `bytes=${offset}-${end - 1}` },
    });
    if (response.status === 416) {
      await response.body?.cancel();
      return 0;
    }
    this.http.check(this.path, response);
    if (response.status !== 206 && !whole) {
      await response.body?.cancel();
      throw new ModelFileError(
        `Cannot read "${this.path}": the server sent the whole file (HTTP ${response.status}) ` +
          `for a byte range; serve the model from a server that answers Range requests`,
      );
    }
    const start = /^bytes (\d+)-/.exec(response.headers.get("content-range") ?? "");
    if (start && Number(start[1]) !== offset) {
      await response.body?.cancel();
      throw new ModelFileError(
        `Cannot read "${this.path}": asked for bytes from ${offset}, the server sent them ` +
          `from ${start[1]}`,
      );
    }
    let done = 0;
    let given = 0;
    const reader = response.body!.getReader();
    try {
      while (done < want.byteLength) {
        const { value, done: ended } = await reader.read();
        if (ended) break;
        const n = Math.min(value.byteLength, want.byteLength - done);
        want.set(value.subarray(0, n), done);
        await this.cache?.write(offset + done, value.subarray(0, n));
        done += n;
        for (; each && done - given >= chunk; given += chunk) {
          each(want.subarray(given, given + chunk));
        }
      }
    } catch (e) {
      throw this.http.failure(this.path, e);
    } finally {
      reader.cancel().catch(() => {});
    }
    if (each && given < done) each(want.subarray(given, done));
    if (done === want.byteLength) await this.cache?.complete(offset, end);
    return done;
  }

  [Symbol.dispose](): void {
    this.cache?.[Symbol.dispose]();
  }
}
