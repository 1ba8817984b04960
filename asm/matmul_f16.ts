// Float16 matrix products: Conv1D and the output head with weights stored as IEEE binary16
// (each times 2^10, `F16_PANEL`) and widened to f32 in the kernels, which otherwise compute
// exactly as the f32 Conv1D does. The output head is a Conv1D over wteᵀ: wte is packed in
// the same panels, 16 vocabulary rows each, and `embed_f16` reads a token's row across them.
import { H, highHalves, lowHalves, unscaled, unscaledAt, widen } from "./half";
import {
  F16_WEIGHTS,
  finish16,
  GELU,
  HEAD,
  oneRow,
  RESIDUAL,
  rowPair,
  STORE,
  stripRows,
  ZEROS,
} from "./matmul";

/**
 * Columns per panel, as for f32: C rows of 16 halves (32 bytes), like the f32 kernels'
 * layout for C > 1024 (asm/matmul.ts), for every C. Within a row, each 8-column half is
 * one vector whose i32 lane i holds column i in its low 16 bits and column 4 + i in its
 * high ones (`halfIndex`), so that the high columns are widened in place and the low ones
 * after one shift. One row of input streams the panel once, front to back; up to four rows
 * take each 8-column half in turn, four rows at a time; more widen the panel once into f32
 * (`WIDEN_ROWS`). (Two strips of 8 columns, the f32 layout for C ≤ 1024, make one row read
 * two streams, which was slower from memory.)
 */
const PANEL: i32 = 16;

/**
 * From this many rows on, a product with scratch widens each panel once into it and runs
 * the f32 kernel's row pairs over every row (`widenPanel`); fewer rows widen each 8-column
 * half per group of up to four rows, as often as a widened panel would be read.
 */
const WIDEN_ROWS: i32 = 5;

/**
 * The panels hold each weight w rounded to float16 and then times 2^10, exactly (a power
 * of two), so that a float16 subnormal (|w| < 2^-14) is stored as a normal half and, widened
 * without the factor 2^112, gives a normal f32 (w · 2^-102, at least 2^-126): some cores
 * take a slow path for every subnormal operand of a multiply-add. The kernels undo the
 * factor exactly where they widen: 2^102 instead of 2^112 (`widen`, `embed_f16`), and
 * `panelRow`'s 2^90 instead of 2^100. A weight of magnitude 64 or more after rounding
 * (|w| ≥ 65520 / 2^10, about 63.98) has no scaled half; `pack_f16` counts them.
 */
const PANEL_SCALE_BITS: i32 = 10;

/**
 * The f16 panels' constants, in static data as H's (asm/half.ts): 2^(112 − 10), `widen`'s
 * scale for them; 2^90 and 2^12, its two factors as `panelRow` applies them.
 */
const F16_PANEL: StaticArray<u32> = [0x72800000, 0x6c800000, 0x45800000];

/** Where column c (0 … 15) of a panel row lies among its 16 halves (see PANEL). */
// @ts-ignore: decorator
@inline
function halfIndex(c: i32): i32 {
  const j = c & 7;
  return (c & 8) + (j < 4 ? j << 1 : ((j - 4) << 1) + 1);
}

/**
 * The binary16 bits nearest to x, ties to even (IEEE round to nearest): values past the
 * largest half (65504) round to infinity, those below half the smallest subnormal to zero,
 * and NaNs stay NaNs.
 */
