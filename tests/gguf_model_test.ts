/**
 * GPT-2 from GGUF files: the trained fixture's, written by llama.cpp's `gguf` package, give
 * the same logits as its TensorFlow checkpoint (F32 bit for bit, F16 bit for bit with
 * float16 weights) and the same tokens; quantized files, the fixture's and K-quant files
 * of a 256-wide model written here, give the logits of their dequantized weights; a broken
 * or unsupported file is one line naming what is wrong.
 */
import { fileURLToPath } from "node:url";
import { assert, assertEquals, assertRejects } from "./asserts.ts";
import { withTempDir } from "./temp_dir.ts";
import { createBackend } from "../runtime/backend/create.ts";
import { WEIGHT_FORMATS } from "../runtime/backend/wasm/weight_formats.ts";
import { ModelFileError } from "../runtime/errors.ts";
import { loadModel, type Model } from "../runtime/generate/model.ts";
import { Gpt2 } from "../runtime/gpt2/gpt2.ts";
import type { HParams } from "../runtime/gpt2/hparams.ts";
import { openModelFiles } from "../runtime/gpt2/model_files.ts";
import { ggufNames, gpt2Tensors } from "../runtime/gpt2/tensor_names.ts";
import { openGguf } from "../runtime/io/gguf.ts";
import { readAsFloat32, type TensorSource } from "../runtime/io/tensor_source.ts";
import type { Float32Convertible } from "../runtime/io/tensor_types.ts";
import {
  memorySource,
  randomWeights,
  syntheticVocabulary,
  type Weights,
} from "../testing/random_model.ts";
import {
  type GgufEntry,
  type Gpt2GgufOptions,
  transpose,
  writeGpt2Gguf,
} from "../testing/gguf_writer.ts";

const FIXTURES = fileURLToPath(new URL("../../shared/fixtures/", import.meta.url));
const TF_DIR = `${FIXTURES}trained-tiny`;
const GGUF_DIR = `${FIXTURES}trained-tiny-gguf`;
const gguf = (type: string) => `${GGUF_DIR}/trained-tiny-${type}.gguf`;
const hasFixture = (() => {
  try {
    Deno.statSync(gguf("F32"));
    Deno.statSync(`${TF_DIR}/reference.json`);
    return true;
  } catch {
    console.warn(
      `Skipping the trained-fixture GGUF model tests: ${GGUF_DIR} not found (the shared ` +
        `fixtures live next to the project checkout, in ../shared)`,
    );
    return false;
  }
})();
const prompts = hasFixture
  ? Deno.readTextFileSync(`${TF_DIR}/prompts.txt`).split("\n").filter((l) => l.length > 0)
  : [];

/** Logits at every position of each prompt, from `model`. */
async function promptLogits(model: Model): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  for (const p of prompts) {
    const ids = model.tokenizer.encode(p);
    const { n_vocab: V } = model.hparams;
    // logits() of every prefix is the model's output at every position of the prompt.
    const rows = new Float32Array(ids.length * V);
    for (let t = 1; t <= ids.length; t++) {
      rows.set(await model.logits(ids.slice(0, t)), (t - 1) * V);
    }
    out.push(rows);
  }
  return out;
}

function assertSameBits(a: Float32Array[], b: Float32Array[], what: string): void {
  assertEquals(a.length, b.length);
  for (let i = 0; i < a.length; i++) {
    const x = new Uint32Array(a[i].buffer), y = new Uint32Array(b[i].buffer);
    let differ = 0;
    for (let j = 0; j < x.length; j++) if (x[j] !== y[j]) differ++;
    assertEquals(differ, 0, `${what}, prompt ${i}: ${differ} of ${x.length} logits differ`);
  }
}

