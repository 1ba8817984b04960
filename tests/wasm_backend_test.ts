/**
 * The wasm backend's own checks (the cross-backend conformance suite is elsewhere): every
 * op against the scalar reference on odd shapes, the key-block layout of its KV cache,
 * sequences at different lengths in non-contiguous slots, bit-identical results on 1, 2
 * and 3 threads, tensors above 2 GiB, the 4 GiB limit, weights loaded through the staging
 * slots concurrently, and the worker pool's errors and disposal.
 *
 * Tolerances: the kernels sum in float32 (fused multiply-adds), the reference in float64.
 * A float32 sum of n terms of size ~1 is off by at most about n · 2⁻²⁴ ≈ n · 6e-8, so dot
 * products of length n get atol = n · 1e-7 (about twice that bound's typical reach) plus
 * rtol 1e-5; layer norm gets 1e-5 both ways; attention (a softmax, then a weighted sum)
 * gets atol 1e-5, rtol 1e-4.
 */
import { assertClose } from "./assert_close.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./asserts.ts";
import { weight } from "./backend_weights.ts";
import { Harness, randint, randn } from "./kernel_harness.ts";
import type { Tensor } from "../runtime/backend/backend.ts";
import { BackendError } from "../runtime/errors.ts";
import { WasmBackend } from "../runtime/backend/wasm/wasm_backend.ts";
import { kernelModule } from "../runtime/backend/wasm/kernel_module.ts";
import { OPS } from "../runtime/backend/wasm/ops.ts";
import { RESERVED_BYTES, share, WorkerPool } from "../runtime/backend/wasm/worker_pool.ts";
import { Rng } from "../runtime/generate/random.ts";
import {
  refAttention,
  refConv1d,
  refLayerNorm,
  refLogits,
} from "../runtime/backend/reference/ops.ts";

/** The kernels' layout constants, read from the module as the backend reads them. */
const { PANEL, KEY_BLOCK } = await (async () => {
  const h = await Harness.create(1 << 16);
  const { instantiate } = await import("../runtime/backend/wasm/kernel_module.ts");
  return instantiate(await kernelModule(), h.memory).constants;
})();

const THREADS = [1, 2, 3];

/** An f32 tensor holding `data`: a plain weight, which ops take like any f32 tensor. */
function input(be: WasmBackend, shape: number[], data: Float32Array): Promise<Tensor> {
  return weight(be, "plain", shape, data);
}

/** The first `n` floats of `t`. */
async function get(be: WasmBackend, t: Tensor, n: number): Promise<Float32Array> {
  const out = new Float32Array(n);
  await be.read(t, out);
  return out;
}

