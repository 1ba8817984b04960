// 4-bit matrix products: Conv1D, the output head and the embedding lookup with weights in
// ggml's Q4_0 blocks (per 32 input features one float16 scale d and 32 four-bit values n,
// the weight d · (n − 8)), activations quantised to int8 per block of 32 at run time, and
// the products summed as int8 dot products.
import { finish16, finishLanes, GELU, HEAD, RESIDUAL, STORE, ZEROS } from "./matmul";
import { H, halfAt, widen } from "./half";

/**
 * The quantisation. Weights as ggml-quants.c's `quantize_row_q4_0_ref`: per block of 32,
 * m is the value of largest magnitude (the first, with its sign), d = m / −8 in f32,
 * id = 1 / d (0 when d is 0), n = min(15, trunc(x · id + 8.5)) with the product and the
 * sum each rounded to float32 (as the C code compiled without fused multiply-adds, and as
 * the GGUF files of llama.cpp's Python `gguf` package 0.19 hold them), and d stored as the
 * nearest float16. Activations as ggml's q8_0: a = round(x / e) in [−127, 127] with
 * e = max|x| / 127 over the block, ties to even, stored with e and the block's
 * correction −8 · Σ a, so that Σ a · (n − 8) = Σ a · n − 8 · Σ a exactly.
 *
 * The products multiply a (the relaxed dot's first, signed operand) by n in [0, 15] (its
 * second, which engines may read as signed or unsigned: the same for values in
 * [0, 127]), so `i16x8.relaxed_dot_i8x16_i7x16_s` is exact and the same on every engine;
 * its pair sums are at most 2 · 127 · 15, so eight of them (a block's 32 features of one
 * column, four per lane) add up in 16 bits without overflow (8 · 3810 < 2¹⁵).
 */
export const Q4BLOCK: i32 = 32;

/** Columns (or vocabulary rows) per weight panel: the unit of work. */
const QPANEL: i32 = 16;

/**
 * Bytes of one block of one panel (16 columns × 32 features): the 16 columns' float16
 * scales, column c at half `scaleIndex(c)` (so that a vector of 8 halves widens to
 * columns 0–3 and 4–7), then 16 vectors of 16 bytes: vector 4h + g holds columns
 * 4g … 4g + 3, four bytes each, and byte j of column c's four is ggml's byte 4h + j of
 * that column's block: its low nibble feature 4h + j, its high nibble feature 16 + 4h + j.
 * A vector's low nibbles are thus one operand of the dot product for the features
 * 4h … 4h + 3 (lane c sums its column's four), its high nibbles for 16 + 4h … 19 + 4h.
 */
const PANEL_BLOCK_BYTES: usize = 32 + 256;

/**
 * Bytes of one block of a quantised activation row: 32 int8 values, the f32 scale e, then
 * the i32 correction −8 · Σ a.
 */
const ROW_BLOCK_BYTES: usize = 40;

/** The half of a block's scales that holds column c (0 … 15). */
// @ts-ignore: decorator
@inline
function scaleIndex(c: i32): i32 {
  const j = c & 7;
  return (c & 8) + ((j & 3) << 1) + (j >> 2);
}

/** Byte offset in a panel block of column c's four bytes for features 4h … 4h + 3. */
// @ts-ignore: decorator
@inline
function quadOffset(c: i32, h: i32): usize {
  return 32 + (<usize>((h << 2) + (c >> 2)) << 4) + (<usize>(c & 3) << 2);
}

/**
 * Quantises rows [r0, r1) of inp to int8 blocks of 32 (see Q4BLOCK), the features past C
 * of the last block as zeros. Each row is quantised on its own, so any split of the rows
 * gives the same bytes.
 * @param dst (rows, ceil(C / 32), 40 bytes): per block 32 i8, f32 scale, i32 correction
 * @param inp (rows, C) f32
 */
