/**
 * The browser's origin-private file system (OPFS) as the folder a {@linkcode fileCache}
 * keeps fetched model files in: one folder, `gpt2-cache`, whose files are opened with
 * synchronous access handles (positioned reads and writes, in a worker only). Deno's
 * types know nothing of OPFS, so the few calls used are typed here.
 *
 * @module
 */
import type { StoreFile, StoreFolder } from "../io/byte_cache.ts";

/** The folder of the OPFS that holds the cache. */
export const CACHE_FOLDER = "gpt2-cache";

/** `FileSystemSyncAccessHandle`, as far as it is used. */
interface SyncAccessHandle {
  read(buffer: Uint8Array, options: { at: number }): number;
  write(buffer: Uint8Array, options: { at: number }): number;
  truncate(size: number): void;
  getSize(): number;
  flush(): void;
  close(): void;
}

/** `FileSystemDirectoryHandle`, as far as it is used. */
export interface DirectoryHandle {
  getDirectoryHandle(name: string, options?: { create?: boolean }): Promise<DirectoryHandle>;
  getFileHandle(
    name: string,
    options?: { create?: boolean },
  ): Promise<{ createSyncAccessHandle(): Promise<SyncAccessHandle> }>;
  removeEntry(name: string, options?: { recursive?: boolean }): Promise<void>;
  keys(): AsyncIterable<string>;
}

/** The root of this origin's OPFS, or `undefined` where there is none. */
export async function opfsRoot(): Promise<DirectoryHandle | undefined> {
  const storage = (navigator as { storage?: { getDirectory?: () => Promise<DirectoryHandle> } })
    .storage;
  if (typeof storage?.getDirectory !== "function") return undefined;
  try {
    return await storage.getDirectory();
  } catch {
    return undefined; // e.g. a private window that refuses storage
  }
}

/** Bytes per step when a read into shared memory goes through a buffer of its own. */
const BOUNCE = 4 << 20;

/**
 * The cache folder of the OPFS as a {@linkcode StoreFolder}, or `undefined` where there is
 * no OPFS. Its files open only in a worker (synchronous access handles).
 */
export async function opfsFolder(): Promise<StoreFolder | undefined> {
  const root = await opfsRoot();
  if (root === undefined) return undefined;
  const dir = await root.getDirectoryHandle(CACHE_FOLDER, { create: true });
  return {
    async open(name: string): Promise<StoreFile | undefined> {
      let handle: SyncAccessHandle;
      try {
        handle = await (await dir.getFileHandle(name, { create: true })).createSyncAccessHandle();
      } catch {
        return undefined; // another tab holds it, or the quota is spent
      }
      let bounce: Uint8Array | undefined;
      return {
        read(at: number, dest: Uint8Array): number {
          if (!isShared(dest)) return handle.read(dest, { at });
          // Access handles read into unshared buffers only.
          bounce ??= new Uint8Array(Math.min(BOUNCE, dest.byteLength));
          let done = 0;
          while (done < dest.byteLength) {
            const part = bounce.subarray(0, Math.min(bounce.length, dest.byteLength - done));
            const n = handle.read(part, { at: at + done });
            if (n === 0) break;
            dest.set(part.subarray(0, n), done);
            done += n;
          }
          return done;
        },
        write: (at: number, bytes: Uint8Array) => void handle.write(bytes, { at }),
        truncate: (size: number) => handle.truncate(size),
        size: () => handle.getSize(),
        close() {
          handle.flush();
          handle.close();
        },
      };
    },
    async list(): Promise<string[]> {
      const names: string[] = [];
      for await (const name of dir.keys()) names.push(name);
      return names;
    },
    async remove(name: string): Promise<void> {
      try {
        await dir.removeEntry(name);
      } catch (e) {
        if ((e as DOMException).name !== "NotFoundError") throw e;
      }
    },
  };
}

function isShared(view: Uint8Array): boolean {
  return typeof SharedArrayBuffer === "function" && view.buffer instanceof SharedArrayBuffer;
}
