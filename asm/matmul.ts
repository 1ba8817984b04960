// Matrix products: GPT-2's Conv1D (a dense layer) and the tied output head.
import { highHalves, lowHalves, widen } from "./half";
import { gelu4 } from "./math";
import { hsum, storeLanes } from "./simd";

/**
 * Columns per packed weight panel: the unit the runtime sizes packed weights and padded
 * biases by, and splits Conv1D work by. A panel holds its columns for all `C` input
 * features as one contiguous block, so a kernel streams each weight from memory once,
 * front to back.
 *
 * How a panel is laid out depends on C (`stripes`):
 * - C > STRIPE_MAX_C: C rows of 16 floats (64 bytes, one cache line): `[k][c]`.
 * - otherwise: two strips of 8 columns one after the other, each C rows of 8 floats:
 *   `[c / 8][k][c % 8]`. Up to four rows of input (a batch decoding) then read each strip
 *   once for all of them with 8 accumulators (4 rows × 2 vectors), where 16 columns × 4
 *   rows would need 16 and spill. With C = 3072 four rows of input crowd the cache, so
 *   wide inputs keep 16-column rows. From five rows on, the strips go two at a time under
 *   the 2-row kernel.
 */
export const PANEL: i32 = 16;

/** Inputs up to this many features use panels of two 8-column strips. */
const STRIPE_MAX_C: i32 = 1024;

/** Whether panels for C input features are two 8-column strips (see PANEL). */
// @ts-ignore: decorator
@inline
function stripes(C: i32): bool {
  return C <= STRIPE_MAX_C;
}

/**
 * Repacks a Conv1D weight from the checkpoint's (nx, nf) = (C, OC) row-major layout into
 * panels (see PANEL for their two layouts), zero in the columns past OC.
 * @param dst (ceil(OC / PANEL), C, PANEL) f32
 * @param src (C, OC) f32
 * @param p0 first panel to write; @param p1 one past the last
 */
export function pack_panels(dst: usize, src: usize, C: i32, OC: i32, p0: i32, p1: i32): void {
  // A panel is PANEL / W blocks of W columns, each C rows of W floats.
  const W = stripes(C) ? 8 : PANEL;
  const perPanel = PANEL / W;
  for (let s = p0 * perPanel; s < p1 * perPanel; s++) {
    const col = s * W;
    const width = min(W, OC - col);
    let d = dst + (<usize>s * <usize>C * <usize>W << 2);
    const rowBytes = <usize>W << 2;
    for (let k = 0; k < C; k++) {
      const a = src + ((<usize>k * <usize>OC + <usize>col) << 2);
      if (width == W) {
        for (let c: usize = 0; c < rowBytes; c += 16) v128.store(d + c, v128.load(a + c));
      } else {
        for (let c = 0; c < W; c++) {
          store<f32>(d + (<usize>c << 2), c < width ? load<f32>(a + (<usize>c << 2)) : 0);
        }
      }
      d += rowBytes;
    }
  }
}

/**
 * What a Conv1D does with each output element y = Σ_k inp·weight + bias: the `mode` of
 * `conv1d`, `conv1d_f16` and `conv1d_q8`, exported for the runtime.
 */
export const STORE: i32 = 0; // out = y
export const GELU: i32 = 1; // out = gelu(y), GPT-2's tanh GELU (`gelu4`)
export const RESIDUAL: i32 = 2; // out = out + y, the residual stream; inp must not overlap out
/** The output head over packed wte (asm/matmul_f16.ts, asm/matmul_q8.ts): bias `ZEROS`, a store. */
export const HEAD: i32 = 3;

/** The head's bias: a panel's worth of zeros. */
export const ZEROS: StaticArray<f32> = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];

/**
 * Conv1D as GPT-2 names it: out = mode(inp · weight + bias), for the output columns of
 * panels [p0, p1). Every output element is the sum over k = 0 … C-1 in order (one fused
 * multiply-add per step), then plus the bias, whatever the row blocking or panel range, so
 * results do not depend on how the work is split; GELU and RESIDUAL give, bit for bit,
 * STORE followed by `gelu` or an add.
 * @param out    (T, OC) f32
 * @param inp    (T, C)  f32
 * @param weight (ceil(OC / PANEL), C, PANEL) f32, packed by `pack_panels`
 * @param bias   (ceil(OC / PANEL) * PANEL) f32, zero past OC
 * @param mode   STORE, GELU or RESIDUAL
 */
export function conv1d(
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
): void {
  // The mode is tested once per call: each branch is the body inlined with its mode a
  // constant, so the inner loops test nothing.
  if (mode == GELU) conv1dPanels(out, inp, weight, bias, T, C, OC, p0, p1, GELU);
  else if (mode == RESIDUAL) conv1dPanels(out, inp, weight, bias, T, C, OC, p0, p1, RESIDUAL);
  else conv1dPanels(out, inp, weight, bias, T, C, OC, p0, p1, STORE);
}