export function quantize_q4(dst: usize, inp: usize, C: i32, r0: i32, r1: i32): void {
  const nb = (C + Q4BLOCK - 1) / Q4BLOCK;
  const rowIn = <usize>C << 2;
  const rowQ = <usize>nb * ROW_BLOCK_BYTES;
  for (let r = r0; r < r1; r++) {
    const x = inp + <usize>r * rowIn;
    const q = dst + <usize>r * rowQ;
    for (let b = 0; b < nb; b++) {
      const k0 = b * Q4BLOCK;
      const xb = x + (<usize>k0 << 2);
      const qb = q + <usize>b * ROW_BLOCK_BYTES;
      if (k0 + Q4BLOCK <= C) activationBlock(qb, xb);
      else activationTail(qb, xb, C - k0);
    }
  }
}

/** One full block of 32 activations at xb, quantised into qb. */
// @ts-ignore: decorator
@inline
function activationBlock(qb: usize, xb: usize): void {
  let m = f32x4.splat(0);
  for (let i: usize = 0; i < 128; i += 16) m = f32x4.max(m, f32x4.abs(v128.load(xb + i)));
  const amax = max(
    max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)),
    max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)),
  );
  if (amax == 0) {
    v128.store(qb, i32x4.splat(0));
    v128.store(qb, i32x4.splat(0), 16);
    store<f32>(qb, 0, 32);
    store<i32>(qb, 0, 36);
    return;
  }
  const e: f32 = amax / 127;
  const ev = f32x4.splat(e);
  let sum = i32x4.splat(0);
  for (let i: usize = 0; i < 2; i++) {
    const x = xb + (i << 6);
    const a0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v128.load(x), ev)));
    const a1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v128.load(x, 16), ev)));
    const a2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v128.load(x, 32), ev)));
    const a3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v128.load(x, 48), ev)));
    sum = i32x4.add(sum, i32x4.add(i32x4.add(a0, a1), i32x4.add(a2, a3)));
    const bytes = i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(a0, a1), i16x8.narrow_i32x4_s(a2, a3));
    v128.store(qb + (i << 4), bytes);
  }
  const s = i32x4.extract_lane(sum, 0) + i32x4.extract_lane(sum, 1) +
    i32x4.extract_lane(sum, 2) + i32x4.extract_lane(sum, 3);
  store<f32>(qb, e, 32);
  store<i32>(qb, -8 * s, 36);
}

/** The last block of a row when only n < 32 features remain: the rest are zeros. */
function activationTail(qb: usize, xb: usize, n: i32): void {
  let amax: f32 = 0;
  for (let k = 0; k < n; k++) amax = max(amax, abs(load<f32>(xb + (<usize>k << 2))));
  const e: f32 = amax / 127;
  let s = 0;
  for (let k = 0; k < Q4BLOCK; k++) {
    let a = 0;
    if (k < n && amax != 0) a = <i32>nearest(load<f32>(xb + (<usize>k << 2)) / e);
    store<i8>(qb + <usize>k, <i8>a);
    s += a;
  }
  store<f32>(qb, amax == 0 ? 0 : e, 32);
  store<i32>(qb, -8 * s, 36);
}

/**
 * The binary16 bits nearest to x, ties to even; x is finite and below 65520 in magnitude
 * (a Q4_0 scale: an eighth of a weight).
 */
function halfBits(x: f32): u16 {
  const b = reinterpret<u32>(x);
  const sign = (b >> 16) & 0x8000;
  const e = <i32>((b >> 23) & 0xff) - 127 + 15;
  const m = b & 0x7fffff;
  if (e >= 0x1f) return <u16>(sign | 0x7c00);
  let shift = 13;
  let full = m;
  let h: u32 = <u32>e << 10;
  if (e <= 0) {
    // A subnormal half: the significand with its leading 1, shifted further down.
    shift = 14 - e;
    if (shift > 24) return <u16>sign;
    full = m | 0x800000;
    h = 0;
  }
  h += full >> shift;
  const rest = full & ((1 << shift) - 1);
  const halfway = <u32>1 << (shift - 1);
  // A carry out of the mantissa steps the exponent up, as the bits are laid out.
  if (rest > halfway || (rest == halfway && (h & 1) != 0)) h++;
  return <u16>(sign | h);
}

