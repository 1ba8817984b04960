/**
 * The wasm backend with its weights in float16 and int8 (`WasmBackend.create({ dtype })`):
 * each op that reads a converted weight against the scalar references of
 * runtime/backend/reference/quant.ts, and the whole model on a generated checkpoint
 * against the same model in float32.
 *
 * Tolerances: f16 ops as the f32 ones (atol C · 1e-7, rtol 1e-5) against the reference on
 * float16-rounded weights; q8 ops within the f32 rounding of the q8 emulation, 2⁻²⁰ of
 * the sum of its terms' magnitudes (quant_kernels_test.ts derives the exact bound). The
 * whole model: f16's greedy tokens equal f32's; q8's top-1 token agrees with f32's at
 * 95% of positions or more.
 */
import { assertClose } from "./assert_close.ts";
import { assert, assertEquals, assertRejects } from "./asserts.ts";
import { fillWeight, weight } from "./backend_weights.ts";
import { randn } from "./kernel_harness.ts";
import type { Tensor } from "../runtime/backend/backend.ts";
import { WasmBackend } from "../runtime/backend/wasm/wasm_backend.ts";
import type { WeightType } from "../runtime/backend/backend.ts";
import { Gpt2 } from "../runtime/gpt2/gpt2.ts";
import type { HParams } from "../runtime/gpt2/hparams.ts";
import { Rng } from "../runtime/generate/random.ts";
import { ModelFileError } from "../runtime/errors.ts";
import { memorySource, randomWeights } from "../testing/random_model.ts";
import { refConv1d, refLogits } from "../runtime/backend/reference/ops.ts";
import {
  dequantizeQ8,
  q8Product,
  quantizeQ8Weight,
  roundArrayToFloat16,
} from "../runtime/backend/reference/quant.ts";

async function read(backend: WasmBackend, t: Tensor, n: number): Promise<Float32Array> {
  const out = new Float32Array(n);
  await backend.read(t, out);
  return out;
}

Deno.test("create() takes each weight type of the format table; one it has no format for is a TypeError", async () => {
  assertEquals(WasmBackend.weightTypes, ["f32", "f16", "q8", "q4"]);
  for (const dtype of WasmBackend.weightTypes) {
    using backend = await WasmBackend.create({ threads: 1, weightType: dtype });
    assertEquals(backend.weightType, dtype);
    assertEquals(backend.weight("conv1d", [64, 16]).type, dtype);
    assertEquals(backend.weight("embedding", [10, 64]).type, dtype);
    assertEquals(backend.weight("plain", [16]).type, "f32");
  }
  await assertRejects(
    () => WasmBackend.create({ threads: 1, weightType: "int4" as WeightType }),
    TypeError,
    'No weight format "int4"',
  );
});

Deno.test("weights hold their own type's bytes: f16 half of f32, q8 1.0625 bytes a weight (ggml Q8_0's 34 per 32)", async () => {
  const bytes = async (dtype: WeightType) => {
    using backend = await WasmBackend.create({ threads: 1, weightType: dtype });
    return [
      backend.weight("conv1d", [768, 2304]).bytes,
      backend.weight("embedding", [64, 768]).bytes,
    ];
  };
  assertEquals(await bytes("f32"), [4 * 768 * 2304, 4 * 64 * 768]);
  assertEquals(await bytes("f16"), [2 * 768 * 2304, 2 * 64 * 768]);
  assertEquals(await bytes("q8"), [1.0625 * 768 * 2304, 1.0625 * 64 * 768]);
});

Deno.test("conv1d ops on f16 and q8 weights equal the references, the same bits on 1 and 2 threads", async () => {
  const rng = new Rng(40);
  for (const dtype of ["f16", "q8"] as const) {
    for (const [T, C, OC] of [[1, 64, 48], [5, 70, 37], [3, 96, 130]]) {
      const x = randn(rng, T * C);
      const w = randn(rng, C * OC, 0.05);
      const b = randn(rng, OC, 0.1);
      const results: Float32Array[] = [];
      for (const threads of [1, 2]) {
        using backend = await WasmBackend.create({ threads, weightType: dtype, serialBelow: 0 });
        const matrix = await weight(backend, "conv1d", [C, OC], w);
        const bias = await weight(backend, "plain", [OC], b);
        const out = backend.tensor([T, OC]);
        // An f32 input: a plain weight, which ops take like any f32 tensor.
        const inp = await weight(backend, "plain", [T, C], x);
        backend.conv1d(out, inp, matrix, bias, T);
        results.push(await read(backend, out, T * OC));
      }
      const msg = `${dtype} T=${T} C=${C} OC=${OC}`;
      assertEquals(results[1], results[0], `${msg}: 1 and 2 threads`);
      if (dtype === "f16") {
        const want = refConv1d(x, roundArrayToFloat16(w), b, T, C, OC);
        assertClose(results[0], want, { atol: C * 1e-7, rtol: 1e-5, msg });
      } else {
        const wq = quantizeQ8Weight(w, C, OC);
        const { y, magnitude } = q8Product(x, wq, T);
        for (let i = 0; i < y.length; i++) {
          const want = y[i] + b[i % OC];
          const limit = 2 ** -20 * (magnitude[i] + Math.abs(b[i % OC]));
          assert(Math.abs(results[0][i] - want) <= limit, `${msg}: element ${i}`);
        }
      }
    }
  }
});