/** Exact equality, bit for bit (so -0 differs from 0 and NaNs are compared by payload). */
function assertBitIdentical(actual: Float32Array, expected: Float32Array, msg: string): void {
  assertEquals(actual.length, expected.length, msg);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) {
      throw new Error(`${msg}: element ${i} is ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

/**
 * Where feature d of the key at position j lies in a head's keys (floats from the first),
 * as asm/attention.ts documents it: blocks of KEY_BLOCK positions, each laid out
 * [d / 4][j % KEY_BLOCK][d % 4] for the first dHead & ~3 features and [d][j % KEY_BLOCK]
 * for the rest. Values are plain rows: feature d of position j at j · dHead + d.
 */
function keyIndex(j: number, d: number, dHead: number): number {
  const block = Math.floor(j / KEY_BLOCK) * KEY_BLOCK * dHead;
  const slot = j % KEY_BLOCK;
  const vectorEnd = dHead & ~3;
  if (d < vectorEnd) return block + (d & ~3) * KEY_BLOCK + slot * 4 + (d & 3);
  return block + d * KEY_BLOCK + slot;
}

Deno.test("create() rejects a thread count that is not a positive integer", async () => {
  for (const threads of [0, -1, 1.5, NaN]) {
    await assertRejects(
      () => WasmBackend.create({ threads }),
      RangeError,
      "threads must be a positive integer",
    );
  }
  using be = await WasmBackend.create({ threads: 2 });
  assertEquals([be.name, be.threads], ["wasm", 2]);
});

Deno.test("conv1d(), conv1dGelu() and conv1dResidual() equal the reference on odd shapes", async () => {
  using be = await WasmBackend.create({ threads: 1 });
  const h = await Harness.create(64 << 20);
  const rng = new Rng(1);
  // Both panel layouts (striped up to C = 1024, 16 columns above), at decode and prefill
  // row counts, with C not a multiple of 4 and OC not a multiple of PANEL.
  const shapes: [number, number, number][] = [
    [1, 768, 2304],
    [5, 64, 37],
    [4, 3, 8],
    [12, 100, 45],
    [4, 1100, 40],
    [9, 1030, 19],
    [2, 17, PANEL - 3],
  ];
  for (let i = 0; i < 30; i++) {
    shapes.push([randint(rng, 1, 11), randint(rng, 1, 70), randint(rng, 1, 70)]);
  }
  for (const [rows, C, OC] of shapes) {
    const msg = `rows=${rows} C=${C} OC=${OC}`;
    const x = randn(rng, rows * C);
    const w = randn(rng, C * OC, 0.3);
    const b = randn(rng, OC);
    const residual = randn(rng, rows * OC);
    const [pw, pb, px] = await Promise.all([
      weight(be, "conv1d", [C, OC], w),
      weight(be, "plain", [OC], b),
      input(be, [rows + 1, C], x), // a row more than the ops read
    ]);
    const out = be.tensor([rows, OC]);
    const guard = be.tensor([PANEL]);
    be.conv1d(out, px, pw, pb, rows);
    const plain = await get(be, out, rows * OC);
    assertClose(plain, refConv1d(x, w, b, rows, C, OC), { atol: C * 1e-7, rtol: 1e-5, msg });
    assertEquals(await get(be, guard, PANEL), new Float32Array(PANEL), `${msg}: wrote past`);

    // The fused forms: bit for bit conv1d() then the gelu kernel, or then a float32 add.
    be.conv1dGelu(out, px, pw, pb, rows);
    h.reset();
    const at = h.put(plain);
    h.exports.gelu(at, at, 0, plain.length);
    assertBitIdentical(await get(be, out, rows * OC), h.get(at, plain.length), `gelu ${msg}`);
    const sum = await input(be, [rows, OC], residual);
    be.conv1dResidual(sum, px, pw, pb, rows);
    const added = residual.map((r, i) => r + plain[i]);
    assertBitIdentical(await get(be, sum, rows * OC), added, `residual ${msg}`);
  }
});

Deno.test("a conv1d weight is packed in PANEL-column panels: two 8-column strips up to 1024 features", async () => {
  using be = await WasmBackend.create({ threads: 1 });
  for (const [C, OC, W] of [[3, PANEL + 2, 8], [1025, PANEL + 9, PANEL]]) {
    const w = Float32Array.from({ length: C * OC }, (_, i) => i + 1);
    const t = await weight(be, "conv1d", [C, OC], w);
    const size = Math.ceil(OC / PANEL) * PANEL * C;
    assertEquals(t.bytes, 4 * size);
    const got = await get(be, t, size);
    for (let col = 0; col < size / C; col++) {
      const [block, c] = [Math.floor(col / W), col % W];
      for (let k = 0; k < C; k++) {
        const want = col < OC ? w[k * OC + col] : 0;
        assertEquals(got[(block * C + k) * W + c], want, `C=${C} column ${col} row ${k}`);
      }
    }
  }
});

Deno.test("a plain weight is padded with zeros to a whole panel", async () => {
  using be = await WasmBackend.create({ threads: 1 });
  const t = await weight(be, "plain", [5], Float32Array.from([1, 2, 3, 4, 5]));
  assertEquals(t.bytes, 4 * PANEL);
  const want = new Float32Array(PANEL);
  want.set([1, 2, 3, 4, 5]);
  assertEquals(await get(be, t, PANEL), want);
});

Deno.test("logits() equals the reference, wteᵀ as the output head", async () => {
  using be = await WasmBackend.create({ threads: 1 });
  const rng = new Rng(2);
  // The one-row cases reach the eight-rows-of-wte path, its leftover rows and its tails.
  const oneRow = [[1, 768, 300], [1, 37, 21], [1, 3, 7]];
  for (const [rows, C, V] of [...oneRow, [3, 17, 29], [4, 1, 5], [2, 35, 64], [6, 9, 7]]) {
    const x = randn(rng, rows * C);
    const wte = randn(rng, V * C);
    const out = be.tensor([rows, V]);
    be.logits(out, await input(be, [rows, C], x), await weight(be, "embedding", [V, C], wte), rows);
    assertClose(await get(be, out, rows * V), refLogits(x, wte, rows, C, V), {
      atol: C * 1e-7,
      rtol: 1e-5,
      msg: `rows=${rows} C=${C} V=${V}`,
    });
  }
});

Deno.test("logits() of one row is bit-identical to that row's logits among several", async () => {
  // One row reads several rows of wte side by side; more rows read them one at a time.
  using be = await WasmBackend.create({ threads: 1 });
  const rng = new Rng(12);
  for (const [C, V] of [[768, 301], [37, 21], [12, 8]]) {
    const rows = 3;
    const x = randn(rng, rows * C);
    const wte = await weight(be, "embedding", [V, C], randn(rng, V * C));
    const all = be.tensor([rows, V]);
    be.logits(all, await input(be, [rows, C], x), wte, rows);
    const want = await get(be, all, rows * V);
    for (let t = 0; t < rows; t++) {
      const one = be.tensor([1, V]);
      be.logits(one, await input(be, [1, C], x.subarray(t * C, (t + 1) * C)), wte, 1);
      const row = want.subarray(t * V, (t + 1) * V);
      assertBitIdentical(await get(be, one, V), row, `C=${C} V=${V} row ${t}`);
    }
  }
});

Deno.test("layerNorm() equals the reference", async () => {
  using be = await WasmBackend.create({ threads: 1 });
  const rng = new Rng(3);
  for (const [rows, C] of [[1, 768], [3, 5], [7, 33], [2, 1], [4, 16]]) {
    const x = randn(rng, rows * C, 3).map((v) => v + 2); // a non-zero mean
    const g = randn(rng, C);
    const b = randn(rng, C);
    const out = be.tensor([rows, C]);
    be.layerNorm(
      out,
      await input(be, [rows, C], x),
      await weight(be, "plain", [C], g),
      await weight(be, "plain", [C], b),
      rows,
    );
    assertClose(await get(be, out, rows * C), refLayerNorm(x, g, b, rows, C), {
      atol: 1e-5,
      rtol: 1e-5,
    });
  }
});

Deno.test("embed() is exact: each row's token row plus its own position's row", async () => {
  using be = await WasmBackend.create({ threads: 1 });
  const rng = new Rng(7);
  const [V, nCtx, C, rows] = [11, 16, 13, 7];
  const wte = randn(rng, V * C);
  const wpe = randn(rng, nCtx * C);
  const tokens = Int32Array.from({ length: rows }, () => randint(rng, 0, V - 1));
  const positions = Int32Array.from([5, 6, 7, 0, 1, 15, 3]);
  const [pt, pp] = [be.tensor([rows], "i32"), be.tensor([rows], "i32")];
  be.write(pt, tokens);
  be.write(pp, positions);
  const out = be.tensor([rows, C]);
  be.embed(
    out,
    pt,
    pp,
    await weight(be, "embedding", [V, C], wte),
    await weight(be, "plain", [nCtx, C], wpe),
    rows,
  );
  const want = Float32Array.from(
    { length: rows * C },
    (_, i) => {
      const [r, k] = [Math.floor(i / C), i % C];
      return wte[tokens[r] * C + k] + wpe[positions[r] * C + k];
    },
  );
  assertEquals(await get(be, out, rows * C), want);
});

Deno.test("gatherRows() copies the chosen rows in order; write() and read() copy a prefix", async () => {
  using be = await WasmBackend.create({ threads: 1 });
  const C = 5;
  const x = Float32Array.from({ length: 4 * C }, (_, i) => i);
  const out = be.tensor([3, C]);
  be.gatherRows(out, await input(be, [4, C], x), [3, 0, 3]);
  assertEquals(
    await get(be, out, 3 * C),
    Float32Array.from([...x.subarray(15, 20), ...x.subarray(0, 5), ...x.subarray(15, 20)]),
  );
  const ids = be.tensor([4], "i32");
  be.write(ids, Int32Array.from([7, -1]));
  const asFloats = await get(be, ids, 3);
  assertEquals([...new Int32Array(asFloats.buffer)], [7, -1, 0]);
  assertThrows(() => be.write(ids, new Int32Array(5)), RangeError, "Cannot write 5 values");
  await assertRejects(() => be.read(ids, new Float32Array(5)), RangeError, "Cannot read 5");
});

/**
 * Runs `attention` for sequences at different lengths in the slots `slots` of a cache of
 * `nSlots`: first each sequence's `past` positions alone, then all of them together with
 * T new positions each. Returns the batched call's output, the reference's, the cache and
 * its geometry.
 */
async function attentionCase(
  be: WasmBackend,
  rng: Rng,
  c: { slots: number[]; pasts: number[]; T: number; nHead: number; dHead: number },
) {
  const { slots, pasts, T, nHead, dHead } = c;
  const B = slots.length;
  const C = nHead * dHead;
  const nCtx = Math.max(...pasts) + T + 3;
  const nSlots = Math.max(...slots) + 2;
  const layers = 2;
  const layer = 1;
  const cache = be.kvCache({
    layers,
    slots: nSlots,
    positions: nCtx,
    heads: nHead,
    headDim: dHead,
  });
  const seqs = be.tensor([B, 2], "i32");
  const prefills: Float32Array[] = [];
  for (let b = 0; b < B; b++) {
    if (pasts[b] === 0) {
      prefills.push(new Float32Array(0));
      continue;
    }
    const qkv = randn(rng, pasts[b] * 3 * C);
    prefills.push(qkv);
    be.write(seqs, Int32Array.from([slots[b], 0]));
    const out = be.tensor([pasts[b], C]);
    be.attention(out, await input(be, [pasts[b], 3 * C], qkv), cache, layer, seqs, 1, pasts[b]);
  }
  const qkv = randn(rng, B * T * 3 * C);
  be.write(seqs, Int32Array.from(slots.flatMap((s, b) => [s, pasts[b]])));
  const out = be.tensor([B * T, C]);
  be.attention(out, await input(be, [B * T, 3 * C], qkv), cache, layer, seqs, B, T);
  const got = await get(be, out, B * T * C);

  // The reference, one sequence at a time, with its past keys and values taken from its
  // prefill's qkv rows.
  const refs = slots.map((_, b) => {
    const past = pasts[b];
    const pastK = new Float32Array(nHead * past * dHead);
    const pastV = new Float32Array(nHead * past * dHead);
    for (let h = 0; h < nHead; h++) {
      for (let j = 0; j < past; j++) {
        for (let d = 0; d < dHead; d++) {
          pastK[(h * past + j) * dHead + d] = prefills[b][j * 3 * C + C + h * dHead + d];
          pastV[(h * past + j) * dHead + d] = prefills[b][j * 3 * C + 2 * C + h * dHead + d];
        }
      }
    }
    const mine = qkv.subarray(b * T * 3 * C, (b + 1) * T * 3 * C);
    return refAttention(mine, pastK, pastV, 1, T, past, nHead, dHead);
  });
  const positions = Math.ceil(nCtx / KEY_BLOCK) * KEY_BLOCK;
  const layerStride = 2 * nHead * positions * dHead;
  const cached = await get(be, cache, cache.bytes / 4);
  return { got, refs, cached, positions, layerStride, slotStride: layers * layerStride, C };
}

Deno.test("attention() equals the reference for sequences at different lengths in scattered slots", async () => {
  const rng = new Rng(8);
  const cases = [
    { slots: [0], pasts: [0], T: 1, nHead: 1, dHead: 64 },
    { slots: [1], pasts: [30], T: 1, nHead: 2, dHead: 64 },
    { slots: [2, 0], pasts: [0, 0], T: 5, nHead: 3, dHead: 16 },
    { slots: [3, 1], pasts: [9, 2], T: 4, nHead: 2, dHead: 5 },
    { slots: [0], pasts: [3], T: 7, nHead: 1, dHead: 17 },
    { slots: [4, 0, 2], pasts: [6, 11, 0], T: 2, nHead: 2, dHead: 20 },
    { slots: [1], pasts: [200], T: 1, nHead: 2, dHead: 64 },
    { slots: [0, 2], pasts: [7, 1], T: 2, nHead: 1, dHead: 100 }, // 64 features, then 4s
    { slots: [2, 1], pasts: [5, 12], T: 1, nHead: 2, dHead: 67 }, // 64, then one at a time
  ];
  for (const c of cases) {
    using be = await WasmBackend.create({ threads: 1 });
    const msg = JSON.stringify(c);
    const { got, refs, cached, positions, layerStride, slotStride, C } = await attentionCase(
      be,
      rng,
      c,
    );
    const { T, nHead, dHead } = c;
    c.slots.forEach((slot, b) => {
      const ref = refs[b];
      assertClose(got.subarray(b * T * C, (b + 1) * T * C), ref.out, {
        atol: 1e-5,
        rtol: 1e-4,
        msg: `${msg} sequence ${b}`,
      });
      // The cache: slot-major, layer 1, keys in blocks then values in rows.
      const ns = c.pasts[b] + T;
      const base = slot * slotStride + layerStride;
      for (let h = 0; h < nHead; h++) {
        const keys = base + h * positions * dHead;
        const values = base + (nHead + h) * positions * dHead;
        const want = h * ns * dHead;
        const gotK = Float32Array.from(
          { length: ns * dHead },
          (_, i) => cached[keys + keyIndex(Math.floor(i / dHead), i % dHead, dHead)],
        );
        assertEquals(gotK, ref.k.subarray(want, want + ns * dHead), `${msg} keys`);
        assertEquals(
          cached.subarray(values, values + ns * dHead),
          ref.v.subarray(want, want + ns * dHead),
          `${msg} values`,
        );
      }
    });
    // The slots no sequence used hold nothing.
    const used = new Set(c.slots);
    for (let s = 0; s * slotStride < cached.length; s++) {
      if (used.has(s)) continue;
      const slot = cached.subarray(s * slotStride, (s + 1) * slotStride);
      assert(slot.every((v) => v === 0), `${msg}: slot ${s} was written`);
    }
  }
});

/**
 * Runs every op on a fresh backend of `threads` threads with every call split (serialBelow
 * 0) and returns every output.
 */
async function everyOp(threads: number, bigFirst = 0): Promise<Float32Array[]> {
  using be = await WasmBackend.create({ threads, serialBelow: 0 });
  if (bigFirst > 0) be.tensor([bigFirst / 4]);
  const rng = new Rng(42);
  const [rows, C, OC, V, nCtx] = [5, 40, 8 * PANEL + 3, 301, 24];
  const results: Float32Array[] = [];
  const x = await input(be, [rows, C], randn(rng, rows * C));
  for (const [c, oc] of [[C, OC], [1040, 70]]) {
    const inp = c === C ? x : await input(be, [rows, c], randn(rng, rows * c));
    const w = await weight(be, "conv1d", [c, oc], randn(rng, c * oc));
    results.push(await get(be, w, w.bytes / 4));
    const b = await weight(be, "plain", [oc], randn(rng, oc));
    const out = be.tensor([rows, oc]);
    for (const op of ["conv1d", "conv1dGelu", "conv1dResidual"] as const) {
      be[op](out, inp, w, b, rows);
      results.push(await get(be, out, rows * oc));
    }
  }
  const wte = await weight(be, "embedding", [V, C], randn(rng, V * C));
  const wpe = await weight(be, "plain", [nCtx, C], randn(rng, nCtx * C));
  const logits = be.tensor([rows, V]);
  be.logits(logits, x, wte, rows);
  results.push(await get(be, logits, rows * V));
  be.logits(logits, x, wte, 1);
  results.push(await get(be, logits, V));
  const norm = be.tensor([rows, C]);
  be.layerNorm(norm, x, await weight(be, "plain", [C], randn(rng, C)), wpe, rows);
  results.push(await get(be, norm, rows * C));
  const [tokens, positions] = [be.tensor([rows], "i32"), be.tensor([rows], "i32")];
  be.write(tokens, Int32Array.from([1, 300, 5, 0, 77]));
  be.write(positions, Int32Array.from([4, 5, 6, 0, 23]));
  const emb = be.tensor([rows, C]);
  be.embed(emb, tokens, positions, wte, wpe, rows);
  results.push(await get(be, emb, rows * C));
  // Attention: three sequences in slots 2, 0, 3 with 20, 3 and 0 positions cached.
  const [nHead, dHead] = [3, 20];
  const cache = be.kvCache({ layers: 2, slots: 4, positions: nCtx, heads: nHead, headDim: dHead });
  const seqs = be.tensor([3, 2], "i32");
  const prefill = await input(be, [20, 3 * 60], randn(rng, 20 * 3 * 60));
  const out = be.tensor([20, 60]);
  for (const [slot, n] of [[2, 20], [0, 3]]) {
    be.write(seqs, Int32Array.from([slot, 0]));
    be.attention(out, prefill, cache, 1, seqs, 1, n);
    results.push(await get(be, out, n * 60));
  }
  be.write(seqs, Int32Array.from([2, 20, 0, 3, 3, 0]));
  be.attention(out, await input(be, [6, 180], randn(rng, 6 * 180)), cache, 1, seqs, 3, 2);
  results.push(await get(be, out, 6 * 60));
  results.push(await get(be, cache, cache.bytes / 4));
  return results;
}

Deno.test("every op is bit-identical on 1, 2 and 3 threads", async () => {
  const expected = await everyOp(1);
  for (const threads of THREADS.slice(1)) {
    const got = await everyOp(threads);
    got.forEach((out, i) =>
      assertBitIdentical(out, expected[i], `output ${i}, ${threads} threads`)
    );
  }
});

Deno.test("tensors above 2 GiB: ops give the same bits, and the untouched gigabytes stay virtual", async () => {
  const expected = await everyOp(1);
  const rss = Deno.memoryUsage().rss;
  for (const threads of [1, 2]) {
    // 2.25 GiB first, so every tensor of the run lies above 2 GiB: negative as an i32.
    const got = await everyOp(threads, 2.25 * 2 ** 30);
    got.forEach((out, i) =>
      assertBitIdentical(out, expected[i], `output ${i} above 2 GiB, ${threads} threads`)
    );
  }
  const grew = Deno.memoryUsage().rss - rss;
  assert(grew < 256 * 2 ** 20, `resident memory grew by ${grew} bytes`);
});

Deno.test("a model past 4 GiB is a one-line BackendError that names the need and the fix", async () => {
  using be = await WasmBackend.create({ threads: 1 });
  be.tensor([2 ** 30 / 4]); // 1 GiB
  const before = be.allocatedBytes;
  const error = assertThrows(
    // GPT-2 1558M's cache for 8 sequences: 4.69 GiB, after the 1 GiB above.
    () => be.kvCache({ layers: 48, slots: 8, positions: 1024, heads: 25, headDim: 64 }),
    BackendError,
    "The model needs at least 5.69 GiB of wasm memory, more than the 4 GiB a WebAssembly memory " +
      "holds: use a smaller model, fewer slots or a shorter context",
  );
  assert(!error.message.includes("\n"));
  assertEquals(be.allocatedBytes, before);
  // The backend goes on working.
  const t = be.tensor([4]);
  await be.read(t, new Float32Array(4));
});

Deno.test("the memory grows while the workers run: ops see tensors allocated after they started", async () => {
  using be = await WasmBackend.create({ threads: 2, serialBelow: 0 });
  const rng = new Rng(9);
  const [rows, C, OC] = [3, 64, 200];
  const x = randn(rng, rows * C);
  const w = randn(rng, C * OC);
  const b = randn(rng, OC);
  const before = be.allocatedBytes;
  be.tensor([64 << 20]); // 256 MiB more, never touched
  const [px, pw, pb] = [
    await input(be, [rows, C], x),
    await weight(be, "conv1d", [C, OC], w),
    await weight(be, "plain", [OC], b),
  ];
  assert(be.allocatedBytes > before + (256 << 20));
  const out = be.tensor([rows, OC]);
  be.conv1d(out, px, pw, pb, rows);
  assertClose(await get(be, out, rows * OC), refConv1d(x, w, b, rows, C, OC), {
    atol: C * 1e-7,
    rtol: 1e-5,
  });
});

Deno.test("ops refuse a tensor of another backend with a TypeError", async () => {
  using a = await WasmBackend.create({ threads: 1 });
  using b = await WasmBackend.create({ threads: 1 });
  const [x, g] = [a.tensor([1, 4]), a.weight("plain", [4])];
  const foreign = b.tensor([1, 4]);
  assertThrows(() => a.layerNorm(foreign, x, g, g, 1), TypeError, "another backend");
  assertThrows(() => b.write(x, new Int32Array(1)), TypeError, "another backend");
  assertThrows(() => a.conv1d(x, x, g, g, 1), TypeError, 'role "conv1d"');
  const fake = { shape: [4], type: "f32", bytes: 16 };
  await assertRejects(() => a.loadWeight(fake, () => Promise.resolve()), TypeError);
});

/**
 * Declares conv1d weights of `shapes` and loads them all at once, each read resolving
 * after a delay of its own; returns the order reads started in, the most reads in flight
 * at once, and the weights.
 */
async function loadConcurrently(be: WasmBackend, shapes: [number, number][], rng: Rng) {
  const weights = shapes.map(([C, OC]) => be.weight("conv1d", [C, OC]));
  const data = shapes.map(([C, OC]) => randn(rng, C * OC));
  const started: number[] = [];
  let inFlight = 0;
  let most = 0;
  const delays = [5, 0, 12, 1, 3, 8, 0, 2];
  await Promise.all(weights.map((w, i) =>
    be.loadWeight(w, async (dest) => {
      started.push(i);
      most = Math.max(most, ++inFlight);
      assertEquals(dest.length, data[i].length);
      await new Promise((resolve) => setTimeout(resolve, delays[i % delays.length]));
      dest.set(data[i]);
      inFlight--;
    })
  ));
  return { started, most, weights, data };
}

Deno.test("conv1d weights load through three staging slots, granted in order, in the empty KV cache", async () => {
  const rng = new Rng(10);
  const C = 24;
  const shapes: [number, number][] = [[C, 3 * C], [C, C], [C, 4 * C], [4 * C, C], [C, 3 * C]];
  for (const withCache of [true, false]) {
    using be = await WasmBackend.create({ threads: 2 });
    const cache = withCache
      ? be.kvCache({ layers: 2, slots: 2, positions: 64, heads: 2, headDim: C / 2 })
      : undefined;
    const before = be.allocatedBytes;
    const { started, most, weights, data } = await loadConcurrently(
      be,
      [...shapes, ...shapes],
      rng,
    );
    assertEquals(started, [...started].sort((a, b) => a - b), "slots go first come first served");
    assertEquals(most, 3);
    // With a cache, staging costs no memory beyond the packed weights.
    const packedBytes = weights.reduce((s, w) => s + Math.ceil(w.bytes / 64) * 64, 0);
    const staging = be.allocatedBytes - before - packedBytes;
    if (withCache) assertEquals(staging, 0);
    else assert(staging >= 3 * 4 * C * 4 * C, `staging took ${staging} bytes`);
    // Every weight arrived whole, and the cache holds zeros again once used.
    const x = randn(rng, 4 * C);
    for (const [i, w] of weights.entries()) {
      const [c, oc] = w.shape;
      const out = be.tensor([1, oc]);
      be.conv1d(out, await input(be, [1, c], x.subarray(0, c)), w, be.weight("plain", [oc]), 1);
      assertClose(
        await get(be, out, oc),
        refConv1d(x.subarray(0, c), data[i], new Float32Array(oc), 1, c, oc),
        { atol: c * 1e-7, rtol: 1e-5, msg: `weight ${i}` },
      );
    }
    if (cache) {
      const cached = await get(be, cache, cache.bytes / 4);
      assert(cached.every((v) => v === 0), "staging left values in the cache");
    }
  }
});

Deno.test("a staging load that fails frees its slot for the next", async () => {
  using be = await WasmBackend.create({ threads: 1 });
  const ws = Array.from({ length: 5 }, () => be.weight("conv1d", [8, 8]));
  const results = await Promise.allSettled(ws.map((w, i) =>
    be.loadWeight(w, (dest) => {
      if (i % 2 === 0) return Promise.reject(new Error(`read ${i} failed`));
      dest.fill(i);
      return Promise.resolve();
    })
  ));
  assertEquals(results.map((r) => r.status), [
    "rejected",
    "fulfilled",
    "rejected",
    "fulfilled",
    "rejected",
  ]);
  const packed = await get(be, ws[3], 8 * PANEL);
  assertEquals(packed.subarray(0, 8), new Float32Array(8).fill(3));
});

Deno.test("a conv1d weight larger than the staging slots, declared while they are busy, loads all the same", async () => {
  using be = await WasmBackend.create({ threads: 1 });
  const small = be.weight("conv1d", [4, 4]);
  let release = () => {};
  const held = be.loadWeight(small, (dest) => {
    dest.fill(1);
    return new Promise((resolve) => release = resolve);
  });
  const [C, OC] = [8, 40];
  const w = Float32Array.from({ length: C * OC }, (_, i) => i);
  const large = await weight(be, "conv1d", [C, OC], w); // loads while `small` holds a slot
  release();
  await held;
  const x = Float32Array.from({ length: C }, (_, i) => i % 3);
  const out = be.tensor([1, OC]);
  be.conv1d(out, await input(be, [1, C], x), large, be.weight("plain", [OC]), 1);
  assertEquals(await get(be, out, OC), refConv1d(x, w, new Float32Array(OC), 1, C, OC));
  assertEquals(await get(be, small, 4), new Float32Array(4).fill(1));
});

Deno.test("readBandwidthProbe() keeps its bytes resident and reports a positive rate", async () => {
  using be = await WasmBackend.create({ threads: 2 });
  const before = be.allocatedBytes;
  const probe = be.readBandwidthProbe(8 << 20);
  assert(probe.resident >= 8 << 20 && be.allocatedBytes - before >= probe.resident);
  const allocated = be.allocatedBytes;
  for (let i = 0; i < 2; i++) {
    const gbPerS = probe.gbPerS();
    assert(gbPerS > 0 && Number.isFinite(gbPerS), `${gbPerS} GB/s`);
  }
  assertEquals(be.allocatedBytes, allocated);
});

Deno.test("readBandwidthProbe() takes nine tenths of what the wasm memory has left when it asks for more", async () => {
  using be = await WasmBackend.create({ threads: 1 });
  // All but 256 MiB of the 4 GiB, never touched: it costs no resident memory.
  be.tensor([(2 ** 32 - 2 ** 28) / 4]);
  const left = 2 ** 32 - be.allocatedBytes;
  const probe = be.readBandwidthProbe(2 ** 30);
  assert(
    probe.resident <= 0.9 * left && probe.resident > 0.89 * left,
    `${probe.resident} of ${left}`,
  );
  assert(be.allocatedBytes <= 2 ** 32);
  assert(probe.gbPerS() > 0);
});

Deno.test("share() gives every unit to exactly one part, in whole aligned blocks", () => {
  for (const units of [0, 1, 5, 16, 17, 100, 1001]) {
    for (const align of [1, 16]) {
      for (const parts of [1, 2, 3, 7]) {
        let next = 0;
        for (let p = 0; p < parts; p++) {
          const [u0, u1] = share(units, align, p, parts);
          assertEquals(u0, next, `units=${units} align=${align} parts=${parts}`);
          assert(u1 >= u0 && (u1 % align === 0 || u1 === units));
          next = u1;
        }
        assertEquals(next, units);
      }
    }
  }
});

function sharedMemory(bytes: number): WebAssembly.Memory {
  const pages = bytes / 65536;
  return new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
}

Deno.test("a kernel that traps in a worker throws in the caller, and the pool goes on", async () => {
  const bytes = 2 << 20;
  const memory = sharedMemory(bytes);
  using pool = await WorkerPool.create(await kernelModule(), memory, 3, { serialBelow: 0 });
  const block = 16384 * 4;
  const blocks = (bytes - RESERVED_BYTES) / block; // every block up to the end of memory
  // The caller's third of the blocks is in bounds; the workers' run off the end.
  const error = assertThrows(
    () => pool.run(OPS.readSum, { out: 0, inp: RESERVED_BYTES, blocks: 3 * blocks }),
    Error,
    "Kernel readSum failed in worker",
  );
  assert(/out of bounds/.test(error.message), error.message);
  // The caller's own share traps too: its error comes back once the workers are done.
  assertThrows(
    () => pool.run(OPS.readSum, { out: 0, inp: bytes, blocks: 3 }),
    WebAssembly.RuntimeError,
  );
  // The pool still works.
  new Float32Array(memory.buffer, RESERVED_BYTES, blocks * block / 4).fill(0.5);
  pool.run(OPS.readSum, { out: 1024, inp: RESERVED_BYTES, blocks });
  assertEquals(new Float32Array(memory.buffer, 1024, blocks), new Float32Array(blocks).fill(8192));
});

Deno.test("dispose() stops every worker; the pool then refuses calls", async () => {
  const module = await kernelModule();
  const memory = sharedMemory(1 << 20);
  const pool = await WorkerPool.create(module, memory, 3);
  await assertRejects(
    () => WorkerPool.create(module, memory, 2),
    Error,
    "already has a worker pool",
  );
  pool[Symbol.dispose]();
  pool[Symbol.dispose]();
  assertThrows(
    () => pool.run(OPS.readSum, { out: 0, inp: RESERVED_BYTES, blocks: 1 }),
    Error,
    "disposed",
  );
  // The memory is free for a new pool.
  using again = await WorkerPool.create(module, memory, 2);
  again.run(OPS.readSum, { out: 0, inp: RESERVED_BYTES, blocks: 8 });
  await assertRejects(
    () => WorkerPool.create(module, new WebAssembly.Memory({ initial: 2 }), 2),
    TypeError,
    "shared",
  );
});
