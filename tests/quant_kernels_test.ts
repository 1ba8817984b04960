/**
 * The int8 (q8) and float16 kernels (asm/matmul_q8.ts, asm/matmul_f16.ts) against the
 * scalar references of runtime/backend/reference/quant.ts, on a direct harness over one
 * WebAssembly instance.
 *
 * Tolerances:
 * - q8 kernels vs the scalar q8 emulation: the integer block sums are exact on both sides,
 *   so the only difference is the kernel's f32 accumulation of one term per block (and the
 *   bias): |kernel − emulation| ≤ (blocks + 2) · 2⁻²³ · (Σ|terms| + |bias|), a float32
 *   sum's worst case.
 * - q8 vs the float32 product: within the worst case of the stored values' rounding
 *   (`q8ErrorBound`), and, on GPT-2-like data (x ~ N(0, 1), w ~ N(0, 0.02²), C = 768), a
 *   normalised mean squared error (ggml's NMSE) below 1.5e-4; about 6e-5 is typical
 *   (8-bit weights: (2.5σ / 127)² / 12 ≈ 3.2e-5 relative noise, 8-bit activations about
 *   as much).
 * - f16 kernels vs the f32 kernels on weights rounded to float16: bit for bit, since they
 *   compute the same sums in the same order (the panels' scaling by 2^10 is undone
 *   exactly); vs the float64 reference as kernels_test.ts holds the f32 kernels
 *   (atol C · 1e-7, rtol 1e-5).
 */
import { assertClose } from "./assert_close.ts";
import { assert, assertEquals } from "./asserts.ts";
import { Harness, randint, randn } from "./kernel_harness.ts";
import { PANEL as QUANT_PANEL, panels } from "../runtime/backend/wasm/layout.ts";
import { WEIGHT_FORMATS } from "../runtime/backend/wasm/weight_formats.ts";
import { Rng } from "../runtime/generate/random.ts";
import { instantiate, kernelModule } from "../runtime/backend/wasm/kernel_module.ts";
import { namedArgs, type Op, OPS } from "../runtime/backend/wasm/ops.ts";
import { refConv1d, refGelu, refLogits } from "../runtime/backend/reference/ops.ts";
import {
  dequantizeQ8,
  Q8_BLOCK,
  q8ErrorBound,
  q8Product,
  quantizeQ8Rows,
  quantizeQ8Weight,
  refConv1dQ8,
  refLogitsQ8,
  roundArrayToFloat16,
  roundHalfEven,
  roundToFloat16,
} from "../runtime/backend/reference/quant.ts";
import { float16BitsToFloat32Bits } from "../runtime/io/tensor_source.ts";
import { quantize } from "../testing/ggml_quants.ts";

const h = await Harness.create(256 << 20);
const { exports, constants } = instantiate(await kernelModule(), h.memory);

const q8PackedBytes = WEIGHT_FORMATS.q8.conv1dBytes;
const q8RowBytes = WEIGHT_FORMATS.q8.quantize!.rowBytes;
const f16PackedBytes = WEIGHT_FORMATS.f16.conv1dBytes;
const { store: STORE, gelu: GELU, residual: RESIDUAL } = constants.modes;

/**
 * `pack` (a Conv1D weight (C, OC)) or, `transposed`, `packRows` (an embedding (OC, C), whose
 * rows become the columns) over the whole weight: the arguments of one call.
 */
function packCall(
  pack: Op,
  packRows: Op,
  dst: number,
  src: number,
  C: number,
  OC: number,
  transposed: boolean | number,
): [Op, number[]] {
  return transposed ? [packRows, [dst, src, C, OC, 0, panels(OC)]] : [pack, [dst, src, C, OC]];
}

/** The units of `op` called with `values` (its arguments in `op.args` order). */
function unitsOf(op: Op, values: number[]): number {
  return op.units(namedArgs(op, values), constants);
}

/**
 * Runs units [u0, u1) of `op` (all of them by default) on this thread; returns the
 * kernel's count (`pack_f16`'s weights that did not fit), or 0.
 */
function run(op: Op, values: number[], u0 = 0, u1 = unitsOf(op, values)): number {
  return op.run(exports, namedArgs(op, values), u0, u1) ?? 0;
}

/** A value after each array `put` places, which shows whether a kernel wrote past its end. */
const GUARD = 12345;

/** `n` floats (zeros, or `data`) followed by a guard value. */
function put(data: Float32Array | number): number {
  const n = typeof data === "number" ? data : data.length;
  const at = h.put(n + 1);
  if (typeof data !== "number") new Float32Array(h.memory.buffer, at, n).set(data);
  new Float32Array(h.memory.buffer, at + 4 * n, 1)[0] = GUARD;
  return at;
}

/** The value after `n` floats at `offset`: `GUARD` unless something wrote there. */
function guard(offset: number, n: number): number {
  return new Float32Array(h.memory.buffer, offset + 4 * n, 1)[0];
}

/** `bytes` zero bytes in the harness memory, with a guard after them (whole floats). */
function putBytes(bytes: number): number {
  return put(Math.ceil(bytes / 4));
}

/** i32 values in the harness memory. */
function putInts(data: Int32Array): number {
  return h.put(new Float32Array(data.buffer, data.byteOffset, data.length));
}

function bytesAt(offset: number, n: number): Uint8Array {
  return new Uint8Array(h.memory.buffer, offset, n).slice();
}

/** The bias as the kernels take it: padded with zeros to whole panels. */
function padBias(b: Float32Array, OC: number): Float32Array {
  const padded = new Float32Array(Math.ceil(OC / QUANT_PANEL) * QUANT_PANEL);
  padded.set(b);
  return padded;
}

/** Adds `r` onto the floats at `offset`, in f32 (as the kernels' `add` did). */
function addInto(offset: number, r: Float32Array): void {
  const view = new Float32Array(h.memory.buffer, offset, r.length);
  for (let i = 0; i < r.length; i++) view[i] = r[i] + view[i];
}

/** Float32 bits, so that equal arrays are equal bit for bit (NaN and −0 included). */
function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

