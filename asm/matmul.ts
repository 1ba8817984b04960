// Matrix products: GPT-2's Conv1D (a dense layer) and the tied output head.
import { gelu4 } from "./math";
import { hsum, storeLanes } from "./simd";

/**
 * Columns per packed weight panel. A panel holds `C` rows of `PANEL` consecutive output
 * columns, 64 bytes (one cache line) per row, so the inner loop streams weights from one
 * contiguous block. With two rows of inputs at a time that is 8 accumulators and 4 weight
 * vectors, within the 16 vector registers; on the 2-core machine of issue 5 this reached
 * 55 GFLOP/s of a 57 GFLOP/s single-core peak, ahead of 8 columns by 4 or 6 rows and of
 * 12 by 3 (more accumulators spill). The runtime sizes its buffers with the same number
 * (runtime/memory_plan.ts, `PANEL`).
 */
const PANEL: i32 = 16;

/**
 * Repacks a Conv1D weight from the checkpoint's (nx, nf) = (C, OC) row-major layout into
 * panels: `dst[p][k][c] = src[k][p * PANEL + c]`, zero where `p * PANEL + c >= OC`.
 * @param dst (ceil(OC / PANEL), C, PANEL) f32
 * @param src (C, OC) f32
 * @param p0 first panel to write; @param p1 one past the last
 */
export function pack_panels(dst: usize, src: usize, C: i32, OC: i32, p0: i32, p1: i32): void {
  for (let p = p0; p < p1; p++) {
    const col = p * PANEL;
    const width = min(PANEL, OC - col);
    let d = dst + (<usize>p * <usize>C * PANEL << 2);
    if (width == PANEL) {
      // A whole panel: each of its rows is a copy of PANEL floats, four at a time.
      for (let k = 0; k < C; k++) {
        const s = src + ((<usize>k * <usize>OC + <usize>col) << 2);
        for (let c: usize = 0; c < <usize>PANEL << 2; c += 16) v128.store(d + c, v128.load(s + c));
        d += PANEL << 2;
      }
      continue;
    }
    for (let k = 0; k < C; k++) {
      const s = src + ((<usize>k * <usize>OC + <usize>col) << 2);
      for (let c = 0; c < PANEL; c++) {
        store<f32>(d + (<usize>c << 2), c < width ? load<f32>(s + (<usize>c << 2)) : 0);
      }
      d += PANEL << 2;
    }
  }
}

/** What a Conv1D does with each output element y = Σ_k inp·weight + bias. */
const STORE: i32 = 0; // out = y
const GELU: i32 = 1; // out = gelu(y)
const RESIDUAL: i32 = 2; // out = out + y

/**
 * Conv1D as GPT-2 names it: out = inp · weight + bias, for the output columns of panels
 * [p0, p1). Every output element is the sum over k = 0 … C-1 in order (one fused
 * multiply-add per step), then plus the bias, whatever the row blocking or panel range, so
 * results do not depend on how the work is split.
 * @param out    (T, OC) f32
 * @param inp    (T, C)  f32
 * @param weight (ceil(OC / PANEL), C, PANEL) f32, packed by `pack_panels`
 * @param bias   (ceil(OC / PANEL) * PANEL) f32, zero past OC
 */
export function conv1d(
  out: usize,
  inp: usize,
  weight: usize,
  bias: usize,
  T: i32,
  C: i32,
  OC: i32,
  p0: i32,
  p1: i32,
): void {
  conv1dPanels(out, inp, weight, bias, T, C, OC, p0, p1, STORE);
}

/**
 * `conv1d` with GPT-2's GELU applied to each output (`gelu4`): the MLP's first layer
 * and its activation in one pass over the output. Shapes as `conv1d`.
 */
export function conv1d_gelu(
  out: usize,
  inp: usize,
  weight: usize,
  bias: usize,
  T: i32,
  C: i32,
  OC: i32,
  p0: i32,
  p1: i32,
): void {
  conv1dPanels(out, inp, weight, bias, T, C, OC, p0, p1, GELU);
}

/**
 * `conv1d` added onto `out`, the residual stream: out = out + (inp · weight + bias), the
 * same sum in the same order as `conv1d` then `add`. Shapes as `conv1d`; inp must not
 * overlap out.
 */
