// Masked multi-head self-attention over the KV cache.
import { hsum } from "./simd";
import { softmaxRow } from "./activations";

/**
 * Attention for `T` new positions of each of B sequences, for the (sequence, head) units
 * [u0, u1) where unit u is sequence u / n_head, head u % n_head. Sequence b uses cache
 * slot seqs[2b] and has seqs[2b + 1] positions cached already (its `past`), so sequences
 * at different lengths run together.
 *
 * For each unit it first appends the new keys and values to the slot, then, for each new
 * position t (absolute position i = past + t), computes w_j = q·k_j / √d_head, applies
 * GPT-2's mask (keep where i >= j - ns + nd, i.e. j <= past + t; masked weights are
 * -1e10 in the original and so exp() to exactly 0, which is why they are skipped), takes
 * the softmax and writes out = Σ_j w_j v_j.
 *
 * The cache holds each head's keys in blocks of KEY_BLOCK positions (see `keyBlock`) and
 * its values one position after another.
 *
 * @param out        (B·T, C) f32, C = n_head · d_head
 * @param qkv        (B·T, 3C) f32: q, k, v side by side, as c_attn writes them
 * @param cache      this layer's cache of slot 0: (2, n_head, n_ctx, d_head) f32, keys
 *                   then values; slot s's starts `slotStride` floats further on
 * @param scratch    (B · n_head, n_ctx) f32, one row of weights per unit
 * @param seqs       (B, 2) i32: each sequence's slot and past
 * @param n_ctx      positions per head in the cache: a multiple of KEY_BLOCK
 */
export function attention(
  out: usize,
  qkv: usize,
  cache: usize,
  scratch: usize,
  seqs: usize,
  T: i32,
  n_head: i32,
  d_head: i32,
  n_ctx: i32,
  slotStride: i32,
  u0: i32,
  u1: i32,
): void {
  const C = n_head * d_head;
  const headBytes = <usize>d_head << 2;
  const scale = <f32>1 / Mathf.sqrt(<f32>d_head);
  for (let u = u0; u < u1; u++) {
    const b = u / n_head;
    const h = u % n_head;
    const slot = load<i32>(seqs + (<usize>b << 3));
    const past = load<i32>(seqs + (<usize>b << 3), 4);
    const seq = cache + (<usize>slot * <usize>slotStride << 2);
    const K = seq + ((<usize>h * <usize>n_ctx * <usize>d_head) << 2);
    const V = seq + ((<usize>(n_head + h) * <usize>n_ctx * <usize>d_head) << 2);
    const w = scratch + (<usize>u * <usize>n_ctx << 2);
    // Append the new keys and values.
    for (let t = 0; t < T; t++) {
      const row = qkv + ((<usize>(b * T + t) * <usize>(3 * C) + <usize>(h * d_head)) << 2);
      appendKey(K, past + t, row + (<usize>C << 2), headBytes);
      memory.copy(V + <usize>(past + t) * headBytes, row + (<usize>(2 * C) << 2), headBytes);
    }
    for (let t = 0; t < T; t++) {
      const r = b * T + t;
      const q = qkv + ((<usize>r * <usize>(3 * C) + <usize>(h * d_head)) << 2);
      const n = past + t + 1; // keys 0 … past + t are visible
      scores(w, q, K, n, d_head, scale);
      softmaxRow(w, w, n);
      const o = out + ((<usize>r * <usize>C + <usize>(h * d_head)) << 2);
      weightedSum(o, w, V, n, d_head);
    }
  }
}

/** Positions per block of the key cache; the runtime rounds a slot's positions up to it. */
export const KEY_BLOCK: i32 = 4;

/**
 * Byte offset of the block of keys that holds position j, from the head's first key. A
 * block is KEY_BLOCK · d_head floats: for each group of four features in turn (the first
 * d_head & ~3), those four features of the block's four keys, [d / 4][key][d % 4]; then
 * each remaining feature of the four keys, [d][key]. The scores then read one block front
 * to back, one stream, where rows of d_head features side by side would be four streams.
 */
// @ts-ignore: decorator
@inline
function keyBlock(j: i32, headBytes: usize): usize {
  return <usize>(j / KEY_BLOCK) * headBytes * <usize>KEY_BLOCK;
}