/** Random shapes (T, C, OC) with C and OC off the block (32) and panel (16) sizes too. */
function shapes(rng: Rng, extra: [number, number, number][]): [number, number, number][] {
  const out = [...extra];
  for (let i = 0; i < 16; i++) {
    out.push([randint(rng, 1, 9), randint(rng, 1, 100), randint(rng, 1, 60)]);
  }
  return out;
}

Deno.test("quantize_q8() equals the scalar quantisation: values as a⁺ and a⁻, and scales", () => {
  const rng = new Rng(21);
  for (const [T, C] of [[3, 64], [2, 32], [4, 100], [1, 7], [5, 768], [2, 33]]) {
    h.reset();
    const x = randn(rng, T * C, 2);
    // A block of zeros, and a block whose largest value is a tie (x / e = 63.5 exactly
    // rounds to 64, even).
    if (C >= 64) x.fill(0, 32, 64);
    x[0] = 127;
    x[1] = 63.5;
    x.fill(1, 2, Math.min(C, 32));
    const nb = Math.ceil(C / Q8_BLOCK);
    const rowBytes = q8RowBytes(C);
    const dst = putBytes(T * rowBytes);
    const args = [dst, put(x), T, C];
    // Rows in two ranges: one call or two give the same bytes.
    run(OPS.quantizeQ8, args, 0, 1);
    run(OPS.quantizeQ8, args, 1, T);
    const got = bytesAt(dst, T * rowBytes);
    const view = new DataView(got.buffer);
    const ref = quantizeQ8Rows(x, T, C);
    for (let t = 0; t < T; t++) {
      for (let b = 0; b < nb; b++) {
        const at = t * rowBytes + b * 68;
        for (let j = 0; j < Q8_BLOCK; j++) {
          const kk = b * Q8_BLOCK + j;
          const want = kk < C ? ref.q[kk * T + t] : 0;
          // a = a⁺ − a⁻, both in [0, 127] and at most one of them nonzero.
          const [pos, neg] = [view.getUint8(at + j), view.getUint8(at + 32 + j)];
          assert(pos <= 127 && neg <= 127 && (pos === 0 || neg === 0), `a± of feature ${kk}`);
          assertEquals(pos - neg, want, `T=${T} C=${C} row ${t} feature ${kk}`);
        }
        assertEquals(view.getFloat32(at + 64, true), ref.scales[b * T + t], `scale ${t} ${b}`);
      }
    }
    assertEquals(ref.q[0], 127);
    if (C >= 2) assertEquals(ref.q[T], 64, "63.5 rounds to the even 64");
  }
});

Deno.test("roundHalfEven() rounds ties to the even integer, as wasm's nearest", () => {
  assertEquals([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 2.4, -2.6].map(roundHalfEven), [
    -2,
    -2,
    -0,
    0,
    2,
    2,
    2,
    -3,
  ]);
});

/** Where the scale of column c (0 … 15) lies among a q8 panel block's 16 halves. */
function scaleIndex(c: number): number {
  const j = c & 7;
  return (c & 8) + (j < 4 ? 2 * j : 2 * (j - 4) + 1);
}

/** Reads weight (k, o) of a `pack_q8` panel layout: [float16 scale bits, q]. */
function packedQ8(packed: Uint8Array, C: number, k: number, o: number): [number, number] {
  const nb = Math.ceil(C / Q8_BLOCK);
  const view = new DataView(packed.buffer);
  const [p, c] = [Math.floor(o / QUANT_PANEL), o % QUANT_PANEL];
  const [b, kk] = [Math.floor(k / Q8_BLOCK), k % Q8_BLOCK];
  const blk = (p * nb + b) * 544;
  const q = view.getInt8(blk + 32 + (kk >> 2) * 64 + c * 4 + (kk & 3));
  return [view.getUint16(blk + 2 * scaleIndex(c), true), q];
}

/** The float16 bits of x (rounded to nearest even). */
function halfBits(x: number): number {
  return new Uint16Array(new Float16Array([x]).buffer)[0];
}

Deno.test("pack_q8() stores ggml's q8_0 quantisation of the weight, (C, OC) and transposed", () => {
  const rng = new Rng(22);
  for (const [C, OC] of [[64, 16], [70, 37], [32, 1], [5, 20], [96, 48]]) {
    for (const transposed of [false, true]) {
      h.reset();
      const w = randn(rng, C * OC, 0.02);
      w[3] = 0.5; // an outlier decides its block's scale
      // A block of zeros in column 5 (row 5 when transposed): scale 0, every q 0.
      const at = (k: number, o: number) => transposed ? o * C + k : k * OC + o;
      for (let k = 0; k < Math.min(C, 32); k++) if (OC > 5) w[at(k, 5)] = 0;
      // Column 0's first block: max 127 · 2⁻⁷, so d = 2⁻⁷ and w · (1 / d) lands exactly on
      // halves, which roundf takes away from zero (nearest-even would give 2, −2, 0, 126).
      if (C >= 8) {
        [127, 2.5, -2.5, 3.5, -0.5, 1.49, 126.5, -127].forEach((v, k) => {
          w[at(k, 0)] = v / 128;
        });
      }
      const packed = putBytes(q8PackedBytes(C, OC));
      const [op, args] = packCall(OPS.packQ8, OPS.packQ8Rows, packed, put(w), C, OC, transposed);
      const units = unitsOf(op, args);
      run(op, args, 0, units >> 1);
      run(op, args, units >> 1, units);
      assertEquals(guard(packed, q8PackedBytes(C, OC) / 4), GUARD, "pack_q8 wrote past its end");
      const got = bytesAt(packed, q8PackedBytes(C, OC));
      const ref = quantizeQ8Weight(w, C, OC, transposed);
      const nb = Math.ceil(C / Q8_BLOCK);
      for (let o = 0; o < Math.ceil(OC / QUANT_PANEL) * QUANT_PANEL; o++) {
        for (let kk = 0; kk < nb * Q8_BLOCK; kk++) {
          const [d, q] = packedQ8(got, C, kk, o);
          const inside = o < OC && kk < C;
          const msg = `C=${C} OC=${OC} ${transposed ? "transposed " : ""}(${kk}, ${o})`;
          assertEquals(q, inside ? ref.q[kk * OC + o] : 0, msg);
          const b = Math.floor(kk / Q8_BLOCK);
          assertEquals(d, o < OC ? halfBits(ref.scales[b * OC + o]) : 0, msg);
        }
      }
      if (C >= 8) {
        const q = [0, 1, 2, 3, 4, 5, 6, 7].map((k) => packedQ8(got, C, k, 0)[1]);
        assertEquals(q, [127, 3, -3, 4, -1, 1, 127, -127], "roundf's halves away from zero");
      }
      // The reference is ggml's quantizer: the same values and scales as testing/ggml_quants.ts
      // gives for each whole block of 32 (rows of wte, columns of a (C, OC) weight).
      for (let o = 0; o < OC && C % 32 === 0; o++) {
        const row = Float32Array.from({ length: C }, (_, k) => w[at(k, o)]);
        const blocks = new DataView(quantize("q8_0", row).buffer);
        for (let kk = 0; kk < C; kk++) {
          const b = Math.floor(kk / 32);
          const [d, q] = packedQ8(got, C, kk, o);
          assertEquals(d, blocks.getUint16(34 * b, true), `ggml's d, (${kk}, ${o})`);
          assertEquals(q, blocks.getInt8(34 * b + 2 + kk % 32), `ggml's q, (${kk}, ${o})`);
        }
      }
    }
  }
});

