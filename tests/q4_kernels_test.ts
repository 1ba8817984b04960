/**
 * The 4-bit kernels (asm/matmul_q4.ts) against the scalar reference of
 * runtime/backend/reference/quant_q4.ts, on a direct harness over one WebAssembly instance.
 *
 * Tolerances:
 * - pack_q4, pack_q4_blocks, quantize_q4 and embed_q4: bit for bit (they round each value
 *   once, as the reference does, or move bytes).
 * - conv1d_q4 and logits_q4 vs the scalar q4 emulation: the integer block sums are exact
 *   on both sides, so the only difference is the kernel's f32 accumulation of one term per
 *   block (and the bias): |kernel − emulation| ≤ (blocks + 2) · 2⁻²³ · (Σ|terms| + |bias|).
 * - q4 vs the float32 product on GPT-2-like data (x ~ N(0, 1), w ~ N(0, 0.02²)): a
 *   normalised mean squared error (ggml's NMSE) below 1e-2; about 5e-3 is typical (a
 *   step of max|w| / 8 ≈ 0.26σ in a block of 32: 0.26² / 12 relative noise).
 */
import { assertClose } from "./assert_close.ts";
import { assert, assertEquals } from "./asserts.ts";
import { Harness, randint, randn } from "./kernel_harness.ts";
import { PANEL, panels } from "../runtime/backend/wasm/layout.ts";
import { WEIGHT_FORMATS } from "../runtime/backend/wasm/weight_formats.ts";
import { Rng } from "../runtime/generate/random.ts";
import { instantiate, kernelModule } from "../runtime/backend/wasm/kernel_module.ts";
import { namedArgs, type Op, OPS } from "../runtime/backend/wasm/ops.ts";
import { refConv1d, refGelu } from "../runtime/backend/reference/ops.ts";
import {
  dequantizeQ4,
  q4_0Bytes,
  Q4_BLOCK,
  q4Product,
  quantizeQ4Rows,
  quantizeQ4Weight,
  refConv1dQ4,
  refLogitsQ4,
} from "../runtime/backend/reference/quant_q4.ts";

const h = await Harness.create(256 << 20);
const { exports, constants } = instantiate(await kernelModule(), h.memory);

const q4 = WEIGHT_FORMATS.q4;
const packedBytes = q4.conv1dBytes;
const rowBytes = q4.quantize!.rowBytes;
const { store: STORE, gelu: GELU, residual: RESIDUAL } = constants.modes;
/** Bytes of one packed block of a panel: 16 float16 scales, 16 × 32 nibbles. */
const BLOCK_BYTES = 2 * PANEL + PANEL * Q4_BLOCK / 2;

function unitsOf(op: Op, values: number[]): number {
  return op.units(namedArgs(op, values), constants);
}

function run(op: Op, values: number[], u0 = 0, u1 = unitsOf(op, values)): void {
  op.run(exports, namedArgs(op, values), u0, u1);
}

/** A value after each array `put` places, which shows whether a kernel wrote past its end. */
const GUARD = 12345;

function put(data: Float32Array | number): number {
  const n = typeof data === "number" ? data : data.length;
  const at = h.put(n + 1);
  if (typeof data !== "number") new Float32Array(h.memory.buffer, at, n).set(data);
  new Float32Array(h.memory.buffer, at + 4 * n, 1)[0] = GUARD;
  return at;
}

function guard(offset: number, n: number): number {
  return new Float32Array(h.memory.buffer, offset + 4 * n, 1)[0];
}

function putBytes(data: Uint8Array | number): number {
  const n = typeof data === "number" ? data : data.length;
  const at = put(Math.ceil(n / 4));
  if (typeof data !== "number") new Uint8Array(h.memory.buffer, at, n).set(data);
  return at;
}

function putInts(data: Int32Array): number {
  return h.put(new Float32Array(data.buffer, data.byteOffset, data.length));
}

function bytesAt(offset: number, n: number): Uint8Array {
  return new Uint8Array(h.memory.buffer, offset, n).slice();
}

function bits(a: Float32Array): Uint32Array {
  return new Uint32Array(a.buffer, a.byteOffset, a.length);
}

function padBias(b: Float32Array, OC: number): Float32Array {
  const padded = new Float32Array(panels(OC) * PANEL);
  padded.set(b);
  return padded;
}

function addInto(offset: number, r: Float32Array): void {
  const view = new Float32Array(h.memory.buffer, offset, r.length);
  for (let i = 0; i < r.length; i++) view[i] = r[i] + view[i];
}