Deno.test("embed() and logits() on an f16 or q8 embedding: its rows, and the head over them", async () => {
  const rng = new Rng(41);
  const [V, C, nCtx, rows] = [37, 70, 8, 4];
  const wte = randn(rng, V * C, 0.1);
  const wpe = randn(rng, nCtx * C, 0.01);
  const tokens = Int32Array.from([0, V - 1, 17, 5]);
  const positions = Int32Array.from([0, 3, 7, 1]);
  for (const dtype of ["f16", "q8"] as const) {
    using backend = await WasmBackend.create({ threads: 2, weightType: dtype, serialBelow: 0 });
    const e = await weight(backend, "embedding", [V, C], wte);
    const p = await weight(backend, "plain", [nCtx, C], wpe);
    const [tok, pos] = [backend.tensor([rows], "i32"), backend.tensor([rows], "i32")];
    backend.write(tok, tokens);
    backend.write(pos, positions);
    const x = backend.tensor([rows, C]);
    backend.embed(x, tok, pos, e, p, rows);
    // The table the backend holds, as (V, C) f32.
    let table: Float32Array;
    if (dtype === "f16") {
      table = roundArrayToFloat16(wte);
    } else {
      const t = dequantizeQ8(quantizeQ8Weight(wte, C, V, true)); // (C, V)
      table = new Float32Array(V * C);
      for (let v = 0; v < V; v++) for (let k = 0; k < C; k++) table[v * C + k] = t[k * V + v];
    }
    const want = new Float32Array(rows * C);
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < C; k++) {
        want[r * C + k] = table[tokens[r] * C + k] + wpe[positions[r] * C + k];
      }
    }
    const got = await read(backend, x, rows * C);
    assertEquals(new Uint32Array(got.buffer), new Uint32Array(want.buffer), `${dtype} embed`);

    const logits = backend.tensor([rows, V]);
    backend.logits(logits, x, e, rows);
    const head = await read(backend, logits, rows * V);
    if (dtype === "f16") {
      assertClose(head, refLogits(got, table, rows, C, V), { atol: C * 1e-7, rtol: 1e-5 });
    } else {
      const { y, magnitude } = q8Product(got, quantizeQ8Weight(wte, C, V, true), rows);
      for (let i = 0; i < y.length; i++) {
        assert(Math.abs(head[i] - y[i]) <= 2 ** -20 * magnitude[i], `q8 logit ${i}`);
      }
    }
  }
});

/** A generated model a little larger than the unit tests' (GPT-2's initialisation). */
const HP: HParams = { n_vocab: 300, n_ctx: 64, n_embd: 128, n_head: 4, n_layer: 4 };
const WEIGHTS = randomWeights(HP, 42);

async function model(dtype: WeightType): Promise<Gpt2> {
  const g = await Gpt2.create(await WasmBackend.create({ threads: 2, weightType: dtype }), HP, {
    chunk: 32,
  });
  await g.load(memorySource(WEIGHTS));
  return g;
}

function argmax(a: Float32Array): number {
  let best = 0;
  for (let i = 1; i < a.length; i++) if (a[i] > a[best]) best = i;
  return best;
}

/** Greedy decoding of `n` tokens after `prompt`. */
async function greedy(g: Gpt2, prompt: number[], n: number): Promise<number[]> {
  g.reset();
  const out: number[] = [];
  let logits = await g.forward([{ slot: 0, tokens: prompt }]);
  for (let i = 0; i < n; i++) {
    const next = argmax(logits);
    out.push(next);
    logits = await g.forward([{ slot: 0, tokens: [next] }]);
  }
  return out;
}