Deno.test("pack_q8_blocks() of ggml Q8_0 bytes gives pack_q8()'s bytes of the weight, (OC, C) and a chunk of wte's rows at a time", () => {
  const rng = new Rng(48);
  for (const [C, OC] of [[64, 16], [96, 37], [32, 1], [768, 50]]) {
    h.reset();
    const w = randn(rng, C * OC, 0.02); // (C, OC)
    w[7] = 0; // zeros and ties are the quantizer's business, tested above
    for (let k = 0; k < 32; k++) w[k * OC + OC - 1] = 0;
    // ggml's layout: (OC, C) rows, each of C / 32 blocks.
    const rows = new Float32Array(OC * C);
    for (let k = 0; k < C; k++) for (let o = 0; o < OC; o++) rows[o * C + k] = w[k * OC + o];
    const q8_0 = quantize("q8_0", rows);
    const bytes = q8PackedBytes(C, OC);
    const want = putBytes(bytes);
    run(OPS.packQ8, [want, put(w), C, OC]);
    const src = h.put(Math.ceil(q8_0.length / 4) + 1);
    new Uint8Array(h.memory.buffer, src, q8_0.length).set(q8_0);
    const { blocks } = WEIGHT_FORMATS.q8;
    assert(blocks !== undefined && blocks.ggmlType === "q8_0");
    const got = putBytes(bytes);
    const args = [got, src, C, OC];
    const units = unitsOf(blocks.packConv1d, args);
    run(blocks.packConv1d, args, 0, units >> 1);
    run(blocks.packConv1d, args, units >> 1, units);
    assertEquals(guard(got, bytes / 4), GUARD, "pack_q8_blocks wrote past its end");
    assertEquals(bytesAt(got, bytes), bytesAt(want, bytes), `C=${C} OC=${OC}`);
    // The same rows as wte (V = OC), a chunk of panels at a time, src holding only its rows.
    const chunked = putBytes(bytes);
    const rowBytes = (C / 32) * 34;
    const n = panels(OC);
    for (let p0 = 0; p0 < n; p0 += 2) {
      const p1 = Math.min(n, p0 + 2);
      const part = q8_0.slice(
        p0 * QUANT_PANEL * rowBytes,
        Math.min(OC, p1 * QUANT_PANEL) * rowBytes,
      );
      const at = h.put(Math.ceil(part.length / 4) + 1);
      new Uint8Array(h.memory.buffer, at, part.length).set(part);
      const chunkArgs = [chunked, at, C, OC, p0, p1 - p0];
      const u = unitsOf(blocks.packEmbedding, chunkArgs);
      run(blocks.packEmbedding, chunkArgs, 0, u >> 1);
      run(blocks.packEmbedding, chunkArgs, u >> 1, u);
    }
    const wte = putBytes(bytes);
    run(OPS.packQ8Rows, [wte, put(rows), C, OC, 0, n]);
    assertEquals(bytesAt(chunked, bytes), bytesAt(wte, bytes), `wte C=${C} V=${OC}`);
  }
});

/**
 * Asserts that each kernel output is within a float32 sum's rounding of the q8 emulation:
 * (blocks + 2) · 2⁻²³ · (Σ|terms| + |bias|).
 */
function assertNearEmulation(
  got: Float32Array,
  want: Float32Array,
  magnitude: Float64Array,
  bias: Float32Array,
  C: number,
  OC: number,
  msg: string,
) {
  const slack = (Math.ceil(C / Q8_BLOCK) + 2) * 2 ** -23;
  for (let i = 0; i < got.length; i++) {
    const limit = slack * (magnitude[i] + Math.abs(bias[i % OC] ?? 0)) + 1e-30;
    const diff = Math.abs(got[i] - want[i]);
    assert(diff <= limit, `${msg}: element ${i} is ${got[i]}, emulation ${want[i]} (> ${limit})`);
  }
}

/** Quantises x (T, C) and packs w (C, OC) in the harness: [qinp, packed weight]. */
function setupQ8(
  x: Float32Array,
  w: Float32Array,
  T: number,
  C: number,
  OC: number,
  transposed = false,
) {
  const qx = putBytes(T * q8RowBytes(C));
  run(OPS.quantizeQ8, [qx, put(x), T, C]);
  const packed = putBytes(q8PackedBytes(C, OC));
  run(...packCall(OPS.packQ8, OPS.packQ8Rows, packed, put(w), C, OC, transposed));
  return [qx, packed];
}

