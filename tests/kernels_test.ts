/**
 * Every WebAssembly kernel against the scalar reference (runtime/reference.ts), on random
 * shapes that include sizes which are not multiples of 4 (a SIMD vector), 8 (a weight
 * panel) or 16 (an unrolled dot product).
 *
 * Tolerances: the kernels sum in float32 (fused multiply-adds), the reference in float64.
 * A float32 sum of n terms of size ~1 is off by at most about n · 2⁻²⁴ ≈ n · 6e-8, so dot
 * products of length n get atol = n · 1e-7 (about twice that bound's typical reach) plus
 * rtol 1e-5; element-wise kernels get rtol 1e-5 for their float32 rounding of exp/tanh.
 */
import { assertClose } from "./assert_close.ts";
import { assertEquals } from "./asserts.ts";
import { Harness, randint, randn } from "./kernel_harness.ts";
import { keyIndex } from "../runtime/kv_cache.ts";
import { packedSize, PANEL } from "../runtime/backend/wasm/memory_plan.ts";
import { Rng } from "../runtime/random.ts";
import { instantiate, kernelModule, READ_BLOCK } from "../runtime/backend/wasm/wasm_kernels.ts";
import {
  refAdd,
  refAttention,
  refConv1d,
  refEmbed,
  refGelu,
  refLayerNorm,
  refLogits,
  refSoftmax,
} from "../runtime/backend/reference/ops.ts";

const h = await Harness.create(256 << 20);
const k = h.kernels;
/** The raw exports, for the kernels the model does not call (`exp`). */
const exports = instantiate(await kernelModule(), h.memory);

Deno.test("conv1d() equals the reference on random shapes", () => {
  const rng = new Rng(1);
  // Both panel layouts (striped up to C = 1024, 16 columns above) at decode and prefill T.
  const shapes: [number, number, number][] = [
    [1, 768, 2304],
    [5, 64, 37],
    [4, 3, 8],
    [12, 100, 45],
    [4, 1100, 40],
    [9, 1030, 19],
  ];
  for (let i = 0; i < 40; i++) {
    shapes.push([randint(rng, 1, 11), randint(rng, 1, 70), randint(rng, 1, 70)]);
  }
  for (const [T, C, OC] of shapes) {
    h.reset();
    const inp = randn(rng, T * C);
    const w = randn(rng, C * OC);
    const b = randn(rng, OC);
    const paddedBias = new Float32Array(Math.ceil(OC / PANEL) * PANEL);
    paddedBias.set(b);
    const src = h.put(w);
    const packed = h.put(packedSize(C, OC));
    k.packPanels(packed, src, C, OC);
    const out = h.put(T * OC);
    k.conv1d(out, h.put(inp), packed, h.put(paddedBias), T, C, OC);
    assertClose(h.get(out, T * OC), refConv1d(inp, w, b, T, C, OC), {
      atol: C * 1e-7,
      rtol: 1e-5,
      msg: `T=${T} C=${C} OC=${OC}`,
    });
    assertEquals(
      h.guard(out, T * OC),
      12345,
      `conv1d wrote past its output (T=${T} C=${C} OC=${OC})`,
    );
  }
});

Deno.test("conv1dGelu() and conv1dResidual() equal conv1d() then gelu() or add(), bit for bit", () => {
  const rng = new Rng(11);
  for (const [T, C, OC] of [[1, 64, 3 * PANEL], [5, 33, 37], [4, 17, PANEL - 3], [3, 40, 130]]) {
    h.reset();
    const inp = randn(rng, T * C);
    const w = randn(rng, C * OC, 0.3);
    const bias = randn(rng, Math.ceil(OC / PANEL) * PANEL);
    const residual = randn(rng, T * OC);
    const packed = h.put(packedSize(C, OC));
    k.packPanels(packed, h.put(w), C, OC);
    const [pi, pb] = [h.put(inp), h.put(bias)];
    const [plain, fused, sum, fusedSum] = [
      h.put(T * OC),
      h.put(T * OC),
      h.put(T * OC),
      h.put(residual),
    ];
    k.conv1d(plain, pi, packed, pb, T, C, OC);
    k.gelu(plain, plain, T * OC);
    k.conv1dGelu(fused, pi, packed, pb, T, C, OC);
    const msg = `T=${T} C=${C} OC=${OC}`;
    assertEquals(h.get(fused, T * OC), h.get(plain, T * OC), msg);
    k.conv1d(sum, pi, packed, pb, T, C, OC);
    k.add(sum, h.put(residual), sum, T * OC);
    k.conv1dResidual(fusedSum, pi, packed, pb, T, C, OC);
    assertEquals(h.get(fusedSum, T * OC), h.get(sum, T * OC), msg);
    assertEquals(h.guard(fused, T * OC), 12345, `conv1dGelu wrote past its output (${msg})`);
    assertEquals(h.guard(fusedSum, T * OC), 12345, `conv1dResidual wrote past its output (${msg})`);
  }
});

