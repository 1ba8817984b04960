// Element-wise and row-wise activations: GELU and softmax.
import { exp4, gelu4 } from "./math";
import { hsum } from "./simd";

/**
 * GPT-2's tanh approximation of GELU on elements [i0, i1):
 * out = 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³))), as `gelu4` computes it.
 * @param out (n) f32, may equal inp
 * @param inp (n) f32
 */
export function gelu(out: usize, inp: usize, i0: i32, i1: i32): void {
  let i = i0;
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, gelu4(v128.load(inp + o)));
  }
  for (; i < i1; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, f32x4.extract_lane(gelu4(f32x4.splat(load<f32>(inp + o))), 0));
  }
}

/**
 * Softmax of one row of `n` values, the way GPT-2 computes it: subtract the row's
 * maximum, exponentiate (`exp4`), divide by the sum. The sum keeps 16 partial sums (four
 * vectors), combined in a fixed order, which keeps its rounding error small on long rows.
 * `out` may equal `inp`. A lone entry among -1e10 mask values gets exactly 1, the masked
 * ones exactly 0.
 */
export function softmaxRow(out: usize, inp: usize, n: i32): void {
  let j = 0;
  let m = load<f32>(inp);
  if (n >= 4) {
    let vm = v128.load(inp);
    for (j = 4; j + 4 <= n; j += 4) vm = f32x4.max(vm, v128.load(inp + (<usize>j << 2)));
    m = max(
      max(f32x4.extract_lane(vm, 0), f32x4.extract_lane(vm, 1)),
      max(f32x4.extract_lane(vm, 2), f32x4.extract_lane(vm, 3)),
    );
  }
  for (; j < n; j++) m = max(m, load<f32>(inp + (<usize>j << 2)));
  const vm = f32x4.splat(m);
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
  j = 0;
  for (; j + 16 <= n; j += 16) {
    const o = <usize>j << 2;
    const e0 = exp4(f32x4.sub(v128.load(inp + o), vm));
    const e1 = exp4(f32x4.sub(v128.load(inp + o, 16), vm));
    const e2 = exp4(f32x4.sub(v128.load(inp + o, 32), vm));
    const e3 = exp4(f32x4.sub(v128.load(inp + o, 48), vm));
    v128.store(out + o, e0);
    v128.store(out + o, e1, 16);
    v128.store(out + o, e2, 32);
    v128.store(out + o, e3, 48);
    s0 = f32x4.add(s0, e0);
    s1 = f32x4.add(s1, e1);
    s2 = f32x4.add(s2, e2);
    s3 = f32x4.add(s3, e3);
  }
  for (; j + 4 <= n; j += 4) {
    const o = <usize>j << 2;
    const e = exp4(f32x4.sub(v128.load(inp + o), vm));
    v128.store(out + o, e);
    s0 = f32x4.add(s0, e);
  }
  let s = hsum(f32x4.add(f32x4.add(s0, s1), f32x4.add(s2, s3)));
  for (; j < n; j++) {
    const o = <usize>j << 2;
    const e = f32x4.extract_lane(exp4(f32x4.splat(load<f32>(inp + o) - m)), 0);
    store<f32>(out + o, e);
    s += e;
  }
  const vs = f32x4.splat(s);
  j = 0;
  for (; j + 4 <= n; j += 4) {
    const o = <usize>j << 2;
    v128.store(out + o, f32x4.div(v128.load(out + o), vs));
  }
  for (; j < n; j++) {
    const o = <usize>j << 2;
    store<f32>(out + o, load<f32>(out + o) / s);
  }
}

/**
 * Row-wise softmax for rows [r0, r1).
 * @param out (rows, cols) f32, may equal inp
 * @param inp (rows, cols) f32
 */
export function softmax(out: usize, inp: usize, cols: i32, r0: i32, r1: i32): void {
  const row = <usize>cols << 2;
  for (let r = r0; r < r1; r++) softmaxRow(out + <usize>r * row, inp + <usize>r * row, cols);
}