Deno.test("conv1d_q8() equals the scalar q8 emulation within float32 rounding", () => {
  const rng = new Rng(23);
  for (const [T, C, OC] of shapes(rng, [[1, 768, 48], [4, 768, 40], [7, 96, 33], [2, 3072, 16]])) {
    h.reset();
    const x = randn(rng, T * C);
    const w = randn(rng, C * OC, 0.02);
    const b = randn(rng, OC, 0.1);
    const [qx, packed] = setupQ8(x, w, T, C, OC);
    const out = put(T * OC);
    run(OPS.conv1dQ8, [out, qx, packed, put(padBias(b, OC)), T, C, OC, STORE]);
    const msg = `T=${T} C=${C} OC=${OC}`;
    assertEquals(guard(out, T * OC), GUARD, `conv1d_q8 wrote past its output (${msg})`);
    const wq = quantizeQ8Weight(w, C, OC);
    const want = refConv1dQ8(x, wq, b, T);
    assertNearEmulation(h.get(out, T * OC), want, q8Product(x, wq, T).magnitude, b, C, OC, msg);
  }
});

Deno.test("conv1d_q8() is within the q8 rounding bound of the float32 product, NMSE below 1.5e-4", () => {
  const rng = new Rng(24);
  let [err, norm] = [0, 0];
  for (const [T, C, OC] of [[4, 768, 64], [3, 200, 50], [1, 3072, 32]]) {
    h.reset();
    const x = randn(rng, T * C);
    const w = randn(rng, C * OC, 0.02);
    const b = new Float32Array(OC);
    const [qx, packed] = setupQ8(x, w, T, C, OC);
    const out = put(T * OC);
    run(OPS.conv1dQ8, [out, qx, packed, put(padBias(b, OC)), T, C, OC, STORE]);
    const got = h.get(out, T * OC);
    const exact = refConv1d(x, w, b, T, C, OC);
    const bound = q8ErrorBound(x, w, T, C, OC);
    for (let i = 0; i < got.length; i++) {
      // The bound plus the float rounding of the sums.
      const limit = bound[i] * (1 + 1e-5) + 1e-5;
      assert(
        Math.abs(got[i] - exact[i]) <= limit,
        `T=${T} C=${C} OC=${OC}: element ${i} is ${got[i]}, f32 product ${
          exact[i]
        }, bound ${limit}`,
      );
      err += (got[i] - exact[i]) ** 2;
      norm += exact[i] ** 2;
    }
  }
  const nmse = err / norm;
  assert(nmse < 1.5e-4, `NMSE ${nmse} of q8 against f32 is not below 1.5e-4`);
});

Deno.test("conv1d_q8 gelu and residual forms equal conv1d_q8() then gelu() or add(), bit for bit", () => {
  const rng = new Rng(25);
  for (const [T, C, OC] of [[1, 64, 48], [5, 33, 37], [4, 96, 13], [2, 40, 130]]) {
    h.reset();
    const x = randn(rng, T * C);
    const w = randn(rng, C * OC, 0.3);
    const bias = put(padBias(randn(rng, OC), OC));
    const residual = randn(rng, T * OC);
    const [qx, packed] = setupQ8(x, w, T, C, OC);
    const [plain, fused, sum, fusedSum] = [
      put(T * OC),
      put(T * OC),
      put(T * OC),
      put(residual),
    ];
    const msg = `T=${T} C=${C} OC=${OC}`;
    run(OPS.conv1dQ8, [plain, qx, packed, bias, T, C, OC, STORE]);
    exports.gelu(plain, plain, 0, T * OC);
    run(OPS.conv1dQ8, [fused, qx, packed, bias, T, C, OC, GELU]);
    assertEquals(bits(h.get(fused, T * OC)), bits(h.get(plain, T * OC)), msg);
    run(OPS.conv1dQ8, [sum, qx, packed, bias, T, C, OC, STORE]);
    addInto(sum, residual);
    run(OPS.conv1dQ8, [fusedSum, qx, packed, bias, T, C, OC, RESIDUAL]);
    assertEquals(bits(h.get(fusedSum, T * OC)), bits(h.get(sum, T * OC)), msg);
    // GELU of the emulation, as a check that the fused form is GELU at all.
    assertClose(h.get(fused, T * OC), refGelu(h.get(sum, T * OC).map((v, i) => v - residual[i])), {
      atol: 1e-4,
      rtol: 1e-4,
      msg,
    });
  }
});

Deno.test("q8 kernels give the same bits whatever the panel split and the number of rows", () => {
  const rng = new Rng(26);
  for (const [T, C, OC] of [[7, 96, 70], [5, 768, 64], [4, 40, 33]]) {
    h.reset();
    const x = randn(rng, T * C);
    const w = randn(rng, C * OC, 0.1);
    const bias = put(padBias(randn(rng, OC), OC));
    const [qx, packed] = setupQ8(x, w, T, C, OC);
    const whole = put(T * OC);
    run(OPS.conv1dQ8, [whole, qx, packed, bias, T, C, OC, STORE]);
    const want = bits(h.get(whole, T * OC));
    // Panels in uneven ranges.
    const split = put(T * OC);
    const args = [split, qx, packed, bias, T, C, OC, STORE];
    const units = unitsOf(OPS.conv1dQ8, args);
    for (let u = 0; u < units;) {
      const next = Math.min(units, u + randint(rng, 1, 3));
      run(OPS.conv1dQ8, args, u, next);
      u = next;
    }
    assertEquals(bits(h.get(split, T * OC)), want, `split T=${T} C=${C} OC=${OC}`);
    // Each row alone (the T = 1 kernel) and in pairs.
    const rowBytes = q8RowBytes(C);
    for (const step of [1, 2]) {
      const rows = put(T * OC);
      for (let t = 0; t < T; t += step) {
        const n = Math.min(step, T - t);
        run(OPS.conv1dQ8, [rows + t * OC * 4, qx + t * rowBytes, packed, bias, n, C, OC, STORE]);
      }
      assertEquals(bits(h.get(rows, T * OC)), want, `rows ${step} at a time, T=${T} C=${C}`);
    }
  }
});