Deno.test("packPanels() lays out PANEL columns per panel: two 8-column strips up to 1024 features", () => {
  // asm/matmul.ts documents both layouts; the runtime only needs their size (packedSize).
  for (const [C, OC, W] of [[3, PANEL + 2, 8], [1025, PANEL + 9, PANEL]]) {
    const w = Float32Array.from({ length: C * OC }, (_, i) => i + 1);
    h.reset();
    const packed = h.put(packedSize(C, OC));
    k.packPanels(packed, h.put(w), C, OC);
    const got = h.get(packed, packedSize(C, OC));
    for (let col = 0; col < packedSize(C, OC) / C; col++) {
      const [block, c] = [Math.floor(col / W), col % W];
      for (let kk = 0; kk < C; kk++) {
        const want = col < OC ? w[kk * OC + col] : 0;
        assertEquals(got[(block * C + kk) * W + c], want, `C=${C} column ${col} row ${kk}`);
      }
    }
  }
});

Deno.test("readSum() sums each block of READ_BLOCK floats", () => {
  const blocks = 3;
  const x = Float32Array.from({ length: blocks * READ_BLOCK }, (_, i) => (i % 7) - 3);
  h.reset();
  const out = h.put(blocks);
  k.readSum(out, h.put(x), blocks);
  for (let b = 0; b < blocks; b++) {
    let want = 0;
    for (let i = b * READ_BLOCK; i < (b + 1) * READ_BLOCK; i++) want += x[i];
    assertEquals(h.get(out, blocks)[b], want); // small integers: exact in any order
  }
});

Deno.test("logits() equals the reference, wteᵀ as the output head", () => {
  const rng = new Rng(2);
  for (const [T, C, V] of [[1, 768, 300], [3, 17, 29], [4, 1, 5], [2, 35, 64]]) {
    h.reset();
    const x = randn(rng, T * C);
    const wte = randn(rng, V * C);
    const out = h.put(T * V);
    k.logits(out, h.put(x), h.put(wte), T, C, V);
    assertClose(h.get(out, T * V), refLogits(x, wte, T, C, V), { atol: C * 1e-7, rtol: 1e-5 });
    assertEquals(h.guard(out, T * V), 12345);
  }
});

Deno.test("layerNorm() equals the reference", () => {
  const rng = new Rng(3);
  for (const [rows, C] of [[1, 768], [3, 5], [7, 33], [2, 1], [4, 16]]) {
    h.reset();
    const x = randn(rng, rows * C, 3);
    for (let i = 0; i < x.length; i++) x[i] += 2; // a non-zero mean
    const g = randn(rng, C);
    const b = randn(rng, C);
    const out = h.put(rows * C);
    k.layerNorm(out, h.put(x), h.put(g), h.put(b), rows, C);
    assertClose(h.get(out, rows * C), refLayerNorm(x, g, b, rows, C), { atol: 1e-5, rtol: 1e-5 });
  }
});

Deno.test("gelu() equals the reference, in place too", () => {
  const rng = new Rng(4);
  const x = randn(rng, 1003, 4);
  x.set([0, -0, 1e-8, -20, 20, 1e10, -1e10]);
  h.reset();
  const p = h.put(x);
  k.gelu(p, p, x.length);
  // The kernel computes x / (1 + e^(-2u)), the same function as 0.5·x·(1 + tanh u), from
  // u rounded to float32: e^(-2u) then carries a relative error of about |2u| · 2⁻²³,
  // 2e-6 at x = -5 (measured: at most 9e-7 for |x| <= 3, 2.3e-6 for |x| <= 5). Below
  // x = -5, where it grows, GELU itself is under 1e-7 in size: the atol covers it.
  assertClose(h.get(p, x.length), refGelu(x), { atol: 1e-7, rtol: 3e-6 });
});

Deno.test("the kernels' exp is within 2 ulp of Math.exp, exactly 1 at 0 and exactly 0 when masked", () => {
  const x = new Float32Array(200003);
  // Every normal result: from ln(2^-126) to just below ln(FLT_MAX), plus the special values.
  for (let i = 0; i < x.length; i++) x[i] = -87.33 + (88.3 + 87.33) * (i / (x.length - 1));
  h.reset();
  const p = h.put(x);
  const out = h.put(x.length);
  exports.exp(out, p, 0, x.length);
  // 2 ulp of a float32 in [1, 2) is 2 · 2⁻²³ relative at worst (measured: 7.8e-8).
  assertClose(h.get(out, x.length), x.map(Math.exp), { rtol: 2.4e-7 });
  const special = Float32Array.from([0, -1e10, -100, 1e10, 89, NaN, -Infinity, Infinity]);
  const ps = h.put(special);
  exports.exp(ps, ps, 0, special.length);
  assertEquals(
    h.get(ps, special.length),
    Float32Array.from([1, 0, 0, Infinity, Infinity, NaN, 0, Infinity]),
  );
});