/**
 * One ggml Q4_0 block of the n (≤ 32) values at x, `step` bytes apart (the rest zeros),
 * written into a panel block at blk as column c: its scale and its 16 bytes.
 */
function packColumn(blk: usize, c: i32, x: usize, step: usize, n: i32): void {
  let amax: f32 = 0;
  let m: f32 = 0;
  for (let k = 0; k < n; k++) {
    const v = load<f32>(x + <usize>k * step);
    if (abs(v) > amax) {
      amax = abs(v);
      m = v;
    }
  }
  const d: f32 = m / -8;
  const id: f32 = d != 0 ? <f32>1 / d : 0;
  store<u16>(blk + (<usize>scaleIndex(c) << 1), halfBits(d));
  for (let j = 0; j < 16; j++) {
    const lo: f32 = j < n ? load<f32>(x + <usize>j * step) : 0;
    const hi: f32 = j + 16 < n ? load<f32>(x + <usize>(j + 16) * step) : 0;
    const q0 = min(15, <i32>(lo * id + <f32>8.5));
    const q1 = min(15, <i32>(hi * id + <f32>8.5));
    store<u8>(blk + quadOffset(c, j >> 2) + <usize>(j & 3), <u8>(q0 | (q1 << 4)));
  }
}

/**
 * Quantises a Conv1D weight (C, OC) into panels of 16 columns (see PANEL_BLOCK_BYTES),
 * panels [p0, p1); columns past OC are zero and features past C quantise as zeros. With
 * `transposed`, src is (OC, C) instead, the embedding wte (V, C), whose rows become the
 * columns. src may hold the weight from panel `first` on only (0: all of it), so that wte
 * can be packed a chunk of rows at a time; [p0, p1) lie at or after `first`.
 * @param dst (ceil(OC / 16), ceil(C / 32), 288 bytes)
 * @param src (C, OC) f32, or (OC, C) when transposed; from column (row) 16 · first on
 */
export function pack_q4(
  dst: usize,
  src: usize,
  C: i32,
  OC: i32,
  transposed: bool,
  first: i32,
  p0: i32,
  p1: i32,
): void {
  const nb = (C + Q4BLOCK - 1) / Q4BLOCK;
  // Step between features and between columns in src, in bytes.
  const kStep: usize = transposed ? 4 : <usize>OC << 2;
  const cStep: usize = transposed ? <usize>C << 2 : 4;
  for (let p = p0; p < p1; p++) {
    const panel = dst + <usize>p * <usize>nb * PANEL_BLOCK_BYTES;
    memory.fill(panel, 0, <usize>nb * PANEL_BLOCK_BYTES);
    for (let b = 0; b < nb; b++) {
      const blk = panel + <usize>b * PANEL_BLOCK_BYTES;
      const k0 = b * Q4BLOCK;
      for (let c = 0; c < QPANEL; c++) {
        const o = p * QPANEL + c;
        if (o >= OC) break;
        const col = src + <usize>(o - first * QPANEL) * cStep + <usize>k0 * kStep;
        packColumn(blk, c, col, kStep, min(Q4BLOCK, C - k0));
      }
    }
  }
}

/**
 * Packs ggml Q4_0 blocks as a GGUF file stores a matrix, (OC, C): OC rows of C / 32 blocks
 * of 18 bytes (float16 d, then 16 bytes of nibbles), into panels [p0, p1) as `pack_q4`
 * lays them out, moving bytes only. A Conv1D weight's rows are its output columns and the
 * embedding's its vocabulary rows, so one layout serves both. src may hold rows from
 * 16 · `first` on only, as `pack_q4`'s; columns past OC are zero. C is a multiple of 32.
 * @param dst (ceil(OC / 16), C / 32, 288 bytes)
 * @param src (OC, C / 32, 18 bytes), from row 16 · first on
 */
