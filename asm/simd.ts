// Small SIMD helpers shared by the kernels. All pointers are byte offsets into the one
// shared memory; sizes are element counts.

/** Sum of the four lanes, in a fixed order: (l0 + l1) + (l2 + l3). */
// @ts-ignore: decorator
@inline
export function hsum(v: v128): f32 {
  return (f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1)) +
    (f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3));
}

/**
 * Dot product of two f32 vectors of length `n`. Four lane-wise accumulators over blocks
 * of 16, combined in a fixed order, then a scalar tail: the result depends only on the
 * data and `n`, never on who calls it.
 */
// @ts-ignore: decorator
@inline
export function dot(a: usize, b: usize, n: i32): f32 {
  let s0 = f32x4.splat(0);
  let s1 = f32x4.splat(0);
  let s2 = f32x4.splat(0);
  let s3 = f32x4.splat(0);
  let k = 0;
  for (; k + 16 <= n; k += 16) {
    const o = <usize>k << 2;
    s0 = f32x4.relaxed_madd(v128.load(a + o), v128.load(b + o), s0);
    s1 = f32x4.relaxed_madd(v128.load(a + o, 16), v128.load(b + o, 16), s1);
    s2 = f32x4.relaxed_madd(v128.load(a + o, 32), v128.load(b + o, 32), s2);
    s3 = f32x4.relaxed_madd(v128.load(a + o, 48), v128.load(b + o, 48), s3);
  }
  for (; k + 4 <= n; k += 4) {
    const o = <usize>k << 2;
    s0 = f32x4.relaxed_madd(v128.load(a + o), v128.load(b + o), s0);
  }
  let s = hsum(f32x4.add(f32x4.add(s0, s1), f32x4.add(s2, s3)));
  for (; k < n; k++) {
    const o = <usize>k << 2;
    s += load<f32>(a + o) * load<f32>(b + o);
  }
  return s;
}

/** Stores the first `n` (1 to 4) lanes of `v` at `p`. */
// @ts-ignore: decorator
@inline
export function storeLanes(p: usize, v: v128, n: i32): void {
  if (n >= 4) {
    v128.store(p, v);
    return;
  }
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (n > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (n > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}