Deno.test("softmax() equals the reference", () => {
  const rng = new Rng(5);
  for (const [rows, cols] of [[1, 50257], [3, 7], [5, 1], [2, 64]]) {
    h.reset();
    const x = randn(rng, rows * cols, 5);
    const out = h.put(rows * cols);
    k.softmax(out, h.put(x), rows, cols);
    // The sum of a row of n keeps 16 partial sums: relative error up to about n / 16 · 6e-8.
    assertClose(h.get(out, rows * cols), refSoftmax(x, rows, cols), {
      atol: 1e-8,
      rtol: 1e-5 + cols * 4e-9,
    });
  }
});

Deno.test("add() is exact, at any alignment and length", () => {
  const rng = new Rng(6);
  for (const n of [1, 3, 4, 5, 17, 1000]) {
    h.reset();
    const a = randn(rng, n);
    const b = randn(rng, n);
    const out = h.put(n);
    k.add(out, h.put(a), h.put(b), n);
    assertEquals(h.get(out, n), refAdd(a, b));
    assertEquals(h.guard(out, n), 12345);
  }
});

Deno.test("embed() is exact: token row plus position row", () => {
  const rng = new Rng(7);
  const [V, nCtx, C, B, T, past] = [11, 16, 13, 2, 3, 5];
  const wte = randn(rng, V * C);
  const wpe = randn(rng, nCtx * C);
  const tokens = Int32Array.from({ length: B * T }, () => randint(rng, 0, V - 1));
  h.reset();
  const out = h.put(B * T * C);
  k.embed(out, h.put(tokens), h.put(wte), h.put(wpe), B, T, C, past);
  assertEquals(h.get(out, B * T * C), refEmbed(tokens, wte, wpe, T, C, past));
});

Deno.test("attention() equals the reference and appends the new keys and values", () => {
  const rng = new Rng(8);
  const cases: [number, number, number, number, number][] = [ // B, T, past, nHead, dHead
    [1, 1, 0, 1, 64],
    [1, 1, 30, 2, 64],
    [2, 5, 0, 3, 16],
    [2, 4, 9, 2, 5],
    [1, 7, 3, 1, 17],
    [3, 2, 6, 2, 20],
    [1, 1, 200, 2, 64],
    [1, 2, 7, 1, 100], // a block of 64 features, then 4 at a time
    [2, 1, 5, 2, 67], // a block of 64, then one at a time
  ];
  for (const [B, T, past, nHead, dHead] of cases) {
    h.reset();
    const nCtx = Math.ceil((past + T + 3) / 4) * 4;
    const C = nHead * dHead;
    const qkv = randn(rng, B * T * 3 * C);
    const pastK = randn(rng, B * nHead * past * dHead);
    const pastV = randn(rng, B * nHead * past * dHead);
    // The kernel's cache layout: (B, 2, nHead, nCtx, dHead), here one layer per sequence,
    // each head's keys in blocks (keyIndex).
    const seqStride = 2 * nHead * nCtx * dHead;
    const keys = (b: number, hd: number) => b * seqStride + hd * nCtx * dHead;
    const values = (b: number, hd: number) => b * seqStride + (nHead + hd) * nCtx * dHead;
    const cache = new Float32Array(B * seqStride);
    for (let b = 0; b < B; b++) {
      for (let hd = 0; hd < nHead; hd++) {
        for (let j = 0; j < past; j++) {
          const from = ((b * nHead + hd) * past + j) * dHead;
          for (let d = 0; d < dHead; d++) {
            cache[keys(b, hd) + keyIndex(j, d, dHead)] = pastK[from + d];
          }
          cache.set(pastV.subarray(from, from + dHead), values(b, hd) + j * dHead);
        }
      }
    }
    const cacheAt = h.put(cache);
    const out = h.put(B * T * C);
    k.attention(
      out,
      h.put(qkv),
      cacheAt,
      h.put(B * nHead * nCtx),
      B,
      T,
      past,
      nHead,
      dHead,
      nCtx,
      seqStride,
    );
    const ref = refAttention(qkv, pastK, pastV, B, T, past, nHead, dHead);
    const msg = `B=${B} T=${T} past=${past} heads=${nHead} d=${dHead}`;
    assertClose(h.get(out, B * T * C), ref.out, { atol: 1e-5, rtol: 1e-4, msg });
    const after = h.get(cacheAt, B * seqStride);
    const ns = past + T;
    for (let b = 0; b < B; b++) {
      for (let hd = 0; hd < nHead; hd++) {
        const want = (b * nHead + hd) * ns * dHead;
        const gotK = Float32Array.from(
          { length: ns * dHead },
          (_, i) => after[keys(b, hd) + keyIndex(Math.floor(i / dHead), i % dHead, dHead)],
        );
        assertEquals(gotK, ref.k.subarray(want, want + ns * dHead), msg);
        assertEquals(
          after.subarray(values(b, hd), values(b, hd) + ns * dHead),
          ref.v.subarray(want, want + ns * dHead),
          msg,
        );
      }
    }
  }
});