export function pack_q4_blocks(
  dst: usize,
  src: usize,
  C: i32,
  OC: i32,
  first: i32,
  p0: i32,
  p1: i32,
): void {
  const nb = C / Q4BLOCK;
  const rowBytes = <usize>nb * 18;
  for (let p = p0; p < p1; p++) {
    const panel = dst + <usize>p * <usize>nb * PANEL_BLOCK_BYTES;
    memory.fill(panel, 0, <usize>nb * PANEL_BLOCK_BYTES);
    for (let c = 0; c < QPANEL; c++) {
      const o = p * QPANEL + c;
      if (o >= OC) break;
      const row = src + <usize>(o - first * QPANEL) * rowBytes;
      for (let b = 0; b < nb; b++) {
        const from = row + <usize>b * 18;
        const blk = panel + <usize>b * PANEL_BLOCK_BYTES;
        store<u16>(blk + (<usize>scaleIndex(c) << 1), load<u16>(from));
        for (let h = 0; h < 4; h++) {
          store<u32>(blk + quadOffset(c, h), load<u32>(from + 2 + (<usize>h << 2)));
        }
      }
    }
  }
}

/**
 * Conv1D on 4-bit weights: out = mode(inp · weight + bias) for the columns of panels
 * [p0, p1), mode as `conv1d`'s, with inp quantised by `quantize_q4` and weight packed by
 * `pack_q4` or `pack_q4_blocks`. Each output is Σ over blocks b in order of
 * convert(Σ_b a·n − 8·Σ_b a) · (d_b · e_b), accumulated with one multiply-add per block,
 * plus the bias at the end: the integer sums are exact, and the float steps are the same
 * whatever the split or the number of rows T.
 * @param out    (T, OC) f32
 * @param qinp   (T, ceil(C / 32), 40 bytes), from `quantize_q4`
 * @param weight (ceil(OC / 16), ceil(C / 32), 288 bytes)
 * @param bias   (ceil(OC / 16) · 16) f32, zero past OC
 * @param mode   STORE, GELU or RESIDUAL
 */
export function conv1d_q4(
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
  if (mode == GELU) q4Panels(out, qinp, weight, bias, T, C, OC, p0, p1, GELU);
  else if (mode == RESIDUAL) q4Panels(out, qinp, weight, bias, T, C, OC, p0, p1, RESIDUAL);
  else q4Panels(out, qinp, weight, bias, T, C, OC, p0, p1, STORE);
}

/**
 * The output head on 4-bit weights: logits = h · wteᵀ for vocabulary panels [p0, p1)
 * (16 rows of wte each), computed as `conv1d_q4` computes a column, without a bias.
 * @param out (T, V) f32
 * @param qh  (T, ceil(C / 32), 40 bytes), from `quantize_q4`
 * @param wte (ceil(V / 16), ceil(C / 32), 288 bytes), from `pack_q4` with `transposed`
 */
export function logits_q4(
  out: usize,
  qh: usize,
  wte: usize,
  T: i32,
  C: i32,
  V: i32,
  p0: i32,
  p1: i32,
): void {
  q4Panels(out, qh, wte, 0, T, C, V, p0, p1, HEAD);
}

/**
 * out[r] = wte[tokens[r]] + wpe[positions[r]] for rows [r0, r1), as `embed`, with wte in
 * 4-bit panels: each feature is dequantised as ggml does, d · (n − 8) in f32.
 * @param out       (rows, C) f32
 * @param tokens    (rows) i32
 * @param positions (rows) i32
 * @param wte       (ceil(V / 16), ceil(C / 32), 288 bytes)
 * @param wpe       (n_ctx, C) f32
 */