// @ts-ignore: decorator
@inline
export function toHalf(x: f32): u16 {
  const b = reinterpret<u32>(x);
  const sign = (b >> 16) & 0x8000;
  const e = <i32>((b >> 23) & 0xff);
  const m = b & 0x7fffff;
  if (e == 0xff) return <u16>(sign | 0x7c00 | (m != 0 ? 0x200 | (m >> 13) : 0));
  const he = e - 127 + 15;
  if (he >= 0x1f) return <u16>(sign | 0x7c00);
  if (he <= 0) {
    // A subnormal half, m' · 2^-24: the significand with its leading 1, shifted down.
    const shift = 14 - he;
    if (shift > 24) return <u16>sign;
    const full = m | 0x800000;
    let q = full >> shift;
    const rest = full & ((1 << shift) - 1);
    const halfway = <u32>1 << (shift - 1);
    if (rest > halfway || (rest == halfway && (q & 1) != 0)) q++;
    return <u16>(sign | q);
  }
  let h = (<u32>he << 10) | (m >> 13);
  const rest = m & 0x1fff;
  // A carry out of the mantissa steps the exponent up, to infinity past 65504.
  if (rest > 0x1000 || (rest == 0x1000 && (h & 1) != 0)) h++;
  return <u16>(sign | h);
}

/**
 * Converts elements [i0, i1) of src to binary16, rounding to nearest even: the output
 * head's wte (V, C) keeps its row-major layout.
 * @param dst (n) f16
 * @param src (n) f32
 */
export function convert_f16(dst: usize, src: usize, i0: i32, i1: i32): void {
  for (let i = i0; i < i1; i++) {
    store<u16>(dst + (<usize>i << 1), toHalf(load<f32>(src + (<usize>i << 2))));
  }
}

/**
 * `toHalf` of four floats, each in the low 16 bits of its i32 lane. Lanes whose result is
 * a normal half (2^-14 ≤ |x| < 65520, or up to 2^16 rounding to infinity) are rounded at
 * once: adding 0xfff plus the lowest kept bit carries into the kept bits exactly when
 * round-to-nearest-even goes up, and subtracting (127 − 15) << 23 rebiases the exponent.
 * Any other lane (zero, subnormal, infinite, NaN) sends all four through `toHalf`.
 */
// @ts-ignore: decorator
@inline
function toHalf4(x: v128): v128 {
  const abs = v128.and(x, i32x4.splat(0x7fffffff));
  const normal = v128.and(
    i32x4.ge_s(abs, i32x4.splat(0x38800000)),
    i32x4.lt_s(abs, i32x4.splat(0x47800000)),
  );
  if (!i32x4.all_true(normal)) {
    let h = i32x4.splat(toHalf(f32x4.extract_lane(x, 0)));
    h = i32x4.replace_lane(h, 1, toHalf(f32x4.extract_lane(x, 1)));
    h = i32x4.replace_lane(h, 2, toHalf(f32x4.extract_lane(x, 2)));
    return i32x4.replace_lane(h, 3, toHalf(f32x4.extract_lane(x, 3)));
  }
  const lsb = v128.and(i32x4.shr_u(abs, 13), i32x4.splat(1));
  const biased = i32x4.sub(i32x4.add(abs, i32x4.add(lsb, i32x4.splat(0xfff))), i32x4.splat(0x38000000));
  return v128.or(i32x4.shr_u(biased, 13), v128.and(i32x4.shr_u(x, 16), i32x4.splat(0x8000)));
}

/**
 * Four halves h (each in the low 16 bits of its i32 lane) times 2^PANEL_SCALE_BITS,
 * exactly: a normal half's exponent field steps up by 10; a subnormal m · 2^-24 becomes
 * the normal m · 2^-14, its bits those of the f32 m (exact, m < 2^10) rebiased; zero stays
 * zero. A half of magnitude 64 or more, infinities and NaNs included, becomes infinity,
 * and its lane of `over` is all ones.
 */
