/**
 * Every element type the readers convert to float32, one entry each, as ggml's
 * `type_traits` table has them: how many values a block holds, how many bytes it takes,
 * and a plain conversion of whole blocks to float32. The floating-point types are blocks of
 * one value; ggml's quantized types are blocks of 32 (`q8_0`, `q4_0`, `q4_1`, `q5_0`,
 * `q5_1`) or super-blocks of 256 (`q4_k`, `q5_k`, `q6_k`), laid out as ggml's
 * `ggml-common.h` declares them and decoded as `ggml-quants.c`'s `dequantize_row_*` does,
 * each float32 operation rounded as C's `float` arithmetic rounds it (no fused multiply-add).
 *
 * A new type is a new entry here; the readers and `readAsFloat32` need nothing else.
 *
 * @module
 */

/** The floating-point element types that widen to float32 exactly. */
export type FloatType = "float32" | "float16" | "bfloat16";

/** ggml's quantized block types, by ggml's names in lower case. */
export type BlockType = "q8_0" | "q4_0" | "q4_1" | "q5_0" | "q5_1" | "q4_k" | "q5_k" | "q6_k";

/** Every type `readAsFloat32` converts. */
export type Float32Convertible = FloatType | BlockType;

/** How one element type is stored and converted. */
export interface TypeLayout {
  /** The type's name as ggml and llama.cpp print it (`F32`, `Q4_0`, `Q6_K`), for messages. */
  readonly ggmlName: string;
  /** Values per block; a row of a tensor holds a whole number of blocks. */
  readonly blockSize: number;
  /** Bytes per block. */
  readonly blockBytes: number;
  /**
   * Converts `blocks` whole blocks from `src` at byte `srcOffset` to float32 values in
   * `out` from index `outOffset`, front to back, writing each block's values only after
   * reading all of its bytes. So `out` may overlap `src` where no block's values reach the
   * bytes of a later block, as `readAsFloat32` arranges when it converts in place.
   */
  readonly toFloat32: (
    src: Uint8Array,
    srcOffset: number,
    out: Float32Array,
    outOffset: number,
    blocks: number,
  ) => void;
}

/** ggml's block of 32 values (`QK4_0` … `QK8_0`). */
const QK = 32;
/** ggml's super-block of 256 values (`QK_K`). */
const QK_K = 256;

/**
 * The float32 bit pattern equal to an IEEE 754 binary16 bit pattern. Exact for every input:
 * subnormals become normal float32s, infinities stay infinite, and NaNs keep sign and
 * payload (shifted into the top of the float32 mantissa).
 *
 * @example
 * ```ts
 * import { float16BitsToFloat32Bits } from "./tensor_types.ts";
 * // 0x3c00 is 1.0 in binary16; 0x3f800000 is 1.0 in binary32.
 * if (float16BitsToFloat32Bits(0x3c00) !== 0x3f800000) throw new Error();
 * ```
 */
export function float16BitsToFloat32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exponent = (h >>> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0x1f) return (sign | 0x7f800000 | (mantissa << 13)) >>> 0;
  if (exponent !== 0) return (sign | ((exponent + 127 - 15) << 23) | (mantissa << 13)) >>> 0;
  if (mantissa === 0) return sign >>> 0;
  // Subnormal: mantissa * 2^-24. Shift the leading 1 up to bit 10 and lower the exponent.
  let m = mantissa;
  let e = 127 - 15 + 1;
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

let float16BitsCache: Uint32Array | undefined;

/** float32 bits for all 65536 float16 bit patterns (256 KiB), built on first use. */
export function float16Table(): Uint32Array {
  if (float16BitsCache === undefined) {
    const table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = float16BitsToFloat32Bits(h);
    float16BitsCache = table;
  }
  return float16BitsCache;
}

/** The float32 value of every float16 bit pattern: `float16Table()` read as floats. */
function float16Values(): Float32Array {
  const table = float16Table();
  return new Float32Array(table.buffer, table.byteOffset, table.length);
}