export function embed_q4(
  out: usize,
  tokens: usize,
  positions: usize,
  wte: usize,
  wpe: usize,
  C: i32,
  r0: i32,
  r1: i32,
): void {
  const nb = (C + Q4BLOCK - 1) / Q4BLOCK;
  const row = <usize>C << 2;
  for (let r = r0; r < r1; r++) {
    const tok = load<i32>(tokens + (<usize>r << 2));
    const c = tok & (QPANEL - 1);
    const panel = wte + <usize>(tok / QPANEL) * <usize>nb * PANEL_BLOCK_BYTES;
    const p = wpe + <usize>load<i32>(positions + (<usize>r << 2)) * row;
    const o = out + <usize>r * row;
    for (let k = 0; k < C; k++) {
      const blk = panel + <usize>(k / Q4BLOCK) * PANEL_BLOCK_BYTES;
      const kk = k & (Q4BLOCK - 1);
      const j = kk & 15;
      const byte = <i32>load<u8>(blk + quadOffset(c, j >> 2) + <usize>(j & 3));
      const n = kk < 16 ? byte & 15 : byte >> 4;
      const w = <f32>(n - 8) * halfAt(blk + (<usize>scaleIndex(c) << 1));
      store<f32>(o + (<usize>k << 2), w + load<f32>(p + (<usize>k << 2)));
    }
  }
}

/**
 * The 16-bit pair sums of a (bytes, signed) and n (bytes in [0, 15]): exact on every
 * engine (see Q4BLOCK).
 */
// @ts-ignore: decorator
@inline
function pairs(a: v128, n: v128): v128 {
  return i16x8.relaxed_dot_i8x16_i7x16_s(a, n);
}

/**
 * Splats of a constant, computed from nb ≥ 1 so that no optimiser turns them into
 * constants, which V8 would rebuild at every use instead of keeping them in registers:
 * i16x8.splat(1) (pairs of 16-bit sums into 32 bits by `i32x4.dot_i16x8_s`).
 */
// @ts-ignore: decorator
@inline
function ones16(nb: i32): v128 {
  return i16x8.splat(<i16>min(nb, 1));
}

/** i8x16.splat(15): the low nibble of each byte (see `ones16`). */
// @ts-ignore: decorator
@inline
function nibbleMask(nb: i32): v128 {
  return i8x16.splat(<i8>(min(nb, 1) * 15));
}

/** The low nibbles of v's bytes. */
// @ts-ignore: decorator
@inline
function low(v: v128, mask: v128): v128 {
  return v128.and(v, mask);
}

/** The high nibbles of v's bytes (a 16-bit shift, then the mask drops what crossed bytes). */
// @ts-ignore: decorator
@inline
function high(v: v128, mask: v128): v128 {
  return v128.and(i16x8.shr_u(v, 4), mask);
}

/**
 * acc + convert(dot(s16, one) + corr) · (d · e): one block's 16-bit sums s16 (pairs of
 * lanes per column) widened, corrected and scaled into the float accumulators acc.
 */
// @ts-ignore: decorator
@inline
function addBlock(acc: v128, s16: v128, one: v128, corr: v128, d: v128, e: v128): v128 {
  const s = i32x4.add(i32x4.dot_i16x8_s(s16, one), corr);
  return f32x4.relaxed_madd(f32x4.convert_i32x4_s(s), f32x4.mul(d, e), acc);
}

