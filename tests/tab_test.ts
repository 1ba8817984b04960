/**
 * The engine in a real browser tab (Debian's headless Chromium): the bundle's `loadModel`
 * gives the tokens Deno gives on the same model, in float32, q8 and q4, on one thread and
 * on two (which start kernel workers), and from GGUF files named by their URL or picked
 * in a folder, loaded as Deno loads them (a Q4_0 file's blocks kept as they are); a reload reads the weights from the browser's cache and sends no request for
 * them; the page's controls load, generate and forget; and every way to fail (a missing or
 * corrupt file, a model too large for the tab, no isolation, a lost GPU device) ends in a
 * message, with the page still answering.
 */
import { assert, assertEquals } from "./asserts.ts";
import { assertClose } from "./assert_close.ts";
import { withTempDir } from "./temp_dir.ts";
import {
  BROWSER,
  buildBundle,
  driveTab,
  failingLoadScript,
  greedyScript,
  serveTab,
} from "./tab_harness.ts";
import { loadModel } from "../runtime/generate/model.ts";
import { ApiServer } from "../runtime/serve/server.ts";
import { loadStaticFiles } from "../runtime/serve/static_files.ts";
import type { HParams } from "../runtime/gpt2/hparams.ts";
import type { WeightType } from "../runtime/backend/backend.ts";
import { gpt2Tensors, hfNames } from "../runtime/gpt2/tensor_names.ts";
import { randomWeights, syntheticVocabulary, writeModelFolder } from "../testing/random_model.ts";
import { writeGpt2Gguf } from "../testing/gguf_writer.ts";
import { CHROMIUM } from "../cli/chromium.ts";
import { serveOnLoopback } from "../testing/loopback_server.ts";

const HP: HParams = { n_vocab: 300, n_ctx: 64, n_embd: 64, n_head: 4, n_layer: 2 };
const DATA = "model.ckpt.data-00000-of-00001";
const PROMPT = "The cat sat";
const LENGTH = 16;

/** A model folder whose logits spread, so that greedy tokens vary. */
async function writeSharpModel(dir: string, format: "tensorflow" | "safetensors" = "tensorflow") {
  const weights = randomWeights(HP, 11);
  for (const t of weights.values()) {
    if (t.shape.length > 1) t.data.forEach((v, i, a) => a[i] = v * 6);
  }
  await writeModelFolder(dir, HP, weights, { format });
}

/** A GGUF file of the same kind of model, its matrices as `type` (Q8_0), at `path`. */
async function writeSharpGguf(path: string, type: "q8_0" | "q4_0" = "q8_0") {
  const weights = randomWeights(HP, 11);
  for (const t of weights.values()) {
    if (t.shape.length > 1) t.data.forEach((v, i, a) => a[i] = v * 6);
  }
  const { encoder, merges } = syntheticVocabulary(HP.n_vocab);
  await writeGpt2Gguf(path, HP, weights, {
    type,
    tokens: [...encoder.keys()],
    merges: merges.map(([a, b]) => `${a} ${b}`),
  });
}

/** Deno's greedy tokens and prompt logits for `dir` (dtype as a file loads by default). */
async function denoRun(dir: string, dtype?: WeightType) {
  using model = await loadModel(dir, { threads: 2, dtype });
  const ids = model.tokenizer.encode(PROMPT);
  const tokens: number[] = [];
  for await (const id of model.generate(ids, { length: LENGTH, temperature: 0 })) tokens.push(id);
  return { tokens, logits: Array.from(await model.logits(ids)) };
}