/** The float16 at `src[o]`, `src[o + 1]` (little-endian), as a number. */
function half(values: Float32Array, src: Uint8Array, o: number): number {
  return values[src[o] | (src[o + 1] << 8)];
}

const f = Math.fround;

/** `out` viewed as raw bits, for the conversions that only move bits. */
function bitsOf(out: Float32Array): Uint32Array {
  return new Uint32Array(out.buffer, out.byteOffset, out.length);
}

function float32ToFloat32(
  src: Uint8Array,
  srcOffset: number,
  out: Float32Array,
  outOffset: number,
  n: number,
): void {
  // Through bytes, not a Float32Array view, since `srcOffset` need not be a multiple of 4;
  // `copyWithin` semantics keep an overlapping copy correct.
  const bytes = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  if (src.buffer === out.buffer) {
    const from = src.byteOffset + srcOffset - out.byteOffset;
    bytes.copyWithin(outOffset * 4, from, from + n * 4);
  } else {
    bytes.set(src.subarray(srcOffset, srcOffset + n * 4), outOffset * 4);
  }
}

function float16ToFloat32(
  src: Uint8Array,
  srcOffset: number,
  out: Float32Array,
  outOffset: number,
  n: number,
): void {
  const table = float16Table(), bits = bitsOf(out);
  for (let i = 0, o = srcOffset; i < n; i++, o += 2) {
    bits[outOffset + i] = table[src[o] | (src[o + 1] << 8)];
  }
}

function bfloat16ToFloat32(
  src: Uint8Array,
  srcOffset: number,
  out: Float32Array,
  outOffset: number,
  n: number,
): void {
  // bfloat16 is the upper half of a float32.
  const bits = bitsOf(out);
  for (let i = 0, o = srcOffset; i < n; i++, o += 2) {
    bits[outOffset + i] = ((src[o] | (src[o + 1] << 8)) << 16) >>> 0;
  }
}

/** Q8_0, 34 bytes: d (f16), then 32 int8 quants; x = q · d. */
function q8_0ToFloat32(
  src: Uint8Array,
  srcOffset: number,
  out: Float32Array,
  outOffset: number,
  blocks: number,
): void {
  const h = float16Values();
  const scratch = new Float32Array(QK);
  for (let b = 0, o = srcOffset, y = outOffset; b < blocks; b++, o += 34, y += QK) {
    const d = half(h, src, o);
    for (let j = 0; j < QK; j++) scratch[j] = ((src[o + 2 + j] << 24) >> 24) * d;
    out.set(scratch, y);
  }
}

/**
 * Q4_0, 18 bytes: d (f16), then 16 bytes whose low nibbles are values 0–15 and high
 * nibbles values 16–31, each q in [0, 15]; x = (q − 8) · d.
 */
function q4_0ToFloat32(
  src: Uint8Array,
  srcOffset: number,
  out: Float32Array,
  outOffset: number,
  blocks: number,
): void {
  const h = float16Values();
  const scratch = new Float32Array(QK);
  for (let b = 0, o = srcOffset, y = outOffset; b < blocks; b++, o += 18, y += QK) {
    const d = half(h, src, o);
    for (let j = 0; j < QK / 2; j++) {
      const q = src[o + 2 + j];
      scratch[j] = ((q & 0x0f) - 8) * d;
      scratch[j + QK / 2] = ((q >> 4) - 8) * d;
    }
    out.set(scratch, y);
  }
}

/** Q4_1, 20 bytes: d and m (f16), then nibbles as Q4_0's; x = q · d + m. */
function q4_1ToFloat32(
  src: Uint8Array,
  srcOffset: number,
  out: Float32Array,
  outOffset: number,
  blocks: number,
): void {
  const h = float16Values();
  const scratch = new Float32Array(QK);
  for (let b = 0, o = srcOffset, y = outOffset; b < blocks; b++, o += 20, y += QK) {
    const d = half(h, src, o), m = half(h, src, o + 2);
    for (let j = 0; j < QK / 2; j++) {
      const q = src[o + 4 + j];
      scratch[j] = f((q & 0x0f) * d) + m;
      scratch[j + QK / 2] = f((q >> 4) * d) + m;
    }
    out.set(scratch, y);
  }
}

