// Vector math on four float32 lanes: exp, and GELU built on it.

/**
 * The constants of `exp4` and `gelu4`, kept in static data: V8 rebuilds a vector constant
 * written inline at every use, inside the loop, where a load from this table is one
 * instruction.
 */
const K: StaticArray<f32> = [
  1.4426950408889634, // 0: log2(e)
  // 1, 2: ln 2 split in two (Cody and Waite's range reduction): the first has few enough
  // significant bits that n · it is exact for |n| < 2^15; their sum is ln 2 to 2^-40.
  0.693359375,
  -2.12194440e-4,
  -87.33654, // 3: ln(2^-126): below it the result would be subnormal, and is flushed to 0
  127, // 4: the largest n, and the exponent bias
  // 5 … 11: the Taylor coefficients of e^r, 1/7! … 1/0!
  1.0 / 5040,
  1.0 / 720,
  1.0 / 120,
  1.0 / 24,
  1.0 / 6,
  0.5,
  1,
  0.044715, // 12: GELU's cubic coefficient
  -1.5957691216057308, // 13: -2 · √(2/π)
];

/** Constant `i` of `K` in all four lanes. */
// @ts-ignore: decorator
@inline
function k(i: i32): v128 {
  return v128.load32_splat(changetype<usize>(K) + (<usize>i << 2));
}

/**
 * e^x on four lanes, to about 1.3 ulp where the result is a normal float (measured
 * against Math.exp; up to 5 ulp just below ln(FLT_MAX)). Writes x = n·ln 2 + r with n an
 * integer and |r| <= ln 2 / 2, takes e^r from its Taylor series to degree 7 (the first
 * term left out, r^8 / 8!, is below 2^-27 of the sum) and scales by 2^n through the
 * exponent bits. exp(0) is exactly 1; x below ln(2^-126) ≈ -87.34 (and so -1e10, the
 * attention mask) gives exactly 0; x above ln(FLT_MAX) ≈ 88.72 gives +Infinity; NaN stays
 * NaN.
 */
// @ts-ignore: decorator
@inline
export function exp4(x: v128): v128 {
  // n stays within [-126, 127], so 2^n is a normal float. (pmax and pmin are single
  // instructions where max and min are not; a NaN x stays NaN through them.)
  const xc = f32x4.pmax(x, k(3));
  const n = f32x4.pmin(f32x4.nearest(f32x4.mul(xc, k(0))), k(4));
  let r = f32x4.relaxed_nmadd(n, k(1), xc);
  r = f32x4.relaxed_nmadd(n, k(2), r);
  let p = f32x4.relaxed_madd(r, k(5), k(6));
  p = f32x4.relaxed_madd(p, r, k(7));
  p = f32x4.relaxed_madd(p, r, k(8));
  p = f32x4.relaxed_madd(p, r, k(9));
  p = f32x4.relaxed_madd(p, r, k(10));
  p = f32x4.relaxed_madd(p, r, k(11));
  p = f32x4.relaxed_madd(p, r, k(11));
  // n + 127 is an integer in [1, 254] (or NaN, and then so is p): the relaxed conversion,
  // one instruction, is exact for it.
  const scale = i32x4.shl(i32x4.relaxed_trunc_f32x4_s(f32x4.add(n, k(4))), 23);
  return v128.andnot(f32x4.mul(p, scale), f32x4.lt(x, k(3)));
}

/**
 * GPT-2's tanh GELU on four lanes: 0.5 · x · (1 + tanh(u)), u = √(2/π) · (x + 0.044715 x³),
 * computed as x / (1 + e^(-2u)), the same function (0.5 · (1 + tanh u) is the logistic
 * sigmoid of 2u) without the cancellation of 1 + tanh(u) for negative x. Large negative x
 * gives -0 (e^(-2u) overflows to +Infinity), large positive x gives x.
 */
// @ts-ignore: decorator
@inline
export function gelu4(x: v128): v128 {
  const x3 = f32x4.mul(f32x4.mul(x, x), x);
  const e = exp4(f32x4.mul(f32x4.relaxed_madd(x3, k(12), x), k(13)));
  return f32x4.div(x, f32x4.add(e, k(11)));
}

/**
 * out = e^inp on elements [i0, i1): `exp4` as a kernel, so that tests can hold it to Math.exp.
 * @param out (n) f32, may equal inp
 */
export function exp(out: usize, inp: usize, i0: i32, i1: i32): void {
  let i = i0;
  for (; i + 4 <= i1; i += 4) {
    const o = <usize>i << 2;
    v128.store(out + o, exp4(v128.load(inp + o)));
  }
  for (; i < i1; i++) {
    const o = <usize>i << 2;
    store<f32>(out + o, f32x4.extract_lane(exp4(f32x4.splat(load<f32>(inp + o))), 0));
  }
}