Deno.test({
  name: "the fixture's F32 GGUF gives its TensorFlow checkpoint's logits, bit for bit",
  ignore: !hasFixture,
  async fn() {
    using tf = await loadModel(TF_DIR, { dtype: "f32", threads: 2 });
    using g = await loadModel(gguf("F32"), { dtype: "f32", threads: 2 });
    assertEquals(g.hparams, tf.hparams);
    assertEquals(g.conversion, undefined);
    assertSameBits(await promptLogits(g), await promptLogits(tf), "F32");
    // And the float64 reference's greedy continuations (llama.cpp gives the same ones).
    const reference = JSON.parse(Deno.readTextFileSync(`${TF_DIR}/reference.json`));
    for (const [i, p] of prompts.entries()) {
      const ids: number[] = [];
      for await (const id of g.generate(g.tokenizer.encode(p), { length: 20, temperature: 0 })) {
        ids.push(id);
      }
      assertEquals(ids, reference.prompts[i].greedy_ids, `prompt ${i}`);
    }
  },
});

Deno.test({
  name: "the fixture's F16 GGUF gives the checkpoint's logits with float16 weights, bit for bit",
  ignore: !hasFixture,
  async fn() {
    // F16's matrices are the checkpoint's rounded to nearest even, as --dtype f16 rounds
    // them; its norms, biases and position embedding are float32, as f16 keeps them.
    {
      using tf = await loadModel(TF_DIR, { dtype: "f16", threads: 2 });
      using g = await loadModel(gguf("F16"), { dtype: "f16", threads: 2 });
      assertSameBits(await promptLogits(g), await promptLogits(tf), "F16 as f16");
    }
    // As f32 it is the f32 model of the float16-rounded checkpoint. (Not the f16 model's
    // bits: its head sums as conv1d over wteᵀ, in another order than the f32 head; the
    // logits differ by up to about 1e-5.)
    using tfFiles = await openModelFiles(TF_DIR);
    const weights = await dequantized(tfFiles.source, tfFiles.hparams, true);
    const rounded: Weights = new Map([...weights].map(([name, t]) => {
      const spec = gpt2Tensors(tfFiles.hparams).find((s) => s.name === name)!;
      const data = spec.role === "plain" ? t.data : Float32Array.from(new Float16Array(t.data));
      return [name, { shape: t.shape, data }];
    }));
    const ids = (await tfFiles.tokenizer()).encode(prompts[0]);
    assertEquals(
      await ggufLogits(gguf("F16"), ids),
      await memoryLogits(tfFiles.hparams, rounded, ids),
    );
  },
});

Deno.test({
  name: "a GGUF file's tokenizer encodes and decodes exactly as encoder.json and vocab.bpe do",
  ignore: !hasFixture,
  async fn() {
    using tfFiles = await openModelFiles(TF_DIR);
    using ggufFiles = await openModelFiles(gguf("Q4_0"));
    const [a, b] = [await tfFiles.tokenizer(), await ggufFiles.tokenizer()];
    assertEquals([b.vocabSize, b.endOfText], [a.vocabSize, a.endOfText]);
    const reference = JSON.parse(Deno.readTextFileSync(`${TF_DIR}/reference.json`));
    const heldout = Deno.readTextFileSync(`${TF_DIR}/heldout.txt`);
    const ids = b.encode(heldout);
    assertEquals(ids.length, reference.heldout.tokens);
    assertEquals(ids, a.encode(heldout));
    assertEquals(b.decode(ids), heldout);
    for (const [i, p] of prompts.entries()) {
      assertEquals(b.encode(p), reference.prompts[i].prompt_ids, `prompt ${i}`);
      assertEquals(b.encode(p), a.encode(p), `prompt ${i}`);
    }
  },
});

/**
 * The weights a GGUF file holds (or with `tf`, a TensorFlow checkpoint), dequantized by
 * `readAsFloat32`, under the checkpoint's names and layout: what a model loaded from the
 * file must compute with.
 */