/** The 32 fifth bits of a Q5 block: bit j of the little-endian uint32 at `o` is value j's. */
function highBits(src: Uint8Array, o: number): number {
  return (src[o] | (src[o + 1] << 8) | (src[o + 2] << 16) | (src[o + 3] << 24)) >>> 0;
}

/**
 * Q5_0, 22 bytes: d (f16), 4 bytes of fifth bits (value j's is bit j), then nibbles as
 * Q4_0's, each q in [0, 31]; x = (q − 16) · d.
 */
function q5_0ToFloat32(
  src: Uint8Array,
  srcOffset: number,
  out: Float32Array,
  outOffset: number,
  blocks: number,
): void {
  const h = float16Values();
  const scratch = new Float32Array(QK);
  for (let b = 0, o = srcOffset, y = outOffset; b < blocks; b++, o += 22, y += QK) {
    const d = half(h, src, o);
    const qh = highBits(src, o + 2);
    for (let j = 0; j < QK / 2; j++) {
      const q = src[o + 6 + j];
      const lo = (q & 0x0f) | (((qh >>> j) & 1) << 4);
      const hi = (q >> 4) | (((qh >>> (j + QK / 2)) & 1) << 4);
      scratch[j] = (lo - 16) * d;
      scratch[j + QK / 2] = (hi - 16) * d;
    }
    out.set(scratch, y);
  }
}

/** Q5_1, 24 bytes: d and m (f16), 4 bytes of fifth bits, then nibbles; x = q · d + m. */
function q5_1ToFloat32(
  src: Uint8Array,
  srcOffset: number,
  out: Float32Array,
  outOffset: number,
  blocks: number,
): void {
  const h = float16Values();
  const scratch = new Float32Array(QK);
  for (let b = 0, o = srcOffset, y = outOffset; b < blocks; b++, o += 24, y += QK) {
    const d = half(h, src, o), m = half(h, src, o + 2);
    const qh = highBits(src, o + 4);
    for (let j = 0; j < QK / 2; j++) {
      const q = src[o + 8 + j];
      const lo = (q & 0x0f) | (((qh >>> j) & 1) << 4);
      const hi = (q >> 4) | (((qh >>> (j + QK / 2)) & 1) << 4);
      scratch[j] = f(lo * d) + m;
      scratch[j + QK / 2] = f(hi * d) + m;
    }
    out.set(scratch, y);
  }
}

/**
 * The 6-bit scale and min of sub-block j (0–7) of a Q4_K or Q5_K super-block, from its 12
 * bytes at `s`: sub-blocks 0–3 keep them in the low 6 bits of bytes j and j + 4; sub-blocks
 * 4–7 in the nibbles of byte j + 4, with the top 2 bits in the spare high bits of bytes
 * j − 4 (scale) and j (min).
 */
function scaleMinK4(src: Uint8Array, s: number, j: number, out: Int32Array): void {
  if (j < 4) {
    out[0] = src[s + j] & 63;
    out[1] = src[s + j + 4] & 63;
  } else {
    out[0] = (src[s + j + 4] & 0x0f) | ((src[s + j - 4] >> 6) << 4);
    out[1] = (src[s + j + 4] >> 4) | ((src[s + j] >> 6) << 4);
  }
}

/**
 * Q4_K, 144 bytes per 256 values: d and dmin (f16), 12 bytes of 6-bit scales and mins for
 * eight sub-blocks of 32, then 128 bytes of nibbles. Each 32 bytes of nibbles hold two
 * sub-blocks: the low nibbles the first, the high nibbles the second. Value l of sub-block
 * j is (d · scale_j) · q − (dmin · min_j).
 */
