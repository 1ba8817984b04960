/**
 * A plain scalar version of the q4 weight format and its products: the oracle the
 * WebAssembly kernels of asm/matmul_q4.ts are held to. It follows the kernels' arithmetic
 * (the same rounding of every stored value, the integer sums exact) but sums in float64
 * and keeps plain row-major layouts: the packed layout is the kernels' business.
 *
 * The q4 format is ggml's Q4_0: per block of `Q4_BLOCK` input features, m is the value of
 * largest magnitude (the first such, with its sign), d = m / −8 in float32, id = 1 / d in
 * float32 (0 when d is 0), each value n = min(15, trunc(x · id + 8.5)) with the product
 * and the sum each rounded to float32 (ggml-quants.c's `quantize_row_q4_0_ref` without
 * fused multiply-adds), d stored as the nearest float16; the weight stands for d · (n − 8). Activations are ggml's q8_0-like
 * int8: a = round(x / e) in [−127, 127] with e = max|x| / 127 in float32, ties to even.
 *
 * @module
 */

/** Features per q4 block (ggml's QK4_0). */
export const Q4_BLOCK = 32;
/** Bytes of one ggml Q4_0 block: float16 d, then 16 bytes of two nibbles each. */
export const Q4_0_BLOCK_BYTES = 18;

/** A matrix (K, N) in q4 along K: value (k, n) = d[(k / 32) · N + n] · (n[k · N + n] − 8). */
export interface Q4Matrix {
  /** Rows of the matrix (the dimension the blocks run along). */
  readonly K: number;
  /** Columns. */
  readonly N: number;
  /** (ceil(K / 32) · 32, N) in [0, 15]: the rows past K hold 8, the value 0. */
  readonly n: Uint8Array;
  /** (ceil(K / 32), N): d, a float16 value. */
  readonly d: Float32Array;
  /** (ceil(K / 32), N): d's float16 bits. */
  readonly dBits: Uint16Array;
}

/** The float16 bits nearest to x, ties to even. */
function halfBits(x: number): number {
  const view = new DataView(new ArrayBuffer(2));
  view.setFloat16(0, x, true);
  return view.getUint16(0, true);
}