async function dequantized(source: TensorSource, hp: HParams, tf = false): Promise<Weights> {
  const weights: Weights = new Map();
  for (const spec of gpt2Tensors(hp)) {
    const { name, shape, transposed } = tf
      ? { name: spec.name, shape: spec.shape, transposed: false }
      : ggufNames(spec.name, spec.shape);
    const values = new Float32Array(spec.shape.reduce((a, b) => a * b));
    await readAsFloat32(source, name, values);
    weights.set(spec.name, {
      shape: spec.shape,
      data: transposed ? transpose(values, shape[0], shape[1]) : values,
    });
  }
  return weights;
}

/** Logits at every position of `ids` from `weights` in memory, on the wasm backend. */
async function memoryLogits(hp: HParams, weights: Weights, ids: number[]): Promise<Float32Array> {
  using gpt2 = Gpt2.create(await createBackend("wasm", { threads: 2, weightType: "f32" }), hp);
  using source = memorySource(weights);
  await gpt2.load(source);
  return await gpt2.forward([{ slot: 0, tokens: ids }], { allPositions: true });
}

/** Logits at every position of `ids` from the GGUF file at `path`. */
async function ggufLogits(path: string, ids: number[]): Promise<Float32Array> {
  using files = await openModelFiles(path);
  using gpt2 = Gpt2.create(
    await createBackend("wasm", { threads: 2, weightType: "f32" }),
    files.hparams,
  );
  await gpt2.load(files.source, files.names);
  return await gpt2.forward([{ slot: 0, tokens: ids }], { allPositions: true });
}

Deno.test({
  name: "each quantized fixture GGUF gives the logits of its dequantized weights, bit for bit",
  ignore: !hasFixture,
  async fn() {
    for (const type of ["Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"]) {
      using files = await openModelFiles(gguf(type));
      const weights = await dequantized(files.source, files.hparams);
      const ids = (await files.tokenizer()).encode(prompts[0]);
      const want = await memoryLogits(files.hparams, weights, ids);
      assertEquals(await ggufLogits(gguf(type), ids), want, type);
      assertEquals(files.conversion(), `token_embd, blk.*: ${type} converted to f32 while loading`);
    }
  },
});

/** A 256-wide GPT-2, the narrowest whose rows are whole K-quant super-blocks. */
const HP_K: HParams = { n_vocab: 512, n_ctx: 32, n_embd: 256, n_head: 4, n_layer: 2 };
const vocabulary = syntheticVocabulary(HP_K.n_vocab);
const TOKENS = [...vocabulary.encoder.keys()];
const MERGES = vocabulary.merges.map(([a, b]) => `${a} ${b}`);

async function writeK(path: string, weights: Weights, options: Partial<Gpt2GgufOptions> = {}) {
  await writeGpt2Gguf(path, HP_K, weights, { tokens: TOKENS, merges: MERGES, ...options });
}

Deno.test("Q4_K, Q5_K and Q6_K GGUF files of a 256-wide GPT-2 give the logits of their dequantized weights", async () => {
  await withTempDir(async (dir) => {
    const weights = randomWeights(HP_K, 11);
    const ids = [3, 500, 17, 256, 99, 4, 511, 0];
    const f32 = await memoryLogits(HP_K, weights, ids);
    const errors: number[] = [];
    for (const type of ["q4_k", "q5_k", "q6_k"] as Float32Convertible[]) {
      const path = `${dir}/${type}.gguf`;
      await writeK(path, weights, { type });
      using file = await openGguf(path);
      assertEquals(file.tensors.get("blk.0.ffn_down.weight")?.dtype, type);
      const got = await ggufLogits(path, ids);
      assertEquals(got, await memoryLogits(HP_K, await dequantized(file, HP_K), ids), type);
      // And near the float32 model's: the more bits, the nearer.
      let err = 0;
      for (let i = 0; i < got.length; i++) err = Math.max(err, Math.abs(got[i] - f32[i]));
      // Measured: 0.30, 0.10, 0.05 (random weights, N(0, 0.02²)).
      const limit = { q4_k: 0.6, q5_k: 0.2, q6_k: 0.1 }[type as string]!;
      console.log(type, err);
      assert(err < limit, `${type}: largest logit difference from float32 ${err}`);
      errors.push(err);
    }
    assert(errors[0] > errors[1] && errors[1] > errors[2], `${errors}: more bits, nearer`);
  });
});