// @ts-ignore: decorator
@inline
function scaledHalf4(h: v128, over: v128): v128 {
  const a = v128.and(h, i32x4.splat(0x7fff));
  const normal = i32x4.add(a, i32x4.splat(PANEL_SCALE_BITS << 10));
  // The f32 m = 2^e · 1.f has bits (127 + e) << 23 | f, the half m · 2^-14 has
  // (e + 1) << 10 | f >> 13.
  const sub = i32x4.sub(i32x4.shr_u(f32x4.convert_i32x4_s(a), 13), i32x4.splat(126 << 10));
  let m = v128.bitselect(normal, sub, i32x4.ge_s(a, i32x4.splat(0x400)));
  m = v128.andnot(m, i32x4.eq(a, i32x4.splat(0)));
  m = v128.bitselect(i32x4.splat(0x7c00), m, over);
  return v128.or(m, v128.and(h, i32x4.splat(0x8000)));
}

/** Lanes of four halves (as `scaledHalf4` takes them) whose scaled value overflows. */
// @ts-ignore: decorator
@inline
function overflows4(h: v128): v128 {
  return i32x4.ge_s(v128.and(h, i32x4.splat(0x7fff)), i32x4.splat((31 - PANEL_SCALE_BITS) << 10));
}

/**
 * Four floats of src for columns c … c + 3 (of a panel whose first `width` are real), at
 * byte `a` for column 0, columns `cStep` bytes apart: zero past the width.
 */
// @ts-ignore: decorator
@inline
function columns4(a: usize, cStep: usize, c: i32, width: i32): v128 {
  if (cStep == 4 && c + 4 <= width) return v128.load(a + (<usize>c << 2));
  let v = f32x4.splat(0);
  if (c < width) v = f32x4.replace_lane(v, 0, load<f32>(a + <usize>c * cStep));
  if (c + 1 < width) v = f32x4.replace_lane(v, 1, load<f32>(a + <usize>(c + 1) * cStep));
  if (c + 2 < width) v = f32x4.replace_lane(v, 2, load<f32>(a + <usize>(c + 2) * cStep));
  if (c + 3 < width) v = f32x4.replace_lane(v, 3, load<f32>(a + <usize>(c + 3) * cStep));
  return v;
}

/**
 * Repacks a Conv1D weight (C, OC) f32 into panels of binary16 (see PANEL), panels
 * [p0, p1), rounding to nearest even and then scaling by 2^10 (`PANEL_SCALE_BITS`), zero
 * in the columns past OC. With `transposed`, src is (OC, C) instead, the output head's wte
 * (V, C), whose rows become the columns. src may hold the weight from panel `first` on
 * only (0: all of it), so that wte can be packed a chunk of rows at a time; [p0, p1) lie
 * at or after `first`. Returns how many weights did not fit (magnitude 64 or more after
 * rounding, or not finite), each stored as infinity; 0 when all did.
 * @param dst (ceil(OC / 16), C, 16) f16, each weight times 2^10
 * @param src (C, OC) f32, or (OC, C) when transposed; from column (row) 16 · first on
 */
export function pack_f16(
  dst: usize,
  src: usize,
  C: i32,
  OC: i32,
  transposed: bool,
  first: i32,
  p0: i32,
  p1: i32,
): i32 {
  // Step between features and between columns in src, in bytes.
  const kStep: usize = transposed ? 4 : <usize>OC << 2;
  const cStep: usize = transposed ? <usize>C << 2 : 4;
  // Minus the count of overflowing weights, per lane.
  let overflowed = i32x4.splat(0);
  for (let p = p0; p < p1; p++) {
    const col = p * PANEL;
    const width = min(PANEL, OC - col);
    let d = dst + (<usize>p * <usize>C * <usize>PANEL << 1);
    let a = src + <usize>(col - first * PANEL) * cStep;
    // Row by row of the panel: (C, OC) is read 16 floats at a time, (OC, C) as 16 streams.
    // Each 8-column half is one vector: columns i and 4 + i share lane i (see PANEL).
    for (let k = 0; k < C; k++) {
      const r0 = toHalf4(columns4(a, cStep, 0, width));
      const r1 = toHalf4(columns4(a, cStep, 4, width));
      const r2 = toHalf4(columns4(a, cStep, 8, width));
      const r3 = toHalf4(columns4(a, cStep, 12, width));
      const o0 = overflows4(r0), o1 = overflows4(r1), o2 = overflows4(r2), o3 = overflows4(r3);
      overflowed = i32x4.add(i32x4.add(overflowed, i32x4.add(o0, o1)), i32x4.add(o2, o3));
      const h0 = scaledHalf4(r0, o0), h1 = scaledHalf4(r1, o1);
      const h2 = scaledHalf4(r2, o2), h3 = scaledHalf4(r3, o3);
      v128.store(d, v128.or(h0, i32x4.shl(h1, 16)));
      v128.store(d, v128.or(h2, i32x4.shl(h3, 16)), 16);
      d += <usize>PANEL << 1;
      a += kStep;
    }
  }
  return -(i32x4.extract_lane(overflowed, 0) + i32x4.extract_lane(overflowed, 1) +
    i32x4.extract_lane(overflowed, 2) + i32x4.extract_lane(overflowed, 3));
}