// @ts-ignore: decorator
@inline
function conv1dPanels(
  out: usize,
  inp: usize,
  weight: usize,
  bias: usize,
  T: i32,
  C: i32,
  OC: i32,
  p0: i32,
  p1: i32,
  mode: i32,
): void {
  const rowIn = <usize>C << 2;
  const rowOut = <usize>OC << 2;
  if (stripes(C) && T <= 4) {
    // Up to four rows (a batch decoding): each strip once for all of them. One row: eight
    // strips at a time, so that eight weight streams are in flight.
    const stripBytes = <usize>C * 8 << 2;
    let s = p0 * 2;
    for (; T == 1 && s + 8 <= p1 * 2 && s * 8 + 56 < OC; s += 8) {
      const col = s * 8;
      const w = weight + <usize>s * stripBytes;
      const o = out + (<usize>col << 2);
      stripRow8(o, inp, w, stripBytes, bias + (<usize>col << 2), rowIn, min(8, OC - col - 56), mode);
    }
    for (; s < p1 * 2; s++) {
      const col = s * 8;
      const width = min(8, OC - col);
      if (width <= 0) break;
      const w = weight + <usize>s * stripBytes;
      const bp = bias + (<usize>col << 2);
      const o = out + (<usize>col << 2);
      const z = f32x4.splat(0);
      if (T == 4) stripRows(o, inp, w, bp, rowIn, rowOut, width, mode, 4, F32_WEIGHTS, z, z);
      else if (T == 3) stripRows(o, inp, w, bp, rowIn, rowOut, width, mode, 3, F32_WEIGHTS, z, z);
      else if (T == 2) stripRows(o, inp, w, bp, rowIn, rowOut, width, mode, 2, F32_WEIGHTS, z, z);
      else stripRows(o, inp, w, bp, rowIn, rowOut, width, mode, 1, F32_WEIGHTS, z, z);
    }
    return;
  }
  // Otherwise two rows at a time over all 16 columns of a panel: eight accumulators, and
  // each weight vector loaded serves both rows. Columns 8–15 of row k lie 32 bytes after
  // columns 0–7 in a 16-column panel, a strip further on in a striped one.
  const high: usize = stripes(C) ? <usize>C * 8 << 2 : 32;
  const step: usize = stripes(C) ? 8 << 2 : PANEL << 2;
  const panelBytes = <usize>C * PANEL << 2;
  let p = p0;
  for (; T == 1 && p + 8 <= p1; p += 8) {
    // One row over 16-column rows: eight panels at a time, as for strips above.
    const col = p * PANEL;
    const w = weight + <usize>p * panelBytes;
    const width = min(PANEL, OC - col - 7 * PANEL);
    panelRow8(out + (<usize>col << 2), inp, w, panelBytes, bias + (<usize>col << 2), rowIn, width, mode);
  }
  for (; p < p1; p++) {
    const col = p * PANEL;
    const width = min(PANEL, OC - col);
    const w = weight + <usize>p * panelBytes;
    const bp = bias + (<usize>col << 2);
    let o = out + (<usize>col << 2);
    let x = inp;
    let t = 0;
    for (; t + 2 <= T; t += 2) {
      rowPair(o, x, w, w + high, step, bp, rowIn, rowOut, width, mode);
      o += rowOut << 1;
      x += rowIn << 1;
    }
    if (t < T) oneRow(o, x, w, w + high, step, bp, rowIn, width, mode);
  }
}

/**
 * One row of eight neighbouring 8-column strips (each `stripBytes` after the one before,
 * outputs 8 columns on; only the last may be narrower), feature by feature in turn, so that
 * eight weight streams are in flight: each column's sums are `stripRows`'s, in the same
 * order. Block i is strip i.
 */