// @ts-ignore: decorator
@inline
function q4Panels(
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
  const nb = (C + Q4BLOCK - 1) / Q4BLOCK;
  const rowQ = <usize>nb * ROW_BLOCK_BYTES;
  const rowOut = <usize>OC << 2;
  const panelBytes = <usize>nb * PANEL_BLOCK_BYTES;
  if (T == 1) {
    // One row (decoding): two panels at a time, so that two streams of weights are in
    // flight at once (one stream leaves the memory waiting on the arithmetic).
    let p = p0;
    for (; p + 2 <= p1; p += 2) {
      const a = p * QPANEL, b = a + QPANEL;
      panelRows2(
        out + (<usize>a << 2),
        qinp,
        weight + <usize>p * panelBytes,
        panelBytes,
        mode == HEAD ? changetype<usize>(ZEROS) : bias + (<usize>a << 2),
        mode == HEAD ? changetype<usize>(ZEROS) : bias + (<usize>b << 2),
        nb,
        min(QPANEL, OC - a),
        min(QPANEL, OC - b),
        mode,
      );
    }
    if (p < p1) {
      const col = p * QPANEL;
      const bp = mode == HEAD ? changetype<usize>(ZEROS) : bias + (<usize>col << 2);
      const w = weight + <usize>p * panelBytes;
      panelRow(out + (<usize>col << 2), qinp, w, bp, nb, min(QPANEL, OC - col), mode);
    }
    return;
  }
  for (let p = p0; p < p1; p++) {
    const col = p * QPANEL;
    const width = min(QPANEL, OC - col);
    const w = weight + <usize>p * panelBytes;
    const bp = mode == HEAD ? changetype<usize>(ZEROS) : bias + (<usize>col << 2);
    const o = out + (<usize>col << 2);
    // Otherwise each group of four columns for four rows at a time: each vector of
    // nibbles, unpacked once, serves four rows.
    for (let g = 0; g < 4; g++) {
      const gw = width - (g << 2);
      if (gw <= 0) break;
      const og = o + (<usize>g << 4);
      const bg = bp + (<usize>g << 4);
      let x = qinp;
      let t = 0;
      let ot = og;
      for (; t + 4 <= T; t += 4) {
        groupRows(ot, x, w, bg, rowQ, rowOut, nb, g, min(gw, 4), mode, 4);
        ot += rowOut << 2;
        x += rowQ << 2;
      }
      if (T - t == 3) groupRows(ot, x, w, bg, rowQ, rowOut, nb, g, min(gw, 4), mode, 3);
      else if (T - t == 2) groupRows(ot, x, w, bg, rowQ, rowOut, nb, g, min(gw, 4), mode, 2);
      else if (T - t == 1) groupRows(ot, x, w, bg, rowQ, rowOut, nb, g, min(gw, 4), mode, 1);
    }
  }
}

/** One row of all 16 columns of a panel at w (T = 1). */
// @ts-ignore: decorator
@inline
function panelRow(o: usize, x: usize, w: usize, bp: usize, nb: i32, width: i32, mode: i32): void {
  const one = ones16(nb);
  const mask = nibbleMask(nb);
  const hmask = v128.splat<u32>(H[0]);
  const hscale = v128.splat<u32>(H[1]);
  let f0 = f32x4.splat(0), f1 = f32x4.splat(0), f2 = f32x4.splat(0), f3 = f32x4.splat(0);
  let wb = w, xb = x;
  for (let b = 0; b < nb; b++) {
    let s0 = i16x8.splat(0), s1 = s0, s2 = s0, s3 = s0;
    let wq = wb + 32;
    for (let h: usize = 0; h < 16; h += 4) {
      const lo = v128.load32_splat(xb + h);
      const hi = v128.load32_splat(xb + h, 16);
      let v = v128.load(wq);
      s0 = i16x8.add(s0, i16x8.add(pairs(lo, low(v, mask)), pairs(hi, high(v, mask))));
      v = v128.load(wq, 16);
      s1 = i16x8.add(s1, i16x8.add(pairs(lo, low(v, mask)), pairs(hi, high(v, mask))));
      v = v128.load(wq, 32);
      s2 = i16x8.add(s2, i16x8.add(pairs(lo, low(v, mask)), pairs(hi, high(v, mask))));
      v = v128.load(wq, 48);
      s3 = i16x8.add(s3, i16x8.add(pairs(lo, low(v, mask)), pairs(hi, high(v, mask))));
      wq += 64;
    }
    const corr = v128.load32_splat(xb, 36);
    const e = v128.load32_splat(xb, 32);
    const d01 = v128.load(wb), d23 = v128.load(wb, 16);
    f0 = addBlock(f0, s0, one, corr, widen(i32x4.shl(d01, 16), hmask, hscale), e);
    f1 = addBlock(f1, s1, one, corr, widen(d01, hmask, hscale), e);
    f2 = addBlock(f2, s2, one, corr, widen(i32x4.shl(d23, 16), hmask, hscale), e);
    f3 = addBlock(f3, s3, one, corr, widen(d23, hmask, hscale), e);
    wb += PANEL_BLOCK_BYTES;
    xb += ROW_BLOCK_BYTES;
  }
  finish16(o, bp, f0, f1, f2, f3, width, mode);
}

