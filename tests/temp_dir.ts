/** Temporary folders for tests, removed however the test ends. */

/** Runs `fn` with a new empty folder and removes the folder afterwards. */
export async function withTempDir(
  fn: (dir: string) => Promise<void>,
  prefix = "gpt2_test_",
): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Names of the writers' temporary files (`*.tmp-*`) left in `dir`. */
export async function listTemporaryFiles(dir: string): Promise<string[]> {
  const names: string[] = [];
  for await (const e of Deno.readDir(dir)) if (e.name.includes(".tmp-")) names.push(e.name);
  return names;
}
