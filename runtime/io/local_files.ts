/**
 * A model folder on disk as a {@linkcode FileSource}: each file a {@linkcode FilePool} of
 * Deno handles, so that reads of different tensors run side by side in Deno's I/O threads.
 *
 * @module
 */
import { ModelFileError } from "../errors.ts";
import { FilePool } from "./file_pool.ts";
import type { FileSource, ReadOptions, SourceFile } from "./file_source.ts";

/** Whether `name` is an absolute path (POSIX, or a Windows drive or share). */
function isAbsolutePath(name: string): boolean {
  return name.startsWith("/") || /^([A-Za-z]:)?[\\/]/.test(name);
}

/**
 * The folder `dir` on disk (`""`: the working folder, names unchanged). Names are relative
 * to it, or absolute paths (a TensorFlow `checkpoint` file may name one). Nothing is
 * checked until a file is opened or listed.
 */
export function localFiles(dir: string): FileSource {
  const base = dir.replace(/[\\/]+$/, "") || (dir.startsWith("/") ? "/" : "");
  const pathOf = (name: string) =>
    isAbsolutePath(name) || base === "" ? name : base === "/" ? `/${name}` : `${base}/${name}`;
  return {
    path: dir,
    pathOf,
    async open(name: string): Promise<SourceFile | undefined> {
      const path = pathOf(name);
      let first: Deno.FsFile;
      try {
        first = await Deno.open(path);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) return undefined;
        throw new ModelFileError(`Cannot read "${path}": ${reason(e, path)}`);
      }
      let size: number;
      try {
        const info = await first.stat();
        if (info.isDirectory) throw new Deno.errors.IsADirectory(path);
        size = info.size;
      } catch (e) {
        first.close();
        throw new ModelFileError(`Cannot read "${path}": ${reason(e, path)}`);
      }
      return new LocalFile(path, size, new FilePool(path, () => Deno.open(path), { first }));
    },
    async readText(name: string): Promise<string | undefined> {
      const path = pathOf(name);
      try {
        return await Deno.readTextFile(path);
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) return undefined;
        throw new ModelFileError(`Cannot read "${path}": ${reason(e, path)}`);
      }
    },
    async list(): Promise<string[] | undefined> {
      try {
        const names: string[] = [];
        for await (const entry of Deno.readDir(base || ".")) names.push(entry.name);
        return names;
      } catch (e) {
        if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) {
          return undefined;
        }
        throw new ModelFileError(`Cannot list "${dir}": ${reason(e, dir)}`);
      }
    },
  };
}

/** Whether `dir` is a folder that exists. */
export async function isLocalFolder(dir: string): Promise<boolean> {
  try {
    return (await Deno.stat(dir)).isDirectory;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return false;
    throw e;
  }
}

/** What went wrong reading `path`, and the fix where there is one. */
function reason(e: unknown, path: string): string {
  if (e instanceof Deno.errors.NotCapable) return "no read permission (run deno with --allow-read)";
  if (e instanceof Deno.errors.PermissionDenied) {
    return "permission denied (check the file's permissions)";
  }
  if (e instanceof Deno.errors.IsADirectory) return `"${path}" is a folder, expected a file`;
  return (e as Error).message;
}

/** One file on disk: its size and a pool of handles. */
class LocalFile implements SourceFile {
  constructor(readonly path: string, readonly size: number, readonly pool: FilePool) {}

  read(offset: number, dest: Uint8Array, options: ReadOptions = {}): Promise<number> {
    return this.pool.read(offset, dest, options.chunk, options.each);
  }

  [Symbol.dispose](): void {
    this.pool[Symbol.dispose]();
  }
}

/**
 * The local file at `path` as a folder and a name in it, so that the folder's `pathOf`
 * gives back `path` itself.
 */
export function splitPath(path: string): { files: FileSource; name: string } {
  const slash = Math.max(path.lastIndexOf("/"), path.lastIndexOf("\\"));
  if (slash < 0) return { files: localFiles(""), name: path };
  return { files: localFiles(path.slice(0, slash + 1)), name: path.slice(slash + 1) };
}
