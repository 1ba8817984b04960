/**
 * Plain scalar versions of the int8 (q8) and float16 weight formats and their products:
 * the oracle the WebAssembly kernels of asm/matmul_q8.ts and asm/matmul_f16.ts are held
 * to. They follow the kernels' arithmetic (the same rounding of every stored value, the
 * integer sums exact) but sum in float64, and keep plain row-major layouts: the packed
 * layouts are the kernels' business.
 *
 * The q8 format (asm/matmul_q8.ts): blocks of `Q8_BLOCK` features along the input
 * dimension. Weights as ggml's q8_0 (`quantize_row_q8_0_ref` in ggml-quants.c): per block
 * and column d = max|w| / 127 in f32, q = roundf(w · (1 / d)) with halves away from zero,
 * and d stored as float16, so a weight stands for f16(d) · q. Activations a = round(x / e)
 * in [−127, 127] with e = max|x| / 127 in f32, rounding to nearest with ties to even.
 *
 * @module
 */

/** Features per q8 block. */
export const Q8_BLOCK = 32;
/** The largest |q| of a q8 weight or activation: 8 bits, as ggml's q8_0. */
export const Q8_MAX = 127;

/** x rounded to the nearest integer, ties to even, as wasm's `nearest`. */
export function roundHalfEven(x: number): number {
  const r = Math.round(x); // ties towards +∞
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** x rounded to the nearest integer, halves away from zero, as C's `roundf`. */
export function roundHalfAway(x: number): number {
  return x < 0 ? -Math.floor(-x + 0.5) : Math.floor(x + 0.5);
}

/** A matrix (K, N) quantised to q8 along K: value (k, n) ≈ scales[(k / 32) · N + n] · q[k · N + n]. */
export interface Q8Matrix {
  /** Rows of the matrix (the dimension the blocks run along). */
  readonly K: number;
  /** Columns. */
  readonly N: number;
  /** (ceil(K / 32) · 32, N): the rows past K are zero. */
  readonly q: Int8Array;
  /** (ceil(K / 32), N) f32. */
  readonly scales: Float32Array;
}

/**
 * Quantises the (K, N) matrix `at(k, n)` along K, per block of 32 rows and column n, with
 * d = max|x| / 127 in f32: as ggml's q8_0 (`weights`: q = roundf(x · f32(1 / d)), the
 * scale kept as f16(d)) or as the kernels quantise activations (q = nearest(x / d), d kept).
 */
function quantize(
  K: number,
  N: number,
  weights: boolean,
  at: (k: number, n: number) => number,
): Q8Matrix {
  const f = Math.fround;
  const nb = Math.ceil(K / Q8_BLOCK);
  const q = new Int8Array(nb * Q8_BLOCK * N);
  const scales = new Float32Array(nb * N);
  for (let b = 0; b < nb; b++) {
    const k1 = Math.min(K, (b + 1) * Q8_BLOCK);
    for (let n = 0; n < N; n++) {
      let amax = 0;
      for (let k = b * Q8_BLOCK; k < k1; k++) amax = Math.max(amax, Math.abs(at(k, n)));
      if (amax === 0) continue;
      const d = f(amax / Q8_MAX);
      const id = f(1 / d);
      scales[b * N + n] = weights ? roundToFloat16(d) : d;
      for (let k = b * Q8_BLOCK; k < k1; k++) {
        q[k * N + n] = weights ? roundHalfAway(f(at(k, n) * id)) : roundHalfEven(f(at(k, n) / d));
      }
    }
  }
  return { K, N, q, scales };
}

/**
 * A Conv1D weight (C, OC) in q8, blocks along C. With `transposed`, `w` is (OC, C) (the
 * output head's wte (V, C)), quantised along C just the same.
 */
export function quantizeQ8Weight(
  w: Float32Array,
  C: number,
  OC: number,
  transposed = false,
): Q8Matrix {
  return quantize(
    C,
    OC,
    true,
    transposed ? (k, o) => w[o * C + k] : (k, o) => w[k * OC + o],
  );
}

/** Activations (T, C) in q8, each row in blocks along C: returned as the (C, T) matrix. */
export function quantizeQ8Rows(x: Float32Array, T: number, C: number): Q8Matrix {
  return quantize(C, T, false, (k, t) => x[t * C + k]);
}

/** The (K, N) f32 values a q8 matrix stands for: d · q, rounded to f32. */
export function dequantizeQ8(m: Q8Matrix): Float32Array {
  const out = new Float32Array(m.K * m.N);
  for (let k = 0; k < m.K; k++) {
    for (let n = 0; n < m.N; n++) {
      out[k * m.N + n] = m.scales[Math.floor(k / Q8_BLOCK) * m.N + n] * m.q[k * m.N + n];
    }
  }
  return out;
}

/**
 * The q8 product of activations x (T, C) and a q8 weight (C, OC), as the kernels compute
 * it: x is quantised per row (`quantizeQ8Rows`), each block's integer sum Σ a·q is exact,
 * and y = Σ_b isum_b · f32(d_b · e_b), here summed in float64.
 * @returns y (T, OC) without a bias, and `magnitude` (T, OC): Σ_b |isum_b · d_b · e_b|,
 *   what the float rounding of a sum is proportional to
 */
export function q8Product(
  x: Float32Array,
  w: Q8Matrix,
  T: number,
): { y: Float64Array; magnitude: Float64Array } {
  const { K: C, N: OC } = w;
  const a = quantizeQ8Rows(x, T, C);
  const nb = Math.ceil(C / Q8_BLOCK);
  const y = new Float64Array(T * OC);
  const magnitude = new Float64Array(T * OC);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < OC; o++) {
      let s = 0;
      let m = 0;
      for (let b = 0; b < nb; b++) {
        let isum = 0;
        for (let k = b * Q8_BLOCK; k < (b + 1) * Q8_BLOCK; k++) {
          isum += a.q[k * T + t] * w.q[k * OC + o];
        }
        const term = isum * Math.fround(w.scales[b * OC + o] * a.scales[b * T + t]);
        s += term;
        m += Math.abs(term);
      }
      y[t * OC + o] = s;
      magnitude[t * OC + o] = m;
    }
  }
  return { y, magnitude };
}