Deno.test("logits_q8() equals the scalar q8 head, the same bits in any split", () => {
  const rng = new Rng(27);
  for (const [T, C, V] of [[1, 768, 100], [4, 64, 37], [3, 50, 16], [6, 128, 201]]) {
    h.reset();
    const x = randn(rng, T * C);
    const wte = randn(rng, V * C, 0.1);
    const [qx, packed] = setupQ8(x, wte, T, C, V, true);
    const out = put(T * V);
    const args = [out, qx, packed, T, C, V];
    run(OPS.logitsQ8, args);
    const msg = `T=${T} C=${C} V=${V}`;
    assertEquals(guard(out, T * V), GUARD, `logits_q8 wrote past its output (${msg})`);
    const wq = quantizeQ8Weight(wte, C, V, true);
    const got = h.get(out, T * V);
    const { magnitude } = q8Product(x, wq, T);
    assertNearEmulation(got, refLogitsQ8(x, wq, T), magnitude, new Float32Array(V), C, V, msg);
    // Against the f32 head: the q8 rounding bound, computed on wteᵀ.
    const wt = new Float32Array(C * V);
    for (let v = 0; v < V; v++) for (let kk = 0; kk < C; kk++) wt[kk * V + v] = wte[v * C + kk];
    const bound = q8ErrorBound(x, wt, T, C, V);
    const exact = refLogits(x, wte, T, C, V);
    for (let i = 0; i < got.length; i++) {
      assert(Math.abs(got[i] - exact[i]) <= bound[i] * (1 + 1e-5) + 1e-5, `${msg}: logit ${i}`);
    }
    const split = put(T * V);
    const units = unitsOf(OPS.logitsQ8, args);
    run(OPS.logitsQ8, [split, ...args.slice(1)], 0, units >> 1);
    run(OPS.logitsQ8, [split, ...args.slice(1)], units >> 1, units);
    assertEquals(bits(h.get(split, T * V)), bits(got), `split ${msg}`);
  }
});

Deno.test("conv1d_q8() and logits_q8() of one row equal that row of many rows, bit for bit, in any split", () => {
  // One row takes panels two at a time; more rows take them one by one in halves.
  const rng = new Rng(31);
  for (const [C, OC] of [[96, 80], [64, 33], [768, 64], [32, 16]]) {
    h.reset();
    const T = 5;
    const x = randn(rng, T * C);
    const w = randn(rng, C * OC, 0.05);
    const b = put(padBias(randn(rng, OC, 0.1), OC));
    for (const transposed of [false, true]) {
      const [qx, packed] = setupQ8(x, w, T, C, OC, transposed);
      const op = transposed ? OPS.logitsQ8 : OPS.conv1dQ8;
      const argsOf = (out: number, qin: number, rows: number) =>
        transposed ? [out, qin, packed, rows, C, OC] : [out, qin, packed, b, rows, C, OC, STORE];
      const all = put(T * OC);
      run(op, argsOf(all, qx, T));
      const want = bits(h.get(all, T * OC));
      const units = unitsOf(op, argsOf(all, qx, 1));
      for (let t = 0; t < T; t++) {
        const qrow = qx + t * q8RowBytes(C);
        const one = put(OC);
        // Splits at every panel boundary in turn: an odd first part, then the rest.
        const cut = Math.min(units, 1 + 2 * t);
        run(op, argsOf(one, qrow, 1), 0, cut);
        run(op, argsOf(one, qrow, 1), cut, units);
        const msg = `${transposed ? "logits" : "conv1d"} C=${C} OC=${OC} row ${t} split ${cut}`;
        assertEquals(bits(h.get(one, OC)), want.slice(t * OC, (t + 1) * OC), msg);
      }
    }
  }
});

Deno.test("embed_q8() is exact: the token's dequantised row plus the position row", () => {
  const rng = new Rng(28);
  const [V, C, nCtx, rows] = [37, 70, 16, 6];
  h.reset();
  const wte = randn(rng, V * C, 0.1);
  const wpe = randn(rng, nCtx * C, 0.01);
  const tokens = Int32Array.from({ length: rows }, () => randint(rng, 0, V - 1));
  const positions = Int32Array.from({ length: rows }, () => randint(rng, 0, nCtx - 1));
  tokens[0] = V - 1;
  const packed = putBytes(q8PackedBytes(C, V));
  run(...packCall(OPS.packQ8, OPS.packQ8Rows, packed, put(wte), C, V, true));
  const out = put(rows * C);
  run(OPS.embedQ8, [out, putInts(tokens), putInts(positions), packed, put(wpe), rows, C]);
  const table = dequantizeQ8(quantizeQ8Weight(wte, C, V, true)); // (C, V)
  const want = new Float32Array(rows * C);
  for (let r = 0; r < rows; r++) {
    for (let kk = 0; kk < C; kk++) {
      want[r * C + kk] = table[kk * V + tokens[r]] + wpe[positions[r] * C + kk];
    }
  }
  assertEquals(bits(h.get(out, rows * C)), bits(want));
});

/** Float32 values of n halves at `offset`. */
function halvesAt(offset: number, n: number): Float32Array {
  const u = new Uint16Array(h.memory.buffer, offset, n);
  return new Float32Array(Uint32Array.from(u, float16BitsToFloat32Bits).buffer);
}

Deno.test("convert_f16() rounds to the nearest float16, ties to even, as Math.f16round", () => {
  const rng = new Rng(29);
  const special = [
    0,
    -0,
    1,
    1 + 2 ** -11, // a tie: to 1
    1 + 3 * 2 ** -11, // a tie: to 1 + 2⁻⁹
    65504,
    65519.99,
    65520, // halfway past the largest half: to infinity
    -70000,
    2 ** -14, // the smallest normal
    2 ** -24, // the smallest subnormal
    2 ** -25, // a tie with zero: to 0
    2 ** -25 * 1.0001,
    3 * 2 ** -25, // a tie between subnormals 1 and 2 · 2⁻²⁴: to 2
    6.1e-5,
    1e-10,
    Infinity,
    -Infinity,
    3.4e38,
  ];
  const x = new Float32Array(special.length + 2000);
  x.set(special);
  for (let i = special.length; i < x.length; i++) {
    x[i] = rng.normal() * 2 ** randint(rng, -30, 17);
  }
  h.reset();
  const dst = putBytes(2 * x.length);
  const args = [dst, put(x), x.length];
  run(OPS.convertF16, args, 0, 700);
  run(OPS.convertF16, args, 700, x.length);
  const got = halvesAt(dst, x.length);
  const want = roundArrayToFloat16(x);
  assertEquals(bits(got), bits(want));
  const f16round = (Math as unknown as { f16round?: (v: number) => number }).f16round;
  if (f16round) assertEquals(bits(got), bits(x.map(f16round)));
  assertEquals(roundToFloat16(65520), Infinity);
  assertEquals(roundToFloat16(3 * 2 ** -25), 2 ** -23);
});