/**
 * Conv1D with float16 weights: out = mode(inp · weight + bias) for panels [p0, p1), mode
 * as `conv1d`'s. Each output is the sum over k = 0 … C − 1 in order, one fused
 * multiply-add per step, plus the bias, as `conv1d` computes it: so the result equals
 * `conv1d` on the weights rounded to float16, bit for bit, whatever the split, T or scratch
 * (at T = 1 within the limits `panelRow` states).
 * @param out     (T, OC) f32
 * @param inp     (T, C)  f32
 * @param weight  (ceil(OC / 16), C, 16) f16 times 2^10, packed by `pack_f16`
 * @param bias    (ceil(OC / 16) · 16) f32, zero past OC
 * @param mode    STORE, GELU or RESIDUAL
 * @param scratch (C, 16) f32 of the calling thread's own, where a panel is widened for
 *                `WIDEN_ROWS` rows or more; 0 for none
 */
export function conv1d_f16(
  out: usize,
  inp: usize,
  weight: usize,
  bias: usize,
  T: i32,
  C: i32,
  OC: i32,
  mode: i32,
  p0: i32,
  p1: i32,
  scratch: usize,
): void {
  // Once per call, as in `conv1d`: each branch inlines the body with a constant mode.
  if (mode == GELU) f16Panels(out, inp, weight, bias, T, C, OC, p0, p1, scratch, GELU);
  else if (mode == RESIDUAL) {
    f16Panels(out, inp, weight, bias, T, C, OC, p0, p1, scratch, RESIDUAL);
  } else f16Panels(out, inp, weight, bias, T, C, OC, p0, p1, scratch, STORE);
}