// @ts-ignore: decorator
@inline
function stripRow8(
  o: usize,
  x: usize,
  w: usize,
  stripBytes: usize,
  bp: usize,
  rowIn: usize,
  widthLast: i32,
  mode: i32,
): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  let c40 = f32x4.splat(0), c41 = f32x4.splat(0);
  let c50 = f32x4.splat(0), c51 = f32x4.splat(0);
  let c60 = f32x4.splat(0), c61 = f32x4.splat(0);
  let c70 = f32x4.splat(0), c71 = f32x4.splat(0);
  let wp = w;
  const end = x + rowIn;
  for (let xk = x; xk < end; xk += 4) {
    const a = v128.load32_splat(xk);
    c00 = f32x4.relaxed_madd(a, v128.load(wp + 0 * stripBytes), c00);
    c01 = f32x4.relaxed_madd(a, v128.load(wp + 0 * stripBytes, 16), c01);
    c10 = f32x4.relaxed_madd(a, v128.load(wp + 1 * stripBytes), c10);
    c11 = f32x4.relaxed_madd(a, v128.load(wp + 1 * stripBytes, 16), c11);
    c20 = f32x4.relaxed_madd(a, v128.load(wp + 2 * stripBytes), c20);
    c21 = f32x4.relaxed_madd(a, v128.load(wp + 2 * stripBytes, 16), c21);
    c30 = f32x4.relaxed_madd(a, v128.load(wp + 3 * stripBytes), c30);
    c31 = f32x4.relaxed_madd(a, v128.load(wp + 3 * stripBytes, 16), c31);
    c40 = f32x4.relaxed_madd(a, v128.load(wp + 4 * stripBytes), c40);
    c41 = f32x4.relaxed_madd(a, v128.load(wp + 4 * stripBytes, 16), c41);
    c50 = f32x4.relaxed_madd(a, v128.load(wp + 5 * stripBytes), c50);
    c51 = f32x4.relaxed_madd(a, v128.load(wp + 5 * stripBytes, 16), c51);
    c60 = f32x4.relaxed_madd(a, v128.load(wp + 6 * stripBytes), c60);
    c61 = f32x4.relaxed_madd(a, v128.load(wp + 6 * stripBytes, 16), c61);
    c70 = f32x4.relaxed_madd(a, v128.load(wp + 7 * stripBytes), c70);
    c71 = f32x4.relaxed_madd(a, v128.load(wp + 7 * stripBytes, 16), c71);
    wp += 8 << 2;
  }
  finish(o + 0 * 32, bp + 0 * 32, c00, c01, 8, mode);
  finish(o + 1 * 32, bp + 1 * 32, c10, c11, 8, mode);
  finish(o + 2 * 32, bp + 2 * 32, c20, c21, 8, mode);
  finish(o + 3 * 32, bp + 3 * 32, c30, c31, 8, mode);
  finish(o + 4 * 32, bp + 4 * 32, c40, c41, 8, mode);
  finish(o + 5 * 32, bp + 5 * 32, c50, c51, 8, mode);
  finish(o + 6 * 32, bp + 6 * 32, c60, c61, 8, mode);
  finish(o + 7 * 32, bp + 7 * 32, c70, c71, widthLast, mode);
}

/**
 * One row of eight neighbouring 16-column panels of C > STRIPE_MAX_C rows (each
 * `panelBytes` after the one before, outputs 16 columns on; only the last may be narrower),
 * feature by feature in turn: each column's sums are `oneRow`'s, in the same order. Block
 * i is panel i.
 */