/** Conv1D in q8: out (T, OC) = q8(inp (T, C)) · w + bias (OC). */
export function refConv1dQ8(
  inp: Float32Array,
  w: Q8Matrix,
  bias: Float32Array,
  T: number,
): Float32Array {
  const { y } = q8Product(inp, w, T);
  const out = new Float32Array(y.length);
  for (let i = 0; i < y.length; i++) out[i] = y[i] + bias[i % w.N];
  return out;
}

/** The output head in q8: out (T, V) = q8(h (T, C)) · wteᵀ, wte quantised with `transposed`. */
export function refLogitsQ8(h: Float32Array, wte: Q8Matrix, T: number): Float32Array {
  return Float32Array.from(q8Product(h, wte, T).y);
}

/**
 * The worst-case error of the q8 product against the exact product of x (T, C) and the
 * f32 weight w (C, OC), from the rounding of each stored value alone: with
 * |εw| ≤ d / 2 + |q| · |d − f16(d)| (the value's rounding, then the scale's) and
 * |εx| ≤ e / 2 per element, |x·w − x̂·ŵ| ≤ |x|·|εw| + |ŵ|·|εx| summed over k.
 * @returns (T, OC) bounds
 */
export function q8ErrorBound(
  x: Float32Array,
  w: Float32Array,
  T: number,
  C: number,
  OC: number,
): Float64Array {
  const wq = quantizeQ8Weight(w, C, OC);
  const xq = quantizeQ8Rows(x, T, C);
  const nb = Math.ceil(C / Q8_BLOCK);
  // The unrounded d of each block and column.
  const d = new Float64Array(nb * OC);
  for (let k = 0; k < C; k++) {
    for (let o = 0; o < OC; o++) {
      const i = Math.floor(k / Q8_BLOCK) * OC + o;
      d[i] = Math.max(d[i], Math.fround(Math.abs(w[k * OC + o]) / Q8_MAX));
    }
  }
  const bound = new Float64Array(T * OC);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < OC; o++) {
      let s = 0;
      for (let k = 0; k < C; k++) {
        const b = Math.floor(k / Q8_BLOCK);
        const ds = wq.scales[b * OC + o];
        const q = Math.abs(wq.q[k * OC + o]);
        const e = xq.scales[b * T + t];
        const ew = d[b * OC + o] / 2 * (1 + 1e-6) + q * Math.abs(d[b * OC + o] - ds);
        s += Math.abs(x[t * C + k]) * ew + ds * q * e / 2;
      }
      bound[t * OC + o] = s;
    }
  }
  return bound;
}

/**
 * x rounded to the nearest float16 (IEEE binary16) value, ties to even: to infinity from
 * 65520 (halfway past the largest half, 65504) up, subnormals below 2⁻¹⁴ in steps of 2⁻²⁴.
 * Computed on the value (a power-of-two grid), not on bits.
 *
 * @example
 * ```ts
 * import { roundToFloat16 } from "./quant.ts";
 * // 1 + 2⁻¹¹ lies halfway between 1 and 1 + 2⁻¹⁰: ties go to the even one, 1.
 * if (roundToFloat16(1 + 2 ** -11) !== 1) throw new Error();
 * ```
 */
export function roundToFloat16(x: number): number {
  if (!Number.isFinite(x) || x === 0) return x;
  const a = Math.abs(x);
  if (a >= 65520) return Math.sign(x) * Infinity;
  let e = Math.floor(Math.log2(a));
  if (2 ** e > a) e--;
  if (2 ** (e + 1) <= a) e++;
  const ulp = 2 ** (Math.max(e, -14) - 10);
  return Math.sign(x) * roundHalfEven(a / ulp) * ulp;
}

/** A copy of `w` with every element rounded to float16 (`roundToFloat16`), as f32. */
export function roundArrayToFloat16(w: Float32Array): Float32Array {
  return w.map(roundToFloat16);
}