// @ts-ignore: decorator
@inline
function f16Panels(
  out: usize,
  inp: usize,
  weight: usize,
  bias: usize,
  T: i32,
  C: i32,
  OC: i32,
  p0: i32,
  p1: i32,
  scratch: usize,
  mode: i32,
): void {
  const rowIn = <usize>C << 2;
  const rowOut = <usize>OC << 2;
  const panelBytes = <usize>C * <usize>PANEL << 1;
  const mask = v128.splat<u32>(H[0]);
  const scale = v128.splat<u32>(F16_PANEL[0]);
  if (T == 1) {
    // One row (decoding): all 16 columns at once, four chains of multiply-adds (8 columns,
    // two chains, are bound by their latency), eight panels at a time so that eight weight
    // streams are in flight (one leaves the memory waiting on the arithmetic).
    const xScale = v128.splat<u32>(F16_PANEL[1]);
    const yScale = v128.splat<u32>(F16_PANEL[2]);
    let p = p0;
    for (; p + 8 <= p1; p += 8) {
      const col = p * PANEL;
      const w = weight + <usize>p * panelBytes;
      const o = out + (<usize>col << 2);
      const bp = mode == HEAD ? changetype<usize>(ZEROS) : bias + (<usize>col << 2);
      const width = min(PANEL, OC - col - 7 * PANEL);
      panelRows8(o, inp, w, panelBytes, bp, rowIn, width, mode, mask, xScale, yScale);
    }
    for (; p < p1; p++) {
      const col = p * PANEL;
      const w = weight + <usize>p * panelBytes;
      const o = out + (<usize>col << 2);
      const bp = mode == HEAD ? changetype<usize>(ZEROS) : bias + (<usize>col << 2);
      panelRow(o, inp, w, bp, rowIn, min(PANEL, OC - col), mode, mask, xScale, yScale);
    }
    return;
  }
  if (scratch != 0 && T >= WIDEN_ROWS) {
    // Many rows (a prompt): each panel widened once, as the f32 kernel's 16-column panel
    // (row k of columns 0–7 at 64k, of 8–15 at 64k + 32), then two rows at a time over it.
    for (let p = p0; p < p1; p++) {
      const col = p * PANEL;
      const width = min(PANEL, OC - col);
      widenPanel(scratch, weight + <usize>p * panelBytes, C, mask, scale);
      const bp = mode == HEAD ? changetype<usize>(ZEROS) : bias + (<usize>col << 2);
      let o = out + (<usize>col << 2);
      let x = inp;
      let t = 0;
      for (; t + 2 <= T; t += 2) {
        rowPair(o, x, scratch, scratch + 32, 64, bp, rowIn, rowOut, width, mode);
        o += rowOut << 1;
        x += rowIn << 1;
      }
      if (t < T) oneRow(o, x, scratch, scratch + 32, 64, bp, rowIn, width, mode);
    }
    return;
  }
  for (let s = p0 * 2; s < p1 * 2; s++) {
    // Half s % 2 of panel s / 2: its columns 8 · (s % 2) … + 7.
    const col = s * 8;
    const width = min(8, OC - col);
    if (width <= 0) break;
    const w = weight + <usize>(s >> 1) * panelBytes + (<usize>(s & 1) << 4);
    const bp = mode == HEAD ? changetype<usize>(ZEROS) : bias + (<usize>col << 2);
    let o = out + (<usize>col << 2);
    let x = inp;
    // Four rows at a time: each row of the half widened once for all of them. The panel
    // (C · 32 bytes) stays in cache while the groups of rows pass over it.
    let t = 0;
    for (; t + 4 <= T; t += 4) {
      stripRows(o, x, w, bp, rowIn, rowOut, width, mode, 4, F16_WEIGHTS, mask, scale);
      o += rowOut << 2;
      x += rowIn << 2;
    }
    const n = T - t;
    if (n == 3) stripRows(o, x, w, bp, rowIn, rowOut, width, mode, 3, F16_WEIGHTS, mask, scale);
    else if (n == 2) stripRows(o, x, w, bp, rowIn, rowOut, width, mode, 2, F16_WEIGHTS, mask, scale);
    else if (n == 1) stripRows(o, x, w, bp, rowIn, rowOut, width, mode, 1, F16_WEIGHTS, mask, scale);
  }
}

/**
 * The f32 values of one panel of halves at w (C rows of 16) into dst, C rows of 16 floats
 * in column order, each widened exactly as `stripRows` widens it.
 */
// @ts-ignore: decorator
@inline
function widenPanel(dst: usize, w: usize, C: i32, mask: v128, scale: v128): void {
  const end = dst + (<usize>C << 6);
  for (let d = dst, wp = w; d < end; d += 64, wp += 32) {
    const h0 = v128.load(wp);
    const h1 = v128.load(wp, 16);
    v128.store(d, widen(lowHalves(h0), mask, scale));
    v128.store(d, widen(highHalves(h0), mask, scale), 16);
    v128.store(d, widen(lowHalves(h1), mask, scale), 32);
    v128.store(d, widen(highHalves(h1), mask, scale), 48);
  }
}