/**
 * Where column c of a 16-column f16 panel row lies among its halves, as asm/matmul_f16.ts
 * documents it: each 8-column half is a vector whose 32-bit lane i holds columns i and
 * 4 + i.
 */
function halfIndex(c: number): number {
  const j = c & 7;
  return (c & 8) + (j < 4 ? 2 * j : 2 * (j - 4) + 1);
}

Deno.test("pack_f16() lays out float16 panels of 16 columns times 2^10, row after row, (C, OC) and transposed, and counts what does not fit", () => {
  const rng = new Rng(30);
  for (const [C, OC, transposed] of [[3, 18, 0], [1030, 25, 0], [17, 16, 0], [40, 37, 1]]) {
    h.reset();
    const w = randn(rng, C * OC);
    // Ties among normal values (rounded four lanes at once), and values that are not
    // normal halves (each rounded on its own): zero, subnormal, too small, too large.
    w.set([1 + 2 ** -11, 1 + 3 * 2 ** -11, -(1 + 2 ** -11), 0.5], 0);
    w.set([0, 1e-6, -3 * 2 ** -25, 2 ** -26, 65519, 70000, -65520, 6e-5], 4);
    // The largest that fits scaled (63.96875 · 2^10 = 65504), a tie rounding up to 64 (does
    // not fit), −64, NaN, −0, the smallest subnormal and the largest.
    w.set([63.98, 63.984375, -64, NaN, -0, 2 ** -24, -1023 * 2 ** -24, 2 ** -14], 12);
    const packed = putBytes(f16PackedBytes(C, OC));
    const misfits = run(
      ...packCall(OPS.packF16, OPS.packF16Rows, packed, put(w), C, OC, transposed),
    );
    assertEquals(guard(packed, f16PackedBytes(C, OC) / 4), GUARD, "pack_f16 wrote past its end");
    const got = halvesAt(packed, f16PackedBytes(C, OC) / 2);
    const rounded = roundArrayToFloat16(w);
    const fits = (v: number) => Math.abs(v) < 64;
    assertEquals(misfits, rounded.filter((v) => !fits(v)).length, `C=${C}: the misfits`);
    assertEquals(misfits, 6, `C=${C}: three of each set above`);
    for (let col = 0; col < Math.ceil(OC / QUANT_PANEL) * QUANT_PANEL; col++) {
      const [panel, c] = [Math.floor(col / QUANT_PANEL), col % QUANT_PANEL];
      for (let kk = 0; kk < C; kk++) {
        const r = col < OC ? rounded[transposed ? col * C + kk : kk * OC + col] : 0;
        const want = fits(r) ? r * 1024 : (r < 0 ? -Infinity : Infinity);
        assertEquals(
          got[(panel * C + kk) * QUANT_PANEL + halfIndex(c)],
          want,
          `C=${C} column ${col} row ${kk}`,
        );
      }
    }
  }
});

Deno.test("conv1d_f16() equals conv1d() on float16-rounded weights, bit for bit, and the reference", () => {
  const rng = new Rng(31);
  for (
    const [T, C, OC] of shapes(rng, [[1, 768, 48], [4, 768, 40], [9, 1030, 19], [5, 3072, 16]])
  ) {
    h.reset();
    const x = randn(rng, T * C);
    const w = randn(rng, C * OC);
    const b = randn(rng, OC);
    const rounded = roundArrayToFloat16(w);
    const [pi, pb, src] = [put(x), put(padBias(b, OC)), put(w)];
    const packed16 = putBytes(f16PackedBytes(C, OC));
    run(OPS.packF16, [packed16, src, C, OC]);
    const packed32 = put(Math.ceil(OC / constants.PANEL) * constants.PANEL * C);
    run(OPS.packPanels, [packed32, put(rounded), C, OC]);
    const [out16, out32] = [put(T * OC), put(T * OC)];
    run(OPS.conv1dF16, [out16, pi, packed16, pb, T, C, OC, STORE]);
    run(OPS.conv1d, [out32, pi, packed32, pb, T, C, OC, STORE]);
    const msg = `T=${T} C=${C} OC=${OC}`;
    assertEquals(guard(out16, T * OC), GUARD, `conv1d_f16 wrote past its output (${msg})`);
    const got = h.get(out16, T * OC);
    assertEquals(bits(got), bits(h.get(out32, T * OC)), msg);
    assertClose(got, refConv1d(x, rounded, b, T, C, OC), { atol: C * 1e-7, rtol: 1e-5, msg });
  }
});

Deno.test("conv1d_f16 gelu and residual forms equal conv1d_f16() then gelu() or add(), in any split", () => {
  const rng = new Rng(32);
  for (const [T, C, OC] of [[1, 64, 48], [5, 33, 37], [4, 17, 13], [6, 40, 130]]) {
    h.reset();
    const x = randn(rng, T * C);
    const w = randn(rng, C * OC, 0.3);
    const bias = put(padBias(randn(rng, OC), OC));
    const residual = randn(rng, T * OC);
    const pi = put(x);
    const packed = putBytes(f16PackedBytes(C, OC));
    run(OPS.packF16, [packed, put(w), C, OC]);
    const [plain, fused, sum, fusedSum] = [
      put(T * OC),
      put(T * OC),
      put(T * OC),
      put(residual),
    ];
    const msg = `T=${T} C=${C} OC=${OC}`;
    run(OPS.conv1dF16, [plain, pi, packed, bias, T, C, OC, STORE]);
    exports.gelu(plain, plain, 0, T * OC);
    const gArgs = [fused, pi, packed, bias, T, C, OC, GELU];
    const units = unitsOf(OPS.conv1dF16, gArgs);
    run(OPS.conv1dF16, gArgs, 0, units >> 1);
    run(OPS.conv1dF16, gArgs, units >> 1, units);
    assertEquals(bits(h.get(fused, T * OC)), bits(h.get(plain, T * OC)), msg);
    run(OPS.conv1dF16, [sum, pi, packed, bias, T, C, OC, STORE]);
    addInto(sum, residual);
    run(OPS.conv1dF16, [fusedSum, pi, packed, bias, T, C, OC, RESIDUAL]);
    assertEquals(bits(h.get(fusedSum, T * OC)), bits(h.get(sum, T * OC)), msg);
  }
});

