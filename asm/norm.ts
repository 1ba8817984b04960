// Layer normalisation, as GPT-2's `norm`.
import { hsum } from "./simd";

/** Sum of `n` floats: four lanes, then the lanes in a fixed order, then a scalar tail. */
// @ts-ignore: decorator
@inline
function sum(x: usize, n: i32): f32 {
  let s = f32x4.splat(0);
  let k = 0;
  for (; k + 4 <= n; k += 4) s = f32x4.add(s, v128.load(x + (<usize>k << 2)));
  let r = hsum(s);
  for (; k < n; k++) r += load<f32>(x + (<usize>k << 2));
  return r;
}

/**
 * Layer norm over the last axis for rows [r0, r1):
 * out = (x - mean) * rsqrt(var + 1e-5) * gain + bias, with the biased variance.
 * @param out  (rows, C) f32, may equal inp
 * @param inp  (rows, C) f32
 * @param gain (C) f32
 * @param bias (C) f32
 */
export function layer_norm(
  out: usize,
  inp: usize,
  gain: usize,
  bias: usize,
  C: i32,
  r0: i32,
  r1: i32,
): void {
  const n = <f32>C;
  for (let r = r0; r < r1; r++) {
    const x = inp + (<usize>r * <usize>C << 2);
    const y = out + (<usize>r * <usize>C << 2);
    const mean = sum(x, C) / n;
    const vm = f32x4.splat(mean);
    let s = f32x4.splat(0);
    let k = 0;
    for (; k + 4 <= C; k += 4) {
      const d = f32x4.sub(v128.load(x + (<usize>k << 2)), vm);
      s = f32x4.relaxed_madd(d, d, s);
    }
    let ss = hsum(s);
    for (; k < C; k++) {
      const d = load<f32>(x + (<usize>k << 2)) - mean;
      ss += d * d;
    }
    const rstd = <f32>1 / Mathf.sqrt(ss / n + <f32>1e-5);
    const vr = f32x4.splat(rstd);
    k = 0;
    for (; k + 4 <= C; k += 4) {
      const o = <usize>k << 2;
      const d = f32x4.mul(f32x4.sub(v128.load(x + o), vm), vr);
      v128.store(y + o, f32x4.relaxed_madd(d, v128.load(gain + o), v128.load(bias + o)));
    }
    for (; k < C; k++) {
      const o = <usize>k << 2;
      store<f32>(
        y + o,
        (load<f32>(x + o) - mean) * rstd * load<f32>(gain + o) + load<f32>(bias + o),
      );
    }
  }
}
