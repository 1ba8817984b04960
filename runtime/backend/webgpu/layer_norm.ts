/**
 * Layer norm in WGSL: one workgroup per row; the mean, then the variance of the centred
 * values (two passes, as the reference does, so no cancellation), each summed by a tree
 * reduction in workgroup memory.
 *
 * @module
 */
import type { GpuContext, GpuTensor, Kernel } from "./context.ts";

const WG = 128;

const CODE = /* wgsl */ `
struct Sizes { rows: u32, C: u32 }
@group(0) @binding(0) var<uniform> sz: Sizes;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
@group(0) @binding(2) var<storage, read> gain: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;

const WG = ${WG}u;
var<workgroup> red: array<f32, WG>;

// The sum of every thread's value, in red[0] on return for all threads.
fn total(li: u32, v: f32) -> f32 {
  red[li] = v;
  workgroupBarrier();
  for (var s = WG / 2u; s > 0u; s >>= 1u) {
    if (li < s) { red[li] += red[li + s]; }
    workgroupBarrier();
  }
  let t = red[0];
  workgroupBarrier();
  return t;
}

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let base = (wg.y * 65535u + wg.x) * sz.C;
  let C = sz.C;
  var s = 0.0;
  for (var k = li; k < C; k += WG) { s += inp[base + k]; }
  let mean = total(li, s) / f32(C);
  var q = 0.0;
  for (var k = li; k < C; k += WG) { let d = inp[base + k] - mean; q += d * d; }
  let rstd = 1.0 / sqrt(total(li, q) / f32(C) + 1e-5);
  if (wg.y * 65535u + wg.x >= sz.rows) { return; }
  for (var k = li; k < C; k += WG) {
    out[base + k] = (inp[base + k] - mean) * rstd * gain[k] + bias[k];
  }
}
`;

/** The layer-norm op. */
export class LayerNormOp {
  #kernel: Kernel;

  /** Compiles the kernel on `ctx`'s device. */
  constructor(private ctx: GpuContext) {
    this.#kernel = ctx.kernel("layer_norm", CODE, ["read", "read", "read", "write"]);
  }

  /**
   * Records the layer norm of `rows` rows.
   * @param out  (rows, C) f32
   * @param inp  (rows, C) f32
   * @param gain (C) f32
   * @param bias (C) f32
   */
  record(out: GpuTensor, inp: GpuTensor, gain: GpuTensor, bias: GpuTensor, rows: number): void {
    const C = inp.shape[inp.shape.length - 1];
    const x = Math.min(rows, 65535);
    this.ctx.dispatch(
      this.#kernel,
      [rows, C],
      [{ tensor: inp }, { tensor: gain }, { tensor: bias }, { tensor: out }],
      [x, Math.ceil(rows / 65535)],
    );
  }
}