/** Stores the key `row` (d_head floats) as position j of the key cache K. */
// @ts-ignore: decorator
@inline
function appendKey(K: usize, j: i32, row: usize, headBytes: usize): void {
  const block = K + keyBlock(j, headBytes);
  const lane = <usize>(j % KEY_BLOCK);
  const vecEnd = headBytes & ~15;
  for (let d: usize = 0; d < vecEnd; d += 16) {
    v128.store(block + (d << 2) + (lane << 4), v128.load(row + d));
  }
  for (let d = vecEnd; d < headBytes; d += 4) {
    store<f32>(block + (d << 2) + (lane << 2), load<f32>(row + d));
  }
}

/**
 * w[j] = (q · K[j]) · scale for keys j < n. Each dot product sums its lanes over whole
 * vectors of 4 features in order, then the lanes as (l0 + l1) + (l2 + l3), then the
 * remaining features in order: the same for every key, whether it is done in a block of
 * four keys (whose lane sums one transpose combines) or alone.
 */
// @ts-ignore: decorator
@inline
function scores(w: usize, q: usize, K: usize, n: i32, d_head: i32, scale: f32): void {
  const headBytes = <usize>d_head << 2;
  const vecEnd = headBytes & ~15;
  const blockBytes = headBytes * <usize>KEY_BLOCK;
  const vs = f32x4.splat(scale);
  let j = 0;
  let k = K;
  for (; j + KEY_BLOCK <= n; j += KEY_BLOCK) {
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    for (let d: usize = 0; d < vecEnd; d += 16) {
      const qd = v128.load(q + d);
      const kd = k + (d << 2);
      a0 = f32x4.relaxed_madd(qd, v128.load(kd), a0);
      a1 = f32x4.relaxed_madd(qd, v128.load(kd, 16), a1);
      a2 = f32x4.relaxed_madd(qd, v128.load(kd, 32), a2);
      a3 = f32x4.relaxed_madd(qd, v128.load(kd, 48), a3);
    }
    // Lanes (l0 + l1, l2 + l3) of keys 0, 1 then of keys 2, 3; then each key's total.
    const p01 = f32x4.add(
      v128.shuffle<f32>(a0, a1, 0, 2, 4, 6),
      v128.shuffle<f32>(a0, a1, 1, 3, 5, 7),
    );
    const p23 = f32x4.add(
      v128.shuffle<f32>(a2, a3, 0, 2, 4, 6),
      v128.shuffle<f32>(a2, a3, 1, 3, 5, 7),
    );
    let s = f32x4.add(
      v128.shuffle<f32>(p01, p23, 0, 2, 4, 6),
      v128.shuffle<f32>(p01, p23, 1, 3, 5, 7),
    );
    if (vecEnd < headBytes) {
      s = f32x4.replace_lane(s, 0, tail(f32x4.extract_lane(s, 0), q, k, vecEnd, headBytes));
      s = f32x4.replace_lane(s, 1, tail(f32x4.extract_lane(s, 1), q, k + 4, vecEnd, headBytes));
      s = f32x4.replace_lane(s, 2, tail(f32x4.extract_lane(s, 2), q, k + 8, vecEnd, headBytes));
      s = f32x4.replace_lane(s, 3, tail(f32x4.extract_lane(s, 3), q, k + 12, vecEnd, headBytes));
    }
    v128.store(w + (<usize>j << 2), f32x4.mul(s, vs));
    k += blockBytes;
  }
  // The last keys, in a block not yet full, one at a time.
  for (; j < n; j++) {
    const lane = <usize>(j % KEY_BLOCK);
    let a = f32x4.splat(0);
    for (let d: usize = 0; d < vecEnd; d += 16) {
      a = f32x4.relaxed_madd(v128.load(q + d), v128.load(k + (d << 2) + (lane << 4)), a);
    }
    const s = tail(hsum(a), q, k + (lane << 2), vecEnd, headBytes);
    store<f32>(w + (<usize>j << 2), s * scale);
  }
}

/**
 * s + Σ q[d] · k[d] over the bytes [from, to) of a head, in order, for the key whose
 * feature d lies at kd + 4·d in its block (past the groups of four, a block holds each
 * feature of its four keys side by side).
 */
