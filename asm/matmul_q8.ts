// Int8 matrix products: Conv1D and the output head with weights in ggml's q8_0 (blocks of
// 32 input features, one float16 scale each, 8-bit values), activations quantised per
// block at run time to 8 bits too, and the products summed exactly as 32-bit integers.
import { H, halfAt, highHalves, lowHalves, widen } from "./half";
import { toHalf } from "./matmul_f16";
import { finish16, finishRows, GELU, HEAD, RESIDUAL, STORE, ZEROS } from "./matmul";

/**
 * The quantisation, per block of 32 input features:
 * - weights as ggml-quants.c's `quantize_row_q8_0_ref`: d = max|w| / 127 in f32,
 *   q = roundf(w · (1 / d)) (halves away from zero) in [−127, 127], and d stored as
 *   float16 (to nearest, ties to even); a weight stands for f32(d₁₆) · q. A block of zeros
 *   has d = 0 and every q = 0. A GGUF file's Q8_0 blocks are the same bytes
 *   (`pack_q8_blocks`).
 * - activations: e = max|x| / 127 in f32, a = nearest(x / e) in [−127, 127] (ties to even),
 *   e kept in f32; a block of zeros has e = 0. Each a is stored as a⁺ = max(a, 0) and
 *   a⁻ = max(−a, 0), both in [0, 127].
 * The products run on `i32x4.relaxed_dot_i8x16_i7x16_add_s` (vpdpbusd with AVX-VNNI,
 * pmaddubsw with AVX2), as w · a⁺ + (−w) · a⁻: its second operand is then in [0, 127] and
 * each pair of products is at most 2 · 127² < 2¹⁵, where the instruction is exact on every
 * engine. Every block sum is an exact integer (|Σ| ≤ 32 · 127² < 2³¹), so the results are
 * the same on every engine.
 */
export const QBLOCK: i32 = 32;

/** Output columns (or vocabulary rows) per packed weight panel: the unit of work. */
export const QPANEL: i32 = 16;

/**
 * Bytes of one block of one panel: the 16 columns' float16 scales (column c at half
 * `scaleIndex(c)`), then the 32 features in 8 quads, each quad 16 columns × 4 features:
 * byte 32 + (k % 32 / 4) · 64 + c · 4 + k % 4 holds column c, feature k. Sixteen bytes of a
 * quad (four columns) are one operand of the dot product, whose lane c sums its column's
 * four features.
 */
const PANEL_BLOCK_BYTES: usize = 32 + 16 * 32;

/** Bytes of one block of a quantised activation row: 32 a⁺ bytes, 32 a⁻ bytes, the f32 e. */
const ROW_BLOCK_BYTES: usize = 68;

/**
 * Where column c (0 … 15) of a panel keeps its scale among the block's 16 halves: in each
 * 8-column half, lane i of the vector holds column i in its low 16 bits and column 4 + i in
 * its high ones, as asm/matmul_f16.ts lays out its weights, so `lowHalves` and
 * `highHalves` widen them in column order.
 */
// @ts-ignore: decorator
@inline
function scaleIndex(c: i32): i32 {
  const j = c & 7;
  return (c & 8) + (j < 4 ? j << 1 : ((j - 4) << 1) + 1);
}

/** The byte of feature k (of a block) of column c in a panel block. */
// @ts-ignore: decorator
@inline
function weightByte(k: i32, c: i32): usize {
  return 32 + (<usize>(k >> 2) << 6) + (<usize>c << 2) + <usize>(k & 3);
}

/** C's roundf: to the nearest integer, halves away from zero (y − trunc(y) is exact). */
// @ts-ignore: decorator
@inline
function roundAway(y: f32): f32 {
  const t = trunc(y);
  return abs(y - t) >= 0.5 ? t + copysign<f32>(1, y) : t;
}

/** `roundAway` of four lanes. */
// @ts-ignore: decorator
@inline
function roundAway4(y: v128): v128 {
  const t = f32x4.trunc(y);
  const up = f32x4.ge(f32x4.abs(f32x4.sub(y, t)), f32x4.splat(0.5));
  const away = v128.or(v128.and(y, i32x4.splat(0x80000000)), f32x4.splat(1));
  return f32x4.add(t, v128.and(up, away));
}

/**
 * Quantises rows [r0, r1) of inp to blocks of 32 (see QBLOCK), the features past C of the
 * last block as zeros. Each row is quantised on its own, so any split of the rows gives the
 * same bytes.
 * @param dst (rows, ceil(C / 32), 68 bytes): per block 32 a⁺, 32 a⁻, then the f32 scale
 * @param inp (rows, C) f32
 */
