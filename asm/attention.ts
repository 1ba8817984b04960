// Masked multi-head self-attention over the KV cache.
import { dot } from "./simd";
import { softmaxRow } from "./activations";

/**
 * Attention for `T` new positions per sequence against `past + T` cached ones, for the
 * (sequence, head) units [u0, u1) where unit u is sequence u / n_head, head u % n_head.
 *
 * For each unit it first appends the new keys and values to the cache, then, for each new
 * position t (absolute position i = past + t), computes w_j = q·k_j / √d_head, applies
 * GPT-2's mask (keep where i >= j - ns + nd, i.e. j <= past + t; masked weights are
 * -1e10 in the original and so exp() to exactly 0, which is why they are skipped), takes
 * the softmax and writes out = Σ_j w_j v_j.
 *
 * @param out     (B·T, C) f32, C = n_head · d_head
 * @param qkv     (B·T, 3C) f32: q, k, v side by side, as c_attn writes them
 * @param cache   this layer's cache of sequence 0: (2, n_head, n_ctx, d_head) f32;
 *                sequence b's starts `seqStride` floats further on
 * @param scratch (B · n_head, n_ctx) f32, one row of weights per unit
 */
export function attention(
  out: usize,
  qkv: usize,
  cache: usize,
  scratch: usize,
  T: i32,
  past: i32,
  n_head: i32,
  d_head: i32,
  n_ctx: i32,
  seqStride: i32,
  u0: i32,
  u1: i32,
): void {
  const C = n_head * d_head;
  const headBytes = <usize>d_head << 2;
  const scale = <f32>1 / Mathf.sqrt(<f32>d_head);
  for (let u = u0; u < u1; u++) {
    const b = u / n_head;
    const h = u % n_head;
    const seq = cache + (<usize>b * <usize>seqStride << 2);
    const K = seq + ((<usize>h * <usize>n_ctx * <usize>d_head) << 2);
    const V = seq + ((<usize>(n_head + h) * <usize>n_ctx * <usize>d_head) << 2);
    const w = scratch + (<usize>u * <usize>n_ctx << 2);
    // Append the new keys and values.
    for (let t = 0; t < T; t++) {
      const row = qkv + ((<usize>(b * T + t) * <usize>(3 * C) + <usize>(h * d_head)) << 2);
      const at = <usize>(past + t) * headBytes;
      memory.copy(K + at, row + (<usize>C << 2), headBytes);
      memory.copy(V + at, row + (<usize>(2 * C) << 2), headBytes);
    }
    for (let t = 0; t < T; t++) {
      const r = b * T + t;
      const q = qkv + ((<usize>r * <usize>(3 * C) + <usize>(h * d_head)) << 2);
      const n = past + t + 1; // keys 0 … past + t are visible
      for (let j = 0; j < n; j++) {
        store<f32>(w + (<usize>j << 2), dot(q, K + <usize>j * headBytes, d_head) * scale);
      }
      softmaxRow(w, w, n);
      const o = out + ((<usize>r * <usize>C + <usize>(h * d_head)) << 2);
      weightedSum(o, w, V, n, d_head);
    }
  }
}

/** o[d] = Σ_j w[j] · V[j][d] for j < n, summed in order of j. */
// @ts-ignore: decorator
@inline
function weightedSum(o: usize, w: usize, V: usize, n: i32, d_head: i32): void {
  const headBytes = <usize>d_head << 2;
  let d = 0;
  // Blocks of 16 features keep four accumulators in registers across all j.
  for (; d + 16 <= d_head; d += 16) {
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let v = V + (<usize>d << 2);
    for (let j = 0; j < n; j++) {
      const wj = f32x4.splat(load<f32>(w + (<usize>j << 2)));
      a0 = f32x4.relaxed_madd(wj, v128.load(v), a0);
      a1 = f32x4.relaxed_madd(wj, v128.load(v, 16), a1);
      a2 = f32x4.relaxed_madd(wj, v128.load(v, 32), a2);
      a3 = f32x4.relaxed_madd(wj, v128.load(v, 48), a3);
      v += headBytes;
    }
    const od = o + (<usize>d << 2);
    v128.store(od, a0);
    v128.store(od, a1, 16);
    v128.store(od, a2, 32);
    v128.store(od, a3, 48);
  }
  for (; d < d_head; d++) {
    let a: f32 = 0;
    let v = V + (<usize>d << 2);
    for (let j = 0; j < n; j++) {
      a += load<f32>(w + (<usize>j << 2)) * load<f32>(v);
      v += headBytes;
    }
    store<f32>(o + (<usize>d << 2), a);
  }
}