/**
 * Rows 0 … n − 1 (n = 1 to 4, a constant) of column group g (columns 4g … 4g + 3, of
 * which the first `width` are stored) of the panel at w, as `panelRow` computes them.
 */
// @ts-ignore: decorator
@inline
function groupRows(
  o: usize,
  x: usize,
  w: usize,
  bp: usize,
  rowQ: usize,
  rowOut: usize,
  nb: i32,
  g: i32,
  width: i32,
  mode: i32,
  n: i32,
): void {
  const one = ones16(nb);
  const mask = nibbleMask(nb);
  const hmask = v128.splat<u32>(H[0]);
  const hscale = v128.splat<u32>(H[1]);
  // The group's scales: the low halves of its vector's lanes for even g, the high for odd.
  const dAt: usize = <usize>(g >> 1) << 4;
  const dShift = (1 - (g & 1)) << 4;
  let f0 = f32x4.splat(0), f1 = f32x4.splat(0), f2 = f32x4.splat(0), f3 = f32x4.splat(0);
  let wb = w + 32 + (<usize>g << 4), xb = x;
  const x1 = rowQ, x2 = rowQ << 1, x3 = rowQ * 3;
  for (let b = 0; b < nb; b++) {
    let s0 = i16x8.splat(0), s1 = s0, s2 = s0, s3 = s0;
    for (let h: usize = 0; h < 16; h += 4) {
      const v = v128.load(wb + (h << 4));
      const l = low(v, mask), u = high(v, mask);
      s0 = i16x8.add(
        s0,
        i16x8.add(pairs(v128.load32_splat(xb + h), l), pairs(v128.load32_splat(xb + h, 16), u)),
      );
      if (n > 1) {
        const a = xb + x1 + h;
        s1 = i16x8.add(s1, i16x8.add(pairs(v128.load32_splat(a), l), pairs(v128.load32_splat(a, 16), u)));
      }
      if (n > 2) {
        const a = xb + x2 + h;
        s2 = i16x8.add(s2, i16x8.add(pairs(v128.load32_splat(a), l), pairs(v128.load32_splat(a, 16), u)));
      }
      if (n > 3) {
        const a = xb + x3 + h;
        s3 = i16x8.add(s3, i16x8.add(pairs(v128.load32_splat(a), l), pairs(v128.load32_splat(a, 16), u)));
      }
    }
    const blk = wb - 32 - (<usize>g << 4);
    const d = widen(i32x4.shl(v128.load(blk + dAt), dShift), hmask, hscale);
    f0 = addBlock(f0, s0, one, v128.load32_splat(xb, 36), d, v128.load32_splat(xb, 32));
    if (n > 1) {
      f1 = addBlock(f1, s1, one, v128.load32_splat(xb + x1, 36), d, v128.load32_splat(xb + x1, 32));
    }
    if (n > 2) {
      f2 = addBlock(f2, s2, one, v128.load32_splat(xb + x2, 36), d, v128.load32_splat(xb + x2, 32));
    }
    if (n > 3) {
      f3 = addBlock(f3, s3, one, v128.load32_splat(xb + x3, 36), d, v128.load32_splat(xb + x3, 32));
    }
    wb += PANEL_BLOCK_BYTES;
    xb += ROW_BLOCK_BYTES;
  }
  const bias = v128.load(bp);
  finishLanes(o, f32x4.add(f0, bias), width, mode);
  if (n > 1) finishLanes(o + rowOut, f32x4.add(f1, bias), width, mode);
  if (n > 2) finishLanes(o + (rowOut << 1), f32x4.add(f2, bias), width, mode);
  if (n > 3) finishLanes(o + rowOut * 3, f32x4.add(f3, bias), width, mode);
}

/**
 * `panelRow` of two neighbouring panels at once (the second `panelBytes` after the first,
 * its outputs 16 columns on), block by block in turn: each column's sums are the same,
 * in the same order, as `panelRow` computes them.
 */
