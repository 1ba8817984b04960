// Matrix products: GPT-2's Conv1D (a dense layer) and the tied output head.
import { dot, storeLanes } from "./simd";

/**
 * Columns per packed weight panel. A panel holds `C` rows of `PANEL` consecutive output
 * columns, so the inner loop streams weights from one contiguous block while eight
 * accumulators per row stay in registers. The runtime sizes its buffers with the same
 * number (runtime/memory_plan.ts, `PANEL`).
 */
const PANEL: i32 = 8;

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
    for (let k = 0; k < C; k++) {
      const s = src + ((<usize>k * <usize>OC + <usize>col) << 2);
      for (let c = 0; c < PANEL; c++) {
        store<f32>(d + (<usize>c << 2), c < width ? load<f32>(s + (<usize>c << 2)) : 0);
      }
      d += PANEL << 2;
    }
  }
}

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
  const rowIn = <usize>C << 2;
  const rowOut = <usize>OC << 2;
  for (let p = p0; p < p1; p++) {
    const col = p * PANEL;
    const width = min(PANEL, OC - col);
    const w = weight + (<usize>p * <usize>C * PANEL << 2);
    const b0 = v128.load(bias + (<usize>col << 2));
    const b1 = v128.load(bias + (<usize>col << 2), 16);
    let t = 0;
    for (; t + 4 <= T; t += 4) {
      const x = inp + <usize>t * rowIn;
      let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
      let c10 = f32x4.splat(0), c11 = f32x4.splat(0);
      let c20 = f32x4.splat(0), c21 = f32x4.splat(0);
      let c30 = f32x4.splat(0), c31 = f32x4.splat(0);
      let wp = w;
      for (let k = 0; k < C; k++) {
        const w0 = v128.load(wp);
        const w1 = v128.load(wp, 16);
        wp += PANEL << 2;
        const xk = x + (<usize>k << 2);
        const a0 = f32x4.splat(load<f32>(xk));
        const a1 = f32x4.splat(load<f32>(xk + rowIn));
        const a2 = f32x4.splat(load<f32>(xk + 2 * rowIn));
        const a3 = f32x4.splat(load<f32>(xk + 3 * rowIn));
        c00 = f32x4.relaxed_madd(a0, w0, c00);
        c01 = f32x4.relaxed_madd(a0, w1, c01);
        c10 = f32x4.relaxed_madd(a1, w0, c10);
        c11 = f32x4.relaxed_madd(a1, w1, c11);
        c20 = f32x4.relaxed_madd(a2, w0, c20);
        c21 = f32x4.relaxed_madd(a2, w1, c21);
        c30 = f32x4.relaxed_madd(a3, w0, c30);
        c31 = f32x4.relaxed_madd(a3, w1, c31);
      }
      const o = out + <usize>t * rowOut + (<usize>col << 2);
      storeRow(o, f32x4.add(c00, b0), f32x4.add(c01, b1), width);
      storeRow(o + rowOut, f32x4.add(c10, b0), f32x4.add(c11, b1), width);
      storeRow(o + 2 * rowOut, f32x4.add(c20, b0), f32x4.add(c21, b1), width);
      storeRow(o + 3 * rowOut, f32x4.add(c30, b0), f32x4.add(c31, b1), width);
    }
    for (; t < T; t++) {
      const x = inp + <usize>t * rowIn;
      let c0 = f32x4.splat(0), c1 = f32x4.splat(0);
      let wp = w;
      for (let k = 0; k < C; k++) {
        const a = f32x4.splat(load<f32>(x + (<usize>k << 2)));
        c0 = f32x4.relaxed_madd(a, v128.load(wp), c0);
        c1 = f32x4.relaxed_madd(a, v128.load(wp, 16), c1);
        wp += PANEL << 2;
      }
      storeRow(
        out + <usize>t * rowOut + (<usize>col << 2),
        f32x4.add(c0, b0),
        f32x4.add(c1, b1),
        width,
      );
    }
  }
}

// @ts-ignore: decorator
@inline
function storeRow(o: usize, v0: v128, v1: v128, width: i32): void {
  if (width == PANEL) {
    v128.store(o, v0);
    v128.store(o, v1, 16);
  } else if (width > 4) {
    v128.store(o, v0);
    storeLanes(o + 16, v1, width - 4);
  } else {
    storeLanes(o, v0, width);
  }
}

/**
 * The output head with GPT-2's tied weights: logits = h · wteᵀ, for vocabulary rows
 * [v0, v1). Each logit is `dot(h[t], wte[v])`, computed the same way for every split.
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
  for (let v = v0; v < v1; v++) {
    const w = wte + <usize>v * row;
    for (let t = 0; t < T; t++) {
      store<f32>(out + ((<usize>t * <usize>V + <usize>v) << 2), dot(h + <usize>t * row, w, C));
    }
  }
}
