/**
 * Writing files so that a failure or an interruption never leaves a half-written file
 * under the final name: the data goes to a temporary sibling, renamed over the target
 * only once it is complete.
 */

/**
 * Writes `path` by calling `write` on a new temporary sibling file, then renaming it to
 * `path`. On any error the temporary file is removed and the error rethrown.
 */
export async function writeFileAtomically(
  path: string,
  write: (file: Deno.FsFile) => Promise<void>,
): Promise<void> {
  const temp = `${path}.tmp-${crypto.randomUUID().slice(0, 8)}`;
  try {
    {
      using file = await Deno.open(temp, { write: true, createNew: true });
      await write(file);
    }
    await Deno.rename(temp, path);
  } catch (e) {
    await Deno.remove(temp).catch(() => {});
    throw e;
  }
}

/** Writes all of `data` to `file`, however many calls it takes. */
export async function writeAll(file: Deno.FsFile, data: Uint8Array): Promise<void> {
  for (let done = 0; done < data.byteLength;) done += await file.write(data.subarray(done));
}

/** Writes `text` (UTF-8) to `path` atomically. */
export function writeTextFileAtomically(path: string, text: string): Promise<void> {
  return writeFileAtomically(path, (file) => writeAll(file, new TextEncoder().encode(text)));
}
