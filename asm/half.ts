// Float16 values widened to float32 exactly: the q8 and q4 kernels' block scales, and the
// f16 kernels' weights (stored scaled, asm/matmul_f16.ts) as they and the f32 Conv1D's
// shared strip kernel (asm/matmul.ts) read them.

/**
 * Constants of `widen`, kept in static data (a vector constant written inline is rebuilt
 * at each use inside a loop; see math.ts): the bits an f32 keeps of a half shifted into
 * place, and 2^112, the ratio of the two formats' exponent biases (2^(127 − 15)), which
 * gives a half its own value (the q8 and q4 block scales; f16 panels have constants of
 * their own, `F16_PANEL` in matmul_f16.ts).
 */
export const H: StaticArray<u32> = [0x8fffe000, 0x77800000];

/**
 * The f32 value of four halves given in the upper 16 bits of each i32 lane (whatever the
 * lower 16 hold), times `scale` / 2^112: an arithmetic shift by 3 puts exponent and
 * mantissa where an f32 has them and copies the sign into the three bits above, the mask
 * keeps sign, exponent and mantissa (and drops the lower half, now below bit 13), and the
 * product with `scale` rebiases the exponent (2^112: the halves' own values). Exact for
 * every finite half, subnormals included (wasm keeps f32 subnormals); infinities and NaNs
 * are not kept.
 */
// @ts-ignore: decorator
@inline
export function widen(hi: v128, mask: v128, scale: v128): v128 {
  return f32x4.mul(unscaled(hi, mask), scale);
}

/** `widen` without the product: the halves' values times 2^-112, exactly. */
// @ts-ignore: decorator
@inline
export function unscaled(hi: v128, mask: v128): v128 {
  return v128.and(i32x4.shr_s(hi, 3), mask);
}

/** Columns 0–3 of an 8-column half h (its lanes' low halves) into the upper 16 bits. */
// @ts-ignore: decorator
@inline
export function lowHalves(h: v128): v128 {
  return i32x4.shl(h, 16);
}

/** Columns 4–7 of an 8-column half h: already in the lanes' upper 16 bits. */
// @ts-ignore: decorator
@inline
export function highHalves(h: v128): v128 {
  return h;
}

/** The f32 value of the half at p (scalar `widen` with H's 2^112). */
// @ts-ignore: decorator
@inline
export function halfAt(p: usize): f32 {
  return unscaledAt(p) * reinterpret<f32>(<u32>0x77800000);
}

/** The value of the half at p times 2^-112, exactly (scalar `unscaled`). */
// @ts-ignore: decorator
@inline
export function unscaledAt(p: usize): f32 {
  const x = <i32>load<u16>(p) << 16;
  return reinterpret<f32>(<u32>(x >> 3) & 0x8fffe000);
}