/** Random shapes (T, C, OC) with C and OC off the block (32) and panel (16) sizes too. */
function shapes(rng: Rng, extra: [number, number, number][]): [number, number, number][] {
  const out = [...extra];
  for (let i = 0; i < 12; i++) {
    out.push([randint(rng, 1, 9), randint(rng, 1, 100), randint(rng, 1, 60)]);
  }
  return out;
}

/**
 * Column o, feature k of a packed q4 weight (C features): its block's float16 scale bits
 * and its nibble, as asm/matmul_q4.ts lays them out.
 */
function packedAt(packed: Uint8Array, C: number, k: number, o: number): [number, number] {
  const nb = Math.ceil(C / Q4_BLOCK);
  const c = o % PANEL;
  const blk = (Math.floor(o / PANEL) * nb + Math.floor(k / Q4_BLOCK)) * BLOCK_BYTES;
  const j = c & 7;
  const scale = (c & 8) + ((j & 3) << 1) + (j >> 2);
  const dBits = packed[blk + 2 * scale] | (packed[blk + 2 * scale + 1] << 8);
  const kk = k % Q4_BLOCK;
  const i = kk & 15;
  const byte = packed[blk + 32 + (4 * (i >> 2) + (c >> 2)) * 16 + (c & 3) * 4 + (i & 3)];
  return [dBits, kk < 16 ? byte & 15 : byte >> 4];
}

/** Packs w, (C, OC) or (OC, C) with `transposed`, in the harness: its offset. */
function pack(w: Float32Array, C: number, OC: number, transposed = false): number {
  const packed = putBytes(packedBytes(C, OC));
  if (transposed) run(OPS.packQ4Rows, [packed, put(w), C, OC, 0, panels(OC)]);
  else run(OPS.packQ4, [packed, put(w), C, OC]);
  return packed;
}

/** Quantises x (T, C) in the harness: its offset. */
function quantized(x: Float32Array, T: number, C: number): number {
  const qx = putBytes(T * rowBytes(C));
  run(OPS.quantizeQ4, [qx, put(x), T, C]);
  return qx;
}

Deno.test("quantize_q4() equals the scalar quantisation: bytes, scales and corrections −8 · Σa", () => {
  const rng = new Rng(60);
  for (const [T, C] of [[1, 768], [3, 70], [2, 32], [4, 5], [1, 100]]) {
    h.reset();
    const x = randn(rng, T * C, 3);
    if (C > 40) x.fill(0, 0, 32); // a block of zeros: scale 0
    const qx = quantized(x, T, C);
    const nb = Math.ceil(C / Q4_BLOCK);
    const want = quantizeQ4Rows(x, T, C);
    const got = bytesAt(qx, T * rowBytes(C));
    const view = new DataView(got.buffer);
    for (let t = 0; t < T; t++) {
      for (let b = 0; b < nb; b++) {
        const at = (t * nb + b) * 40;
        const a = new Int8Array(got.buffer, at, 32);
        const wantA = want.a.subarray((t * nb + b) * 32, (t * nb + b + 1) * 32);
        assertEquals([...a], [...wantA], `T=${T} C=${C} row ${t} block ${b}`);
        assertEquals(view.getFloat32(at + 32, true), want.e[t * nb + b]);
        assertEquals(view.getInt32(at + 36, true), Math.imul(-8, wantA.reduce((s, v) => s + v, 0)));
      }
    }
  }
});

Deno.test("pack_q4() stores ggml's Q4_0 quantisation of the weight, (C, OC) and transposed", () => {
  const rng = new Rng(61);
  const cases: [number, number][] = [[64, 48], [70, 33], [5, 17], [128, 16], [33, 1]];
  for (const [C, OC] of cases) {
    for (const transposed of [false, true]) {
      h.reset();
      const w = randn(rng, C * OC, 0.05);
      // Ties of magnitude: the first keeps its sign (here +0.25, so d = −0.25 / 8).
      w[0] = 0.25;
      w[transposed ? 1 : OC] = -0.25;
      const packed = pack(w, C, OC, transposed);
      const bytes = bytesAt(packed, packedBytes(C, OC));
      const want = quantizeQ4Weight(w, C, OC, transposed);
      const msg = `C=${C} OC=${OC}${transposed ? " transposed" : ""}`;
      for (let o = 0; o < panels(OC) * PANEL; o++) {
        for (let k = 0; k < Math.ceil(C / Q4_BLOCK) * Q4_BLOCK; k++) {
          const [dBits, n] = packedAt(bytes, C, k, o);
          const b = Math.floor(k / Q4_BLOCK);
          const wantD = o < OC ? want.dBits[b * OC + o] : 0;
          const wantN = o < OC ? want.n[k * OC + o] : 0;
          if (dBits !== wantD || n !== wantN) {
            throw new Error(
              `${msg}: column ${o} feature ${k}: (${dBits}, ${n}), want (${wantD}, ${wantN})`,
            );
          }
        }
      }
      // −0.25 / 8 = −2⁻⁵: float16 sign, exponent 10, mantissa 0.
      assertEquals(want.dBits[0], 0xa800, `${msg}: d = −1/32 from the first of ±0.25`);
    }
  }
});