Deno.test("logits_f16() equals conv1d() on float16-rounded wteᵀ bit for bit; embed_f16() is exact", () => {
  const rng = new Rng(33);
  for (const [T, C, V] of [[1, 768, 70], [4, 61, 37], [6, 36, 20], [2, 5, 9]]) {
    h.reset();
    const x = randn(rng, T * C);
    const wte = randn(rng, V * C, 0.1);
    const rounded = roundArrayToFloat16(wte);
    const w16 = putBytes(f16PackedBytes(C, V));
    run(...packCall(OPS.packF16, OPS.packF16Rows, w16, put(wte), C, V, true));
    const px = put(x);
    const [out16, out32] = [put(T * V), put(T * V)];
    const args = [out16, px, w16, T, C, V];
    const units = unitsOf(OPS.logitsF16, args);
    run(OPS.logitsF16, args, 0, units >> 1);
    run(OPS.logitsF16, args, units >> 1, units);
    // The f32 Conv1D over wteᵀ with a zero bias.
    const wt = new Float32Array(C * V);
    for (let v = 0; v < V; v++) for (let kk = 0; kk < C; kk++) wt[kk * V + v] = rounded[v * C + kk];
    const packed32 = put(Math.ceil(V / constants.PANEL) * constants.PANEL * C);
    run(OPS.packPanels, [packed32, put(wt), C, V]);
    const zeros = put(Math.ceil(V / constants.PANEL) * constants.PANEL);
    run(OPS.conv1d, [out32, px, packed32, zeros, T, C, V, STORE]);
    const msg = `T=${T} C=${C} V=${V}`;
    assertEquals(guard(out16, T * V), GUARD, `logits_f16 wrote past its output (${msg})`);
    const got = h.get(out16, T * V);
    assertEquals(bits(got), bits(h.get(out32, T * V)), msg);
    assertClose(got, refLogits(x, rounded, T, C, V), { atol: C * 1e-7, rtol: 1e-5, msg });

    const [rows, nCtx] = [5, 8];
    const wpe = randn(rng, nCtx * C);
    const tokens = Int32Array.from({ length: rows }, () => randint(rng, 0, V - 1));
    const positions = Int32Array.from({ length: rows }, () => randint(rng, 0, nCtx - 1));
    const out = put(rows * C);
    run(OPS.embedF16, [out, putInts(tokens), putInts(positions), w16, put(wpe), rows, C]);
    const want = new Float32Array(rows * C);
    for (let r = 0; r < rows; r++) {
      for (let kk = 0; kk < C; kk++) {
        want[r * C + kk] = rounded[tokens[r] * C + kk] + wpe[positions[r] * C + kk];
      }
    }
    assertEquals(bits(h.get(out, rows * C)), bits(want), `embed ${msg}`);
  }
});

Deno.test("conv1d_f16() and logits_f16() with a scratch (a panel widened once for many rows) give the bits they give without, in any split", () => {
  const rng = new Rng(34);
  const scratchBytes = WEIGHT_FORMATS.f16.threadScratchBytes!;
  for (const [T, C, OC] of [[5, 33, 37], [6, 768, 40], [9, 1030, 19], [128, 72, 50], [7, 3, 5]]) {
    h.reset();
    const x = randn(rng, T * C);
    const w = randn(rng, C * OC, 0.3);
    const bias = put(padBias(randn(rng, OC), OC));
    const pi = put(x);
    const packed = putBytes(f16PackedBytes(C, OC));
    run(OPS.packF16, [packed, put(w), C, OC]);
    const wte = putBytes(f16PackedBytes(C, OC));
    run(OPS.packF16Rows, [wte, put(w), C, OC, 0, panels(OC)]);
    // Two parts' scratch: part 1's after part 0's, each with a guard after it.
    const scratch = putBytes(2 * scratchBytes(C));
    const msg = `T=${T} C=${C} OC=${OC}`;
    for (const mode of [STORE, GELU, RESIDUAL]) {
      const residual = randn(rng, T * OC);
      const [plain, widened] = [put(residual), put(residual)];
      const args = [plain, pi, packed, bias, T, C, OC, mode];
      run(OPS.conv1dF16, args);
      const split = [widened, pi, packed, bias, T, C, OC, mode, scratch];
      const units = unitsOf(OPS.conv1dF16, split);
      OPS.conv1dF16.run(exports, namedArgs(OPS.conv1dF16, split), 0, units >> 1, 0);
      OPS.conv1dF16.run(exports, namedArgs(OPS.conv1dF16, split), units >> 1, units, 1);
      assertEquals(bits(h.get(widened, T * OC)), bits(h.get(plain, T * OC)), `${msg} mode ${mode}`);
    }
    const [head, headWidened] = [put(T * OC), put(T * OC)];
    run(OPS.logitsF16, [head, pi, wte, T, C, OC]);
    const split = [headWidened, pi, wte, T, C, OC, scratch];
    const units = unitsOf(OPS.logitsF16, split);
    OPS.logitsF16.run(exports, namedArgs(OPS.logitsF16, split), 0, units >> 1, 0);
    OPS.logitsF16.run(exports, namedArgs(OPS.logitsF16, split), units >> 1, units, 1);
    assertEquals(bits(h.get(headWidened, T * OC)), bits(h.get(head, T * OC)), `head ${msg}`);
    assertEquals(
      guard(scratch, scratchBytes(C) / 2),
      GUARD,
      `part 1 wrote past its scratch (${msg})`,
    );
  }
});

/**
 * n weights whose float16 roundings are, by turns, subnormal (either sign, some of them not
 * halves themselves), zero (either sign), at the edges of the subnormals and of the range
 * the panels hold, and GPT-2-like.
 */
