import { assertEquals, assertRejects } from "./asserts.ts";
import { FilePool, readFully } from "../runtime/io/file_pool.ts";
import { withTempDir } from "./temp_dir.ts";

/** A file whose byte i is i mod 251, and a pool on it that counts the handles it opens. */
async function patternFile(dir: string, size: number, limit: number) {
  const path = `${dir}/data`;
  await Deno.writeFile(path, Uint8Array.from({ length: size }, (_, i) => i % 251));
  const counts = { opened: 0 };
  const pool = new FilePool(path, () => {
    counts.opened++;
    return Deno.open(path);
  }, { limit });
  return { pool, counts };
}

async function readAt(pool: FilePool, offset: number, length: number): Promise<Uint8Array> {
  const bytes = new Uint8Array(length);
  await pool.at(offset, (file) => readFully(file, bytes));
  return bytes;
}

Deno.test("FilePool runs reads side by side, each from its own offset, within its handle limit", async () => {
  await withTempDir(async (dir) => {
    const { pool, counts } = await patternFile(dir, 64_000, 3);
    using _ = pool;
    let inside = 0;
    let most = 0;
    const reads = Array.from(
      { length: 40 },
      (_, i) =>
        pool.at((i * 1597) % 60_000, async (file) => {
          most = Math.max(most, ++inside);
          const bytes = new Uint8Array(1000);
          for (let done = 0; done < bytes.length;) done += (await file.read(bytes.subarray(done)))!;
          await new Promise((r) => setTimeout(r, i % 3));
          inside--;
          return bytes;
        }),
    );
    const results = await Promise.all(reads);
    results.forEach((bytes, i) => {
      const offset = (i * 1597) % 60_000;
      assertEquals(Array.from(bytes), Array.from(bytes, (_, j) => (offset + j) % 251));
    });
    assertEquals(counts.opened, 3);
    assertEquals(most, 3);
  });
});

Deno.test("FilePool lends a handle given at construction first, and hands back after a failure", async () => {
  await withTempDir(async (dir) => {
    const { pool, counts } = await patternFile(dir, 1000, 1);
    using _ = pool;
    await assertRejects(() => pool.at(10, () => Promise.reject(new Error("boom"))), Error, "boom");
    assertEquals(Array.from(await readAt(pool, 996, 4)), [243, 244, 245, 246]); // 996 = 3·251 + 243
    assertEquals(counts.opened, 1);

    const first = await Deno.open(`${dir}/data`);
    const refuse = () => Promise.reject(new Error("no open"));
    using given = new FilePool(`${dir}/data`, refuse, { limit: 1, first });
    assertEquals(Array.from(await readAt(given, 251, 3)), [0, 1, 2]);
  });
});

Deno.test("disposing a FilePool rejects reads waiting for a handle and later reads", async () => {
  await withTempDir(async (dir) => {
    const { pool } = await patternFile(dir, 1000, 1);
    const release = Promise.withResolvers<void>();
    const holding = pool.at(0, () => release.promise);
    const waiting = pool.at(0, () => Promise.resolve());
    await new Promise((r) => setTimeout(r, 10));
    pool[Symbol.dispose]();
    await assertRejects(() => waiting, TypeError, "closed");
    await assertRejects(() => readAt(pool, 0, 1), TypeError, "closed");
    release.resolve();
    await holding; // the read under way ends normally
  });
});

Deno.test("FilePool.read() gives every chunk in order and stops where the file ends", async () => {
  await withTempDir(async (dir) => {
    const { pool } = await patternFile(dir, 10_000, 2);
    using _ = pool;
    const dest = new Uint8Array(5000);
    const seen: number[] = [];
    assertEquals(await pool.read(3000, dest, 1024, (part) => seen.push(...part)), 5000);
    assertEquals(seen, Array.from(dest, (_, i) => (3000 + i) % 251));
    assertEquals(Array.from(dest), seen);

    const past = new Uint8Array(3000);
    let given = 0;
    assertEquals(await pool.read(8000, past, 700, (part) => given += part.length), 2000);
    assertEquals(given, 2000);
  });
});