Deno.test("pack_q4_blocks() of a matrix's ggml Q4_0 bytes gives pack_q4()'s bytes, whole and a chunk at a time", () => {
  const rng = new Rng(62);
  for (const [C, OC] of [[64, 48], [96, 83], [32, 7]]) {
    h.reset();
    const w = randn(rng, C * OC, 0.05); // (OC, C): the rows are columns, as GGUF has them
    const bytes = packedBytes(C, OC);
    const want = bytesAt(pack(w, C, OC, true), bytes);
    const ggml = q4_0Bytes(quantizeQ4Weight(w, C, OC, true));
    const whole = putBytes(bytes);
    run(OPS.packQ4Blocks, [whole, putBytes(ggml), C, OC]);
    assertEquals(guard(whole, bytes / 4), GUARD);
    assertEquals(bytesAt(whole, bytes), want, `C=${C} OC=${OC}: one call`);
    const chunked = putBytes(bytes);
    const rowBytes = (C / Q4_BLOCK) * 18;
    for (let p0 = 0; p0 < panels(OC); p0 += 2) {
      const p1 = Math.min(panels(OC), p0 + 2);
      const rows = ggml.slice(p0 * PANEL * rowBytes, Math.min(p1 * PANEL, OC) * rowBytes);
      const args = [chunked, putBytes(rows), C, OC, p0, p1 - p0];
      run(OPS.packQ4BlockRows, args, 0, 1);
      run(OPS.packQ4BlockRows, args, 1, unitsOf(OPS.packQ4BlockRows, args));
    }
    assertEquals(bytesAt(chunked, bytes), want, `C=${C} OC=${OC}: two panels at a time`);
  }
});