Deno.test("loadModel() takes a .gguf file or a folder holding one, and names the files of a folder of several", async () => {
  await withTempDir(async (dir) => {
    const weights = randomWeights(HP_K, 2);
    await Deno.mkdir(`${dir}/one`);
    await writeK(`${dir}/one/model-Q8_0.gguf`, weights, { type: "q8_0" });
    for (const path of [`${dir}/one`, `${dir}/one/model-Q8_0.gguf`]) {
      using model = await loadModel(path, { threads: 1 });
      assertEquals(model.hparams, HP_K);
      // A Q8_0 file loads as q8 by default: converted unless q8 keeps Q8_0 blocks.
      assertEquals(model.dtype, "q8");
      const kept = WEIGHT_FORMATS.q8.blocks?.ggmlType === "q8_0";
      const conversion = "token_embd, blk.*: Q8_0 converted to f32 while loading";
      assertEquals(model.conversion, kept ? undefined : conversion);
      assertEquals(model.tokenizer.decode(model.tokenizer.encode("the cat")), "the cat");
    }
    await writeK(`${dir}/one/model-F16.gguf`, weights, { type: "float16" });
    await assertRejects(
      () => loadModel(`${dir}/one`),
      ModelFileError,
      "holds 2 GGUF files (model-F16.gguf, model-Q8_0.gguf): name the one to use",
    );
    await Deno.writeTextFile(`${dir}/notes.txt`, "hello");
    await assertRejects(
      () => loadModel(`${dir}/notes.txt`),
      ModelFileError,
      "expected a model folder or a .gguf file",
    );
  });
});

/** Writes a 256-wide model with `options`, expects loading it to fail naming `fragments`. */
async function expectRefused(options: Partial<Gpt2GgufOptions>, ...fragments: string[]) {
  await withTempDir(async (dir) => {
    const path = `${dir}/m.gguf`;
    await writeK(path, randomWeights(HP_K, 5), options);
    const e = await assertRejects(() => loadModel(path, { threads: 1 }), ModelFileError);
    for (const f of fragments) assert(e.message.includes(f), `"${f}" not in: ${e.message}`);
    assert(!e.message.includes("\n"), `not one line: ${e.message}`);
  });
}

const meta = (key: string, value: GgufEntry): Partial<Gpt2GgufOptions> => ({
  metadata: [[key, value]],
});

Deno.test("a GGUF model of another architecture, tokenizer or shape is refused in one line", async () => {
  await expectRefused(
    meta("general.architecture", { type: "string", value: "llama" }),
    'architecture is "llama", expected "gpt2"',
  );
  await expectRefused(
    meta("tokenizer.ggml.model", { type: "string", value: "llama" }),
    'tokenizer.ggml.model is "llama"',
  );
  await expectRefused(
    meta("gpt2.block_count", { type: "string", value: "2" }),
    '"gpt2.block_count" is "2", expected an integer',
  );
  await expectRefused(
    meta("gpt2.attention.head_count", { type: "uint32", value: 3 }),
    "n_embd (256) must be a multiple of n_head (3)",
  );
  await expectRefused(
    meta("gpt2.attention.layer_norm_epsilon", { type: "float32", value: 1e-6 }),
    "layer_norm_epsilon is 9.999999974752427e-7",
    "uses GPT-2's 0.00001",
  );
  await expectRefused(
    meta("gpt2.feed_forward_length", { type: "uint32", value: 512 }),
    "feed_forward_length is 512",
    "4 × n_embd = 1024",
  );
  await expectRefused(
    meta("tokenizer.ggml.merges", {
      type: "array",
      items: "uint8",
      value: [{ type: "uint8", value: 1 }],
    }),
    '"tokenizer.ggml.merges" is an array of 1, expected an array of strings',
  );
  // More blocks than the file holds: the loader names the first tensor missing.
  await expectRefused(
    meta("gpt2.block_count", { type: "uint32", value: 3 }),
    'Cannot load tensor "blk.2.attn_norm.weight": not found in',
  );
  // A longer context than the position embedding: the shape says so.
  await expectRefused(
    meta("gpt2.context_length", { type: "uint32", value: 64 }),
    'Cannot load tensor "position_embd.weight": got shape [32, 256], expected [64, 256]',
  );
});

