/**
 * Kept GGUF blocks and the GGUF type policy: the trained fixture's Q4_0 and Q8_0 files,
 * their blocks kept as they are, give the logits of `dtype: "q4"` and `"q8"` from the
 * TensorFlow checkpoint, bit for bit, on any number of threads; a GGUF file loads by default in its own type (F32 as
 * f32, F16 as f16, Q8_0 as q8, Q4_0 as q4, any other as q8, converted and said so); an
 * explicit dtype wins; `auto` never picks q4 for a float model; and asking a backend
 * without q4 for it is one line that says what to use instead.
 */
import { fileURLToPath } from "node:url";
import { assert, assertEquals, assertRejects } from "./asserts.ts";
import { loadModel } from "../runtime/generate/model.ts";
import { place } from "../runtime/generate/placement.ts";
import { type BackendTarget, wasmTarget } from "../runtime/backend/create.ts";
import { WEIGHT_FORMATS } from "../runtime/backend/wasm/weight_formats.ts";
import { BackendError } from "../runtime/errors.ts";
import { ggufWeightTypes } from "../runtime/gpt2/gguf_types.ts";
import type { HParams } from "../runtime/gpt2/hparams.ts";

const FIXTURES = fileURLToPath(new URL("../../shared/fixtures/", import.meta.url));
const TF_DIR = `${FIXTURES}trained-tiny`;
const gguf = (type: string) => `${FIXTURES}trained-tiny-gguf/trained-tiny-${type}.gguf`;
const hasFixture = (() => {
  try {
    return Deno.statSync(gguf("Q4_0")).isFile && Deno.statSync(`${TF_DIR}/prompts.txt`).isFile;
  } catch {
    return false;
  }
})();
const prompts = hasFixture
  ? Deno.readTextFileSync(`${TF_DIR}/prompts.txt`).split("\n").filter((l) => l.length > 0)
  : [];

/** Logits at every position of the first prompts, and 8 greedy tokens after the first. */
async function run(location: string, options: Parameters<typeof loadModel>[1]) {
  using model = await loadModel(location, options);
  const logits: number[] = [];
  for (const p of prompts.slice(0, 3)) {
    const ids = model.tokenizer.encode(p);
    for (let t = 1; t <= ids.length; t++) logits.push(...await model.logits(ids.slice(0, t)));
  }
  const tokens: number[] = [];
  const ids = model.tokenizer.encode(prompts[0]);
  for await (const id of model.generate(ids, { length: 8, temperature: 0 })) tokens.push(id);
  return { dtype: model.dtype, conversion: model.conversion, logits, tokens };
}

/** Float32 bits of each value, so that equal arrays are equal bit for bit. */
function bits(values: number[]): Uint32Array {
  return new Uint32Array(Float32Array.from(values).buffer);
}

Deno.test({
  name:
    "the fixture's Q4_0 and Q8_0 GGUF files, their blocks kept, give the logits of --dtype q4 and q8 from the TF checkpoint, bit for bit, on 1 to 3 threads",
  ignore: !hasFixture,
  async fn() {
    for (const [file, dtype] of [["Q8_0", "q8"], ["Q4_0", "q4"]] as const) {
      const checkpoint = await run(TF_DIR, { dtype, threads: 2 });
      assertEquals(checkpoint.dtype, dtype);
      for (const threads of [1, 2, 3]) {
        const got = await run(gguf(file), { threads });
        assertEquals(
          [got.dtype, got.conversion],
          [dtype, undefined],
          `${file} kept, not converted`,
        );
        assertEquals(bits(got.logits), bits(checkpoint.logits), `${file}, ${threads} threads`);
        assertEquals(got.tokens, checkpoint.tokens);
      }
    }
    const want = await run(TF_DIR, { dtype: "q4", threads: 2 });
    // And q4 is q4: near float32 but not it.
    const f32 = await run(TF_DIR, { dtype: "f32", threads: 2 });
    let worst = 0;
    for (let i = 0; i < f32.logits.length; i++) {
      worst = Math.max(worst, Math.abs(f32.logits[i] - want.logits[i]));
    }
    assert(worst > 1e-3 && worst < 3, `largest logit difference of q4 from f32: ${worst}`);
  },
});

