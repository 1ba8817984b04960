// Int8 matrix products: Conv1D and the output head with weights quantised in blocks of 32
// input features (after ggml's q8_0: one scale per block), activations quantised per block
// at run time, and the products summed as int8 dot products.
import { finish16, finishRows, GELU, HEAD, RESIDUAL, STORE, ZEROS } from "./matmul";

/**
 * The quantisation, chosen so that the relaxed int8 dot products
 * (`i16x8.relaxed_dot_i8x16_i7x16_s`, and `i32x4.relaxed_dot_i8x16_i7x16_add_s` built on
 * it) give the same result on every engine. They multiply the bytes of their first operand,
 * always signed, by those of their second, which an engine may read as signed or unsigned
 * (x86's pmaddubsw reads them unsigned): the two agree only when the second operand's top
 * bit is clear, i.e. when it lies in [0, 127]. Their 16-bit pair sums may also saturate on
 * some engines and wrap on others, which cannot happen when |a| ≤ 127 and b ≤ 127
 * (2 · 127 · 127 < 2¹⁵). So:
 * - weights: q = round(w / d) in [-63, 63] with d = max|w| / 63 over the block, stored as
 *   the byte u = q + 64 in [1, 127] (the second operand);
 * - activations: a = round(x / e) in [-127, 127] with e = max|x| / 127 over the block
 *   (the first operand), stored with e and the block's correction −64 · Σ a, so that
 *   Σ a·q = Σ a·u − 64 · Σ a exactly.
 * Rounding is to nearest, ties to even (`nearest`); a block of zeros has scale 0.
 */
export const QBLOCK: i32 = 32;

/** Output columns (or vocabulary rows) per packed weight panel: the unit of work. */
export const QPANEL: i32 = 16;

/**
 * Bytes of one block of one panel: the 16 columns' f32 scales, then the 32 features in
 * eight quads, each quad 16 columns × 4 consecutive features: byte
 * 64 + (k % 32 / 4) · 64 + c · 4 + k % 4 holds column c, feature k. A quad's 16 bytes for
 * four columns are one operand of the dot product: lane c sums its column's four features.
 */
const PANEL_BLOCK_BYTES: usize = 64 + 8 * 64;

/**
 * Bytes of one block of a quantised activation row: 32 int8 values, the f32 scale e, then
 * the i32 correction −64 · Σ a.
 */
const ROW_BLOCK_BYTES: usize = 40;


/**
 * Quantises rows [r0, r1) of inp to int8 blocks of 32 (see QBLOCK), the features past C
 * of the last block as zeros. Each row is quantised on its own, so any split of the rows
 * gives the same bytes.
 * @param dst (rows, ceil(C / 32), 40 bytes): per block 32 i8, f32 scale, i32 correction
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
    v128.store(qb, i32x4.splat(0));
    v128.store(qb, i32x4.splat(0), 16);
    store<f32>(qb, 0, 32);
    store<i32>(qb, 0, 36);
    return;
  }
  const d: f32 = amax / 127;
  const dv = f32x4.splat(d);
  let sum = i32x4.splat(0);
  for (let i: usize = 0; i < 2; i++) {
    const x = xb + (i << 6);
    const a0 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v128.load(x), dv)));
    const a1 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v128.load(x, 16), dv)));
    const a2 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v128.load(x, 32), dv)));
    const a3 = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(v128.load(x, 48), dv)));
    sum = i32x4.add(sum, i32x4.add(i32x4.add(a0, a1), i32x4.add(a2, a3)));
    const bytes = i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(a0, a1), i16x8.narrow_i32x4_s(a2, a3));
    v128.store(qb + (i << 4), bytes);
  }
  const s = i32x4.extract_lane(sum, 0) + i32x4.extract_lane(sum, 1) +
    i32x4.extract_lane(sum, 2) + i32x4.extract_lane(sum, 3);
  store<f32>(qb, d, 32);
  store<i32>(qb, -64 * s, 36);
}

/** The last block of a row when only n < 32 features remain: the rest are zeros. */
function quantizeTail(qb: usize, xb: usize, n: i32): void {
  let amax: f32 = 0;
  for (let k = 0; k < n; k++) amax = max(amax, abs(load<f32>(xb + (<usize>k << 2))));
  const d: f32 = amax / 127;
  let s = 0;
  for (let k = 0; k < QBLOCK; k++) {
    let a = 0;
    if (k < n && amax != 0) a = <i32>nearest(load<f32>(xb + (<usize>k << 2)) / d);
    store<i8>(qb + <usize>k, <i8>a);
    s += a;
  }
  store<f32>(qb, amax == 0 ? 0 : d, 32);
  store<i32>(qb, -64 * s, 36);
}