function q4_kToFloat32(
  src: Uint8Array,
  srcOffset: number,
  out: Float32Array,
  outOffset: number,
  blocks: number,
): void {
  const h = float16Values();
  const scratch = new Float32Array(QK_K);
  const sm = new Int32Array(2);
  for (let b = 0, o = srcOffset, y = outOffset; b < blocks; b++, o += 144, y += QK_K) {
    const d = half(h, src, o), dmin = half(h, src, o + 2);
    const qs = o + 16;
    for (let pair = 0; pair < 4; pair++) {
      scaleMinK4(src, o + 4, 2 * pair, sm);
      const d1 = f(d * sm[0]), m1 = f(dmin * sm[1]);
      scaleMinK4(src, o + 4, 2 * pair + 1, sm);
      const d2 = f(d * sm[0]), m2 = f(dmin * sm[1]);
      const q = qs + 32 * pair, v = 64 * pair;
      for (let l = 0; l < 32; l++) {
        scratch[v + l] = f(d1 * (src[q + l] & 0x0f)) - m1;
        scratch[v + 32 + l] = f(d2 * (src[q + l] >> 4)) - m2;
      }
    }
    out.set(scratch, y);
  }
}

/**
 * Q5_K, 176 bytes per 256 values: as Q4_K (d, dmin, 12 bytes of scales and mins), then 32
 * bytes of fifth bits and 128 bytes of nibbles. Value l of sub-block j takes its fifth bit
 * from bit j of byte l of the 32; q is in [0, 31].
 */
function q5_kToFloat32(
  src: Uint8Array,
  srcOffset: number,
  out: Float32Array,
  outOffset: number,
  blocks: number,
): void {
  const h = float16Values();
  const scratch = new Float32Array(QK_K);
  const sm = new Int32Array(2);
  for (let b = 0, o = srcOffset, y = outOffset; b < blocks; b++, o += 176, y += QK_K) {
    const d = half(h, src, o), dmin = half(h, src, o + 2);
    const qh = o + 16, qs = o + 48;
    for (let pair = 0; pair < 4; pair++) {
      const j1 = 2 * pair, j2 = 2 * pair + 1;
      scaleMinK4(src, o + 4, j1, sm);
      const d1 = f(d * sm[0]), m1 = f(dmin * sm[1]);
      scaleMinK4(src, o + 4, j2, sm);
      const d2 = f(d * sm[0]), m2 = f(dmin * sm[1]);
      const q = qs + 32 * pair, v = 64 * pair;
      for (let l = 0; l < 32; l++) {
        const high = src[qh + l];
        const lo = (src[q + l] & 0x0f) | (((high >> j1) & 1) << 4);
        const hi = (src[q + l] >> 4) | (((high >> j2) & 1) << 4);
        scratch[v + l] = f(d1 * lo) - m1;
        scratch[v + 32 + l] = f(d2 * hi) - m2;
      }
    }
    out.set(scratch, y);
  }
}

/**
 * Q6_K, 210 bytes per 256 values: 128 bytes of low nibbles (ql), 64 bytes of 2-bit high
 * parts (qh), 16 int8 scales (one per 16 values), then d (f16). Each half of 128 values
 * uses 64 bytes of ql and 32 of qh: value l (0–31) of its four quarters takes the low
 * nibble of ql[l], of ql[l + 32], the high nibble of ql[l], of ql[l + 32], and bits 0–1,
 * 2–3, 4–5, 6–7 of qh[l]; q in [0, 63] and x = (d · scale) · (q − 32).
 */