Deno.test({
  name:
    "a GGUF file loads in its own type by default, any type without kernels as q8 said once; a dtype asked for wins",
  ignore: !hasFixture,
  async fn() {
    const keepsQ8 = WEIGHT_FORMATS.q8.blocks?.ggmlType === "q8_0";
    const cases: [string, string, string | undefined][] = [
      ["F32", "f32", undefined],
      ["F16", "f16", undefined],
      [
        "Q8_0",
        "q8",
        keepsQ8 ? undefined : "token_embd, blk.*: Q8_0 converted to f32 while loading",
      ],
      ["Q4_0", "q4", undefined],
      ["Q4_1", "q8", "token_embd, blk.*: Q4_1 converted to f32 while loading"],
      ["Q5_0", "q8", "token_embd, blk.*: Q5_0 converted to f32 while loading"],
      ["Q5_1", "q8", "token_embd, blk.*: Q5_1 converted to f32 while loading"],
    ];
    for (const [type, dtype, conversion] of cases) {
      for (const asked of [undefined, "auto"] as const) {
        using model = await loadModel(gguf(type), { threads: 1, dtype: asked });
        assertEquals([model.dtype, model.conversion], [dtype, conversion], `${type}, ${asked}`);
      }
    }
    using f32 = await loadModel(gguf("Q4_0"), { threads: 1, dtype: "f32" });
    assertEquals(
      [f32.dtype, f32.conversion],
      ["f32", "token_embd, blk.*: Q4_0 converted to f32 while loading"],
    );
    using q4 = await loadModel(gguf("Q5_1"), { threads: 1, dtype: "q4" });
    assertEquals(q4.dtype, "q4", "any file in q4 when asked");
  },
});

Deno.test("the GGUF policy's order: the most faithful of the matrices' types, then less, then more faithful", () => {
  assertEquals(ggufWeightTypes(["float32"]), ["f32", "f16", "q8", "q4"]);
  assertEquals(ggufWeightTypes(["bfloat16", "float16"]), ["f16", "q8", "q4", "f32"]);
  assertEquals(ggufWeightTypes(["q8_0"]), ["q8", "q4", "f16", "f32"]);
  assertEquals(ggufWeightTypes(["q4_0"]), ["q4", "q8", "f16", "f32"]);
  // A file that mixes Q4_0 with a type without kernels loads as q8, as Q4_K_M-style files do.
  assertEquals(ggufWeightTypes(["q4_0", "q6_k", "q4_0"])[0], "q8");
  for (const t of ["q4_1", "q5_0", "q5_1", "q4_k", "q5_k", "q6_k"] as const) {
    assertEquals(ggufWeightTypes([t])[0], "q8", t);
  }
});

/** A GPT-2 too large for q8 in a wasm memory, that fits in q4. */
const HUGE: HParams = { n_vocab: 50257, n_ctx: 1024, n_embd: 2048, n_head: 16, n_layer: 64 };

Deno.test("auto never picks q4 for a float model: one that only fits in q4 is refused, and fits when q4 is asked for", async () => {
  const wasm = await wasmTarget();
  const e = await assertRejects(() => place([wasm], HUGE, { slots: 1 }), BackendError);
  assert(e.message.includes("none of f32, f16, q8 weights"), e.message);
  assert(e.message.includes('use dtype "q4"'), `the advice names q4: ${e.message}`);
  assertEquals(e.message.split("\n").length, 1);
  const { weightType } = await place([wasm], HUGE, { slots: 1, dtype: "q4" });
  assertEquals(weightType, "q4");
});

Deno.test("a backend without q4 refuses it in one line that names what to use", async () => {
  const wasm = await wasmTarget();
  // WebGPU's target as placement sees it (f32 and f16 only), without needing an adapter.
  const webgpu: BackendTarget = {
    name: "webgpu",
    weightTypes: ["f32", "f16"],
    fit: () => ({ bytes: 1 }),
    create: () => Promise.reject(new Error("not created")),
  };
  const hp: HParams = { n_vocab: 300, n_ctx: 32, n_embd: 32, n_head: 2, n_layer: 2 };
  const e = await assertRejects(() => place([webgpu], hp, { dtype: "q4" }), BackendError);
  assertEquals(
    e.message,
    'The webgpu backend has no q4 weights: use dtype "f32", or backend "wasm"',
  );
  // With auto (a Q4_0 GGUF file's order), WebGPU takes its most faithful type instead.
  const placed = await place([webgpu, wasm], hp, { autoTypes: ggufWeightTypes(["q4_0"]) });
  assertEquals([placed.target.name, placed.weightType], ["webgpu", "f16"]);
});
