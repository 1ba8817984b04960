/**
 * Quantizers to ggml's block types, for writing GGUF files in tests: the inverse of the
 * layouts `runtime/io/tensor_types.ts` decodes. Every float32 step is rounded as C's
 * `float` arithmetic rounds it.
 *
 * - Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 follow the rules of ggml's reference quantizers
 *   (`quantize_row_*_ref` in `ggml-quants.c`, which llama.cpp's `gguf` package reproduces
 *   in numpy), so that quantizing the trained fixture's weights can be checked against the
 *   fixture's files, byte for byte.
 * - Q4_K, Q5_K and Q6_K are simpler than ggml's (which search for the scales that minimise
 *   a weighted error): each sub-block's scale is rounded up to the super-block's scale
 *   step, so no value is clipped, and every value is within half a step of the original,
 *   the step being at most the sub-block's range over the levels plus one super-block scale
 *   step. {@linkcode kQuantBound} states that bound.
 *
 * @module
 */
import type { BlockType } from "../runtime/io/tensor_types.ts";

const f = Math.fround;

/** Float16 bits of `x`, rounded to nearest even (as numpy's and C's conversions round). */
function toHalf(x: number): number {
  const h = new Float16Array([x]);
  return new Uint16Array(h.buffer)[0];
}

/** The float32 value of a float16 rounding of `x`. */
function half(x: number): number {
  return f(new Float16Array([x])[0]);
}