export function quantize_q8(dst: usize, inp: usize, C: i32, r0: i32, r1: i32): void {
  const nb = (C + QBLOCK - 1) / QBLOCK;
  const rowIn = <usize>C << 2;
  const rowQ = <usize>nb * ROW_BLOCK_BYTES;
  for (let r = r0; r < r1; r++) {
    const x = inp + <usize>r * rowIn;
    const q = dst + <usize>r * rowQ;
    for (let b = 0; b < nb; b++) {
      const k0 = b * QBLOCK;
      const xb = x + (<usize>k0 << 2);
      const qb = q + <usize>b * ROW_BLOCK_BYTES;
      if (k0 + QBLOCK <= C) quantizeBlock(qb, xb);
      else quantizeTail(qb, xb, C - k0);
    }
  }
}

/** One full block of 32 activations at xb, quantised into qb. */
// @ts-ignore: decorator
@inline
function quantizeBlock(qb: usize, xb: usize): void {
  let m = f32x4.splat(0);
  for (let i: usize = 0; i < 128; i += 16) m = f32x4.max(m, f32x4.abs(v128.load(xb + i)));
  const amax = max(
    max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)),
    max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)),
  );
  if (amax == 0) {
    for (let i: usize = 0; i < 64; i += 16) v128.store(qb + i, i32x4.splat(0));
    store<f32>(qb, 0, 64);
    return;
  }
  const e: f32 = amax / 127;
  const ev = f32x4.splat(e);
  const zero = i8x16.splat(0);
  for (let i: usize = 0; i < 2; i++) {
    const x = xb + (i << 6);
    const a0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v128.load(x), ev)));
    const a1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v128.load(x, 16), ev)));
    const a2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v128.load(x, 32), ev)));
    const a3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v128.load(x, 48), ev)));
    const a = i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(a0, a1), i16x8.narrow_i32x4_s(a2, a3));
    v128.store(qb + (i << 4), i8x16.max_s(a, zero));
    v128.store(qb + (i << 4), i8x16.max_s(i8x16.neg(a), zero), 32);
  }
  store<f32>(qb, e, 64);
}

/** The last block of a row when only n < 32 features remain: the rest are zeros. */
function quantizeTail(qb: usize, xb: usize, n: i32): void {
  let amax: f32 = 0;
  for (let k = 0; k < n; k++) amax = max(amax, abs(load<f32>(xb + (<usize>k << 2))));
  const e: f32 = amax / 127;
  for (let k = 0; k < QBLOCK; k++) {
    let a = 0;
    if (k < n && amax != 0) a = <i32>nearest(load<f32>(xb + (<usize>k << 2)) / e);
    store<u8>(qb + <usize>k, <u8>max(a, 0));
    store<u8>(qb + <usize>k, <u8>max(-a, 0), 32);
  }
  store<f32>(qb, amax == 0 ? 0 : e, 64);
}

/**
 * Quantises a Conv1D weight (C, OC) into panels of 16 columns (see PANEL_BLOCK_BYTES) as
 * ggml's q8_0 (see QBLOCK), panels [p0, p1); columns past OC and features past C are zero.
 * With `transposed`, src is (OC, C) instead, the output head's wte (V, C), whose rows
 * become the columns. src may hold the weight from panel `first` on only (0: all of it),
 * so that wte can be packed a chunk of rows at a time; [p0, p1) lie at or after `first`.
 * @param dst (ceil(OC / 16), ceil(C / 32), 544 bytes)
 * @param src (C, OC) f32, or (OC, C) when transposed; from column (row) 16 · first on
 */
export function pack_q8(
  dst: usize,
  src: usize,
  C: i32,
  OC: i32,
  transposed: bool,
  first: i32,
  p0: i32,
  p1: i32,
): void {
  const nb = (C + QBLOCK - 1) / QBLOCK;
  // Step between features and between columns in src, in bytes.
  const kStep: usize = transposed ? 4 : <usize>OC << 2;
  const cStep: usize = transposed ? <usize>C << 2 : 4;
  for (let p = p0; p < p1; p++) {
    const panel = dst + <usize>p * <usize>nb * PANEL_BLOCK_BYTES;
    for (let b = 0; b < nb; b++) {
      const blk = panel + <usize>b * PANEL_BLOCK_BYTES;
      const k0 = b * QBLOCK;
      const n = min(QBLOCK, C - k0);
      if (!transposed && n == QBLOCK && p * QPANEL + QPANEL <= OC) {
        const a = src + ((<usize>k0 * <usize>OC + <usize>((p - first) * QPANEL)) << 2);
        packBlock(blk, a, kStep);
        continue;
      }
      for (let c = 0; c < QPANEL; c++) {
        const o = p * QPANEL + c;
        const col = src + <usize>(o - first * QPANEL) * cStep + <usize>k0 * kStep;
        let amax: f32 = 0;
        if (o < OC) {
          for (let k = 0; k < n; k++) amax = max(amax, abs(load<f32>(col + <usize>k * kStep)));
        }
        const d: f32 = amax / 127;
        const id: f32 = d != 0 ? 1 / d : 0;
        store<u16>(blk + (<usize>scaleIndex(c) << 1), toHalf(d));
        for (let k = 0; k < QBLOCK; k++) {
          let q: i32 = 0;
          if (o < OC && k < n) q = <i32>roundAway(load<f32>(col + <usize>k * kStep) * id);
          store<i8>(blk + weightByte(k, c), <i8>q);
        }
      }
    }
  }
}