/**
 * Asserts that each kernel output is within a float32 sum's rounding of the emulation:
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
  const slack = (Math.ceil(C / Q4_BLOCK) + 2) * 2 ** -23;
  for (let i = 0; i < got.length; i++) {
    const limit = slack * (magnitude[i] + Math.abs(bias[i % OC] ?? 0)) + 1e-30;
    const diff = Math.abs(got[i] - want[i]);
    assert(diff <= limit, `${msg}: element ${i} is ${got[i]}, emulation ${want[i]} (> ${limit})`);
  }
}

Deno.test("conv1d_q4() equals the scalar q4 emulation within float32 rounding", () => {
  const rng = new Rng(63);
  for (const [T, C, OC] of shapes(rng, [[1, 768, 48], [4, 768, 40], [7, 96, 33], [2, 3072, 16]])) {
    h.reset();
    const x = randn(rng, T * C);
    const w = randn(rng, C * OC, 0.02);
    const b = randn(rng, OC, 0.1);
    const qx = quantized(x, T, C);
    const packed = pack(w, C, OC);
    const out = put(T * OC);
    run(OPS.conv1dQ4, [out, qx, packed, put(padBias(b, OC)), T, C, OC, STORE]);
    const msg = `T=${T} C=${C} OC=${OC}`;
    assertEquals(guard(out, T * OC), GUARD, `conv1d_q4 wrote past its output (${msg})`);
    const wq = quantizeQ4Weight(w, C, OC);
    const want = refConv1dQ4(x, wq, b, T);
    assertNearEmulation(h.get(out, T * OC), want, q4Product(x, wq, T).magnitude, b, C, OC, msg);
  }
});

Deno.test("conv1d_q4() is exact at the extremes: every a = ±127 against n = 0 or 15, one and several rows", () => {
  // The 16-bit sums of a block at their largest (32 · 127 · 15 = 60960 split over the
  // lanes' pairs): any overflow would show. The weights are ±1 in blocks whose largest is
  // −1 or +1 (d = ∓1/8: n = 0 or 15 stands for ∓1 or ±7/8).
  const [C, OC] = [256, 32];
  for (const T of [1, 4, 3]) {
    h.reset();
    const x = new Float32Array(T * C).map((_, i) => (i % 3 === 0 ? -1 : 1));
    const w = new Float32Array(C * OC).map((_, i) => ((i * 7) % 5 < 2 ? -1 : 1));
    const qx = quantized(x, T, C);
    const packed = pack(w, C, OC);
    const out = put(T * OC);
    run(OPS.conv1dQ4, [out, qx, packed, put(new Float32Array(OC)), T, C, OC, STORE]);
    const wq = quantizeQ4Weight(w, C, OC);
    assert(wq.n.every((n) => n === 0 || n === 15 || n === 1), "weights at the ends of the range");
    const want = refConv1dQ4(x, wq, new Float32Array(OC), T);
    assertNearEmulation(
      h.get(out, T * OC),
      want,
      q4Product(x, wq, T).magnitude,
      new Float32Array(OC),
      C,
      OC,
      `T=${T}`,
    );
  }
});

Deno.test("conv1d_q4() against the float32 product: NMSE below 1e-2 on GPT-2-like data", () => {
  const rng = new Rng(64);
  let [err, norm] = [0, 0];
  for (const [T, C, OC] of [[4, 768, 64], [3, 200, 50], [1, 3072, 32]]) {
    h.reset();
    const x = randn(rng, T * C);
    const w = randn(rng, C * OC, 0.02);
    const b = new Float32Array(OC);
    const out = put(T * OC);
    run(OPS.conv1dQ4, [
      out,
      quantized(x, T, C),
      pack(w, C, OC),
      put(padBias(b, OC)),
      T,
      C,
      OC,
      STORE,
    ]);
    const got = h.get(out, T * OC);
    const exact = refConv1d(x, w, b, T, C, OC);
    for (let i = 0; i < got.length; i++) {
      err += (got[i] - exact[i]) ** 2;
      norm += exact[i] ** 2;
    }
  }
  const nmse = err / norm;
  assert(nmse < 1e-2 && nmse > 1e-4, `NMSE ${nmse} of q4 against f32 is not in (1e-4, 1e-2)`);
});

Deno.test("conv1d_q4 gelu and residual forms equal conv1d_q4() then gelu() or add(), bit for bit", () => {
  const rng = new Rng(65);
  for (const [T, C, OC] of [[1, 64, 48], [5, 33, 37], [4, 96, 13], [2, 40, 130], [1, 64, 5]]) {
    h.reset();
    const x = randn(rng, T * C);
    const w = randn(rng, C * OC, 0.3);
    const bias = put(padBias(randn(rng, OC), OC));
    const residual = randn(rng, T * OC);
    const qx = quantized(x, T, C);
    const packed = pack(w, C, OC);
    const [plain, fused, sum, fusedSum] = [put(T * OC), put(T * OC), put(T * OC), put(residual)];
    const msg = `T=${T} C=${C} OC=${OC}`;
    run(OPS.conv1dQ4, [plain, qx, packed, bias, T, C, OC, STORE]);
    exports.gelu(plain, plain, 0, T * OC);
    run(OPS.conv1dQ4, [fused, qx, packed, bias, T, C, OC, GELU]);
    assertEquals(bits(h.get(fused, T * OC)), bits(h.get(plain, T * OC)), msg);
    run(OPS.conv1dQ4, [sum, qx, packed, bias, T, C, OC, STORE]);
    addInto(sum, residual);
    run(OPS.conv1dQ4, [fusedSum, qx, packed, bias, T, C, OC, RESIDUAL]);
    assertEquals(bits(h.get(fusedSum, T * OC)), bits(h.get(sum, T * OC)), msg);
    assertEquals(guard(fusedSum, T * OC), GUARD, msg);
    assertClose(h.get(fused, T * OC), refGelu(h.get(sum, T * OC).map((v, i) => v - residual[i])), {
      atol: 1e-4,
      rtol: 1e-4,
      msg,
    });
  }
});

Deno.test("q4 kernels give the same bits whatever the panel split and the number of rows", () => {
  const rng = new Rng(66);
  for (const [T, C, OC] of [[7, 96, 70], [5, 768, 64], [4, 40, 33], [9, 128, 16]]) {
    h.reset();
    const x = randn(rng, T * C);
    const w = randn(rng, C * OC, 0.1);
    const bias = put(padBias(randn(rng, OC), OC));
    const qx = quantized(x, T, C);
    const packed = pack(w, C, OC);
    const whole = put(T * OC);
    run(OPS.conv1dQ4, [whole, qx, packed, bias, T, C, OC, STORE]);
    const want = bits(h.get(whole, T * OC));
    const split = put(T * OC);
    const args = [split, qx, packed, bias, T, C, OC, STORE];
    const units = unitsOf(OPS.conv1dQ4, args);
    for (let u = 0; u < units;) {
      const next = Math.min(units, u + randint(rng, 1, 3));
      run(OPS.conv1dQ4, args, u, next);
      u = next;
    }
    assertEquals(bits(h.get(split, T * OC)), want, `split T=${T} C=${C} OC=${OC}`);
    for (const step of [1, 2, 3]) {
      const rows = put(T * OC);
      for (let t = 0; t < T; t += step) {
        const n = Math.min(step, T - t);
        const rowArgs = [rows + t * OC * 4, qx + t * rowBytes(C), packed, bias, n, C, OC, STORE];
        // One row takes panels two at a time: split it at an odd panel too.
        const cut = n === 1 ? Math.min(units, 1 + 2 * (t % 2)) : units;
        run(OPS.conv1dQ4, rowArgs, 0, cut);
        run(OPS.conv1dQ4, rowArgs, cut, units);
      }
      assertEquals(bits(h.get(rows, T * OC)), want, `rows ${step} at a time, T=${T} C=${C}`);
    }
  }
});

Deno.test("logits_q4() equals the scalar q4 head, the same bits in any split", () => {
  const rng = new Rng(67);
  for (const [T, C, V] of [[1, 768, 100], [4, 64, 37], [3, 50, 16], [6, 128, 201]]) {
    h.reset();
    const x = randn(rng, T * C);
    const wte = randn(rng, V * C, 0.1);
    const qx = quantized(x, T, C);
    const packed = pack(wte, C, V, true);
    const out = put(T * V);
    const args = [out, qx, packed, T, C, V];
    run(OPS.logitsQ4, args);
    const msg = `T=${T} C=${C} V=${V}`;
    assertEquals(guard(out, T * V), GUARD, `logits_q4 wrote past its output (${msg})`);
    const wq = quantizeQ4Weight(wte, C, V, true);
    const got = h.get(out, T * V);
    const { magnitude } = q4Product(x, wq, T);
    assertNearEmulation(got, refLogitsQ4(x, wq, T), magnitude, new Float32Array(V), C, V, msg);
    const split = put(T * V);
    const units = unitsOf(OPS.logitsQ4, args);
    run(OPS.logitsQ4, [split, ...args.slice(1)], 0, units >> 1);
    run(OPS.logitsQ4, [split, ...args.slice(1)], units >> 1, units);
    assertEquals(bits(h.get(split, T * V)), bits(got), `split ${msg}`);
  }
});

Deno.test("embed_q4() is exact: the token's dequantised row (d · (n − 8)) plus the position row", () => {
  const rng = new Rng(68);
  for (const [V, C] of [[37, 70], [40, 64]]) {
    h.reset();
    const [nCtx, rows] = [16, 6];
    const wte = randn(rng, V * C, 0.1);
    const wpe = randn(rng, nCtx * C, 0.01);
    const tokens = Int32Array.from({ length: rows }, () => randint(rng, 0, V - 1));
    const positions = Int32Array.from({ length: rows }, () => randint(rng, 0, nCtx - 1));
    tokens[0] = V - 1;
    const packed = pack(wte, C, V, true);
    const out = put(rows * C);
    run(OPS.embedQ4, [out, putInts(tokens), putInts(positions), packed, put(wpe), rows, C]);
    const table = dequantizeQ4(quantizeQ4Weight(wte, C, V, true)); // (C, V)
    const want = new Float32Array(rows * C);
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < C; k++) {
        want[r * C + k] = table[k * V + tokens[r]] + wpe[positions[r] * C + k];
      }
    }
    assertEquals(bits(h.get(out, rows * C)), bits(want), `V=${V} C=${C}`);
    assertEquals(guard(out, rows * C), GUARD);
  }
});

Deno.test("weight_formats.ts sizes q4 buffers as the kernels lay them out: 288 bytes a block of a panel", () => {
  assertEquals(BLOCK_BYTES, 288);
  assertEquals(packedBytes(64, 17), 2 * 2 * 288);
  assertEquals(packedBytes(33, 16), 2 * 288);
  assertEquals(q4.embeddingBytes(17, 64), packedBytes(64, 17));
  assertEquals(rowBytes(33), 2 * 40);
  assertEquals(q4.blocks?.ggmlType, "q4_0");
});