Deno.test("a GGUF model's output head: a copy of token_embd is tied; any other is its own matrix", async () => {
  await withTempDir(async (dir) => {
    const weights = randomWeights(HP_K, 6);
    const wte = weights.get("model/wte")!.data;
    const path = `${dir}/copy.gguf`;
    await writeK(path, weights, { output: { data: new Uint8Array(wte.buffer.slice(0)) } });
    using tied = await loadModel(path, { threads: 1 });
    assertEquals(tied.hparams, HP_K);
    // A head whose rows are token_embd's in reverse order gives each token v the logit
    // the tied model gives V − 1 − v, bit for bit, in every weight type.
    const { n_vocab: V, n_embd: C } = HP_K;
    const reversed = new Float32Array(V * C);
    for (let v = 0; v < V; v++) reversed.set(wte.subarray((V - 1 - v) * C, (V - v) * C), v * C);
    const untiedPath = `${dir}/untied.gguf`;
    await writeK(untiedPath, weights, { output: { data: new Uint8Array(reversed.buffer) } });
    const ids = [3, 500, 17, 256, 99];
    for (const dtype of ["f32", "f16", "q8"] as const) {
      using a = await loadModel(path, { threads: 1, dtype });
      using b = await loadModel(untiedPath, { threads: 2, dtype });
      assertEquals(b.hparams, { ...HP_K, untied_head: true });
      const want = await a.logits(ids);
      const got = await b.logits(ids);
      for (let v = 0; v < V; v++) {
        if (got[v] !== want[V - 1 - v]) {
          throw new Error(
            `${dtype}: logit ${v} is ${got[v]}, tied ${V - 1 - v} ${want[V - 1 - v]}`,
          );
        }
      }
    }
    // A head of another type than the embedding is its own too.
    const half = `${dir}/half-head.gguf`;
    await writeK(half, weights, {
      output: { type: "float16", data: new Uint8Array(new Float16Array(reversed).buffer) },
    });
    using h = await loadModel(half, { threads: 1 });
    assertEquals(h.hparams, { ...HP_K, untied_head: true });
  });
  // Of the wrong shape, it is refused by name.
  await expectRefused(
    {
      output: {
        ne: [HP_K.n_embd - 1, HP_K.n_vocab],
        data: new Uint8Array(4 * HP_K.n_vocab * (HP_K.n_embd - 1)),
      },
    },
    'Cannot load tensor "output.weight": got shape [512, 255], expected [512, 256]',
  );
});

Deno.test({
  name: "deno task generate runs a GGUF file and says once what it converted",
  ignore: !hasFixture,
  async fn() {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--allow-read",
        "--allow-env",
        "cli/generate_unconditional.ts",
        `--models_dir=${GGUF_DIR}`,
        "--model_name=trained-tiny-Q4_0.gguf",
        "--nsamples=1",
        "--length=12",
        "--temperature=0",
        "--dtype=q8",
      ],
      cwd: new URL("..", import.meta.url),
      stdout: "piped",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, stderr);
    assertEquals(
      stderr,
      "token_embd, blk.*: Q4_0 converted to f32 while loading, then stored as q8\n",
    );
    // The sample is the library's greedy text from the same file and type.
    using model = await loadModel(gguf("Q4_0"), { dtype: "q8" });
    const ids: number[] = [];
    const start = [model.tokenizer.endOfText];
    for await (const id of model.generate(start, { length: 12, temperature: 0 })) ids.push(id);
    const text = model.tokenizer.decode(ids);
    assert(new TextDecoder().decode(out.stdout).includes(text), "the tool's sample differs");
  },
});