function subnormalWeights(rng: Rng, n: number): Float32Array {
  const edges = [2 ** -24, -(2 ** -24), 1023 * 2 ** -24, -1023 * 2 ** -24, 2 ** -14, -(2 ** -14)];
  edges.push(1.5 * 2 ** -25, 63.96875, -63.96875, 2 ** -25);
  const w = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const sign = rng.next() < 0.5 ? -1 : 1;
    const kind = i % 8;
    w[i] = kind < 3
      ? sign * randint(rng, 1, 1023) * 2 ** -24
      : kind === 3
      ? sign * rng.next() * 2 ** -14
      : kind === 4
      ? sign * 0
      : kind === 5
      ? edges[randint(rng, 0, edges.length - 1)]
      : rng.normal() * 0.02;
  }
  return w;
}

Deno.test("the f16 kernels equal the f32 ones bit for bit on float16 subnormals and zeros, at every T and with a scratch; embed_f16() is exact", () => {
  const rng = new Rng(48);
  const scratchBytes = WEIGHT_FORMATS.f16.threadScratchBytes!;
  for (const [C, OC] of [[70, 37], [768, 48]]) {
    h.reset();
    const w = subnormalWeights(rng, C * OC);
    const rounded = roundArrayToFloat16(w);
    assert(rounded.some((v) => v !== 0 && Math.abs(v) < 2 ** -14), "some weights subnormal");
    assert(rounded.some((v) => Object.is(v, -0)), "some weights −0");
    const packed = putBytes(f16PackedBytes(C, OC));
    assertEquals(run(OPS.packF16, [packed, put(w), C, OC]), 0, "every weight fits");
    const wte = putBytes(f16PackedBytes(C, OC));
    assertEquals(run(OPS.packF16Rows, [wte, put(w), C, OC, 0, panels(OC)]), 0);
    const packed32 = put(Math.ceil(OC / constants.PANEL) * constants.PANEL * C);
    run(OPS.packPanels, [packed32, put(rounded), C, OC]);
    // wteᵀ (C, V = OC) of the rounded weights, for the f32 Conv1D that the head equals.
    const wt = new Float32Array(C * OC);
    for (let v = 0; v < OC; v++) {
      for (let kk = 0; kk < C; kk++) wt[kk * OC + v] = rounded[v * C + kk];
    }
    const head32 = put(Math.ceil(OC / constants.PANEL) * constants.PANEL * C);
    run(OPS.packPanels, [head32, put(wt), C, OC]);
    const bias = put(padBias(randn(rng, OC), OC));
    const zeros = put(Math.ceil(OC / constants.PANEL) * constants.PANEL);
    const scratch = putBytes(scratchBytes(C));
    for (const T of [1, 2, 3, 4, 5, 9]) {
      const pi = put(randn(rng, T * C));
      const msg = `T=${T} C=${C} OC=${OC}`;
      const want = put(T * OC);
      run(OPS.conv1d, [want, pi, packed32, bias, T, C, OC, STORE]);
      const wantHead = put(T * OC);
      run(OPS.conv1d, [wantHead, pi, head32, zeros, T, C, OC, STORE]);
      for (const s of [0, scratch]) {
        const got = put(T * OC);
        run(OPS.conv1dF16, [got, pi, packed, bias, T, C, OC, STORE, s]);
        assertEquals(bits(h.get(got, T * OC)), bits(h.get(want, T * OC)), `${msg} scratch ${s}`);
        const head = put(T * OC);
        run(OPS.logitsF16, [head, pi, wte, T, C, OC, s]);
        assertEquals(bits(h.get(head, T * OC)), bits(h.get(wantHead, T * OC)), `head ${msg}`);
      }
    }
    const tokens = Int32Array.from({ length: OC }, (_, i) => i);
    const positions = new Int32Array(OC);
    const wpe = new Float32Array(C);
    const out = put(OC * C);
    run(OPS.embedF16, [out, putInts(tokens), putInts(positions), wte, put(wpe), OC, C]);
    // + 0 as the kernel adds wpe's zeros: −0 becomes 0.
    assertEquals(bits(h.get(out, OC * C)), bits(rounded.map((v) => v + 0)), `embed C=${C}`);
  }
});

Deno.test("weight_formats.ts sizes buffers with the kernels' own block and panel sizes", () => {
  const globals = exports as unknown as Record<string, WebAssembly.Global>;
  assertEquals(globals.QBLOCK.value, Q8_BLOCK);
  assertEquals(globals.QPANEL.value, QUANT_PANEL);
  assertEquals(globals.PANEL.value, QUANT_PANEL);
  assertEquals(q8RowBytes(33), 2 * 68);
  assertEquals(q8PackedBytes(64, 17), 2 * 2 * 544);
  assertEquals(f16PackedBytes(3, 17), 2 * 16 * 3 * 2);
});

Deno.test("pack_q8() and pack_f16() of wte a chunk of panels at a time, src holding only the chunk's rows, give the bytes of one call", () => {
  const rng = new Rng(47);
  // V = 83: six panels, the last one three rows wide; C = 70: the last q8 block partial.
  const [V, C] = [83, 70];
  const wte = randn(rng, V * C, 0.1);
  const panelFloats = QUANT_PANEL * C;
  const chunks = [[0, 1], [1, 3], [3, 4], [4, 6]];
  for (
    const [chunk, bytes] of [
      [OPS.packQ8Rows, q8PackedBytes(C, V)],
      [OPS.packF16Rows, f16PackedBytes(C, V)],
    ] as const
  ) {
    h.reset();
    const want = putBytes(bytes);
    run(chunk, [want, put(wte), C, V, 0, panels(V)]);
    const got = putBytes(bytes);
    for (const [p0, p1] of chunks) {
      // Only the chunk's rows, at an address of their own: as the backend stages them.
      const rows = wte.slice(p0 * panelFloats, Math.min(p1 * panelFloats, V * C));
      const args = [got, put(rows), C, V, p0, p1 - p0];
      // Split in two, as the worker pool may: units count from the chunk's first panel.
      const units = unitsOf(chunk, args);
      run(chunk, args, 0, units >> 1);
      run(chunk, args, units >> 1, units);
    }
    assertEquals(guard(got, bytes / 4), GUARD, `${chunk.name} wrote past its end`);
    assertEquals(
      new Uint8Array(h.memory.buffer, got, bytes),
      new Uint8Array(h.memory.buffer, want, bytes),
      `${chunk.name}: the bytes of one call on the whole of wte`,
    );
  }
});