// @ts-ignore: decorator
@inline
function panelRows2(
  o: usize,
  x: usize,
  w: usize,
  panelBytes: usize,
  bpA: usize,
  bpB: usize,
  nb: i32,
  widthA: i32,
  widthB: i32,
  mode: i32,
): void {
  const one = ones16(nb);
  const mask = nibbleMask(nb);
  const hmask = v128.splat<u32>(H[0]);
  const hscale = v128.splat<u32>(H[1]);
  let f0 = f32x4.splat(0), f1 = f32x4.splat(0), f2 = f32x4.splat(0), f3 = f32x4.splat(0);
  let g0 = f32x4.splat(0), g1 = f32x4.splat(0), g2 = f32x4.splat(0), g3 = f32x4.splat(0);
  let wa = w, wb = w + panelBytes, xb = x;
  for (let b = 0; b < nb; b++) {
    let s0 = i16x8.splat(0), s1 = s0, s2 = s0, s3 = s0;
    let t0 = s0, t1 = s0, t2 = s0, t3 = s0;
    let qa = wa + 32, qb = wb + 32;
    for (let h: usize = 0; h < 16; h += 4) {
      const lo = v128.load32_splat(xb + h);
      const hi = v128.load32_splat(xb + h, 16);
      let v = v128.load(qa);
      s0 = i16x8.add(s0, i16x8.add(pairs(lo, low(v, mask)), pairs(hi, high(v, mask))));
      v = v128.load(qb);
      t0 = i16x8.add(t0, i16x8.add(pairs(lo, low(v, mask)), pairs(hi, high(v, mask))));
      v = v128.load(qa, 16);
      s1 = i16x8.add(s1, i16x8.add(pairs(lo, low(v, mask)), pairs(hi, high(v, mask))));
      v = v128.load(qb, 16);
      t1 = i16x8.add(t1, i16x8.add(pairs(lo, low(v, mask)), pairs(hi, high(v, mask))));
      v = v128.load(qa, 32);
      s2 = i16x8.add(s2, i16x8.add(pairs(lo, low(v, mask)), pairs(hi, high(v, mask))));
      v = v128.load(qb, 32);
      t2 = i16x8.add(t2, i16x8.add(pairs(lo, low(v, mask)), pairs(hi, high(v, mask))));
      v = v128.load(qa, 48);
      s3 = i16x8.add(s3, i16x8.add(pairs(lo, low(v, mask)), pairs(hi, high(v, mask))));
      v = v128.load(qb, 48);
      t3 = i16x8.add(t3, i16x8.add(pairs(lo, low(v, mask)), pairs(hi, high(v, mask))));
      qa += 64;
      qb += 64;
    }
    const corr = v128.load32_splat(xb, 36);
    const e = v128.load32_splat(xb, 32);
    let d01 = v128.load(wa), d23 = v128.load(wa, 16);
    f0 = addBlock(f0, s0, one, corr, widen(i32x4.shl(d01, 16), hmask, hscale), e);
    f1 = addBlock(f1, s1, one, corr, widen(d01, hmask, hscale), e);
    f2 = addBlock(f2, s2, one, corr, widen(i32x4.shl(d23, 16), hmask, hscale), e);
    f3 = addBlock(f3, s3, one, corr, widen(d23, hmask, hscale), e);
    d01 = v128.load(wb);
    d23 = v128.load(wb, 16);
    g0 = addBlock(g0, t0, one, corr, widen(i32x4.shl(d01, 16), hmask, hscale), e);
    g1 = addBlock(g1, t1, one, corr, widen(d01, hmask, hscale), e);
    g2 = addBlock(g2, t2, one, corr, widen(i32x4.shl(d23, 16), hmask, hscale), e);
    g3 = addBlock(g3, t3, one, corr, widen(d23, hmask, hscale), e);
    wa += PANEL_BLOCK_BYTES;
    wb += PANEL_BLOCK_BYTES;
    xb += ROW_BLOCK_BYTES;
  }
  finish16(o, bpA, f0, f1, f2, f3, widthA, mode);
  finish16(o + (<usize>QPANEL << 2), bpB, g0, g1, g2, g3, widthB, mode);
}