/**
 * One row of a whole panel at w, 16 columns side by side.
 * The stored halves w · 2^10 are widened without their factor 2^112 (to w · 2^-102,
 * exactly, and normal: see PANEL_SCALE_BITS): the input takes 2^90, once per feature for
 * 16 columns instead of four products, and the sums 2^12. Every product and sum is then
 * the f32 kernel's scaled by 2^-12, rounded the same, so the result is the same bit for
 * bit unless an input exceeds 2^38 in magnitude (then it overflows) or a partial sum is
 * below 2^-114 without being zero. One row is bound by these instructions, so the fewer
 * the better.
 */
// @ts-ignore: decorator
@inline
function panelRow(
  o: usize,
  x: usize,
  w: usize,
  bp: usize,
  rowIn: usize,
  width: i32,
  mode: i32,
  mask: v128,
  xScale: v128,
  yScale: v128,
): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
  let wp = w;
  const end = x + rowIn;
  for (let xk = x; xk < end; xk += 4) {
    const h0 = v128.load(wp);
    const h1 = v128.load(wp, 16);
    wp += 32;
    const a = f32x4.mul(v128.load32_splat(xk), xScale);
    c0 = f32x4.relaxed_madd(a, unscaled(lowHalves(h0), mask), c0);
    c1 = f32x4.relaxed_madd(a, unscaled(highHalves(h0), mask), c1);
    c2 = f32x4.relaxed_madd(a, unscaled(lowHalves(h1), mask), c2);
    c3 = f32x4.relaxed_madd(a, unscaled(highHalves(h1), mask), c3);
  }
  finishScaled(o, bp, c0, c1, c2, c3, width, mode, yScale);
}

/** `finish16` of the sums times y (`F16_PANEL`'s 2^12: see `panelRow`). */
// @ts-ignore: decorator
@inline
function finishScaled(
  o: usize,
  bp: usize,
  c0: v128,
  c1: v128,
  c2: v128,
  c3: v128,
  width: i32,
  mode: i32,
  y: v128,
): void {
  finish16(o, bp, f32x4.mul(c0, y), f32x4.mul(c1, y), f32x4.mul(c2, y), f32x4.mul(c3, y), width, mode);
}

/**
 * `panelRow` of eight neighbouring panels (each `panelBytes` after the one before, its
 * outputs 16 columns on; only the last may be narrower), feature by feature in turn, so that
 * eight weight streams are in flight: each column's sums are `panelRow`'s, in the same
 * order. Block i is `panelRow`'s loop body for panel i.
 */