/**
 * One full block of a (C, OC) weight, 32 rows of 16 columns from `a` (rows `rowBytes`
 * apart), quantised as the scalar loop of `pack_q8` does it, four columns a vector: the
 * same divisions and roundings, so the same bytes.
 */
// @ts-ignore: decorator
@inline
function packBlock(blk: usize, a: usize, rowBytes: usize): void {
  let m0 = f32x4.splat(0), m1 = f32x4.splat(0), m2 = f32x4.splat(0), m3 = f32x4.splat(0);
  let r = a;
  for (let k = 0; k < QBLOCK; k++) {
    m0 = f32x4.max(m0, f32x4.abs(v128.load(r)));
    m1 = f32x4.max(m1, f32x4.abs(v128.load(r, 16)));
    m2 = f32x4.max(m2, f32x4.abs(v128.load(r, 32)));
    m3 = f32x4.max(m3, f32x4.abs(v128.load(r, 48)));
    r += rowBytes;
  }
  const k127 = f32x4.splat(127);
  const d0 = f32x4.div(m0, k127), d1 = f32x4.div(m1, k127);
  const d2 = f32x4.div(m2, k127), d3 = f32x4.div(m3, k127);
  storeScales(blk, 0, d0);
  storeScales(blk, 4, d1);
  storeScales(blk, 8, d2);
  storeScales(blk, 12, d3);
  const i0 = inverse(d0), i1 = inverse(d1), i2 = inverse(d2), i3 = inverse(d3);
  r = a;
  for (let j = 0; j < 8; j++) {
    // Rows 4j … 4j + 3, 16 bytes each: paired column by column, then the pairs paired.
    const r0 = rowBytes16(r, i0, i1, i2, i3);
    const r1 = rowBytes16(r + rowBytes, i0, i1, i2, i3);
    const r2 = rowBytes16(r + (rowBytes << 1), i0, i1, i2, i3);
    const r3 = rowBytes16(r + rowBytes * 3, i0, i1, i2, i3);
    const p0 = i8x16.shuffle(r0, r1, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const p1 = i8x16.shuffle(r0, r1, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const p2 = i8x16.shuffle(r2, r3, 0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23);
    const p3 = i8x16.shuffle(r2, r3, 8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31);
    const o = blk + 32 + (<usize>j << 6);
    v128.store(o, quads(p0, p2, 0));
    v128.store(o, quads(p0, p2, 8), 16);
    v128.store(o, quads(p1, p3, 0), 32);
    v128.store(o, quads(p1, p3, 8), 48);
    r += rowBytes << 2;
  }
}

/**
 * Four columns' quads from the pairs of features 0, 1 (in a) and 2, 3 (in b) of eight
 * columns, 16 bits a column: columns `at` / 2 … `at` / 2 + 3 (at = 0 or 8).
 */
// @ts-ignore: decorator
@inline
function quads(a: v128, b: v128, at: u8): v128 {
  return at == 0
    ? i8x16.shuffle(a, b, 0, 1, 16, 17, 2, 3, 18, 19, 4, 5, 20, 21, 6, 7, 22, 23)
    : i8x16.shuffle(a, b, 8, 9, 24, 25, 10, 11, 26, 27, 12, 13, 28, 29, 14, 15, 30, 31);
}

/** The float16 scales d of columns c0 … c0 + 3. */
// @ts-ignore: decorator
@inline
function storeScales(blk: usize, c0: i32, d: v128): void {
  store<u16>(blk + (<usize>scaleIndex(c0) << 1), toHalf(f32x4.extract_lane(d, 0)));
  store<u16>(blk + (<usize>scaleIndex(c0 + 1) << 1), toHalf(f32x4.extract_lane(d, 1)));
  store<u16>(blk + (<usize>scaleIndex(c0 + 2) << 1), toHalf(f32x4.extract_lane(d, 2)));
  store<u16>(blk + (<usize>scaleIndex(c0 + 3) << 1), toHalf(f32x4.extract_lane(d, 3)));
}

/** 1 / d in each lane, 0 where d is 0. */
// @ts-ignore: decorator
@inline
function inverse(d: v128): v128 {
  return v128.and(f32x4.div(f32x4.splat(1), d), f32x4.ne(d, f32x4.splat(0)));
}

/** The 16 weight bytes roundf(x · id) of the row at r (columns in order). */
// @ts-ignore: decorator
@inline
function rowBytes16(r: usize, i0: v128, i1: v128, i2: v128, i3: v128): v128 {
  const x0 = i32x4.trunc_sat_f32x4_s(roundAway4(f32x4.mul(v128.load(r), i0)));
  const x1 = i32x4.trunc_sat_f32x4_s(roundAway4(f32x4.mul(v128.load(r, 16), i1)));
  const x2 = i32x4.trunc_sat_f32x4_s(roundAway4(f32x4.mul(v128.load(r, 32), i2)));
  const x3 = i32x4.trunc_sat_f32x4_s(roundAway4(f32x4.mul(v128.load(r, 48), i3)));
  return i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(x0, x1), i16x8.narrow_i32x4_s(x2, x3));
}

/**
 * Packs ggml Q8_0 blocks (as a GGUF file holds them) into the panels `pack_q8` writes,
 * panels [p0, p1): the scales' and values' bytes are copied, not requantised, so
 * `pack_q8_blocks` of `quantize_row_q8_0_ref`'s bytes for a weight gives the bytes of
 * `pack_q8` of it. src is (OC, C) as ggml stores a Conv1D weight (out rows, blocks along
 * the C input features) and the embedding (V, C); it may hold the rows from panel `first`
 * on only (0: all of them). Columns past OC are zero. C must be a multiple of 32.
 * @param dst (ceil(OC / 16), C / 32, 544 bytes)
 * @param src (OC, C / 32, 34 bytes): per block f16 d, then 32 i8; from row 16 · first on
 */
export function pack_q8_blocks(
  dst: usize,
  src: usize,
  C: i32,
  OC: i32,
  first: i32,
  p0: i32,
  p1: i32,
): void {
  const nb = C / QBLOCK;
  const rowBytes = <usize>nb * 34;
  for (let p = p0; p < p1; p++) {
    const panel = dst + <usize>p * <usize>nb * PANEL_BLOCK_BYTES;
    for (let b = 0; b < nb; b++) {
      const blk = panel + <usize>b * PANEL_BLOCK_BYTES;
      for (let c = 0; c < QPANEL; c++) {
        const o = p * QPANEL + c;
        const scale = blk + (<usize>scaleIndex(c) << 1);
        const at = blk + 32 + (<usize>c << 2);
        if (o >= OC) {
          store<u16>(scale, 0);
          for (let j: usize = 0; j < 8; j++) store<u32>(at + (j << 6), 0);
          continue;
        }
        const s = src + <usize>(o - first * QPANEL) * rowBytes + <usize>b * 34;
        store<u16>(scale, load<u16>(s));
        // Each quad of features is four bytes in both layouts.
        for (let j: usize = 0; j < 8; j++) store<u32>(at + (j << 6), load<u32>(s + 2 + (j << 2)));
      }
    }
  }
}

/**
 * Conv1D on int8: out = mode(inp · weight + bias) for the columns of panels [p0, p1), mode
 * as `conv1d`'s, with inp quantised by `quantize_q8` and weight packed by `pack_q8`. Each
 * output is Σ over blocks b in order of convert(Σ_b a·q) · (d_b · e_b), one product and
 * one sum per block, plus the bias at the end: the integer sums are exact, and the float
 * steps are the same whatever the split or the number of rows T.
 * @param out    (T, OC) f32
 * @param qinp   (T, ceil(C / 32), 68 bytes), from `quantize_q8`
 * @param weight (ceil(OC / 16), ceil(C / 32), 544 bytes), from `pack_q8`
 * @param bias   (ceil(OC / 16) · 16) f32, zero past OC
 * @param mode   STORE, GELU or RESIDUAL
 */
export function conv1d_q8(
  out: usize,
  qinp: usize,
  weight: usize,
  bias: usize,
  T: i32,
  C: i32,
  OC: i32,
  mode: i32,
  p0: i32,
  p1: i32,
): void {
  // Once per call, as in `conv1d`: each branch inlines the body with a constant mode.
  if (mode == GELU) q8Panels(out, qinp, weight, bias, T, C, OC, p0, p1, GELU);
  else if (mode == RESIDUAL) q8Panels(out, qinp, weight, bias, T, C, OC, p0, p1, RESIDUAL);
  else q8Panels(out, qinp, weight, bias, T, C, OC, p0, p1, STORE);
}

/**
 * The output head on int8: logits = h · wteᵀ for vocabulary panels [p0, p1) (16 rows of
 * wte each), computed as `conv1d_q8` computes a column, without a bias.
 * @param out (T, V) f32
 * @param qh  (T, ceil(C / 32), 68 bytes), from `quantize_q8`
 * @param wte (ceil(V / 16), ceil(C / 32), 544 bytes), from `pack_q8` with `transposed`
 */
export function logits_q8(
  out: usize,
  qh: usize,
  wte: usize,
  T: i32,
  C: i32,
  V: i32,
  p0: i32,
  p1: i32,
): void {
  q8Panels(out, qh, wte, 0, T, C, V, p0, p1, HEAD);
}

/**
 * out[r] = wte[tokens[r]] + wpe[positions[r]] for rows [r0, r1), as `embed`, with wte
 * packed by `pack_q8` (transposed): each feature is dequantised as d · q in f32 (exact).
 * @param out       (rows, C) f32
 * @param tokens    (rows) i32
 * @param positions (rows) i32
 * @param wte       (ceil(V / 16), ceil(C / 32), 544 bytes)
 * @param wpe       (n_ctx, C) f32
 */
export function embed_q8(
  out: usize,
  tokens: usize,
  positions: usize,
  wte: usize,
  wpe: usize,
  C: i32,
  r0: i32,
  r1: i32,
): void {
  const nb = (C + QBLOCK - 1) / QBLOCK;
  const row = <usize>C << 2;
  for (let r = r0; r < r1; r++) {
    const tok = load<i32>(tokens + (<usize>r << 2));
    const c = tok & (QPANEL - 1);
    const panel = wte + <usize>(tok / QPANEL) * <usize>nb * PANEL_BLOCK_BYTES;
    const p = wpe + <usize>load<i32>(positions + (<usize>r << 2)) * row;
    const o = out + <usize>r * row;
    for (let k = 0; k < C; k++) {
      const blk = panel + <usize>(k / QBLOCK) * PANEL_BLOCK_BYTES;
      const q = <f32>load<i8>(blk + weightByte(k & (QBLOCK - 1), c));
      const w = halfAt(blk + (<usize>scaleIndex(c) << 1)) * q;
      store<f32>(o + (<usize>k << 2), w + load<f32>(p + (<usize>k << 2)));
    }
  }
}

// @ts-ignore: decorator
@inline
function q8Panels(
  out: usize,
  qinp: usize,
  weight: usize,
  bias: usize,
  T: i32,
  C: i32,
  OC: i32,
  p0: i32,
  p1: i32,
  mode: i32,
): void {
  const nb = (C + QBLOCK - 1) / QBLOCK;
  const rowQ = <usize>nb * ROW_BLOCK_BYTES;
  const rowOut = <usize>OC << 2;
  const panelBytes = <usize>nb * PANEL_BLOCK_BYTES;
  const mask = v128.splat<u32>(H[0]);
  const scale = v128.splat<u32>(H[1]);
  if (T == 1) {
    // One row (decoding): four panels at a time, so that four streams of weights are in
    // flight at once (one stream leaves the memory waiting on the arithmetic).
    let p = p0;
    for (; p + 4 <= p1; p += 4) {
      const a = p * QPANEL;
      panelRows4(
        out + (<usize>a << 2),
        qinp,
        weight + <usize>p * panelBytes,
        panelBytes,
        mode == HEAD ? changetype<usize>(ZEROS) : bias + (<usize>a << 2),
        nb,
        min(QPANEL, OC - a - 3 * QPANEL),
        mode,
        mask,
        scale,
      );
    }
    for (; p < p1; p++) {
      const col = p * QPANEL;
      const bp = mode == HEAD ? changetype<usize>(ZEROS) : bias + (<usize>col << 2);
      const w = weight + <usize>p * panelBytes;
      panelRow(out + (<usize>col << 2), qinp, w, bp, nb, min(QPANEL, OC - col), mode, mask, scale);
    }
    return;
  }
  for (let p = p0; p < p1; p++) {
    const col = p * QPANEL;
    const width = min(QPANEL, OC - col);
    const w = weight + <usize>p * panelBytes;
    const bp = mode == HEAD ? changetype<usize>(ZEROS) : bias + (<usize>col << 2);
    const o = out + (<usize>col << 2);
    // Otherwise each half of the panel (8 columns) for four rows at a time: 8 integer and
    // 8 float accumulators, and each weight vector loaded serves four rows.
    for (let half = 0; half < 2; half++) {
      const hw = width - half * 8;
      if (hw <= 0) break;
      // The half's scales start 16 bytes in, and its bytes of each quad 32 bytes in.
      const wh = w + (<usize>half << 4);
      const qh = <usize>half << 4;
      const bh = bp + (<usize>half << 5);
      let oh = o + (<usize>half << 5);
      let x = qinp;
      let t = 0;
      for (; t + 4 <= T; t += 4) {
        halfRows(oh, x, wh, qh, bh, rowQ, rowOut, nb, hw, mode, 4, mask, scale);
        oh += rowOut << 2;
        x += rowQ << 2;
      }
      const n = T - t;
      if (n == 3) halfRows(oh, x, wh, qh, bh, rowQ, rowOut, nb, hw, mode, 3, mask, scale);
      else if (n == 2) halfRows(oh, x, wh, qh, bh, rowQ, rowOut, nb, hw, mode, 2, mask, scale);
      else if (n == 1) halfRows(oh, x, wh, qh, bh, rowQ, rowOut, nb, hw, mode, 1, mask, scale);
    }
  }
}

/**
 * s + the dot product of four columns' quads w (and their negation nw) with the activation
 * quad a = a⁺ − a⁻, a⁺ in ap and a⁻ in an (each in every lane): w · a⁺ + (−w) · a⁻.
 */
// @ts-ignore: decorator
@inline
function dot4(w: v128, nw: v128, ap: v128, an: v128, s: v128): v128 {
  const sp = i32x4.relaxed_dot_i8x16_i7x16_add_s(w, ap, s);
  return i32x4.relaxed_dot_i8x16_i7x16_add_s(nw, an, sp);
}

/** `dot4` of the quads at w. */
// @ts-ignore: decorator
@inline
function dot4At(w: usize, ap: v128, an: v128, s: v128): v128 {
  const q = v128.load(w);
  return dot4(q, i8x16.neg(q), ap, an, s);
}

/** acc + convert(s) · (d · e): one block's integer sums s into float accumulators acc. */
// @ts-ignore: decorator
@inline
function addBlock(acc: v128, s: v128, d: v128, e: v128): v128 {
  return f32x4.add(acc, f32x4.mul(f32x4.convert_i32x4_s(s), f32x4.mul(d, e)));
}

/**
 * Rows 0 … n − 1 (n = 1 to 4, a constant) of one 8-column half of a panel, whose scales
 * start at w and its bytes of quad j at w + 32 + qh + 64j, blocks PANEL_BLOCK_BYTES apart.
 */
// @ts-ignore: decorator
@inline
function halfRows(
  o: usize,
  x: usize,
  w: usize,
  qh: usize,
  bp: usize,
  rowQ: usize,
  rowOut: usize,
  nb: i32,
  width: i32,
  mode: i32,
  n: i32,
  mask: v128,
  scale: v128,
): void {
  let f00 = f32x4.splat(0), f01 = f32x4.splat(0), f10 = f32x4.splat(0), f11 = f32x4.splat(0);
  let f20 = f32x4.splat(0), f21 = f32x4.splat(0), f30 = f32x4.splat(0), f31 = f32x4.splat(0);
  let wb = w, xb = x;
  const x1 = rowQ, x2 = rowQ << 1, x3 = rowQ * 3;
  for (let b = 0; b < nb; b++) {
    let s00 = i32x4.splat(0), s01 = s00, s10 = s00, s11 = s00;
    let s20 = s00, s21 = s00, s30 = s00, s31 = s00;
    let wq = wb + 32 + qh;
    const xe = xb + 32;
    for (let xq = xb; xq < xe; xq += 4) {
      const w0 = v128.load(wq), w1 = v128.load(wq, 16);
      const n0 = i8x16.neg(w0), n1 = i8x16.neg(w1);
      let ap = v128.load32_splat(xq), an = v128.load32_splat(xq, 32);
      s00 = dot4(w0, n0, ap, an, s00);
      s01 = dot4(w1, n1, ap, an, s01);
      if (n > 1) {
        ap = v128.load32_splat(xq + x1);
        an = v128.load32_splat(xq + x1, 32);
        s10 = dot4(w0, n0, ap, an, s10);
        s11 = dot4(w1, n1, ap, an, s11);
      }
      if (n > 2) {
        ap = v128.load32_splat(xq + x2);
        an = v128.load32_splat(xq + x2, 32);
        s20 = dot4(w0, n0, ap, an, s20);
        s21 = dot4(w1, n1, ap, an, s21);
      }
      if (n > 3) {
        ap = v128.load32_splat(xq + x3);
        an = v128.load32_splat(xq + x3, 32);
        s30 = dot4(w0, n0, ap, an, s30);
        s31 = dot4(w1, n1, ap, an, s31);
      }
      wq += 64;
    }
    const h = v128.load(wb);
    const d0 = widen(lowHalves(h), mask, scale), d1 = widen(highHalves(h), mask, scale);
    let e = v128.load32_splat(xb, 64);
    f00 = addBlock(f00, s00, d0, e);
    f01 = addBlock(f01, s01, d1, e);
    if (n > 1) {
      e = v128.load32_splat(xb + x1, 64);
      f10 = addBlock(f10, s10, d0, e);
      f11 = addBlock(f11, s11, d1, e);
    }
    if (n > 2) {
      e = v128.load32_splat(xb + x2, 64);
      f20 = addBlock(f20, s20, d0, e);
      f21 = addBlock(f21, s21, d1, e);
    }
    if (n > 3) {
      e = v128.load32_splat(xb + x3, 64);
      f30 = addBlock(f30, s30, d0, e);
      f31 = addBlock(f31, s31, d1, e);
    }
    wb += PANEL_BLOCK_BYTES;
    xb += ROW_BLOCK_BYTES;
  }
  finishRows(o, bp, rowOut, width, mode, n, f00, f01, f10, f11, f20, f21, f30, f31);
}

/** One row of all 16 columns of a panel at w: the T = 1 case of `halfRows`. */
// @ts-ignore: decorator
@inline
function panelRow(
  o: usize,
  x: usize,
  w: usize,
  bp: usize,
  nb: i32,
  width: i32,
  mode: i32,
  mask: v128,
  scale: v128,
): void {
  let f0 = f32x4.splat(0), f1 = f32x4.splat(0), f2 = f32x4.splat(0), f3 = f32x4.splat(0);
  let wb = w, xb = x;
  for (let b = 0; b < nb; b++) {
    let s0 = i32x4.splat(0), s1 = s0, s2 = s0, s3 = s0;
    let wq = wb + 32;
    const xe = xb + 32;
    for (let xq = xb; xq < xe; xq += 4) {
      const ap = v128.load32_splat(xq), an = v128.load32_splat(xq, 32);
      s0 = dot4At(wq, ap, an, s0);
      s1 = dot4At(wq + 16, ap, an, s1);
      s2 = dot4At(wq + 32, ap, an, s2);
      s3 = dot4At(wq + 48, ap, an, s3);
      wq += 64;
    }
    const e = v128.load32_splat(xb, 64);
    const h0 = v128.load(wb), h1 = v128.load(wb, 16);
    f0 = addBlock(f0, s0, widen(lowHalves(h0), mask, scale), e);
    f1 = addBlock(f1, s1, widen(highHalves(h0), mask, scale), e);
    f2 = addBlock(f2, s2, widen(lowHalves(h1), mask, scale), e);
    f3 = addBlock(f3, s3, widen(highHalves(h1), mask, scale), e);
    wb += PANEL_BLOCK_BYTES;
    xb += ROW_BLOCK_BYTES;
  }
  finish16(o, bp, f0, f1, f2, f3, width, mode);
}

/**
 * `panelRow` of four neighbouring panels (each `panelBytes` after the one before, its
 * outputs 16 columns on; only the last may be narrower), block by block in turn: each
 * column's sums are the same, in the same order, as `panelRow` computes them.
 */
// @ts-ignore: decorator
@inline
function panelRows4(
  o: usize,
  x: usize,
  w: usize,
  panelBytes: usize,
  bp: usize,
  nb: i32,
  widthLast: i32,
  mode: i32,
  mask: v128,
  scale: v128,
): void {
  let f0 = f32x4.splat(0), f1 = f32x4.splat(0), f2 = f32x4.splat(0), f3 = f32x4.splat(0);
  let g0 = f32x4.splat(0), g1 = f32x4.splat(0), g2 = f32x4.splat(0), g3 = f32x4.splat(0);
  let u0 = f32x4.splat(0), u1 = f32x4.splat(0), u2 = f32x4.splat(0), u3 = f32x4.splat(0);
  let v0 = f32x4.splat(0), v1 = f32x4.splat(0), v2 = f32x4.splat(0), v3 = f32x4.splat(0);
  let wa = w, xb = x;
  for (let b = 0; b < nb; b++) {
    const e = v128.load32_splat(xb, 64);
    const wb = wa + panelBytes, wc = wb + panelBytes, wd = wc + panelBytes;
    {
      let s0 = i32x4.splat(0), s1 = s0, s2 = s0, s3 = s0;
      let wq = wa + 32;
      const xe = xb + 32;
      for (let xq = xb; xq < xe; xq += 4) {
        const ap = v128.load32_splat(xq), an = v128.load32_splat(xq, 32);
        s0 = dot4At(wq, ap, an, s0);
        s1 = dot4At(wq + 16, ap, an, s1);
        s2 = dot4At(wq + 32, ap, an, s2);
        s3 = dot4At(wq + 48, ap, an, s3);
        wq += 64;
      }
      const h0 = v128.load(wa), h1 = v128.load(wa, 16);
      f0 = addBlock(f0, s0, widen(lowHalves(h0), mask, scale), e);
      f1 = addBlock(f1, s1, widen(highHalves(h0), mask, scale), e);
      f2 = addBlock(f2, s2, widen(lowHalves(h1), mask, scale), e);
      f3 = addBlock(f3, s3, widen(highHalves(h1), mask, scale), e);
    }
    {
      let s0 = i32x4.splat(0), s1 = s0, s2 = s0, s3 = s0;
      let wq = wb + 32;
      const xe = xb + 32;
      for (let xq = xb; xq < xe; xq += 4) {
        const ap = v128.load32_splat(xq), an = v128.load32_splat(xq, 32);
        s0 = dot4At(wq, ap, an, s0);
        s1 = dot4At(wq + 16, ap, an, s1);
        s2 = dot4At(wq + 32, ap, an, s2);
        s3 = dot4At(wq + 48, ap, an, s3);
        wq += 64;
      }
      const h0 = v128.load(wb), h1 = v128.load(wb, 16);
      g0 = addBlock(g0, s0, widen(lowHalves(h0), mask, scale), e);
      g1 = addBlock(g1, s1, widen(highHalves(h0), mask, scale), e);
      g2 = addBlock(g2, s2, widen(lowHalves(h1), mask, scale), e);
      g3 = addBlock(g3, s3, widen(highHalves(h1), mask, scale), e);
    }
    {
      let s0 = i32x4.splat(0), s1 = s0, s2 = s0, s3 = s0;
      let wq = wc + 32;
      const xe = xb + 32;
      for (let xq = xb; xq < xe; xq += 4) {
        const ap = v128.load32_splat(xq), an = v128.load32_splat(xq, 32);
        s0 = dot4At(wq, ap, an, s0);
        s1 = dot4At(wq + 16, ap, an, s1);
        s2 = dot4At(wq + 32, ap, an, s2);
        s3 = dot4At(wq + 48, ap, an, s3);
        wq += 64;
      }
      const h0 = v128.load(wc), h1 = v128.load(wc, 16);
      u0 = addBlock(u0, s0, widen(lowHalves(h0), mask, scale), e);
      u1 = addBlock(u1, s1, widen(highHalves(h0), mask, scale), e);
      u2 = addBlock(u2, s2, widen(lowHalves(h1), mask, scale), e);
      u3 = addBlock(u3, s3, widen(highHalves(h1), mask, scale), e);
    }
    {
      let s0 = i32x4.splat(0), s1 = s0, s2 = s0, s3 = s0;
      let wq = wd + 32;
      const xe = xb + 32;
      for (let xq = xb; xq < xe; xq += 4) {
        const ap = v128.load32_splat(xq), an = v128.load32_splat(xq, 32);
        s0 = dot4At(wq, ap, an, s0);
        s1 = dot4At(wq + 16, ap, an, s1);
        s2 = dot4At(wq + 32, ap, an, s2);
        s3 = dot4At(wq + 48, ap, an, s3);
        wq += 64;
      }
      const h0 = v128.load(wd), h1 = v128.load(wd, 16);
      v0 = addBlock(v0, s0, widen(lowHalves(h0), mask, scale), e);
      v1 = addBlock(v1, s1, widen(highHalves(h0), mask, scale), e);
      v2 = addBlock(v2, s2, widen(lowHalves(h1), mask, scale), e);
      v3 = addBlock(v3, s3, widen(highHalves(h1), mask, scale), e);
    }
    wa += PANEL_BLOCK_BYTES;
    xb += ROW_BLOCK_BYTES;
  }
  const step: usize = <usize>QPANEL << 2;
  const bstep: usize = mode == HEAD ? 0 : step;
  finish16(o, bp, f0, f1, f2, f3, QPANEL, mode);
  finish16(o + step, bp + bstep, g0, g1, g2, g3, QPANEL, mode);
  finish16(o + 2 * step, bp + 2 * bstep, u0, u1, u2, u3, QPANEL, mode);
  finish16(o + 3 * step, bp + 3 * bstep, v0, v1, v2, v3, widthLast, mode);
}