// @ts-ignore: decorator
@inline
function panelRow8(
  o: usize,
  x: usize,
  w: usize,
  panelBytes: usize,
  bp: usize,
  rowIn: usize,
  widthLast: i32,
  mode: i32,
): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c02 = f32x4.splat(0), c03 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0), c12 = f32x4.splat(0), c13 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c22 = f32x4.splat(0), c23 = f32x4.splat(0);
  let c30 = f32x4.splat(0), c31 = f32x4.splat(0), c32 = f32x4.splat(0), c33 = f32x4.splat(0);
  let c40 = f32x4.splat(0), c41 = f32x4.splat(0), c42 = f32x4.splat(0), c43 = f32x4.splat(0);
  let c50 = f32x4.splat(0), c51 = f32x4.splat(0), c52 = f32x4.splat(0), c53 = f32x4.splat(0);
  let c60 = f32x4.splat(0), c61 = f32x4.splat(0), c62 = f32x4.splat(0), c63 = f32x4.splat(0);
  let c70 = f32x4.splat(0), c71 = f32x4.splat(0), c72 = f32x4.splat(0), c73 = f32x4.splat(0);
  let wp = w;
  const end = x + rowIn;
  for (let xk = x; xk < end; xk += 4) {
    const a = v128.load32_splat(xk);
    {
      const q = wp + 0 * panelBytes;
      c00 = f32x4.relaxed_madd(a, v128.load(q, 0), c00);
      c01 = f32x4.relaxed_madd(a, v128.load(q, 16), c01);
      c02 = f32x4.relaxed_madd(a, v128.load(q, 32), c02);
      c03 = f32x4.relaxed_madd(a, v128.load(q, 48), c03);
    }
    {
      const q = wp + 1 * panelBytes;
      c10 = f32x4.relaxed_madd(a, v128.load(q, 0), c10);
      c11 = f32x4.relaxed_madd(a, v128.load(q, 16), c11);
      c12 = f32x4.relaxed_madd(a, v128.load(q, 32), c12);
      c13 = f32x4.relaxed_madd(a, v128.load(q, 48), c13);
    }
    {
      const q = wp + 2 * panelBytes;
      c20 = f32x4.relaxed_madd(a, v128.load(q, 0), c20);
      c21 = f32x4.relaxed_madd(a, v128.load(q, 16), c21);
      c22 = f32x4.relaxed_madd(a, v128.load(q, 32), c22);
      c23 = f32x4.relaxed_madd(a, v128.load(q, 48), c23);
    }
    {
      const q = wp + 3 * panelBytes;
      c30 = f32x4.relaxed_madd(a, v128.load(q, 0), c30);
      c31 = f32x4.relaxed_madd(a, v128.load(q, 16), c31);
      c32 = f32x4.relaxed_madd(a, v128.load(q, 32), c32);
      c33 = f32x4.relaxed_madd(a, v128.load(q, 48), c33);
    }
    {
      const q = wp + 4 * panelBytes;
      c40 = f32x4.relaxed_madd(a, v128.load(q, 0), c40);
      c41 = f32x4.relaxed_madd(a, v128.load(q, 16), c41);
      c42 = f32x4.relaxed_madd(a, v128.load(q, 32), c42);
      c43 = f32x4.relaxed_madd(a, v128.load(q, 48), c43);
    }
    {
      const q = wp + 5 * panelBytes;
      c50 = f32x4.relaxed_madd(a, v128.load(q, 0), c50);
      c51 = f32x4.relaxed_madd(a, v128.load(q, 16), c51);
      c52 = f32x4.relaxed_madd(a, v128.load(q, 32), c52);
      c53 = f32x4.relaxed_madd(a, v128.load(q, 48), c53);
    }
    {
      const q = wp + 6 * panelBytes;
      c60 = f32x4.relaxed_madd(a, v128.load(q, 0), c60);
      c61 = f32x4.relaxed_madd(a, v128.load(q, 16), c61);
      c62 = f32x4.relaxed_madd(a, v128.load(q, 32), c62);
      c63 = f32x4.relaxed_madd(a, v128.load(q, 48), c63);
    }
    {
      const q = wp + 7 * panelBytes;
      c70 = f32x4.relaxed_madd(a, v128.load(q, 0), c70);
      c71 = f32x4.relaxed_madd(a, v128.load(q, 16), c71);
      c72 = f32x4.relaxed_madd(a, v128.load(q, 32), c72);
      c73 = f32x4.relaxed_madd(a, v128.load(q, 48), c73);
    }
    wp += PANEL << 2;
  }
  finish16(o + 0 * 64, bp + 0 * 64, c00, c01, c02, c03, PANEL, mode);
  finish16(o + 1 * 64, bp + 1 * 64, c10, c11, c12, c13, PANEL, mode);
  finish16(o + 2 * 64, bp + 2 * 64, c20, c21, c22, c23, PANEL, mode);
  finish16(o + 3 * 64, bp + 3 * 64, c30, c31, c32, c33, PANEL, mode);
  finish16(o + 4 * 64, bp + 4 * 64, c40, c41, c42, c43, PANEL, mode);
  finish16(o + 5 * 64, bp + 5 * 64, c50, c51, c52, c53, PANEL, mode);
  finish16(o + 6 * 64, bp + 6 * 64, c60, c61, c62, c63, PANEL, mode);
  finish16(o + 7 * 64, bp + 7 * 64, c70, c71, c72, c73, widthLast, mode);
}

/** How a strip's weights are stored for `stripRows`: float32, or float16 (asm/half.ts). */
export const F32_WEIGHTS: i32 = 0;
export const F16_WEIGHTS: i32 = 1;

/**
 * Rows 0 … n - 1 (n = 1 to 4, a constant) of one 8-column strip at w, whose first
 * `width` columns are real: out = finish(x · w + bias). Row k of the strip lies at
 * w + 32k: 8 floats (`weights` F32_WEIGHTS, a constant), or 8 halves in the first 16
 * bytes, widened exactly with `mask` and `scale` (F16_WEIGHTS, a float16 panel's half),
 * so that both compute the same sums in the same order.
 */
