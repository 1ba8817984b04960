/**
 * What the tests of models over HTTP share: a folder served on loopback as a static
 * server would (ranges, ETags) with every request it answered logged, and a cache store
 * held in memory.
 */
import { fileResponse } from "../runtime/serve/file_response.ts";
import type { StoreFile, StoreFolder } from "../runtime/io/byte_cache.ts";
import { serveHandlerOnLoopback } from "../testing/loopback_server.ts";

/** One request the folder server answered. */
export interface LoggedRequest {
  readonly method: string;
  /** The file's name in the folder. */
  readonly file: string;
  /** The `Range` header, or null. */
  readonly range: string | null;
  readonly status: number;
}

/** A folder served on 127.0.0.1. */
export interface FolderServer extends AsyncDisposable {
  /** `http://127.0.0.1:PORT/` */
  readonly url: string;
  /** Every request answered, in order. */
  readonly requests: LoggedRequest[];
}

/** How the folder server misbehaves, for the error paths. */
export interface FolderServerOptions {
  /** Answer a ranged GET with the whole file (200), as a server without range support does. */
  readonly ignoreRange?: boolean;
}

/** Serves the files of `dir` (no listing, no subfolders); disposing it stops the server. */
export async function serveFolder(
  dir: string,
  options: FolderServerOptions = {},
): Promise<FolderServer> {
  const requests: LoggedRequest[] = [];
  const server = await serveHandlerOnLoopback(async (request) => {
    const file = decodeURIComponent(new URL(request.url).pathname.slice(1));
    const range = request.headers.get("range");
    if (options.ignoreRange) {
      const headers = new Headers(request.headers);
      headers.delete("range");
      request = new Request(request.url, { method: request.method, headers });
    }
    const response = file.includes("/") ? undefined : await fileResponse(request, `${dir}/${file}`);
    const answer = response ?? new Response("no such file", { status: 404 });
    requests.push({ method: request.method, file, range, status: answer.status });
    return answer;
  });
  return { url: server.url, requests, [Symbol.asyncDispose]: () => server[Symbol.asyncDispose]() };
}

/** A cache folder in memory: each file a growable byte array. */
export class MemoryFolder implements StoreFolder {
  readonly files = new Map<string, Uint8Array>();

  open(name: string): Promise<StoreFile> {
    const files = this.files;
    if (!files.has(name)) files.set(name, new Uint8Array(0));
    const get = () => files.get(name)!;
    const resize = (size: number) => {
      const old = get();
      const next = new Uint8Array(size);
      next.set(old.subarray(0, Math.min(size, old.length)));
      files.set(name, next);
    };
    return Promise.resolve({
      read(at: number, dest: Uint8Array) {
        const part = get().subarray(at, at + dest.byteLength);
        dest.set(part);
        return part.length;
      },
      write(at: number, bytes: Uint8Array) {
        if (at + bytes.length > get().length) resize(at + bytes.length);
        get().set(bytes, at);
      },
      truncate: resize,
      size: () => get().length,
      close() {},
    });
  }

  list(): Promise<string[]> {
    return Promise.resolve([...this.files.keys()]);
  }

  remove(name: string): Promise<void> {
    this.files.delete(name);
    return Promise.resolve();
  }
}