function q6_kToFloat32(
  src: Uint8Array,
  srcOffset: number,
  out: Float32Array,
  outOffset: number,
  blocks: number,
): void {
  const h = float16Values();
  const scratch = new Float32Array(QK_K);
  const scales = new Float32Array(16);
  for (let b = 0, o = srcOffset, y = outOffset; b < blocks; b++, o += 210, y += QK_K) {
    const d = half(h, src, o + 208);
    for (let i = 0; i < 16; i++) scales[i] = d * ((src[o + 192 + i] << 24) >> 24);
    for (let n = 0; n < 2; n++) {
      const ql = o + 64 * n, qh = o + 128 + 32 * n, v = 128 * n;
      for (let l = 0; l < 32; l++) {
        // Values l, l + 32, l + 64, l + 96 of this half use scales 2k + l / 16 of its eight.
        const s = 8 * n + (l >> 4);
        const high = src[qh + l];
        const q1 = ((src[ql + l] & 0x0f) | ((high & 3) << 4)) - 32;
        const q2 = ((src[ql + l + 32] & 0x0f) | (((high >> 2) & 3) << 4)) - 32;
        const q3 = ((src[ql + l] >> 4) | (((high >> 4) & 3) << 4)) - 32;
        const q4 = ((src[ql + l + 32] >> 4) | (((high >> 6) & 3) << 4)) - 32;
        scratch[v + l] = scales[s] * q1;
        scratch[v + l + 32] = scales[s + 2] * q2;
        scratch[v + l + 64] = scales[s + 4] * q3;
        scratch[v + l + 96] = scales[s + 6] * q4;
      }
    }
    out.set(scratch, y);
  }
}

/** The layout and conversion of every type `readAsFloat32` converts. */
export const TYPE_LAYOUTS: Readonly<Record<Float32Convertible, TypeLayout>> = {
  float32: { ggmlName: "F32", blockSize: 1, blockBytes: 4, toFloat32: float32ToFloat32 },
  float16: { ggmlName: "F16", blockSize: 1, blockBytes: 2, toFloat32: float16ToFloat32 },
  bfloat16: { ggmlName: "BF16", blockSize: 1, blockBytes: 2, toFloat32: bfloat16ToFloat32 },
  q8_0: { ggmlName: "Q8_0", blockSize: QK, blockBytes: 34, toFloat32: q8_0ToFloat32 },
  q4_0: { ggmlName: "Q4_0", blockSize: QK, blockBytes: 18, toFloat32: q4_0ToFloat32 },
  q4_1: { ggmlName: "Q4_1", blockSize: QK, blockBytes: 20, toFloat32: q4_1ToFloat32 },
  q5_0: { ggmlName: "Q5_0", blockSize: QK, blockBytes: 22, toFloat32: q5_0ToFloat32 },
  q5_1: { ggmlName: "Q5_1", blockSize: QK, blockBytes: 24, toFloat32: q5_1ToFloat32 },
  q4_k: { ggmlName: "Q4_K", blockSize: QK_K, blockBytes: 144, toFloat32: q4_kToFloat32 },
  q5_k: { ggmlName: "Q5_K", blockSize: QK_K, blockBytes: 176, toFloat32: q5_kToFloat32 },
  q6_k: { ggmlName: "Q6_K", blockSize: QK_K, blockBytes: 210, toFloat32: q6_kToFloat32 },
};

/** Whether `dtype` is a type `readAsFloat32` converts. */
export function isFloat32Convertible(dtype: string): dtype is Float32Convertible {
  return Object.hasOwn(TYPE_LAYOUTS, dtype);
}

/**
 * Bytes that `count` values of `dtype` take, or `undefined` if `count` is not a whole
 * number of blocks.
 *
 * @example
 * ```ts
 * import { storedBytes } from "./tensor_types.ts";
 * if (storedBytes("q4_0", 64) !== 36 || storedBytes("q4_k", 100) !== undefined) throw new Error();
 * ```
 */
export function storedBytes(dtype: Float32Convertible, count: number): number | undefined {
  const { blockSize, blockBytes } = TYPE_LAYOUTS[dtype];
  return count % blockSize === 0 ? (count / blockSize) * blockBytes : undefined;
}