// @ts-ignore: decorator
@inline
export function stripRows(
  o: usize,
  x: usize,
  w: usize,
  bp: usize,
  rowIn: usize,
  rowOut: usize,
  width: i32,
  mode: i32,
  n: i32,
  weights: i32,
  mask: v128,
  scale: v128,
): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  let wp = w;
  const end = x + rowIn;
  let xk = x;
  // Float32: two features a step (each sum still adds k, then k + 1), which keeps more
  // loads in flight than one. Float16: one a step, as the loop below (two were 1.3× slower,
  // the widening's registers spilling).
  for (; weights == F32_WEIGHTS && xk + 8 <= end; xk += 8) {
    const r0 = v128.load(wp), r2 = v128.load(wp, 32);
    const r1 = weights == F16_WEIGHTS ? r0 : v128.load(wp, 16);
    const r3 = weights == F16_WEIGHTS ? r2 : v128.load(wp, 48);
    const w0 = stripLow(r0, weights, mask, scale), w1 = stripHigh(r1, weights, mask, scale);
    const w2 = stripLow(r2, weights, mask, scale), w3 = stripHigh(r3, weights, mask, scale);
    wp += 16 << 2;
    let a = v128.load32_splat(xk);
    c00 = f32x4.relaxed_madd(a, w0, c00);
    c01 = f32x4.relaxed_madd(a, w1, c01);
    a = v128.load32_splat(xk, 4);
    c00 = f32x4.relaxed_madd(a, w2, c00);
    c01 = f32x4.relaxed_madd(a, w3, c01);
    if (n > 1) {
      a = v128.load32_splat(xk + rowIn);
      c10 = f32x4.relaxed_madd(a, w0, c10);
      c11 = f32x4.relaxed_madd(a, w1, c11);
      a = v128.load32_splat(xk + rowIn, 4);
      c10 = f32x4.relaxed_madd(a, w2, c10);
      c11 = f32x4.relaxed_madd(a, w3, c11);
    }
    if (n > 2) {
      a = v128.load32_splat(xk + (rowIn << 1));
      c20 = f32x4.relaxed_madd(a, w0, c20);
      c21 = f32x4.relaxed_madd(a, w1, c21);
      a = v128.load32_splat(xk + (rowIn << 1), 4);
      c20 = f32x4.relaxed_madd(a, w2, c20);
      c21 = f32x4.relaxed_madd(a, w3, c21);
    }
    if (n > 3) {
      a = v128.load32_splat(xk + rowIn * 3);
      c30 = f32x4.relaxed_madd(a, w0, c30);
      c31 = f32x4.relaxed_madd(a, w1, c31);
      a = v128.load32_splat(xk + rowIn * 3, 4);
      c30 = f32x4.relaxed_madd(a, w2, c30);
      c31 = f32x4.relaxed_madd(a, w3, c31);
    }
  }
  // The last feature when C is odd, or every feature of float16 weights.
  for (; xk < end; xk += 4) {
    const r0 = v128.load(wp);
    const r1 = weights == F16_WEIGHTS ? r0 : v128.load(wp, 16);
    const w0 = stripLow(r0, weights, mask, scale), w1 = stripHigh(r1, weights, mask, scale);
    wp += 8 << 2;
    const a0 = v128.load32_splat(xk);
    c00 = f32x4.relaxed_madd(a0, w0, c00);
    c01 = f32x4.relaxed_madd(a0, w1, c01);
    if (n > 1) {
      const a1 = v128.load32_splat(xk + rowIn);
      c10 = f32x4.relaxed_madd(a1, w0, c10);
      c11 = f32x4.relaxed_madd(a1, w1, c11);
    }
    if (n > 2) {
      const a2 = v128.load32_splat(xk + (rowIn << 1));
      c20 = f32x4.relaxed_madd(a2, w0, c20);
      c21 = f32x4.relaxed_madd(a2, w1, c21);
    }
    if (n > 3) {
      const a3 = v128.load32_splat(xk + rowIn * 3);
      c30 = f32x4.relaxed_madd(a3, w0, c30);
      c31 = f32x4.relaxed_madd(a3, w1, c31);
    }
  }
  finishRows(o, bp, rowOut, width, mode, n, c00, c01, c10, c11, c20, c21, c30, c31);
}

/** `finish` of rows 0 … n − 1 (a constant, 1 to 4), `rowOut` bytes apart: row r's sums cr0, cr1. */
// @ts-ignore: decorator
@inline
export function finishRows(
  o: usize,
  bp: usize,
  rowOut: usize,
  width: i32,
  mode: i32,
  n: i32,
  c00: v128,
  c01: v128,
  c10: v128,
  c11: v128,
  c20: v128,
  c21: v128,
  c30: v128,
  c31: v128,
): void {
  finish(o, bp, c00, c01, width, mode);
  if (n > 1) finish(o + rowOut, bp, c10, c11, width, mode);
  if (n > 2) finish(o + (rowOut << 1), bp, c20, c21, width, mode);
  if (n > 3) finish(o + rowOut * 3, bp, c30, c31, width, mode);
}

/** Columns 0–3 of a strip row from its first vector r: the floats, or the low halves widened. */
// @ts-ignore: decorator
@inline
function stripLow(r: v128, weights: i32, mask: v128, scale: v128): v128 {
  return weights == F16_WEIGHTS ? widen(lowHalves(r), mask, scale) : r;
}

/** Columns 4–7 of a strip row from its second vector r (for float16, the same as the first). */
// @ts-ignore: decorator
@inline
function stripHigh(r: v128, weights: i32, mask: v128, scale: v128): v128 {
  return weights == F16_WEIGHTS ? widen(highHalves(r), mask, scale) : r;
}

