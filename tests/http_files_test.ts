/**
 * Models read over HTTP (runtime/io/http_files.ts) through the same readers as folders on
 * disk: the same logits in every format (a TF or safetensors folder, a GGUF file named by
 * its URL), reads that are ranged requests streamed into wasm memory, a cache that makes a
 * second load send no request for the weights, progress, and a one-line error for each
 * way a server or its files can be wrong. Files a page's user picks give the same logits.
 */
import fc from "fast-check";
import { assert, assertEquals, assertRejects } from "./asserts.ts";
import { withTempDir } from "./temp_dir.ts";
import { MemoryFolder, serveFolder } from "./http_harness.ts";
import { loadModel } from "../runtime/generate/model.ts";
import { ModelFileError } from "../runtime/errors.ts";
import type { HParams } from "../runtime/gpt2/hparams.ts";
import { httpFiles } from "../runtime/io/http_files.ts";
import { modelFileSource } from "../runtime/gpt2/model_files.ts";
import { blobFiles } from "../runtime/io/blob_files.ts";
import { addRange, coversRange, fileCache } from "../runtime/io/byte_cache.ts";
import { type ReadProgress, withProgress } from "../runtime/io/file_source.ts";
import { randomWeights, syntheticVocabulary, writeModelFolder } from "../testing/random_model.ts";
import { writeGpt2Gguf } from "../testing/gguf_writer.ts";

const HP: HParams = { n_vocab: 300, n_ctx: 32, n_embd: 32, n_head: 2, n_layer: 2 };
const DATA = "model.ckpt.data-00000-of-00001";
const ids = [3, 141, 59, 26, 5];

async function logitsOf(location: Parameters<typeof loadModel>[0]): Promise<Float32Array> {
  using model = await loadModel(location, { threads: 2 });
  return await model.logits(ids);
}

for (const format of ["tensorflow", "safetensors"] as const) {
  Deno.test(`a ${format} folder over HTTP gives the logits it gives from disk`, async () => {
    await withTempDir(async (dir) => {
      await writeModelFolder(dir, HP, randomWeights(HP, 1), { format });
      await using server = await serveFolder(dir);
      assertEquals(await logitsOf(server.url), await logitsOf(dir));
      const weights = format === "tensorflow" ? DATA : "model.safetensors";
      const gets = server.requests.filter((r) => r.method === "GET" && r.file === weights);
      assert(gets.length > 0, "the weights were fetched");
      for (const r of gets) {
        assert(r.range !== null && r.status === 206, `a ranged read: ${JSON.stringify(r)}`);
      }
    });
  });
}

/** Writes a GGUF file of a random model of shape HP, its matrices as Q8_0, at `path`. */
async function writeGgufModel(path: string): Promise<void> {
  const { encoder, merges } = syntheticVocabulary(HP.n_vocab);
  await writeGpt2Gguf(path, HP, randomWeights(HP, 3), {
    type: "q8_0",
    tokens: [...encoder.keys()],
    merges: merges.map(([a, b]) => `${a} ${b}`),
  });
}

Deno.test("a GGUF file over HTTP, its URL naming the file, gives the logits it gives from disk", async () => {
  await withTempDir(async (dir) => {
    const name = "model-Q8_0.gguf";
    await writeGgufModel(`${dir}/${name}`);
    await using server = await serveFolder(dir);
    const url = `${server.url}${name}`;
    const fromDisk = await logitsOf(`${dir}/${name}`);
    assertEquals(await logitsOf(url), fromDisk);
    const gets = () => server.requests.filter((r) => r.method === "GET" && r.file === name);
    assert(gets().length > 1, "the header, then the tensors, were fetched");
    // The first read, the header's, is the whole of so small a file; then only ranges.
    for (const r of gets().slice(1)) {
      assert(r.range !== null && r.status === 206, `a ranged read: ${JSON.stringify(r)}`);
    }
    assertEquals(server.requests.filter((r) => r.file !== name), [], "no other file is asked for");
    assertEquals(await logitsOf(new URL(url)), fromDisk);

    // Through a cache, as the tab's engine reads it: the second load sends no GET.
    const cache = fileCache(new MemoryFolder());
    assertEquals(await logitsOf(modelFileSource(url, { cache })), fromDisk);
    const fetched = gets().length;
    assertEquals(await logitsOf(modelFileSource(url, { cache })), fromDisk);
    assertEquals(gets().length, fetched, "the second load reads the file from the cache");

    // A folder cannot be listed over HTTP: its URL finds no GGUF file, and the error says so.
    await expectError(server.url, "No GPT-2 model in", "over HTTP a GGUF model's URL must name");
  });
});

Deno.test("with a cache, a second load sends no GET for the weights; a changed file is fetched again", async () => {
  await withTempDir(async (dir) => {
    await writeModelFolder(dir, HP, randomWeights(HP, 1));
    await using server = await serveFolder(dir);
    const cache = fileCache(new MemoryFolder());
    const dataGets = () =>
      server.requests.filter((r) => r.method === "GET" && r.file === DATA).length;

    const first = await logitsOf(httpFiles(server.url, { cache }));
    const fetched = dataGets();
    assert(fetched > 0, "the first load fetches the weights");
    assert(await cache.keptBytes(server.url) >= (await Deno.stat(`${dir}/${DATA}`)).size);

    assertEquals(await logitsOf(httpFiles(server.url, { cache })), first);
    assertEquals(dataGets(), fetched, "the second load reads the weights from the cache");

    // New weights: the data file's ETag changes, and the cache must not serve the old bytes.
    await new Promise((resolve) => setTimeout(resolve, 20));
    await writeModelFolder(dir, HP, randomWeights(HP, 2));
    const changed = await logitsOf(httpFiles(server.url, { cache }));
    assert(dataGets() > fetched, "the changed file is fetched again");
    assertEquals(changed, await logitsOf(dir));

    await cache.forget(server.url);
    assertEquals(await cache.keptBytes(server.url), 0);
  });
});