/** A message the library gives a page names options, never a command-line flag. */
function assertLibraryTerms(message: string) {
  assert(!/(^|[\s(])--[a-z]/.test(message), `"${message}" names a command-line flag`);
}

/** A test that needs Chromium, reported as ignored with the reason where it is missing. */
function browserTest(name: string, fn: () => Promise<void>) {
  Deno.test({
    name: BROWSER ? name : `${name} (no Chromium at ${CHROMIUM}: apt-get install chromium)`,
    ignore: !BROWSER,
    fn,
  });
}

if (BROWSER) await buildBundle();

interface TabResult {
  tokens: number[];
  logits: number[];
  threads: number;
  dtype: string;
  backend: string;
  cachedBytes: number;
  isolated: boolean;
  conversion: string | null;
}

for (const threads of [1, 2]) {
  browserTest(
    `in the tab on ${threads} thread${
      threads > 1 ? "s" : ""
    }, f32, q8 and q4 give Deno's greedy tokens`,
    async () => {
      await withTempDir(async (dir) => {
        await writeSharpModel(dir);
        await using server = await serveTab({ m: dir });
        const steps = ["f32", "q8", "q4"].map((dtype) => ({
          eval: greedyScript("/models/m/", PROMPT, LENGTH, { threads, dtype, cache: false }),
        }));
        const run = await driveTab({ steps: [{ goto: server.url }, ...steps] });
        assertEquals(run.errors, []);
        for (const [i, dtype] of (["f32", "q8", "q4"] as const).entries()) {
          const tab = run.results[i] as TabResult;
          const deno = await denoRun(dir, dtype);
          assertEquals([tab.dtype, tab.threads, tab.isolated], [dtype, threads, true]);
          assertEquals(tab.tokens, deno.tokens, `${dtype}: the tab's tokens are Deno's`);
          assertClose(Float32Array.from(tab.logits), Float32Array.from(deno.logits), {
            atol: 1e-5,
            rtol: 1e-5,
          });
        }
        const kernelWorkers = server.requests.filter((r) => r.path === "/dist/kernel_worker.js");
        if (threads === 1) assertEquals(kernelWorkers.length, 0, "one thread starts no worker");
        else assert(kernelWorkers.length > 0, "two threads start a kernel worker");
      });
    },
  );
}

browserTest(
  "a reload reads the weights from the browser's cache with no GET for them; forgetModel drops them",
  async () => {
    await withTempDir(async (dir) => {
      await writeSharpModel(dir);
      await using server = await serveTab({ m: dir });
      const load = { eval: greedyScript("/models/m/", PROMPT, 4, { threads: 2 }) };
      const run = await driveTab({
        steps: [
          { goto: server.url },
          load,
          { goto: server.url }, // a reload
          load,
          { eval: `const g = await import("/dist/gpt2.js"); await g.forgetModel(); return 0;` },
          { goto: server.url },
          load,
        ],
      });
      const [first, second, , third] = run.results as TabResult[];
      const size = (await Deno.stat(`${dir}/${DATA}`)).size;
      assertEquals(first.cachedBytes, 0, "the first load fetches everything");
      assert(second.cachedBytes >= size, `the reload reads ${second.cachedBytes} cached bytes`);
      assertEquals(third.cachedBytes, 0, "after forgetModel the weights are fetched again");
      assertEquals(second.tokens, first.tokens);
      assertEquals(third.tokens, first.tokens);
      // One ranged GET per tensor for each of the two loads that fetched; none for the reload.
      const tensors = gpt2Tensors(HP).length;
      assertEquals(server.gets("m", DATA), 2 * tensors, "no GET for the weights on the reload");
    });
  },
);

browserTest(
  "in the tab, the engine reads the page's messages between decoding steps: a second generation starts, an abort stops one mid-way, and its replies say how many slots are busy",
  async () => {
    await withTempDir(async (dir) => {
      await writeSharpModel(dir);
      await using server = await serveTab({ m: dir });
      const length = 60;
      const run = await driveTab({
        steps: [{ goto: server.url }, {
          eval: `const gpt2 = await import("/dist/gpt2.js");
          const model = await gpt2.loadModel("/models/m/", { threads: 1 });
          try {
            // A long generation; once its first token is in, a second one of one token.
            let first = 0, atPost = -1, atSecond = -1, second, busyAtFirst;
            for await (const _ of model.generate([1, 2, 3], { length: ${length} })) {
              if (++first === 1) {
                busyAtFirst = model.slotsBusy;
                atPost = first;
                second = (async () => {
                  for await (const _ of model.generate([4, 5], { length: 1 })) atSecond = first;
                })();
              }
            }
            await second;
            const busyAfter = [model.slotsBusy, model.waiting];
            // An abort after two tokens ends the generation with the abort's reason (a
            // generator left waiting would never end: given up on after 20 s).
            const stop = new AbortController();
            let before = 0;
            const aborted = (async () => {
              try {
                for await (const _ of model.generate([1, 2, 3], { length: ${length}, signal: stop.signal })) {
                  if (++before === 2) stop.abort();
                }
                return "ended";
              } catch (e) {
                return e.name;
              }
            })();
            const error = await Promise.race([
              aborted,
              new Promise((resolve) => setTimeout(() => resolve("still waiting after 20 s"), 20000)),
            ]);
            return { first, atPost, atSecond, before, error, busyAtFirst, busyAfter };
          } finally {
            model[Symbol.dispose]();
          }`,
        }],
      });
      assertEquals(run.errors, []);
      const got = run.results[0] as Record<string, number | string | number[]>;
      assertEquals([got.first, got.before, got.error], [length, 2, "AbortError"]);
      // The engine's replies carry its scheduler's load: a slot held while a token comes,
      // none held or waited for once both generations are done.
      assertEquals([got.busyAtFirst, got.busyAfter], [1, [0, 0]], "slotsBusy and waiting");
      // Without a turn of the event loop between steps, the second request would wait for
      // the first generation to end (${length} tokens).
      assert((got.atSecond as number) < length, JSON.stringify(got));
    });
  },
);

browserTest(
  "a GGUF file in the tab, by its URL or in a picked folder, gives Deno's greedy tokens in the file's own type; a reload reads it from the cache",
  async () => {
    await withTempDir(async (root) => {
      const [dir, q4Dir] = [`${root}/g`, `${root}/h`];
      await Deno.mkdir(dir);
      const name = "m-Q8_0.gguf";
      await writeSharpGguf(`${dir}/${name}`);
      await Deno.writeTextFile(`${dir}/notes.txt`, "a folder may hold other files");
      // A Q4_0 file, whose blocks Deno keeps as they are (no float32 on the way): so must the tab.
      await Deno.mkdir(q4Dir);
      await writeSharpGguf(`${q4Dir}/m-Q4_0.gguf`, "q4_0");
      await using server = await serveTab({ g: dir, h: q4Dir });
      const url = `/models/g/${name}`;
      const q4Url = "/models/h/m-Q4_0.gguf";
      const picker = `document.body.insertAdjacentHTML("beforeend",
        '<input type="file" id="pick" webkitdirectory>'); return 0;`;
      const run = await driveTab({
        steps: [
          { goto: server.url },
          { eval: greedyScript(url, PROMPT, LENGTH, { threads: 2 }) },
          { goto: server.url }, // a reload
          { eval: greedyScript(url, PROMPT, LENGTH, { threads: 2 }) },
          { eval: picker },
          { files: ["#pick", [dir]] },
          { eval: greedyScript({ picked: "#pick" }, PROMPT, LENGTH, { threads: 2 }) },
          { eval: greedyScript(q4Url, PROMPT, LENGTH, { threads: 2, cache: false }) },
        ],
      });
      assertEquals(run.errors, []);
      const [first, second, , picked, q4] = run.results as TabResult[];
      const deno = await denoRun(`${dir}/${name}`);
      using model = await loadModel(`${dir}/${name}`, { threads: 1 });
      assertEquals(model.dtype, "q8", "a Q8_0 file loads as q8");
      const denoQ4 = await denoRun(`${q4Dir}/m-Q4_0.gguf`);
      assertEquals([q4.dtype, q4.conversion], ["q4", null], "the tab keeps Q4_0 blocks");
      assertEquals(q4.tokens, denoQ4.tokens, "Q4_0: the tab's tokens are Deno's");
      assertClose(Float32Array.from(q4.logits), Float32Array.from(denoQ4.logits), {
        atol: 1e-5,
        rtol: 1e-5,
      });
      const cases: [string, TabResult][] = [["by URL", first], ["reloaded", second], [
        "picked",
        picked,
      ]];
      for (const [what, tab] of cases) {
        assertEquals(tab.dtype, model.dtype, what);
        assertEquals(tab.tokens, deno.tokens, `${what}: the tab's tokens are Deno's`);
        assertClose(Float32Array.from(tab.logits), Float32Array.from(deno.logits), {
          atol: 1e-5,
          rtol: 1e-5,
        });
        assertEquals(tab.conversion, model.conversion ?? null, what);
      }
      const size = (await Deno.stat(`${dir}/${name}`)).size;
      assert(second.cachedBytes >= size, `the reload reads ${second.cachedBytes} cached bytes`);
      const gets = server.requests.filter((r) =>
        r.method === "GET" && r.path.startsWith("/models/")
      );
      assert(
        gets.length > 0 && gets.every((r) => r.path === url || r.path === q4Url),
        "only the GGUF files are fetched",
      );
      // The page's own GET of "/" marks each visit: after the second, the file is not fetched.
      const reload = server.requests.findLastIndex((r) => r.method === "GET" && r.path === "/");
      const after = server.requests.slice(reload).filter((r) => r.method === "GET");
      assertEquals(after.filter((r) => r.path === url), [], "no GET for the file after the reload");
    });
  },
);

browserTest(
  "the page runs the served model in the tab: load with progress, generate the server's greedy text and chat reply, forget it",
  async () => {
    await withTempDir(async (dir) => {
      await writeSharpModel(dir);
      using model = await loadModel(dir, { threads: 1 });
      const api = new ApiServer(model, {
        modelId: "m",
        slots: 4,
        staticFiles: await loadStaticFiles(),
        modelDir: dir,
      });
      await using server = await serveOnLoopback(api);
      const page = await fetch(server.url);
      await page.body?.cancel();
      assertEquals(page.headers.get("cross-origin-opener-policy"), "same-origin");
      assertEquals(page.headers.get("cross-origin-embedder-policy"), "require-corp");
      const head = await fetch(`${server.url}models/m/${DATA}`, { method: "HEAD" });
      assertEquals(
        head.headers.get("content-length"),
        String((await Deno.stat(`${dir}/${DATA}`)).size),
      );
      const settings = { temperature: 0, max_tokens: 12 };
      const expected = (await (await fetch(`${server.url}v1/completions`, {
        method: "POST",
        body: JSON.stringify({ model: "m", prompt: PROMPT, ...settings }),
      })).json()).choices[0].text;
      const messages = [{ role: "user", content: PROMPT }];
      const expectedReply = (await (await fetch(`${server.url}v1/chat/completions`, {
        method: "POST",
        body: JSON.stringify({ model: "m", messages, temperature: 0, max_completion_tokens: 12 }),
      })).json()).choices[0].message.content;

      const generate = [
        { fill: ["#prompt", PROMPT] },
        { fill: ["#temperature", "0"] },
        { fill: ["#max_tokens", "12"] },
        { click: "#generate" },
        { waitFor: "#status", text: "done" },
        { textOf: "#completion" },
      ] as const;
      const run = await driveTab({
        steps: [
          { goto: server.url },
          { waitFor: "#model", text: "model m" },
          { select: ["#where", "tab"] },
          { textOf: "#tab_env" },
          { click: "#tab_load" },
          { waitFor: "#tab_status", text: "loaded" },
          { textOf: "#tab_status" },
          ...generate,
          { click: "#tab_forget" },
          { waitFor: "#tab_status", text: "forgot the model" },
          { files: ["#tab_folder", [dir]] },
          { waitFor: "#tab_status", text: "loaded" },
          ...generate,
          // Chat in the tab: the server's chat code, run on the tab's model.
          { click: "input[name=mode][value=chat]" },
          { fill: ["#message", PROMPT] },
          { click: "#generate" },
          { waitFor: "#conversation .message.assistant[data-finished]", text: "" },
          { textOf: "#conversation .message.assistant .content" },
        ],
      });
      const [env, loaded, completion, fromDisk, reply] = run.results as string[];
      assert(env.startsWith("cross-origin isolated"), env);
      assert(/loaded in .* s: wasm, f32 weights, 2 threads/.test(loaded), loaded);
      assertEquals(completion, expected, "the tab's greedy text is the server's");
      assertEquals(fromDisk, expected, "a folder picked from disk runs the same model");
      assert(expectedReply.length > 0, "the chat API's reply has text");
      assertEquals(reply, expectedReply, "the tab's chat reply is the chat API's");
      assertEquals(run.errors, []);
    });
  },
);

browserTest(
  "a missing or corrupt file, a model too large for the tab, or no isolation is a message, and the page answers",
  async () => {
    await withTempDir(async (root) => {
      const folders: Record<string, string> = {};
      for (const name of ["good", "missing", "corrupt", "huge"]) {
        folders[name] = `${root}/${name}`;
        await writeSharpModel(folders[name], name === "huge" ? "safetensors" : "tensorflow");
      }
      await Deno.remove(`${folders.missing}/${DATA}`);
      const data = await Deno.readFile(`${folders.corrupt}/${DATA}`);
      data[data.length >> 1] ^= 0x10;
      await Deno.writeFile(`${folders.corrupt}/${DATA}`, data);
      await writeHugeSafetensors(folders.huge);

      await using server = await serveTab(folders);
      const alive = { eval: "return 1 + 1;" };
      const run = await driveTab({
        steps: [
          { goto: server.url },
          { eval: failingLoadScript("/models/missing/", { threads: 2 }) },
          alive,
          { eval: failingLoadScript("/models/corrupt/", { threads: 2 }) },
          alive,
          { eval: failingLoadScript("/models/huge/", { threads: 2 }) },
          alive,
          { eval: failingLoadScript("/models/nowhere/", { threads: 1 }) },
          alive,
          { eval: failingLoadScript("/models/good/", { dtype: "q3" }) },
          { eval: failingLoadScript("/models/good/", { threads: 0 }) },
          // The page's own controls say what failed: the page as static files, given a model.
          { goto: `${server.url}?model=/models/missing/` },
          { click: "#tab_load" },
          { waitFor: "#tab_status", text: "error" },
          { textOf: "#tab_status" },
        ],
      });
      const [missing, , corrupt, , huge, , nowhere, , dtype, threads, shown] = run.results as {
        name: string;
        message: string;
      }[];
      const expect = (got: { name: string; message: string }, name: string, ...words: string[]) => {
        assertEquals(got.name, name, got.message);
        for (const w of words) assert(got.message.includes(w), `"${got.message}" says "${w}"`);
        assertLibraryTerms(got.message);
      };
      expect(missing, "ModelFileError", DATA, "file not found");
      expect(corrupt, "ModelFileError", DATA, "CRC-32C");
      expect(huge, "BackendError", "GiB");
      expect(nowhere, "ModelFileError", "No GPT-2 model", "/models/nowhere/");
      // Options are checked as in Deno, by the same check, before a worker starts.
      expect(dtype, "RangeError", 'Unknown dtype "q3"', "f32, f16, q8, q4, auto");
      expect(threads, "RangeError", "threads must be a positive integer, got 0");
      assertEquals(run.results.filter((r) => r === 2).length, 4, "the page answers after each");
      assert(
        String(shown).startsWith(`error: Cannot open "${server.url}models/missing/`),
        String(shown),
      );

      // Without the isolation headers: one thread, and the page says why.
      await using plain = await serveTab(folders, false);
      const unisolated = await driveTab({
        steps: [
          { goto: plain.url },
          { textOf: "#tab_env" },
          { eval: greedyScript("/models/good/", PROMPT, LENGTH) },
          { eval: failingLoadScript("/models/good/", { threads: 2 }) },
        ],
      });
      const [env, one, two] = unisolated.results as [
        string,
        TabResult,
        { name: string; message: string },
      ];
      assert(env.startsWith("not cross-origin isolated: the model runs on one thread"), env);
      assertEquals([one.isolated, one.threads], [false, 1]);
      assertEquals(one.tokens, (await denoRun(folders.good, "f32")).tokens);
      expect(two, "BackendError", "cross-origin isolated");
    });
  },
);

browserTest("the README's example page loads a model and writes its greedy text", async () => {
  await withTempDir(async (dir) => {
    await writeSharpModel(dir);
    await using server = await serveTab({ "124M": dir });
    const run = await driveTab({
      steps: [
        { goto: `${server.url}example.html` },
        { waitFor: "#out[data-done]", text: "Hello" },
        { textOf: "#out" },
      ],
    });
    using model = await loadModel(dir, { threads: 1 });
    let expected = "Hello";
    for await (const text of model.generateText("Hello", { length: 40, temperature: 0 })) {
      expected += text;
    }
    assertEquals(run.results, [expected]);
    assertEquals(run.errors, []);
  });
});

/** Run in every worker of the page: keeps each GPU device it asks for, for a test to destroy. */
const KEEP_DEVICES = `
  if (typeof GPUAdapter === "undefined") return;
  const request = GPUAdapter.prototype.requestDevice;
  GPUAdapter.prototype.requestDevice = async function (...args) {
    const device = await request.apply(this, args);
    (self.devicesSeen ??= []).push(device);
    return device;
  };`;

browserTest(
  "WebGPU in the tab gives wasm's greedy tokens, and a lost device is a BackendError, not a hang",
  async () => {
    await withTempDir(async (dir) => {
      await writeSharpModel(dir);
      await using server = await serveTab({ m: dir });
      const run = await driveTab({
        webgpu: true,
        workerInit: KEEP_DEVICES,
        steps: [
          { goto: server.url },
          { eval: greedyScript("/models/m/", PROMPT, LENGTH, { backend: "webgpu", dtype: "f32" }) },
          {
            eval: `const gpt2 = await import("/dist/gpt2.js");
            globalThis.model = await gpt2.loadModel("/models/m/", { backend: "webgpu" });
            return model.backend;`,
          },
          { workerEval: "for (const d of self.devicesSeen ?? []) d.destroy(); return 0;" },
          {
            eval: `try {
              for await (const _ of model.generate([1, 2, 3], { length: 4 })) {}
              return "generated";
            } catch (e) {
              return { name: e.name, message: e.message };
            }`,
          },
          { eval: "return 1 + 1;" },
        ],
      });
      const [gpu, backend, , lost, alive] = run.results as [
        TabResult,
        string,
        number,
        { name: string; message: string },
        number,
      ];
      assertEquals([gpu.backend, backend], ["webgpu", "webgpu"]);
      assertEquals(gpu.tokens, (await denoRun(dir, "f32")).tokens, "WebGPU's tokens are wasm's");
      assertEquals(lost.name, "BackendError", lost.message);
      assert(lost.message.includes("lost"), lost.message);
      assert(lost.message.includes('backend "wasm"'), lost.message);
      assertLibraryTerms(lost.message);
      assertEquals(alive, 2, "the page still answers");
    });
  },
);

/**
 * A safetensors file with the tensors of a model far beyond a tab's 4 GiB of wasm memory
 * in any weight type (19 billion float16 weights, 39 GB), written sparse: only the header.
 */
async function writeHugeSafetensors(dir: string): Promise<void> {
  const hp: HParams = { n_vocab: 300, n_ctx: 64, n_embd: 4096, n_head: 32, n_layer: 96 };
  await Deno.writeTextFile(
    `${dir}/config.json`,
    JSON.stringify({
      vocab_size: hp.n_vocab,
      n_positions: hp.n_ctx,
      n_embd: hp.n_embd,
      n_head: hp.n_head,
      n_layer: hp.n_layer,
    }),
  );
  const header: Record<string, unknown> = {};
  let offset = 0;
  const names = hfNames("");
  for (const t of gpt2Tensors(hp)) {
    const { name, shape } = names(t.name, t.shape);
    const bytes = 2 * shape.reduce((a, b) => a * b, 1);
    header[name] = { dtype: "F16", shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header).padEnd(8 * 4096));
  const prologue = new Uint8Array(8 + json.length);
  new DataView(prologue.buffer).setBigUint64(0, BigInt(json.length), true);
  prologue.set(json, 8);
  const path = `${dir}/model.safetensors`;
  await Deno.writeFile(path, prologue);
  await Deno.truncate(path, prologue.length + offset);
}