/**
 * Rows t and t + 1 of one panel: out = finish(x · w + bias), where row k of the panel's
 * columns 0–7 is at w + k·step and of its columns 8–15 at high + k·step.
 */
// @ts-ignore: decorator
@inline
export function rowPair(
  o: usize,
  x: usize,
  w: usize,
  high: usize,
  step: usize,
  bp: usize,
  rowIn: usize,
  rowOut: usize,
  width: i32,
  mode: i32,
): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c02 = f32x4.splat(0), c03 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0), c12 = f32x4.splat(0), c13 = f32x4.splat(0);
  let wp = w, wq = high;
  const end = x + rowIn;
  for (let xk = x; xk < end; xk += 4) {
    const w0 = v128.load(wp);
    const w1 = v128.load(wp, 16);
    const w2 = v128.load(wq);
    const w3 = v128.load(wq, 16);
    wp += step;
    wq += step;
    const a0 = v128.load32_splat(xk);
    c00 = f32x4.relaxed_madd(a0, w0, c00);
    c01 = f32x4.relaxed_madd(a0, w1, c01);
    c02 = f32x4.relaxed_madd(a0, w2, c02);
    c03 = f32x4.relaxed_madd(a0, w3, c03);
    const a1 = v128.load32_splat(xk + rowIn);
    c10 = f32x4.relaxed_madd(a1, w0, c10);
    c11 = f32x4.relaxed_madd(a1, w1, c11);
    c12 = f32x4.relaxed_madd(a1, w2, c12);
    c13 = f32x4.relaxed_madd(a1, w3, c13);
  }
  finish16(o, bp, c00, c01, c02, c03, width, mode);
  finish16(o + rowOut, bp, c10, c11, c12, c13, width, mode);
}

/** One row of one panel, as `rowPair` computes each of its two (same w, high, step). */
// @ts-ignore: decorator
@inline
export function oneRow(
  o: usize,
  x: usize,
  w: usize,
  high: usize,
  step: usize,
  bp: usize,
  rowIn: usize,
  width: i32,
  mode: i32,
): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
  let wp = w, wq = high;
  const end = x + rowIn;
  for (let xk = x; xk < end; xk += 4) {
    const a = v128.load32_splat(xk);
    c0 = f32x4.relaxed_madd(a, v128.load(wp), c0);
    c1 = f32x4.relaxed_madd(a, v128.load(wp, 16), c1);
    c2 = f32x4.relaxed_madd(a, v128.load(wq), c2);
    c3 = f32x4.relaxed_madd(a, v128.load(wq, 16), c3);
    wp += step;
    wq += step;
  }
  finish16(o, bp, c0, c1, c2, c3, width, mode);
}

/**
 * Adds the bias `bp` to one row's sums c0, c1 of 8 columns, applies `mode` and stores the
 * first `width` outputs at `o` (width >= 1; all 8 when it is larger).
 */
// @ts-ignore: decorator
@inline
export function finish(o: usize, bp: usize, c0: v128, c1: v128, width: i32, mode: i32): void {
  const y0 = f32x4.add(c0, v128.load(bp));
  const y1 = f32x4.add(c1, v128.load(bp, 16));
  if (width >= 8) {
    finishVector(o, y0, mode);
    finishVector(o + 16, y1, mode);
  } else {
    finishLanes(o, y0, width, mode);
    if (width > 4) finishLanes(o + 16, y1, width - 4, mode);
  }
}

/** `finish` for the 16 columns of a panel: sums c0 … c3. */
// @ts-ignore: decorator
@inline
export function finish16(
  o: usize,
  bp: usize,
  c0: v128,
  c1: v128,
  c2: v128,
  c3: v128,
  width: i32,
  mode: i32,
): void {
  finish(o, bp, c0, c1, width, mode);
  if (width > 8) finish(o + 32, bp + 32, c2, c3, width - 8, mode);
}

/** Applies `mode` to the four outputs `y` and stores them at `o`. */
// @ts-ignore: decorator
@inline
export function finishVector(o: usize, y: v128, mode: i32): void {
  if (mode == GELU) y = gelu4(y);
  else if (mode == RESIDUAL) y = f32x4.add(v128.load(o), y);
  v128.store(o, y);
}

/** `finishVector` for the first `n` (1 to 4) lanes, lane for lane the same arithmetic. */
// @ts-ignore: decorator
@inline
export function finishLanes(o: usize, y: v128, n: i32, mode: i32): void {
  if (n >= 4) {
    finishVector(o, y, mode);
    return;
  }
  if (mode == GELU) {
    y = gelu4(y);
  } else if (mode == RESIDUAL) {
    let r = f32x4.splat(load<f32>(o));
    if (n > 1) r = f32x4.replace_lane(r, 1, load<f32>(o, 4));
    if (n > 2) r = f32x4.replace_lane(r, 2, load<f32>(o, 8));
    y = f32x4.add(r, y);
  }
  storeLanes(o, y, n);
}