Deno.test("withProgress() counts every byte read, up to the sizes of the files opened", async () => {
  await withTempDir(async (dir) => {
    await writeModelFolder(dir, HP, randomWeights(HP, 1));
    await using server = await serveFolder(dir);
    const seen: ReadProgress[] = [];
    await logitsOf(withProgress(httpFiles(server.url), (p) => seen.push(p)));
    const last = seen[seen.length - 1];
    const data = (await Deno.stat(`${dir}/${DATA}`)).size;
    assert(seen.length > 2, "more than one report");
    assert(last.loaded >= data && last.loaded <= last.total, JSON.stringify(last));
    assert(seen.every((p, i) => i === 0 || p.loaded >= seen[i - 1].loaded), "never goes back");
  });
});

/** Expects loading `url` to fail with a one-line ModelFileError naming each of `fragments`. */
async function expectError(url: string, ...fragments: string[]): Promise<void> {
  const e = await assertRejects(() => logitsOf(url), ModelFileError);
  for (const f of fragments) assert(e.message.includes(f), `"${e.message}" names "${f}"`);
  assert(!e.message.includes("\n"), `one line: ${e.message}`);
}

Deno.test("over HTTP, a missing, truncated or corrupt file or a server without ranges is one line", async () => {
  await withTempDir(async (dir) => {
    await writeModelFolder(dir, HP, randomWeights(HP, 1));
    const data = await Deno.readFile(`${dir}/${DATA}`);
    await using server = await serveFolder(dir);
    await expectError(`${server.url}nowhere/`, "No GPT-2 model in", "nowhere/");

    await Deno.writeFile(`${dir}/${DATA}`, data.subarray(0, data.length - 100));
    await expectError(server.url, DATA, "truncated");

    const flipped = data.slice();
    flipped[data.length >> 1] ^= 0x40;
    await Deno.writeFile(`${dir}/${DATA}`, flipped);
    await expectError(server.url, DATA, "CRC-32C");

    await Deno.remove(`${dir}/${DATA}`);
    await expectError(server.url, DATA, "file not found");

    await Deno.writeFile(`${dir}/${DATA}`, data);
    await using noRanges = await serveFolder(dir, { ignoreRange: true });
    await expectError(noRanges.url, DATA, "Range requests");
  });
});

Deno.test("over HTTP, a server that is not there is one line naming the URL", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await expectError(`http://127.0.0.1:${port}/models/124M/`, `127.0.0.1:${port}`);
});

Deno.test("addRange() and coversRange() agree with a byte-by-byte model", () => {
  const SIZE = 64;
  const range = fc.tuple(fc.nat(SIZE), fc.nat(SIZE)).map((
    [a, b],
  ) => [Math.min(a, b), Math.max(a, b)]);
  fc.assert(fc.property(fc.array(range, { maxLength: 12 }), range, (added, [begin, end]) => {
    const ranges: [number, number][] = [];
    const kept = new Array<boolean>(SIZE).fill(false);
    for (const [a, b] of added) {
      addRange(ranges, a, b);
      kept.fill(true, a, b);
    }
    for (let i = 1; i < ranges.length; i++) assert(ranges[i - 1][1] < ranges[i][0], "disjoint");
    assertEquals(coversRange(ranges, begin, end), kept.slice(begin, end).every(Boolean));
  }));
});

Deno.test("files picked as File objects (a page's folder input) give the folder's logits", async () => {
  await withTempDir(async (dir) => {
    await writeModelFolder(dir, HP, randomWeights(HP, 1), { format: "safetensors" });
    const picked: File[] = [];
    for await (const entry of Deno.readDir(dir)) {
      picked.push(new File([await Deno.readFile(`${dir}/${entry.name}`)], entry.name));
    }
    assertEquals(await logitsOf(blobFiles(picked)), await logitsOf(dir));
    const e = await assertRejects(() => logitsOf(blobFiles([])), ModelFileError);
    assert(e.message.includes('No GPT-2 model in "the files picked"'), e.message);
  });
});

Deno.test("a picked folder holding one GGUF file gives its logits; one holding two names them", async () => {
  await withTempDir(async (dir) => {
    await writeGgufModel(`${dir}/a.gguf`);
    const file = async (name: string) =>
      new File([await Deno.readFile(`${dir}/a.gguf`)], `models/${name}`);
    const notes = new File(["hello"], "models/notes.txt");
    const one = [notes, await file("a.gguf")];
    assertEquals(await logitsOf(blobFiles(one)), await logitsOf(`${dir}/a.gguf`));
    const two = [...one, await file("b.gguf")];
    const e = await assertRejects(() => logitsOf(blobFiles(two)), ModelFileError);
    assert(e.message.includes("holds 2 GGUF files (a.gguf, b.gguf)"), e.message);
  });
});