Deno.test("the whole model: f16 decodes the same greedy tokens as f32, q8 agrees on the top token at >= 95% of positions, q4 at >= 60%", async () => {
  const rng = new Rng(43);
  const prompt = Array.from({ length: 48 }, () => Math.floor(rng.next() * HP.n_vocab));
  const V = HP.n_vocab;
  const top: Record<WeightType, number[]> = { f32: [], f16: [], q8: [], q4: [] };
  const tokens: Partial<Record<WeightType, number[]>> = {};
  for (const dtype of ["f32", "f16", "q8", "q4"] as const) {
    using g = await model(dtype);
    const logits = await g.forward([{ slot: 0, tokens: prompt }], { allPositions: true });
    for (let t = 0; t < prompt.length; t++) {
      top[dtype].push(argmax(logits.subarray(t * V, (t + 1) * V)));
    }
    tokens[dtype] = await greedy(g, prompt.slice(0, 8), 24);
  }
  assertEquals(tokens.f16, tokens.f32, "f16 greedy tokens");
  assertEquals(top.f16, top.f32, "f16 top-1 at every prompt position");
  const agree = top.q8.filter((v, i) => v === top.f32[i]).length / prompt.length;
  assert(agree >= 0.95, `q8 top-1 agrees with f32 at ${(100 * agree).toFixed(1)}% of positions`);
  const agreeQ4 = top.q4.filter((v, i) => v === top.f32[i]).length / prompt.length;
  // A loose bound: these random weights' logits sit close together, so 4-bit rounding
  // flips many argmaxes; q4's accuracy on real text is bench_accuracy_test's.
  assert(agreeQ4 >= 0.6, `q4 top-1 agrees with f32 at ${(100 * agreeQ4).toFixed(1)}% of positions`);
});

Deno.test("an f16/q8 embedding is read in the empty KV cache's tail when it fits, which is zero again when used", async () => {
  const rng = new Rng(44);
  const [V, C] = [37, 70];
  const wte = randn(rng, V * C, 0.1);
  for (const dtype of ["f16", "q8"] as const) {
    using backend = await WasmBackend.create({ threads: 1, weightType: dtype });
    const e = backend.weight("embedding", [V, C]);
    const shape = { layers: 2, slots: 2, positions: 64, heads: 2, headDim: 16 };
    const cache = backend.kvCache(shape);
    const before = backend.allocatedBytes;
    await fillWeight(backend, e, wte);
    assertEquals(backend.allocatedBytes, before, `${dtype}: staged without allocating`);
    const n = cache.bytes / 4;
    assertEquals(
      (await read(backend, cache, n)).every((v) => v === 0),
      true,
      `${dtype}: the cache is zero`,
    );
  }
});

Deno.test("without a KV cache that holds it, an f16/q8 embedding is packed in chunks through a Conv1D staging slot, allocating nothing, to the same bits", async () => {
  const rng = new Rng(48);
  // A slot of C · OC = 2800 floats holds two panels of 16 rows of wte: three chunks.
  const [V, C, OC, rows] = [83, 70, 40, 5];
  const wte = randn(rng, V * C, 0.1);
  const w = randn(rng, C * OC, 0.05);
  const h = randn(rng, rows * C);
  const wpe = new Float32Array(C);
  const tokens = Int32Array.from({ length: V }, (_, v) => v);
  for (const dtype of ["f16", "q8"] as const) {
    const results: Float32Array[][] = [];
    for (const withCache of [true, false]) {
      using be = await WasmBackend.create({ threads: 2, weightType: dtype, serialBelow: 0 });
      const matrix = be.weight("conv1d", [C, OC]);
      const e = be.weight("embedding", [V, C]);
      const p = await weight(be, "plain", [1, C], wpe);
      const inp = await weight(be, "plain", [rows, C], h);
      const [tok, pos] = [be.tensor([V], "i32"), be.tensor([V], "i32")];
      const [emb, head] = [be.tensor([V, C]), be.tensor([rows, V])];
      if (withCache) be.kvCache({ layers: 2, slots: 2, positions: 64, heads: 2, headDim: 16 });
      await fillWeight(be, matrix, w);
      const before = be.allocatedBytes;
      let staged: Float32Array | undefined;
      await be.loadWeight(e, (dest) => {
        dest.set(wte);
        staged = dest;
        return Promise.resolve();
      });
      assertEquals(be.allocatedBytes, before, `${dtype}: no wasm memory for the f32 embedding`);
      if (!withCache) {
        // The JS-heap copy is detached once packed, which frees it without waiting for GC.
        assertEquals(staged?.length, 0, `${dtype}: the f32 copy is released`);
      }
      be.write(tok, tokens);
      be.write(pos, new Int32Array(V));
      be.embed(emb, tok, pos, e, p, V);
      be.logits(head, inp, e, rows);
      results.push([await read(be, emb, V * C), await read(be, head, rows * V)]);
    }
    const [cached, chunked] = results;
    assertEquals(chunked[0], cached[0], `${dtype}: every row of the table, bit for bit`);
    assertEquals(chunked[1], cached[1], `${dtype}: the head's logits, bit for bit`);
  }
});