/**
 * The output head with GPT-2's tied weights: logits = h · wteᵀ, for vocabulary rows
 * [v0, v1). Each logit reads its row of wte front to back, four features a vector, the
 * even vectors into one accumulator and the odd ones into another (two chains of fused
 * multiply-adds), adds the two, then the lanes as (l0 + l1) + (l2 + l3), then the
 * remaining features in order. Every logit is computed the same way whatever the split or
 * the number of rows T. For T > 1 the chains of up to four rows of h run side by side over
 * one row of wte, so each vector of wte is loaded once for all of them, and wte is read as
 * one stream; vocabulary rows go in blocks of `HEAD_BLOCK`, which stay in cache while
 * every group of four rows of h passes over them. For T = 1 eight rows of wte are read
 * side by side, which keeps more loads in flight than one stream.
 * @param out (T, V) f32
 * @param h   (T, C) f32
 * @param wte (V, C) f32
 */
export function logits(
  out: usize,
  h: usize,
  wte: usize,
  T: i32,
  C: i32,
  V: i32,
  v0: i32,
  v1: i32,
): void {
  const row = <usize>C << 2;
  const outRow = <usize>V << 2;
  if (T == 1) {
    // One row of h (decoding): eight rows of wte at a time, so that eight streams are in
    // flight; the rows left over go one at a time.
    let v = v0;
    for (; v + 8 <= v1; v += 8) headWte(out, h, wte + <usize>v * row, C, v);
    for (; v < v1; v++) headRows(out, h, wte + <usize>v * row, C, outRow, v, 1);
    return;
  }
  for (let b0 = v0; b0 < v1; b0 += HEAD_BLOCK) {
    const b1 = min(v1, b0 + HEAD_BLOCK);
    for (let t = 0; t < T; t += 4) {
      const n = min(4, T - t);
      const x = h + <usize>t * row;
      const o = out + <usize>t * outRow;
      if (n == 4) {
        for (let v = b0; v < b1; v++) headRows(o, x, wte + <usize>v * row, C, outRow, v, 4);
      } else if (n == 3) {
        for (let v = b0; v < b1; v++) headRows(o, x, wte + <usize>v * row, C, outRow, v, 3);
      } else if (n == 2) {
        for (let v = b0; v < b1; v++) headRows(o, x, wte + <usize>v * row, C, outRow, v, 2);
      } else {
        for (let v = b0; v < b1; v++) headRows(o, x, wte + <usize>v * row, C, outRow, v, 1);
      }
    }
  }
}

/** Rows of wte per block of `logits`: 64 rows of GPT-2 small are 192 KiB. */
const HEAD_BLOCK: i32 = 64;

/** Finishes one logit from its accumulators `a`, `b` and stores it at o + v. */
// @ts-ignore: decorator
@inline
function headStore(o: usize, x: usize, w: usize, C: i32, v: i32, a: v128, b: v128): void {
  let s = hsum(f32x4.add(a, b));
  for (let k = <usize>(C & ~3) << 2; k < (<usize>C << 2); k += 4) {
    s += load<f32>(x + k) * load<f32>(w + k);
  }
  store<f32>(o + (<usize>v << 2), s);
}

/** Rows 0 … n - 1 (n = 1 to 4, a constant) of x (stride C) against the wte row at w. */
// @ts-ignore: decorator
@inline
function headRows(o: usize, x: usize, w: usize, C: i32, outRow: usize, v: i32, n: i32): void {
  const row = <usize>C << 2;
  const x1 = x + row, x2 = x + (row << 1), x3 = x + row * 3;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  const vecEnd = <usize>(C & ~3) << 2;
  const pairEnd = <usize>(C & ~7) << 2;
  let k: usize = 0;
  for (; k < pairEnd; k += 32) {
    const u = v128.load(w + k);
    const z = v128.load(w + k, 16);
    a0 = f32x4.relaxed_madd(v128.load(x + k), u, a0);
    b0 = f32x4.relaxed_madd(v128.load(x + k, 16), z, b0);
    if (n > 1) {
      a1 = f32x4.relaxed_madd(v128.load(x1 + k), u, a1);
      b1 = f32x4.relaxed_madd(v128.load(x1 + k, 16), z, b1);
    }
    if (n > 2) {
      a2 = f32x4.relaxed_madd(v128.load(x2 + k), u, a2);
      b2 = f32x4.relaxed_madd(v128.load(x2 + k, 16), z, b2);
    }
    if (n > 3) {
      a3 = f32x4.relaxed_madd(v128.load(x3 + k), u, a3);
      b3 = f32x4.relaxed_madd(v128.load(x3 + k, 16), z, b3);
    }
  }
  if (k < vecEnd) {
    const u = v128.load(w + k);
    a0 = f32x4.relaxed_madd(v128.load(x + k), u, a0);
    if (n > 1) a1 = f32x4.relaxed_madd(v128.load(x1 + k), u, a1);
    if (n > 2) a2 = f32x4.relaxed_madd(v128.load(x2 + k), u, a2);
    if (n > 3) a3 = f32x4.relaxed_madd(v128.load(x3 + k), u, a3);
  }
  headStore(o, x, w, C, v, a0, b0);
  if (n > 1) headStore(o + outRow, x1, w, C, v, a1, b1);
  if (n > 2) headStore(o + (outRow << 1), x2, w, C, v, a2, b2);
  if (n > 3) headStore(o + outRow * 3, x3, w, C, v, a3, b3);
}

