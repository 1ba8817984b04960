// Memory probes: the end of the module's static data, and a plain streaming read that
// measures the machine's read bandwidth with the same code generator as the kernels.
import { hsum } from "./simd";

/**
 * One past the last byte of this module's static data (AssemblyScript lays it out from
 * offset 1024). The runtime keeps its own control data above it.
 */
export function static_data_end(): usize {
  return __heap_base;
}

/** Floats per partial sum of `read_sum`: 64 KiB. */
export const READ_BLOCK: i32 = 16384;

/**
 * Sums blocks [b0, b1) of `READ_BLOCK` floats each: out[b] = Σ inp[b·READ_BLOCK + i].
 * Eight accumulators over 128 bytes per step keep the loads, not the adds, the limit.
 * @param out (blocks) f32
 * @param inp (blocks · READ_BLOCK) f32
 */
export function read_sum(out: usize, inp: usize, b0: i32, b1: i32): void {
  for (let b = b0; b < b1; b++) {
    let p = inp + (<usize>b * <usize>READ_BLOCK << 2);
    const end = p + (<usize>READ_BLOCK << 2);
    let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
    let s4 = f32x4.splat(0), s5 = f32x4.splat(0), s6 = f32x4.splat(0), s7 = f32x4.splat(0);
    for (; p < end; p += 128) {
      s0 = f32x4.add(s0, v128.load(p));
      s1 = f32x4.add(s1, v128.load(p, 16));
      s2 = f32x4.add(s2, v128.load(p, 32));
      s3 = f32x4.add(s3, v128.load(p, 48));
      s4 = f32x4.add(s4, v128.load(p, 64));
      s5 = f32x4.add(s5, v128.load(p, 80));
      s6 = f32x4.add(s6, v128.load(p, 96));
      s7 = f32x4.add(s7, v128.load(p, 112));
    }
    const s = f32x4.add(
      f32x4.add(f32x4.add(s0, s1), f32x4.add(s2, s3)),
      f32x4.add(f32x4.add(s4, s5), f32x4.add(s6, s7)),
    );
    store<f32>(out + (<usize>b << 2), hsum(s));
  }
}