// @ts-ignore: decorator
@inline
function panelRows8(
  o: usize,
  x: usize,
  w: usize,
  panelBytes: usize,
  bp: usize,
  rowIn: usize,
  widthLast: i32,
  mode: i32,
  mask: v128,
  xScale: v128,
  yScale: v128,
): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c02 = f32x4.splat(0), c03 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0), c12 = f32x4.splat(0), c13 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c22 = f32x4.splat(0), c23 = f32x4.splat(0);
  let c30 = f32x4.splat(0), c31 = f32x4.splat(0), c32 = f32x4.splat(0), c33 = f32x4.splat(0);
  let c40 = f32x4.splat(0), c41 = f32x4.splat(0), c42 = f32x4.splat(0), c43 = f32x4.splat(0);
  let c50 = f32x4.splat(0), c51 = f32x4.splat(0), c52 = f32x4.splat(0), c53 = f32x4.splat(0);
  let c60 = f32x4.splat(0), c61 = f32x4.splat(0), c62 = f32x4.splat(0), c63 = f32x4.splat(0);
  let c70 = f32x4.splat(0), c71 = f32x4.splat(0), c72 = f32x4.splat(0), c73 = f32x4.splat(0);
  let w0 = w;
  const end = x + rowIn;
  for (let xk = x; xk < end; xk += 4) {
    const a = f32x4.mul(v128.load32_splat(xk), xScale);
    {
      const h0 = v128.load(w0 + 0 * panelBytes);
      const h1 = v128.load(w0 + 0 * panelBytes, 16);
      c00 = f32x4.relaxed_madd(a, unscaled(lowHalves(h0), mask), c00);
      c01 = f32x4.relaxed_madd(a, unscaled(highHalves(h0), mask), c01);
      c02 = f32x4.relaxed_madd(a, unscaled(lowHalves(h1), mask), c02);
      c03 = f32x4.relaxed_madd(a, unscaled(highHalves(h1), mask), c03);
    }
    {
      const h0 = v128.load(w0 + 1 * panelBytes);
      const h1 = v128.load(w0 + 1 * panelBytes, 16);
      c10 = f32x4.relaxed_madd(a, unscaled(lowHalves(h0), mask), c10);
      c11 = f32x4.relaxed_madd(a, unscaled(highHalves(h0), mask), c11);
      c12 = f32x4.relaxed_madd(a, unscaled(lowHalves(h1), mask), c12);
      c13 = f32x4.relaxed_madd(a, unscaled(highHalves(h1), mask), c13);
    }
    {
      const h0 = v128.load(w0 + 2 * panelBytes);
      const h1 = v128.load(w0 + 2 * panelBytes, 16);
      c20 = f32x4.relaxed_madd(a, unscaled(lowHalves(h0), mask), c20);
      c21 = f32x4.relaxed_madd(a, unscaled(highHalves(h0), mask), c21);
      c22 = f32x4.relaxed_madd(a, unscaled(lowHalves(h1), mask), c22);
      c23 = f32x4.relaxed_madd(a, unscaled(highHalves(h1), mask), c23);
    }
    {
      const h0 = v128.load(w0 + 3 * panelBytes);
      const h1 = v128.load(w0 + 3 * panelBytes, 16);
      c30 = f32x4.relaxed_madd(a, unscaled(lowHalves(h0), mask), c30);
      c31 = f32x4.relaxed_madd(a, unscaled(highHalves(h0), mask), c31);
      c32 = f32x4.relaxed_madd(a, unscaled(lowHalves(h1), mask), c32);
      c33 = f32x4.relaxed_madd(a, unscaled(highHalves(h1), mask), c33);
    }
    {
      const h0 = v128.load(w0 + 4 * panelBytes);
      const h1 = v128.load(w0 + 4 * panelBytes, 16);
      c40 = f32x4.relaxed_madd(a, unscaled(lowHalves(h0), mask), c40);
      c41 = f32x4.relaxed_madd(a, unscaled(highHalves(h0), mask), c41);
      c42 = f32x4.relaxed_madd(a, unscaled(lowHalves(h1), mask), c42);
      c43 = f32x4.relaxed_madd(a, unscaled(highHalves(h1), mask), c43);
    }
    {
      const h0 = v128.load(w0 + 5 * panelBytes);
      const h1 = v128.load(w0 + 5 * panelBytes, 16);
      c50 = f32x4.relaxed_madd(a, unscaled(lowHalves(h0), mask), c50);
      c51 = f32x4.relaxed_madd(a, unscaled(highHalves(h0), mask), c51);
      c52 = f32x4.relaxed_madd(a, unscaled(lowHalves(h1), mask), c52);
      c53 = f32x4.relaxed_madd(a, unscaled(highHalves(h1), mask), c53);
    }
    {
      const h0 = v128.load(w0 + 6 * panelBytes);
      const h1 = v128.load(w0 + 6 * panelBytes, 16);
      c60 = f32x4.relaxed_madd(a, unscaled(lowHalves(h0), mask), c60);
      c61 = f32x4.relaxed_madd(a, unscaled(highHalves(h0), mask), c61);
      c62 = f32x4.relaxed_madd(a, unscaled(lowHalves(h1), mask), c62);
      c63 = f32x4.relaxed_madd(a, unscaled(highHalves(h1), mask), c63);
    }
    {
      const h0 = v128.load(w0 + 7 * panelBytes);
      const h1 = v128.load(w0 + 7 * panelBytes, 16);
      c70 = f32x4.relaxed_madd(a, unscaled(lowHalves(h0), mask), c70);
      c71 = f32x4.relaxed_madd(a, unscaled(highHalves(h0), mask), c71);
      c72 = f32x4.relaxed_madd(a, unscaled(lowHalves(h1), mask), c72);
      c73 = f32x4.relaxed_madd(a, unscaled(highHalves(h1), mask), c73);
    }
    w0 += 32;
  }
  const step: usize = <usize>PANEL << 2;
  const bstep: usize = mode == HEAD ? 0 : step;
  finishScaled(o + 0 * step, bp + 0 * bstep, c00, c01, c02, c03, PANEL, mode, yScale);
  finishScaled(o + 1 * step, bp + 1 * bstep, c10, c11, c12, c13, PANEL, mode, yScale);
  finishScaled(o + 2 * step, bp + 2 * bstep, c20, c21, c22, c23, PANEL, mode, yScale);
  finishScaled(o + 3 * step, bp + 3 * bstep, c30, c31, c32, c33, PANEL, mode, yScale);
  finishScaled(o + 4 * step, bp + 4 * bstep, c40, c41, c42, c43, PANEL, mode, yScale);
  finishScaled(o + 5 * step, bp + 5 * bstep, c50, c51, c52, c53, PANEL, mode, yScale);
  finishScaled(o + 6 * step, bp + 6 * bstep, c60, c61, c62, c63, PANEL, mode, yScale);
  finishScaled(o + 7 * step, bp + 7 * bstep, c70, c71, c72, c73, widthLast, mode, yScale);
}