/**
 * One row x of h against eight rows of wte from w, logits v on: each logit's sums are
 * `headRows`'s for one row, in the same order.
 */
// @ts-ignore: decorator
@inline
function headWte(o: usize, x: usize, w: usize, C: i32, v: i32): void {
  const row = <usize>C << 2;
  const w0 = w, w1 = w + row, w2 = w + (row << 1), w3 = w + row * 3;
  const w4 = w + (row << 2), w5 = w + row * 5, w6 = w + row * 6, w7 = w + row * 7;
  let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
  let a4 = f32x4.splat(0), a5 = f32x4.splat(0), a6 = f32x4.splat(0), a7 = f32x4.splat(0);
  let b0 = f32x4.splat(0), b1 = f32x4.splat(0), b2 = f32x4.splat(0), b3 = f32x4.splat(0);
  let b4 = f32x4.splat(0), b5 = f32x4.splat(0), b6 = f32x4.splat(0), b7 = f32x4.splat(0);
  const vecEnd = <usize>(C & ~3) << 2;
  const pairEnd = <usize>(C & ~7) << 2;
  let k: usize = 0;
  for (; k < pairEnd; k += 32) {
    const p = v128.load(x + k);
    a0 = f32x4.relaxed_madd(p, v128.load(w0 + k), a0);
    a1 = f32x4.relaxed_madd(p, v128.load(w1 + k), a1);
    a2 = f32x4.relaxed_madd(p, v128.load(w2 + k), a2);
    a3 = f32x4.relaxed_madd(p, v128.load(w3 + k), a3);
    a4 = f32x4.relaxed_madd(p, v128.load(w4 + k), a4);
    a5 = f32x4.relaxed_madd(p, v128.load(w5 + k), a5);
    a6 = f32x4.relaxed_madd(p, v128.load(w6 + k), a6);
    a7 = f32x4.relaxed_madd(p, v128.load(w7 + k), a7);
    const q = v128.load(x + k, 16);
    b0 = f32x4.relaxed_madd(q, v128.load(w0 + k, 16), b0);
    b1 = f32x4.relaxed_madd(q, v128.load(w1 + k, 16), b1);
    b2 = f32x4.relaxed_madd(q, v128.load(w2 + k, 16), b2);
    b3 = f32x4.relaxed_madd(q, v128.load(w3 + k, 16), b3);
    b4 = f32x4.relaxed_madd(q, v128.load(w4 + k, 16), b4);
    b5 = f32x4.relaxed_madd(q, v128.load(w5 + k, 16), b5);
    b6 = f32x4.relaxed_madd(q, v128.load(w6 + k, 16), b6);
    b7 = f32x4.relaxed_madd(q, v128.load(w7 + k, 16), b7);
  }
  if (k < vecEnd) {
    const p = v128.load(x + k);
    a0 = f32x4.relaxed_madd(p, v128.load(w0 + k), a0);
    a1 = f32x4.relaxed_madd(p, v128.load(w1 + k), a1);
    a2 = f32x4.relaxed_madd(p, v128.load(w2 + k), a2);
    a3 = f32x4.relaxed_madd(p, v128.load(w3 + k), a3);
    a4 = f32x4.relaxed_madd(p, v128.load(w4 + k), a4);
    a5 = f32x4.relaxed_madd(p, v128.load(w5 + k), a5);
    a6 = f32x4.relaxed_madd(p, v128.load(w6 + k), a6);
    a7 = f32x4.relaxed_madd(p, v128.load(w7 + k), a7);
  }
  headStore(o, x, w0, C, v, a0, b0);
  headStore(o, x, w1, C, v + 1, a1, b1);
  headStore(o, x, w2, C, v + 2, a2, b2);
  headStore(o, x, w3, C, v + 3, a3, b3);
  headStore(o, x, w4, C, v + 4, a4, b4);
  headStore(o, x, w5, C, v + 5, a5, b5);
  headStore(o, x, w6, C, v + 6, a6, b6);
  headStore(o, x, w7, C, v + 7, a7, b7);
}
