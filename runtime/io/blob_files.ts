/**
 * Files the user picked (a page's `<input type="file">`, a folder chosen with
 * `webkitdirectory`, files dropped on it) as a {@linkcode FileSource}: each `File` is
 * read a slice at a time, so no file is ever held whole in memory.
 *
 * @module
 */
import { ModelFileError } from "../errors.ts";
import type { FileSource, ReadOptions, SourceFile } from "./file_source.ts";

/** Bytes per slice read from a `File`. */
const SLICE = 4 << 20;

/**
 * The picked `files` as one folder, each under its own name (a folder's files under
 * theirs, without the folder: `124M/vocab.bpe` is `vocab.bpe`).
 */
export function blobFiles(files: Iterable<File>, label = "the files picked"): FileSource {
  const byName = new Map<string, File>();
  for (const file of files) byName.set(file.name.split("/").pop()!, file);
  const pathOf = (name: string) => `${name} (${label})`;
  return {
    path: label,
    pathOf,
    open(name: string): Promise<SourceFile | undefined> {
      const file = byName.get(name);
      return Promise.resolve(file && new BlobFile(pathOf(name), file));
    },
    async readText(name: string): Promise<string | undefined> {
      const file = byName.get(name);
      if (file === undefined) return undefined;
      try {
        return await file.text();
      } catch (e) {
        throw new ModelFileError(`Cannot read "${pathOf(name)}": ${(e as Error).message}`);
      }
    },
    list: () => Promise.resolve([...byName.keys()]),
  };
}

/** One picked file. */
class BlobFile implements SourceFile {
  constructor(readonly path: string, readonly blob: Blob) {}

  get size(): number {
    return this.blob.size;
  }

  async read(offset: number, dest: Uint8Array, options: ReadOptions = {}): Promise<number> {
    const end = Math.min(offset + dest.byteLength, this.blob.size);
    const chunk = Math.max(options.chunk ?? dest.byteLength, 1);
    let done = 0;
    let given = 0;
    try {
      while (offset + done < end) {
        const part = new Uint8Array(
          await this.blob.slice(offset + done, Math.min(offset + done + SLICE, end)).arrayBuffer(),
        );
        dest.set(part, done);
        done += part.byteLength;
        for (; options.each && done - given >= chunk; given += chunk) {
          options.each(dest.subarray(given, given + chunk));
        }
      }
    } catch (e) {
      throw new ModelFileError(`Cannot read "${this.path}": ${(e as Error).message}`);
    }
    if (options.each && given < done) options.each(dest.subarray(given, done));
    return done;
  }

  [Symbol.dispose](): void {}
}