/**
 * The output head with float16 wte: logits = h · wteᵀ for vocabulary panels [p0, p1) (16
 * rows of wte each), each logit computed as `conv1d_f16` computes a column, plus zero.
 * @param out     (T, V) f32
 * @param h       (T, C) f32
 * @param wte     (ceil(V / 16), C, 16) f16, from `pack_f16` with `transposed`
 * @param scratch as `conv1d_f16`'s
 */
export function logits_f16(
  out: usize,
  h: usize,
  wte: usize,
  T: i32,
  C: i32,
  V: i32,
  p0: i32,
  p1: i32,
  scratch: usize,
): void {
  f16Panels(out, h, wte, 0, T, C, V, p0, p1, scratch, HEAD);
}

/**
 * out[r] = wte[tokens[r]] + wpe[positions[r]] for rows [r0, r1), as `embed`, with wte
 * packed by `pack_f16` (transposed): each feature of the token's column widened exactly
 * (`widen`'s 2^102, as the products read the panels).
 * @param out       (rows, C) f32
 * @param tokens    (rows) i32
 * @param positions (rows) i32
 * @param wte       (ceil(V / 16), C, 16) f16
 * @param wpe       (n_ctx, C) f32
 */
export function embed_f16(
  out: usize,
  tokens: usize,
  positions: usize,
  wte: usize,
  wpe: usize,
  C: i32,
  r0: i32,
  r1: i32,
): void {
  const row = <usize>C << 2;
  const scale = reinterpret<f32>(F16_PANEL[0]);
  for (let r = r0; r < r1; r++) {
    const tok = load<i32>(tokens + (<usize>r << 2));
    const panel = wte + <usize>(tok / PANEL) * <usize>C * (<usize>PANEL << 1);
    const w = panel + (<usize>halfIndex(tok % PANEL) << 1);
    const p = wpe + <usize>load<i32>(positions + (<usize>r << 2)) * row;
    const o = out + <usize>r * row;
    for (let k = 0; k < C; k++) {
      const b = <usize>k << 2;
      store<f32>(o + b, unscaledAt(w + (<usize>k * <usize>PANEL << 1)) * scale + load<f32>(p + b));
    }
  }
}