Deno.test("f16 weights of magnitude 64 or more are a RangeError with the fix, counted over every thread and chunk; f32 and q8 take them; the loader names the tensor", async () => {
  const rng = new Rng(49);
  const [C, OC, V] = [70, 40, 83];
  const w = randn(rng, C * OC, 0.05);
  // Two that do not fit, one in each worker's half of the panels, and one that does.
  w[3] = 64;
  w[C * OC - 1] = -1e6;
  w[5] = 63.98;
  const wte = randn(rng, V * C, 0.1);
  wte[0] = NaN;
  wte[V * C - 1] = 80;
  wte[17 * C] = -70;
  const fix = 'which "f16" weights do not hold: load the model as "f32" or "q8"';
  for (const withCache of [true, false]) {
    using be = await WasmBackend.create({ threads: 2, weightType: "f16", serialBelow: 0 });
    const matrix = be.weight("conv1d", [C, OC]);
    const e = be.weight("embedding", [V, C]);
    if (withCache) be.kvCache({ layers: 2, slots: 2, positions: 64, heads: 2, headDim: 16 });
    await assertRejects(
      () => fillWeight(be, matrix, w),
      RangeError,
      "it has 2 values of magnitude",
    );
    // Without the cache, wte goes in three chunks of two panels (as the test above).
    const msg = await assertRejects(() => fillWeight(be, e, wte), RangeError);
    assertEquals(
      msg.message,
      `it has 3 values of magnitude 63.98 or more, or not finite, ${fix}`,
      `cache ${withCache}`,
    );
  }
  for (const dtype of ["f32", "q8"] as const) {
    using be = await WasmBackend.create({ threads: 2, weightType: dtype, serialBelow: 0 });
    await fillWeight(be, be.weight("conv1d", [C, OC]), w);
  }
  const weights = randomWeights(HP, 42);
  weights.get("model/h1/mlp/c_proj/w")!.data[7] = 100;
  using g = await Gpt2.create(await WasmBackend.create({ threads: 1, weightType: "f16" }), HP);
  await assertRejects(
    () => g.load(memorySource(weights)),
    ModelFileError,
    `Cannot load tensor "model/h1/mlp/c_proj/w": it has 1 value of magnitude 63.98 or more, or not finite, ${fix}`,
  );
});

Deno.test("every op on f16 and q8 weights gives the same bits on 1, 2 and 3 threads", async () => {
  const rng = new Rng(45);
  const [T, C, OC, V, nCtx] = [6, 100, 70, 53, 8];
  const x = randn(rng, T * C);
  const w = randn(rng, C * OC, 0.05);
  const b = randn(rng, OC, 0.1);
  const wte = randn(rng, V * C, 0.05);
  const wpe = randn(rng, nCtx * C, 0.01);
  const tokens = Int32Array.from({ length: T }, (_, i) => (7 * i) % V);
  const positions = Int32Array.from({ length: T }, (_, i) => i % nCtx);
  for (const dtype of ["f16", "q8"] as const) {
    const runs: Float32Array[][] = [];
    for (const threads of [1, 2, 3]) {
      using be = await WasmBackend.create({ threads, weightType: dtype, serialBelow: 0 });
      const matrix = await weight(be, "conv1d", [C, OC], w);
      const bias = await weight(be, "plain", [OC], b);
      const e = await weight(be, "embedding", [V, C], wte);
      const p = await weight(be, "plain", [nCtx, C], wpe);
      const inp = await weight(be, "plain", [T, C], x);
      const [tok, pos] = [be.tensor([T], "i32"), be.tensor([T], "i32")];
      be.write(tok, tokens);
      be.write(pos, positions);
      const outs = [be.tensor([T, OC]), be.tensor([T, OC]), be.tensor([T, OC])];
      be.conv1d(outs[0], inp, matrix, bias, T);
      be.conv1dGelu(outs[1], inp, matrix, bias, T);
      be.conv1dResidual(outs[2], inp, matrix, bias, T);
      const emb = be.tensor([T, C]);
      be.embed(emb, tok, pos, e, p, T);
      const head = be.tensor([T, V]);
      be.logits(head, inp, e, T);
      runs.push([
        ...await Promise.all(outs.map((o) => read(be, o, T * OC))),
        await read(be, emb, T * C),
        await read(be, head, T * V),
      ]);
    }
    for (let i = 1; i < runs.length; i++) {
      runs[i].forEach((r, j) => {
        const [a, e] = [new Uint32Array(r.buffer), new Uint32Array(runs[0][j].buffer)];
        assertEquals(a, e, `${dtype}: output ${j} on ${i + 1} threads`);
      });
    }
  }
});