// @ts-ignore: decorator
@inline
function tail(s: f32, q: usize, kd: usize, from: usize, to: usize): f32 {
  for (let d = from; d < to; d += 4) s += load<f32>(q + d) * load<f32>(kd + (d << 2));
  return s;
}

/** o[d] = Σ_j w[j] · V[j][d] for j < n, summed in order of j. */
// @ts-ignore: decorator
@inline
function weightedSum(o: usize, w: usize, V: usize, n: i32, d_head: i32): void {
  const headBytes = <usize>d_head << 2;
  const wEnd = w + (<usize>n << 2);
  let d = 0;
  // Blocks of 64 features (a whole head of every GPT-2) read each row of V once, front to
  // back; sixteen accumulators and a weight are more than the registers hold, but a row of
  // V from memory takes longer than the few spills. Other head sizes go four features at
  // a time.
  for (; d + 64 <= d_head; d += 64) {
    let a0 = f32x4.splat(0), a1 = f32x4.splat(0), a2 = f32x4.splat(0), a3 = f32x4.splat(0);
    let a4 = f32x4.splat(0), a5 = f32x4.splat(0), a6 = f32x4.splat(0), a7 = f32x4.splat(0);
    let a8 = f32x4.splat(0), a9 = f32x4.splat(0), a10 = f32x4.splat(0), a11 = f32x4.splat(0);
    let a12 = f32x4.splat(0), a13 = f32x4.splat(0), a14 = f32x4.splat(0), a15 = f32x4.splat(0);
    let v = V + (<usize>d << 2);
    for (let wj = w; wj < wEnd; wj += 4) {
      const s = v128.load32_splat(wj);
      a0 = f32x4.relaxed_madd(s, v128.load(v), a0);
      a1 = f32x4.relaxed_madd(s, v128.load(v, 16), a1);
      a2 = f32x4.relaxed_madd(s, v128.load(v, 32), a2);
      a3 = f32x4.relaxed_madd(s, v128.load(v, 48), a3);
      a4 = f32x4.relaxed_madd(s, v128.load(v, 64), a4);
      a5 = f32x4.relaxed_madd(s, v128.load(v, 80), a5);
      a6 = f32x4.relaxed_madd(s, v128.load(v, 96), a6);
      a7 = f32x4.relaxed_madd(s, v128.load(v, 112), a7);
      a8 = f32x4.relaxed_madd(s, v128.load(v, 128), a8);
      a9 = f32x4.relaxed_madd(s, v128.load(v, 144), a9);
      a10 = f32x4.relaxed_madd(s, v128.load(v, 160), a10);
      a11 = f32x4.relaxed_madd(s, v128.load(v, 176), a11);
      a12 = f32x4.relaxed_madd(s, v128.load(v, 192), a12);
      a13 = f32x4.relaxed_madd(s, v128.load(v, 208), a13);
      a14 = f32x4.relaxed_madd(s, v128.load(v, 224), a14);
      a15 = f32x4.relaxed_madd(s, v128.load(v, 240), a15);
      v += headBytes;
    }
    const od = o + (<usize>d << 2);
    v128.store(od, a0);
    v128.store(od, a1, 16);
    v128.store(od, a2, 32);
    v128.store(od, a3, 48);
    v128.store(od, a4, 64);
    v128.store(od, a5, 80);
    v128.store(od, a6, 96);
    v128.store(od, a7, 112);
    v128.store(od, a8, 128);
    v128.store(od, a9, 144);
    v128.store(od, a10, 160);
    v128.store(od, a11, 176);
    v128.store(od, a12, 192);
    v128.store(od, a13, 208);
    v128.store(od, a14, 224);
    v128.store(od, a15, 240);
  }
  for (; d + 4 <= d_head; d += 4) {
    let a = f32x4.splat(0);
    let v = V + (<usize>d << 2);
    for (let wj = w; wj < wEnd; wj += 4) {
      a = f32x4.relaxed_madd(v128.load32_splat(wj), v128.load(v), a);
      v += headBytes;
    }
    v128.store(o + (<usize>d << 2), a);
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
