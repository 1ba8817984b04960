/**
 * Masked multi-head attention over a KV cache in WGSL, in two dispatches: the new keys
 * and values are appended to each sequence's slot, then one workgroup per (head, new
 * position, sequence) attends over the slot's positions 0 … past + t. Scores are taken
 * a chunk of positions at a time into workgroup memory with a running maximum and sum
 * (the softmax rescaled as each chunk's maximum arrives), so any context length fits.
 * Positions after past + t are skipped, which equals the original's −1e10 mask: their
 * weight exp(−1e10 − max) is 0 in float32.
 *
 * The cache holds one buffer per layer, laid out (slots, 2, heads, positions, headDim).
 *
 * @module
 */
import type { GpuContext, GpuTensor, Kernel } from "./context.ts";

const WG = 64;
/** Scores held in workgroup memory at once. */
const CHUNK = 256;
/** The largest head size the attend kernel supports (WG · its per-thread outputs). */
export const MAX_HEAD_DIM = 256;

const SIZES = `struct Sizes { B: u32, T: u32, H: u32, D: u32, P: u32, C: u32 }
@group(0) @binding(0) var<uniform> sz: Sizes;`;

const APPEND = /* wgsl */ `
${SIZES}
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> seqs: array<u32>;
@group(0) @binding(3) var<storage, read_write> cache: array<f32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) id: vec3u) {
  let e = id.x;
  let r = id.y;
  if (e >= sz.C || r >= sz.B * sz.T) { return; }
  let b = r / sz.T;
  let t = r % sz.T;
  let slot = seqs[2u * b];
  let pos = seqs[2u * b + 1u] + t;
  let h = e / sz.D;
  let d = e % sz.D;
  let k = ((slot * 2u) * sz.H + h) * sz.P * sz.D + pos * sz.D + d;
  let v = ((slot * 2u + 1u) * sz.H + h) * sz.P * sz.D + pos * sz.D + d;
  cache[k] = qkv[r * 3u * sz.C + sz.C + e];
  cache[v] = qkv[r * 3u * sz.C + 2u * sz.C + e];
}
`;

const ATTEND = /* wgsl */ `
${SIZES}
@group(0) @binding(1) var<storage, read> qkv: array<f32>;
@group(0) @binding(2) var<storage, read> seqs: array<u32>;
@group(0) @binding(3) var<storage, read> cache: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const WG = ${WG}u;
const CHUNK = ${CHUNK}u;
const PER = ${MAX_HEAD_DIM / WG}u;
var<workgroup> q: array<f32, ${MAX_HEAD_DIM}>;
var<workgroup> p: array<f32, CHUNK>;
var<workgroup> red: array<f32, WG>;

// Reduces every thread's value with max (isMax) or +; the result is returned to all.
fn reduce(li: u32, v: f32, isMax: bool) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) {
      if (isMax) { red[li] = max(red[li], red[li + s]); } else { red[li] += red[li + s]; }
    }
    workgroupBarrier();
  }
  let t = red[0];
  workgroupBarrier();
  return t;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let h = wg.x;
  let t = wg.y;
  let b = wg.z;
  let D = sz.D;
  let slot = seqs[2u * b];
  let n = seqs[2u * b + 1u] + t + 1u;
  let row = b * sz.T + t;
  let keys = ((slot * 2u) * sz.H + h) * sz.P * D;
  let values = ((slot * 2u + 1u) * sz.H + h) * sz.P * D;
  for (var d = li; d < D; d += WG) { q[d] = qkv[row * 3u * sz.C + h * D + d]; }
  workgroupBarrier();
  let scale = sqrt(f32(D));
  var m = -3.0e38;
  var l = 0.0;
  var acc: array<f32, PER>;
  for (var c0 = 0u; c0 < n; c0 += CHUNK) {
    let cn = min(CHUNK, n - c0);
    var lm = -3.0e38;
    for (var j = li; j < cn; j += WG) {
      let kr = keys + (c0 + j) * D;
      var s = 0.0;
      for (var d = 0u; d < D; d++) { s = fma(q[d], cache[kr + d], s); }
      s = s / scale;
      p[j] = s;
      lm = max(lm, s);
    }
    let mNew = max(m, reduce(li, lm, true));
    let rescale = exp(m - mNew);
    var ls = 0.0;
    for (var j = li; j < cn; j += WG) {
      let e = exp(p[j] - mNew);
      p[j] = e;
      ls += e;
    }
    l = l * rescale + reduce(li, ls, false);
    for (var i = 0u; i < PER; i++) {
      let d = li + i * WG;
      if (d >= D) { break; }
      var s = acc[i] * rescale;
      for (var j = 0u; j < cn; j++) { s = fma(p[j], cache[values + (c0 + j) * D + d], s); }
      acc[i] = s;
    }
    m = mNew;
    workgroupBarrier();
  }
  for (var i = 0u; i < PER; i++) {
    let d = li + i * WG;
    if (d >= D) { break; }
    out[row * sz.C + h * D + d] = acc[i] / l;
  }
}
`;

/** The attention op: append, then attend. */
export class AttentionOp {
  #append: Kernel;
  #attend: Kernel;

  /** Compiles both kernels on `ctx`'s device. */
  constructor(private ctx: GpuContext) {
    this.#append = ctx.kernel("attention-append", APPEND, ["read", "read", "write"]);
    this.#attend = ctx.kernel("attention", ATTEND, ["read", "read", "read", "write"]);
  }

  /**
   * Records the append and the attention of layer `layer`.
   * @param out   (B·T, C) f32
   * @param qkv   (B·T, 3C) f32
   * @param cache per-layer buffers (slots, 2, H, P, D)
   * @param seqs  (B, 2) i32: [slot, past] per sequence
   */
  record(
    out: GpuTensor,
    qkv: GpuTensor,
    cache: GpuTensor,
    layer: number,
    seqs: GpuTensor,
    sizes: { B: number; T: number; H: number; D: number; P: number },
  ): void {
    const { B, T, H, D, P } = sizes;
    const C = H * D;
    const u = [B, T, H, D, P, C];
    const layerCache = { tensor: cache, part: layer };
    this.ctx.dispatch(
      this.#append,
      u,
      [{ tensor: qkv }, { tensor: seqs }, layerCache],
      [Math.ceil(C / WG), B * T],
    );
    this.ctx.dispatch(
      this.#attend,
      u,
      [{ tensor: qkv }, { tensor: seqs }, layerCache, { tensor: out }],
      [H, T, B],
    );
  }
}