/** x rounded to the nearest even integer on ties, as wasm's `nearest`. */
function roundHalfEven(x: number): number {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/**
 * Quantises the (K, N) matrix `at(k, n)` along K as ggml's Q4_0 (see the module's
 * documentation); features past K count as zeros.
 */
function quantize(K: number, N: number, at: (k: number, n: number) => number): Q4Matrix {
  const nb = Math.ceil(K / Q4_BLOCK);
  const n = new Uint8Array(nb * Q4_BLOCK * N).fill(8);
  const d = new Float32Array(nb * N);
  const dBits = new Uint16Array(nb * N);
  for (let b = 0; b < nb; b++) {
    const k0 = b * Q4_BLOCK;
    const k1 = Math.min(K, k0 + Q4_BLOCK);
    for (let c = 0; c < N; c++) {
      let amax = 0;
      let m = 0;
      for (let k = k0; k < k1; k++) {
        const v = at(k, c);
        if (Math.abs(v) > amax) [amax, m] = [Math.abs(v), v];
      }
      const scale = Math.fround(m / -8);
      const id = scale === 0 ? 0 : Math.fround(1 / scale);
      dBits[b * N + c] = halfBits(scale);
      d[b * N + c] = Math.f16round(scale);
      for (let k = k0; k < k1; k++) {
        n[k * N + c] = Math.min(15, Math.trunc(Math.fround(Math.fround(at(k, c) * id) + 8.5)));
      }
    }
  }
  return { K, N, n, d, dBits };
}

/**
 * A Conv1D weight (C, OC) in q4, blocks along C. With `transposed`, `w` is (OC, C) (the
 * embedding wte (V, C)), quantised along C just the same.
 */
export function quantizeQ4Weight(
  w: Float32Array,
  C: number,
  OC: number,
  transposed = false,
): Q4Matrix {
  return quantize(C, OC, transposed ? (k, o) => w[o * C + k] : (k, o) => w[k * OC + o]);
}

/**
 * The q4 matrix (K, N) as a GGUF file stores it: N rows of K / 32 ggml Q4_0 blocks (K a
 * multiple of 32), byte j of a block's 16 holding value j in its low nibble and value
 * j + 16 in its high nibble.
 */
export function q4_0Bytes(m: Q4Matrix): Uint8Array {
  const nb = m.K / Q4_BLOCK;
  const out = new Uint8Array(m.N * nb * Q4_0_BLOCK_BYTES);
  const view = new DataView(out.buffer);
  for (let c = 0; c < m.N; c++) {
    for (let b = 0; b < nb; b++) {
      const at = (c * nb + b) * Q4_0_BLOCK_BYTES;
      view.setUint16(at, m.dBits[b * m.N + c], true);
      for (let j = 0; j < 16; j++) {
        const k = b * Q4_BLOCK + j;
        out[at + 2 + j] = m.n[k * m.N + c] | (m.n[(k + 16) * m.N + c] << 4);
      }
    }
  }
  return out;
}

/** The (K, N) f32 values a q4 matrix stands for: d · (n − 8), as ggml dequantises. */
export function dequantizeQ4(m: Q4Matrix): Float32Array {
  const out = new Float32Array(m.K * m.N);
  for (let k = 0; k < m.K; k++) {
    for (let c = 0; c < m.N; c++) {
      out[k * m.N + c] = (m.n[k * m.N + c] - 8) * m.d[Math.floor(k / Q4_BLOCK) * m.N + c];
    }
  }
  return out;
}

/** Activations (T, C) quantised per row and block of 32, as `quantize_q4` does. */
export interface Q4Activations {
  /** (T, ceil(C / 32) · 32) int8, zeros past C. */
  readonly a: Int8Array;
  /** (T, ceil(C / 32)) f32 scales e. */
  readonly e: Float32Array;
}

/** Quantises x (T, C): per row and block, e = max|x| / 127, a = round(x / e). */
export function quantizeQ4Rows(x: Float32Array, T: number, C: number): Q4Activations {
  const nb = Math.ceil(C / Q4_BLOCK);
  const a = new Int8Array(T * nb * Q4_BLOCK);
  const e = new Float32Array(T * nb);
  for (let t = 0; t < T; t++) {
    for (let b = 0; b < nb; b++) {
      const k0 = b * Q4_BLOCK;
      const k1 = Math.min(C, k0 + Q4_BLOCK);
      let amax = 0;
      for (let k = k0; k < k1; k++) amax = Math.max(amax, Math.abs(x[t * C + k]));
      if (amax === 0) continue;
      const scale = Math.fround(amax / 127);
      e[t * nb + b] = scale;
      for (let k = k0; k < k1; k++) {
        a[t * nb * Q4_BLOCK + k] = roundHalfEven(Math.fround(x[t * C + k] / scale));
      }
    }
  }
  return { a, e };
}

/**
 * The q4 product of activations x (T, C) and a q4 weight (C, OC), as the kernels compute
 * it: x quantised per row, each block's integer sum Σ a · (n − 8) exact, and
 * y = Σ_b isum_b · f32(d_b · e_b), here summed in float64.
 * @returns y (T, OC) without a bias, and `magnitude` (T, OC): Σ_b |isum_b · d_b · e_b|,
 *   what the float rounding of a sum is proportional to
 */
export function q4Product(
  x: Float32Array,
  w: Q4Matrix,
  T: number,
): { y: Float64Array; magnitude: Float64Array } {
  const { K: C, N: OC } = w;
  const { a, e } = quantizeQ4Rows(x, T, C);
  const nb = Math.ceil(C / Q4_BLOCK);
  const y = new Float64Array(T * OC);
  const magnitude = new Float64Array(T * OC);
  for (let t = 0; t < T; t++) {
    for (let o = 0; o < OC; o++) {
      let s = 0;
      let m = 0;
      for (let b = 0; b < nb; b++) {
        let isum = 0;
        for (let k = b * Q4_BLOCK; k < (b + 1) * Q4_BLOCK; k++) {
          isum += a[t * nb * Q4_BLOCK + k] * (w.n[k * OC + o] - 8);
        }
        const term = isum * Math.fround(w.d[b * OC + o] * e[t * nb + b]);
        s += term;
        m += Math.abs(term);
      }
      y[t * OC + o] = s;
      magnitude[t * OC + o] = m;
    }
  }
  return { y, magnitude };
}

/** Conv1D in q4: out (T, OC) = q4(inp (T, C)) · w + bias (OC). */
export function refConv1dQ4(
  inp: Float32Array,
  w: Q4Matrix,
  bias: Float32Array,
  T: number,
): Float32Array {
  const { y } = q4Product(inp, w, T);
  const out = new Float32Array(y.length);
  for (let i = 0; i < y.length; i++) out[i] = y[i] + bias[i % w.N];
  return out;
}

/** The output head in q4: out (T, V) = q4(h (T, C)) · wteᵀ, wte quantised with `transposed`. */
export function refLogitsQ4(h: Float32Array, wte: Q4Matrix, T: number): Float32Array {
  return Float32Array.from(q4Product(h, wte, T).y);
}
