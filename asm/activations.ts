// Element-wise and row-wise activations: GELU, softmax, residual add.
import { hsum } from "./simd";

/**
 * GPT-2's tanh approximation of GELU on elements [i0, i1):
 * out = 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 · x³))).
 * @param out (n) f32, may equal inp
 * @param inp (n) f32
 */
export function gelu(out: usize, inp: usize, i0: i32, i1: i32): void {
  const c = <f32>0.7978845608028654; // √(2/π)
  for (let i = i0; i < i1; i++) {
    const o = <usize>i << 2;
    const x = load<f32>(inp + o);
    store<f32>(
      out + o,
      <f32>0.5 * x * (<f32>1 + Mathf.tanh(c * (x + <f32>0.044715 * x * x * x))),
    );
  }
}

/**
 * Softmax of one row of `n` values, the way GPT-2 computes it: subtract the row's
 * maximum, exponentiate, divide by the sum. The sum keeps 16 partial sums (four vectors),
 * combined in a fixed order, which keeps its rounding error small on long rows.
 * `out` may equal `inp`.
 */
export function softmaxRow(out: usize, inp: usize, n: i32): void {
  let m = load<f32>(inp);
  for (let j = 1; j < n; j++) m = max(m, load<f32>(inp + (<usize>j << 2)));
  let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
  let j = 0;
  for (; j + 16 <= n; j += 16) {
    const o = <usize>j << 2;
    s0 = f32x4.add(s0, expStore(out + o, inp + o, m));
    s1 = f32x4.add(s1, expStore(out + o + 16, inp + o + 16, m));
    s2 = f32x4.add(s2, expStore(out + o + 32, inp + o + 32, m));
    s3 = f32x4.add(s3, expStore(out + o + 48, inp + o + 48, m));
  }
  let s = hsum(f32x4.add(f32x4.add(s0, s1), f32x4.add(s2, s3)));
  for (; j < n; j++) {
    const o = <usize>j << 2;
    const e = Mathf.exp(load<f32>(inp + o) - m);
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

/** exp(x - m) of four values at `inp`, stored at `out` and returned. */
// @ts-ignore: decorator
@inline
function expStore(out: usize, inp: usize, m: f32): v128 {
  const e0 = Mathf.exp(load<f32>(inp) - m);
  const e1 = Mathf.exp(load<f32>(inp, 4) - m);
  const e2 = Mathf.exp(load<f32>(inp, 8) - m);
  const e3 = Mathf.exp(load<f32>(inp, 12) - m);
  const v = f32x4.replace_lane(
    f32x4.replace_lane(f32x4.replace_lane(f32x4.splat(e0), 1, e1), 2, e2),
    3,
    e3,
  );
  v128.store(out, v);
  return v;
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

/**
 * Residual add on elements [i0, i1): out = a + b.
 * @param out (n) f32, may equal a or b
 */
export function add(out: usize, a: usize, b: usize, i0: i32, i1: i32): void {
  let i = i0;
  for (; i < i1 && (i & 3) != 0; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(a + o) + load<f32>(b + o));
  }
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, f32x4.add(v128.load(a + o), v128.load(b + o)));
  }
  for (; i < i1; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, load<f32>(a + o) + load<f32>(b + o));
  }
}