export function conv1d_residual(
  out: usize,
  inp: usize,
  weight: usize,
  bias: usize,
  T: i32,
  C: i32,
  OC: i32,
  p0: i32,
  p1: i32,
): void {
  conv1dPanels(out, inp, weight, bias, T, C, OC, p0, p1, RESIDUAL);
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
  const panelBytes = <usize>C * PANEL << 2;
  for (let p = p0; p < p1; p++) {
    const col = p * PANEL;
    const width = min(PANEL, OC - col);
    const w = weight + <usize>p * panelBytes;
    const bp = bias + (<usize>col << 2);
    let o = out + (<usize>col << 2);
    let x = inp;
    let t = 0;
    // Two rows at a time: eight accumulators, and each weight vector loaded serves both.
    for (; t + 2 <= T; t += 2) {
      rowPair(o, x, w, bp, rowIn, rowOut, width, mode);
      o += rowOut << 1;
      x += rowIn << 1;
    }
    if (t < T) oneRow(o, x, w, bp, rowIn, width, mode);
  }
}

/** Rows t and t + 1 of one panel: out = finish(x · w + bias). */
// @ts-ignore: decorator
@inline
function rowPair(
  o: usize,
  x: usize,
  w: usize,
  bp: usize,
  rowIn: usize,
  rowOut: usize,
  width: i32,
  mode: i32,
): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c02 = f32x4.splat(0), c03 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0), c12 = f32x4.splat(0), c13 = f32x4.splat(0);
  let wp = w;
  const end = x + rowIn;
  for (let xk = x; xk < end; xk += 4) {
    const w0 = v128.load(wp);
    const w1 = v128.load(wp, 16);
    const w2 = v128.load(wp, 32);
    const w3 = v128.load(wp, 48);
    wp += PANEL << 2;
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
  finish(o, bp, c00, c01, c02, c03, width, mode);
  finish(o + rowOut, bp, c10, c11, c12, c13, width, mode);
}

/** One row of one panel, as `rowPair` computes each of its two. */
// @ts-ignore: decorator
@inline
function oneRow(
  o: usize,
  x: usize,
  w: usize,
  bp: usize,
  rowIn: usize,
  width: i32,
  mode: i32,
): void {
  let c0 = f32x4.splat(0), c1 = f32x4.splat(0), c2 = f32x4.splat(0), c3 = f32x4.splat(0);
  let wp = w;
  const end = x + rowIn;
  for (let xk = x; xk < end; xk += 4) {
    const a = v128.load32_splat(xk);
    c0 = f32x4.relaxed_madd(a, v128.load(wp), c0);
    c1 = f32x4.relaxed_madd(a, v128.load(wp, 16), c1);
    c2 = f32x4.relaxed_madd(a, v128.load(wp, 32), c2);
    c3 = f32x4.relaxed_madd(a, v128.load(wp, 48), c3);
    wp += PANEL << 2;
  }
  finish(o, bp, c0, c1, c2, c3, width, mode);
}

/**
 * Adds the bias `bp` to one row's PANEL sums c0 … c3, applies `mode` and stores the
 * first `width` outputs at `o`.
 */
// @ts-ignore: decorator
@inline
function finish(
  o: usize,
  bp: usize,
  c0: v128,
  c1: v128,
  c2: v128,
  c3: v128,
  width: i32,
  mode: i32,
): void {
  const y0 = f32x4.add(c0, v128.load(bp));
  const y1 = f32x4.add(c1, v128.load(bp, 16));
  const y2 = f32x4.add(c2, v128.load(bp, 32));
  const y3 = f32x4.add(c3, v128.load(bp, 48));
  if (width == PANEL) {
    finishVector(o, y0, mode);
    finishVector(o + 16, y1, mode);
    finishVector(o + 32, y2, mode);
    finishVector(o + 48, y3, mode);
  } else {
    finishLanes(o, y0, width, mode);
    if (width > 4) finishLanes(o + 16, y1, width - 4, mode);
    if (width > 8) finishLanes(o + 32, y2, width - 8, mode);
    if (width > 12) finishLanes(o + 48, y3, width - 12, mode);
  }
}

/** Applies `mode` to the four outputs `y` and stores them at `o`. */
// @ts-ignore: decorator
@inline
function finishVector(o: usize, y: v128, mode: i32): void {
  if (mode == GELU) y = gelu4(y);
  else if (mode == RESIDUAL) y = f32x4.add(v128.load(o), y);
  v128.store(o, y);
}

/** `finishVector` for the first `n` (1 to 4) lanes, lane for lane the same arithmetic. */
// @ts-ignore: decorator
@inline
function finishLanes(o: usize, y: v128, n: i32, mode: i32): void {
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
 * the number of rows T. The chains of up to four rows of h run side by side over one row
 * of wte, so each vector of wte is loaded once for all of them, and wte is read as one
 * stream (on a 2-core VM, reading two or eight rows of wte side by side made one row of
 * h about 1.5 times slower than this). Vocabulary rows go in blocks of `HEAD_BLOCK`,
 * which stay in cache while every group of four rows of h passes over them.
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