/**
 * Quantises a Conv1D weight (C, OC) into panels of 16 columns (see PANEL_BLOCK_BYTES),
 * panels [p0, p1); columns past OC and features past C are zero. With `transposed`, src
 * is (OC, C) instead, the output head's wte (V, C), whose rows become the columns.
 * src may hold the weight from panel `first` on only (0: all of it), so that wte can be
 * packed a chunk of rows at a time; [p0, p1) lie at or after `first`.
 * @param dst (ceil(OC / 16), ceil(C / 32), 576 bytes)
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
        const d: f32 = amax / 63;
        store<f32>(blk + (<usize>c << 2), amax == 0 ? 0 : d);
        for (let k = 0; k < QBLOCK; k++) {
          let q: i32 = 0;
          if (amax != 0 && k < n) {
            q = <i32>nearest(load<f32>(col + <usize>k * kStep) / d);
            q = min(63, max(-63, q));
          }
          store<u8>(blk + 64 + (<usize>(k >> 2) << 6) + (<usize>c << 2) + <usize>(k & 3), q + 64);
        }
      }
    }
  }
}

/**
 * One full block of a (C, OC) weight, 32 rows of 16 columns from `a` (rows `rowBytes`
 * apart), quantised as the scalar loop of `pack_q8` does it, four columns a vector: the
 * same divisions and roundings, so the same bytes. A block of zeros divides 0 by 0, and
 * trunc_sat turns the NaN into 0, so it needs no case of its own.
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
  const k63 = f32x4.splat(63);
  const d0 = f32x4.div(m0, k63), d1 = f32x4.div(m1, k63);
  const d2 = f32x4.div(m2, k63), d3 = f32x4.div(m3, k63);
  v128.store(blk, d0);
  v128.store(blk, d1, 16);
  v128.store(blk, d2, 32);
  v128.store(blk, d3, 48);
  r = a;
  for (let q = 0; q < 8; q++) {
    // Rows 4q … 4q + 3: for each group of four columns, the 4 × 4 bytes of its quad.
    const o = blk + 64 + (<usize>q << 6);
    v128.store(o, quadBytes(r, rowBytes, 0, d0));
    v128.store(o, quadBytes(r, rowBytes, 16, d1), 16);
    v128.store(o, quadBytes(r, rowBytes, 32, d2), 32);
    v128.store(o, quadBytes(r, rowBytes, 48, d3), 48);
    r += rowBytes << 2;
  }
}

/** q + 64 of four columns (at byte `at` of each row) in four rows from r, column-major. */
// @ts-ignore: decorator
@inline
function quadBytes(r: usize, rowBytes: usize, at: usize, d: v128): v128 {
  const x0 = quantizeWeights(v128.load(r + at), d);
  const x1 = quantizeWeights(v128.load(r + rowBytes + at), d);
  const x2 = quantizeWeights(v128.load(r + (rowBytes << 1) + at), d);
  const x3 = quantizeWeights(v128.load(r + rowBytes * 3 + at), d);
  // Row-major bytes [row][column] → [column][row]: each column's four features together.
  const rows = i8x16.narrow_i16x8_s(i16x8.narrow_i32x4_s(x0, x1), i16x8.narrow_i32x4_s(x2, x3));
  return i8x16.shuffle(rows, rows, 0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
}

/** clamp(round(x / d), −63, 63) + 64 in each i32 lane. */
// @ts-ignore: decorator
@inline
function quantizeWeights(x: v128, d: v128): v128 {
  const q = i32x4.trunc_sat_f32x4_s(f32x4.nearest(f32x4.div(x, d)));
  return i32x4.add(i32x4.min_s(i32x4.max_s(q, i32x4.splat(-63)), i32x4.splat(63)), i32x4.splat(64));
}

/**
 * Conv1D on int8: out = mode(inp · weight + bias) for the columns of panels [p0, p1), mode
 * as `conv1d`'s, with inp quantised by `quantize_q8` and weight packed by `pack_q8`. Each
 * output is Σ over blocks b in order of convert(Σ_b a·u − 64·Σ_b a) · (d_b · e_b),
 * accumulated with one multiply-add per block, plus the bias at the end: the integer sums
 * are exact, and the float steps are the same whatever the split or the number of rows T.
 * @param out    (T, OC) f32
 * @param qinp   (T, ceil(C / 32), 40 bytes), from `quantize_q8`
 * @param weight (ceil(OC / 16), ceil(C / 32), 576 bytes), from `pack_q8`
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
 * @param qh  (T, ceil(C / 32), 40 bytes), from `quantize_q8`
 * @param wte (ceil(V / 16), ceil(C / 32), 576 bytes), from `pack_q8` with `transposed`
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
 * packed by `pack_q8` (transposed): each feature is dequantised as d · q in f32.
 * @param out       (rows, C) f32
 * @param tokens    (rows) i32
 * @param positions (rows) i32
 * @param wte       (ceil(V / 16), ceil(C / 32), 576 bytes)
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
    const c = <usize>(tok & (QPANEL - 1)) << 2;
    const panel = wte + <usize>(tok / QPANEL) * <usize>nb * PANEL_BLOCK_BYTES;
    const p = wpe + <usize>load<i32>(positions + (<usize>r << 2)) * row;
    const o = out + <usize>r * row;
    for (let k = 0; k < C; k++) {
      const blk = panel + <usize>(k / QBLOCK) * PANEL_BLOCK_BYTES;
      const kk = k & (QBLOCK - 1);
      const u = <i32>load<u8>(blk + 64 + (<usize>(kk >> 2) << 6) + c + <usize>(kk & 3));
      const w = load<f32>(blk + c) * <f32>(u - 64);
      store<f32>(o + (<usize>k << 2), w + load<f32>(p + (<usize>k << 2)));
    }
  }
}

/**
 * Lane i of out (4 × i32) = Σ_j a[4i + j] · b[4i + j] as the q8 kernels compute it (`dot4`)
 * on this engine, with a and b 16 bytes each: exported for the test that checks which
 * operand ranges make it exact.
 */
export function relaxed_dot_probe(out: usize, a: usize, b: usize): void {
  v128.store(out, dot4(v128.load(a), v128.load(b), i32x4.splat(0), ones(1)));
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
  for (let p = p0; p < p1; p++) {
    const col = p * QPANEL;
    const width = min(QPANEL, OC - col);
    const w = weight + <usize>p * panelBytes;
    const bp = mode == HEAD ? changetype<usize>(ZEROS) : bias + (<usize>col << 2);
    const o = out + (<usize>col << 2);
    if (T == 1) {
      // One row (decoding): all 16 columns in one pass, the panel read once, front to back.
      panelRow(o, qinp, w, bp, nb, width, mode);
      continue;
    }
    // Otherwise each half of the panel (8 columns) for four rows at a time: 8 integer and
    // 8 float accumulators, and each weight vector loaded serves four rows.
    for (let half = 0; half < 2; half++) {
      const hw = width - half * 8;
      if (hw <= 0) break;
      const wh = w + (<usize>half << 5);
      const bh = bp + (<usize>half << 5);
      let oh = o + (<usize>half << 5);
      let x = qinp;
      let t = 0;
      for (; t + 4 <= T; t += 4) {
        halfRows(oh, x, wh, bh, rowQ, rowOut, nb, hw, mode, 4);
        oh += rowOut << 2;
        x += rowQ << 2;
      }
      if (T - t == 3) halfRows(oh, x, wh, bh, rowQ, rowOut, nb, hw, mode, 3);
      else if (T - t == 2) halfRows(oh, x, wh, bh, rowQ, rowOut, nb, hw, mode, 2);
      else if (T - t == 1) halfRows(oh, x, wh, bh, rowQ, rowOut, nb, hw, mode, 1);
    }
  }
}

/**
 * s + the int8 dot product of a and u, four features per lane: the 16-bit pair sums of
 * `i16x8.relaxed_dot_i8x16_i7x16_s` (exact here, see QBLOCK), added in pairs into 32 bits
 * by `i32x4.dot_i16x8_s` with `one` (i16x8.splat(1), from `ones`). V8 on x86 without
 * AVX-VNNI turns `i32x4.relaxed_dot_i8x16_i7x16_add_s` into the same pmaddubsw and pmaddwd
 * plus a vector of ones rebuilt at every use, and `i32x4.extadd_pairwise_i16x8_s` into a
 * pmaddwd that reloads the address of its constant each time; `one` stays in a register.
 */
// @ts-ignore: decorator
@inline
function dot4(a: v128, u: v128, s: v128, one: v128): v128 {
  return i32x4.add(s, i32x4.dot_i16x8_s(i16x8.relaxed_dot_i8x16_i7x16_s(a, u), one));
}

/**
 * i16x8.splat(1), computed from n ≥ 1 so that no optimiser turns it into a constant, which
 * V8 would rebuild at every use instead of keeping it in a register.
 */
// @ts-ignore: decorator
@inline
function ones(n: i32): v128 {
  return i16x8.splat(<i16>min(n, 1));
}

/** acc + convert(s) · (d · e): one block's integer sums s into float accumulators acc. */
// @ts-ignore: decorator
@inline
function addBlock(acc: v128, s: v128, d: v128, e: v128): v128 {
  return f32x4.relaxed_madd(f32x4.convert_i32x4_s(s), f32x4.mul(d, e), acc);
}

/**
 * Rows 0 … n − 1 (n = 1 to 4, a constant) of one 8-column half of a panel, whose scales
 * start at w (and its quads at w + 64), blocks PANEL_BLOCK_BYTES apart.
 */
// @ts-ignore: decorator
@inline
function halfRows(
  o: usize,
  x: usize,
  w: usize,
  bp: usize,
  rowQ: usize,
  rowOut: usize,
  nb: i32,
  width: i32,
  mode: i32,
  n: i32,
): void {
  const one = ones(nb);
  let f00 = f32x4.splat(0), f01 = f32x4.splat(0), f10 = f32x4.splat(0), f11 = f32x4.splat(0);
  let f20 = f32x4.splat(0), f21 = f32x4.splat(0), f30 = f32x4.splat(0), f31 = f32x4.splat(0);
  let wb = w, xb = x;
  const x1 = rowQ, x2 = rowQ << 1, x3 = rowQ * 3;
  for (let b = 0; b < nb; b++) {
    // Each sum starts from its row's correction −64 · Σ a.
    let s00 = v128.load32_splat(xb, 36);
    let s01 = s00;
    let s10 = s00, s11 = s00, s20 = s00, s21 = s00, s30 = s00, s31 = s00;
    if (n > 1) {
      s10 = v128.load32_splat(xb + x1, 36);
      s11 = s10;
    }
    if (n > 2) {
      s20 = v128.load32_splat(xb + x2, 36);
      s21 = s20;
    }
    if (n > 3) {
      s30 = v128.load32_splat(xb + x3, 36);
      s31 = s30;
    }
    // Two quads a step: half the loop overhead (counter, V8's interrupt check) of one a
    // step; with all eight written out V8 hoists their loads and spills.
    let wq = wb + 64;
    const xe = xb + QBLOCK;
    for (let xq = xb; xq < xe; xq += 8) {
      let w0: v128, w1: v128, a: v128;
      w0 = v128.load(wq);
      w1 = v128.load(wq, 16);
      a = v128.load32_splat(xq);
      s00 = dot4(a, w0, s00, one);
      s01 = dot4(a, w1, s01, one);
      if (n > 1) {
        a = v128.load32_splat(xq + x1);
        s10 = dot4(a, w0, s10, one);
        s11 = dot4(a, w1, s11, one);
      }
      if (n > 2) {
        a = v128.load32_splat(xq + x2);
        s20 = dot4(a, w0, s20, one);
        s21 = dot4(a, w1, s21, one);
      }
      if (n > 3) {
        a = v128.load32_splat(xq + x3);
        s30 = dot4(a, w0, s30, one);
        s31 = dot4(a, w1, s31, one);
      }
      w0 = v128.load(wq, 64);
      w1 = v128.load(wq, 80);
      a = v128.load32_splat(xq, 4);
      s00 = dot4(a, w0, s00, one);
      s01 = dot4(a, w1, s01, one);
      if (n > 1) {
        a = v128.load32_splat(xq + x1, 4);
        s10 = dot4(a, w0, s10, one);
        s11 = dot4(a, w1, s11, one);
      }
      if (n > 2) {
        a = v128.load32_splat(xq + x2, 4);
        s20 = dot4(a, w0, s20, one);
        s21 = dot4(a, w1, s21, one);
      }
      if (n > 3) {
        a = v128.load32_splat(xq + x3, 4);
        s30 = dot4(a, w0, s30, one);
        s31 = dot4(a, w1, s31, one);
      }
      wq += 128;
    }
    const d0 = v128.load(wb), d1 = v128.load(wb, 16);
    let e = v128.load32_splat(xb, 32);
    f00 = addBlock(f00, s00, d0, e);
    f01 = addBlock(f01, s01, d1, e);
    if (n > 1) {
      e = v128.load32_splat(xb + x1, 32);
      f10 = addBlock(f10, s10, d0, e);
      f11 = addBlock(f11, s11, d1, e);
    }
    if (n > 2) {
      e = v128.load32_splat(xb + x2, 32);
      f20 = addBlock(f20, s20, d0, e);
      f21 = addBlock(f21, s21, d1, e);
    }
    if (n > 3) {
      e = v128.load32_splat(xb + x3, 32);
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
function panelRow(o: usize, x: usize, w: usize, bp: usize, nb: i32, width: i32, mode: i32): void {
  const one = ones(nb);
  let f0 = f32x4.splat(0), f1 = f32x4.splat(0), f2 = f32x4.splat(0), f3 = f32x4.splat(0);
  let wb = w, xb = x;
  for (let b = 0; b < nb; b++) {
    let s0 = v128.load32_splat(xb, 36);
    let s1 = s0, s2 = s0, s3 = s0;
    let wq = wb + 64;
    const xe = xb + QBLOCK;
    for (let xq = xb; xq < xe; xq += 4) {
      const a = v128.load32_splat(xq);
      s0 = dot4(a, v128.load(wq), s0, one);
      s1 = dot4(a, v128.load(wq, 16), s1, one);
      s2 = dot4(a, v128.load(wq, 32), s2, one);
      s3 = dot4(a, v128.load(wq, 48), s3, one);
      wq += 64;
    }
    const e = v128.load32_splat(xb, 32);
    f0 = addBlock(f0, s0, v128.load(wb), e);
    f1 = addBlock(f1, s1, v128.load(wb, 16), e);
    f2 = addBlock(f2, s2, v128.load(wb, 32), e);
    f3 = addBlock(f3, s3, v128.load(wb, 48), e);
    wb += PANEL_BLOCK_BYTES;
    xb += ROW_BLOCK_BYTES;
  }
  finish16(o, bp, f0, f1, f2, f3, width, mode);
}