/** C's roundf: to nearest, halves away from zero. */
function roundf(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

function putHalf(out: Uint8Array, o: number, x: number): void {
  const h = toHalf(x);
  out[o] = h & 0xff;
  out[o + 1] = h >> 8;
}

/** The value of largest magnitude in `x[o, o + n)`, sign kept (the first such, on ties). */
function signedMax(x: Float32Array, o: number, n: number): number {
  let amax = 0, max = 0;
  for (let j = 0; j < n; j++) {
    const v = x[o + j];
    if (Math.abs(v) > amax) {
      amax = Math.abs(v);
      max = v;
    }
  }
  return max;
}

function minMax(x: Float32Array, o: number, n: number): [number, number] {
  let min = Infinity, max = -Infinity;
  for (let j = 0; j < n; j++) {
    min = Math.min(min, x[o + j]);
    max = Math.max(max, x[o + j]);
  }
  return [min, max];
}

/** Q8_0: d = max|x| / 127, q = roundf(x · (1 / d)). */
function q8_0(x: Float32Array, out: Uint8Array, b: number): void {
  const o = 34 * b, xo = 32 * b;
  let amax = 0;
  for (let j = 0; j < 32; j++) amax = Math.max(amax, Math.abs(x[xo + j]));
  const d = f(amax / 127);
  const id = d !== 0 ? f(1 / d) : 0;
  putHalf(out, o, d);
  for (let j = 0; j < 32; j++) out[o + 2 + j] = roundf(f(x[xo + j] * id)) & 0xff;
}

/** Q4_0: d = max / −8 (the signed value of largest magnitude), q = trunc(x / d + 8.5). */
function q4_0(x: Float32Array, out: Uint8Array, b: number): void {
  const o = 18 * b, xo = 32 * b;
  const d = f(signedMax(x, xo, 32) / -8);
  const id = d !== 0 ? f(1 / d) : 0;
  putHalf(out, o, d);
  const q = (j: number) => Math.min(15, Math.trunc(f(f(x[xo + j] * id) + 8.5)));
  for (let j = 0; j < 16; j++) out[o + 2 + j] = q(j) | (q(j + 16) << 4);
}

/** Q4_1: d = (max − min) / 15, m = min, q = trunc((x − min) / d + 0.5). */
function q4_1(x: Float32Array, out: Uint8Array, b: number): void {
  const o = 20 * b, xo = 32 * b;
  const [min, max] = minMax(x, xo, 32);
  const d = f(f(max - min) / 15);
  const id = d !== 0 ? f(1 / d) : 0;
  putHalf(out, o, d);
  putHalf(out, o + 2, min);
  const q = (j: number) => Math.min(15, Math.trunc(f(f(f(x[xo + j] - min) * id) + 0.5)));
  for (let j = 0; j < 16; j++) out[o + 4 + j] = q(j) | (q(j + 16) << 4);
}

/** Q5_0: d = max / −16, q = trunc(x / d + 16.5) in [0, 31]; bit 4 of value j is qh's bit j. */
function q5_0(x: Float32Array, out: Uint8Array, b: number): void {
  const o = 22 * b, xo = 32 * b;
  const d = f(signedMax(x, xo, 32) / -16);
  const id = d !== 0 ? f(1 / d) : 0;
  putHalf(out, o, d);
  const q = (j: number) => Math.min(31, Math.trunc(f(f(x[xo + j] * id) + 16.5)));
  packQ5(out, o + 2, q);
}

/** Q5_1: d = (max − min) / 31, m = min, q = trunc((x − min) / d + 0.5) in [0, 31]. */
function q5_1(x: Float32Array, out: Uint8Array, b: number): void {
  const o = 24 * b, xo = 32 * b;
  const [min, max] = minMax(x, xo, 32);
  const d = f(f(max - min) / 31);
  const id = d !== 0 ? f(1 / d) : 0;
  putHalf(out, o, d);
  putHalf(out, o + 2, min);
  const q = (j: number) => Math.min(31, Math.trunc(f(f(f(x[xo + j] - min) * id) + 0.5)));
  packQ5(out, o + 4, q);
}

/** 4 bytes of fifth bits (value j's is bit j), then 16 bytes of nibbles, at `o`. */
function packQ5(out: Uint8Array, o: number, q: (j: number) => number): void {
  let qh = 0;
  for (let j = 0; j < 32; j++) qh |= ((q(j) >> 4) & 1) << j;
  for (let i = 0; i < 4; i++) out[o + i] = (qh >>> (8 * i)) & 0xff;
  for (let j = 0; j < 16; j++) out[o + 4 + j] = (q(j) & 0x0f) | ((q(j + 16) & 0x0f) << 4);
}

/**
 * The scales of a super-block of 256 values in `subBlocks` sub-blocks. With mins (Q4_K,
 * Q5_K): each sub-block's offset below zero m_j is stored as lm_j · dmin, lm_j rounded up,
 * dmin = max m_j / 63; without (Q6_K) there is none. The step s_j that spans the
 * sub-block's values plus that offset in `levels` steps is stored as ls_j · d, ls_j rounded
 * up, d = max s_j / `scaleMax`. Rounding up keeps every value within the levels, so none
 * clips and each moves at most half its step, (s_j + d) / 2.
 */
function kScales(
  x: Float32Array,
  xo: number,
  subBlocks: number,
  levels: number,
  withMin: boolean,
  scaleMax: number,
) {
  const n = 256 / subBlocks;
  const offsets: number[] = [], tops: number[] = [];
  for (let j = 0; j < subBlocks; j++) {
    const [min, max] = minMax(x, xo + n * j, n);
    offsets.push(withMin ? Math.max(0, -min) : 0);
    tops.push(withMin ? Math.max(0, max) : Math.max(Math.abs(min), Math.abs(max)));
  }
  const dmin = half(Math.max(...offsets) / 63);
  const lm = offsets.map((m) => dmin > 0 ? Math.min(63, Math.ceil(m / dmin)) : 0);
  const effMin = lm.map((l) => f(dmin * l));
  const steps = tops.map((top, j) => (top + effMin[j]) / levels);
  const d = half(Math.max(...steps) / scaleMax);
  const ls = steps.map((step) => d > 0 ? Math.min(scaleMax, Math.ceil(step / d)) : 0);
  return { d, dmin, ls, lm, effScale: ls.map((l) => f(d * l)), effMin };
}

/** Packs Q4_K's and Q5_K's eight 6-bit scales and mins into 12 bytes at `o`. */
function packScaleMinK4(out: Uint8Array, o: number, ls: number[], lm: number[]): void {
  for (let j = 0; j < 4; j++) {
    out[o + j] = ls[j] | ((ls[j + 4] >> 4) << 6);
    out[o + j + 4] = lm[j] | ((lm[j + 4] >> 4) << 6);
    out[o + j + 8] = (ls[j + 4] & 0x0f) | ((lm[j + 4] & 0x0f) << 4);
  }
}

/** The level of `x` in a sub-block of step `scale` and offset `min`, clamped to [0, top]. */
function level(x: number, scale: number, min: number, top: number): number {
  return scale > 0 ? Math.max(0, Math.min(top, roundf(f(x + min) / scale))) : 0;
}

function q4_k(x: Float32Array, out: Uint8Array, b: number): void {
  const o = 144 * b, xo = 256 * b;
  const s = kScales(x, xo, 8, 15, true, 63);
  putHalf(out, o, s.d);
  putHalf(out, o + 2, s.dmin);
  packScaleMinK4(out, o + 4, s.ls, s.lm);
  const q = (j: number, l: number) => level(x[xo + 32 * j + l], s.effScale[j], s.effMin[j], 15);
  for (let pair = 0; pair < 4; pair++) {
    for (let l = 0; l < 32; l++) {
      out[o + 16 + 32 * pair + l] = q(2 * pair, l) | (q(2 * pair + 1, l) << 4);
    }
  }
}

function q5_k(x: Float32Array, out: Uint8Array, b: number): void {
  const o = 176 * b, xo = 256 * b;
  const s = kScales(x, xo, 8, 31, true, 63);
  putHalf(out, o, s.d);
  putHalf(out, o + 2, s.dmin);
  packScaleMinK4(out, o + 4, s.ls, s.lm);
  const q = (j: number, l: number) => level(x[xo + 32 * j + l], s.effScale[j], s.effMin[j], 31);
  for (let l = 0; l < 32; l++) {
    let high = 0;
    for (let j = 0; j < 8; j++) high |= (q(j, l) >> 4) << j;
    out[o + 16 + l] = high;
  }
  for (let pair = 0; pair < 4; pair++) {
    for (let l = 0; l < 32; l++) {
      out[o + 48 + 32 * pair + l] = (q(2 * pair, l) & 0x0f) | ((q(2 * pair + 1, l) & 0x0f) << 4);
    }
  }
}

function q6_k(x: Float32Array, out: Uint8Array, b: number): void {
  const o = 210 * b, xo = 256 * b;
  const s = kScales(x, xo, 16, 31, false, 127);
  // Values in [−31, 31] · scale, stored as q + 32 in [1, 63].
  const q = (i: number) => {
    const scale = s.effScale[i >> 4];
    return scale > 0 ? Math.max(-32, Math.min(31, roundf(x[xo + i] / scale))) + 32 : 32;
  };
  for (let n = 0; n < 2; n++) {
    const v = 128 * n;
    for (let l = 0; l < 32; l++) {
      const q1 = q(v + l), q2 = q(v + l + 32), q3 = q(v + l + 64), q4 = q(v + l + 96);
      out[o + 64 * n + l] = (q1 & 0x0f) | ((q3 & 0x0f) << 4);
      out[o + 64 * n + l + 32] = (q2 & 0x0f) | ((q4 & 0x0f) << 4);
      out[o + 128 + 32 * n + l] = (q1 >> 4) | ((q2 >> 4) << 2) | ((q3 >> 4) << 4) |
        ((q4 >> 4) << 6);
    }
  }
  for (let i = 0; i < 16; i++) out[o + 192 + i] = s.ls[i] & 0xff;
  putHalf(out, o + 208, s.d);
}

const QUANTIZERS: Readonly<
  Record<BlockType, { block: number; bytes: number; fn: typeof q8_0 }>
> = {
  q8_0: { block: 32, bytes: 34, fn: q8_0 },
  q4_0: { block: 32, bytes: 18, fn: q4_0 },
  q4_1: { block: 32, bytes: 20, fn: q4_1 },
  q5_0: { block: 32, bytes: 22, fn: q5_0 },
  q5_1: { block: 32, bytes: 24, fn: q5_1 },
  q4_k: { block: 256, bytes: 144, fn: q4_k },
  q5_k: { block: 256, bytes: 176, fn: q5_k },
  q6_k: { block: 256, bytes: 210, fn: q6_k },
};

/**
 * Quantizes `x` (a whole number of blocks) to `type`'s blocks.
 * @throws {RangeError} if `x` is not a whole number of blocks
 */
export function quantize(type: BlockType, x: Float32Array): Uint8Array {
  const { block, bytes, fn } = QUANTIZERS[type];
  if (x.length % block !== 0) {
    throw new RangeError(
      `Cannot quantize ${x.length} values to ${type}: not whole blocks of ${block}`,
    );
  }
  const out = new Uint8Array((x.length / block) * bytes);
  for (let b = 0; b < x.length / block; b++) fn(x, out, b);
  return out;
}

/**
 * For each value of `x`, the most a K-quant round trip through `quantize` may move it:
 * half its sub-block's step plus half the super-block's scale step, (s_j + d) / 2, with
 * s_j = (top_j + m_j + dmin) / levels bounding the step `kScales` needs (its stored
 * offset exceeds m_j by less than dmin), and float16's rounding of d and dmin allowed for.
 * Computed from `x` alone, not from the quantized bytes, so a decoder that reads the wrong
 * bytes cannot loosen it.
 */
export function kQuantBound(type: "q4_k" | "q5_k" | "q6_k", x: Float32Array): Float64Array {
  const subBlocks = type === "q6_k" ? 16 : 8;
  const levels = type === "q4_k" ? 15 : 31;
  const scaleMax = type === "q6_k" ? 127 : 63;
  const n = 256 / subBlocks;
  const halfUlp = 1 + 2 ** -10; // float16 rounds d and dmin by at most 2^-11 relative
  const out = new Float64Array(x.length);
  for (let b = 0; b < x.length / 256; b++) {
    const offsets: number[] = [], tops: number[] = [];
    for (let j = 0; j < subBlocks; j++) {
      const [min, max] = minMax(x, 256 * b + n * j, n);
      offsets.push(type === "q6_k" ? 0 : Math.max(0, -min));
      tops.push(type === "q6_k" ? Math.max(-min, max) : Math.max(0, max));
    }
    const dmin = (Math.max(...offsets) / 63) * halfUlp;
    const steps = tops.map((top, j) => (top + offsets[j] + dmin) / levels);
    const d = (Math.max(...steps) / scaleMax) * halfUlp;
    for (let j = 0; j < subBlocks; j++) {
      const bound = 0.5 * (steps[j] + d) * halfUlp + 1e-7;
      out.fill(bound, 256 * b + n * j, 256 * b + n * (j + 1));
    }
  }
  return out;
}
