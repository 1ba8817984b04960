/**
 * Token and position embeddings in WGSL: out[r] = wte[tokens[r]] + wpe[positions[r]].
 * wte may be bound a vocabulary range at a time (it can exceed one storage binding), so
 * a dispatch fills only the rows whose token falls in its range.
 *
 * @module
 */
import type { Binding, GpuContext, GpuTensor, Kernel } from "./context.ts";
import { weightBinding, weightHeader, type WeightStorage } from "./weight_storage.ts";

const code = (storage: WeightStorage) =>
  /* wgsl */ `${weightHeader(storage)}
struct Sizes { rows: u32, C: u32, vStart: u32, vCount: u32 }
@group(0) @binding(0) var<uniform> sz: Sizes;
@group(0) @binding(1) var<storage, read> tokens: array<u32>;
@group(0) @binding(2) var<storage, read> positions: array<u32>;
${weightBinding(storage, "wte", 3)}
@group(0) @binding(4) var<storage, read> wpe: array<f32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3u) {
  let k = id.x;
  let r = id.y;
  if (k >= sz.C || r >= sz.rows) { return; }
  let v = tokens[r] - sz.vStart;
  if (tokens[r] < sz.vStart || v >= sz.vCount) { return; }
  out[r * sz.C + k] = wte_load(v * sz.C + k) + wpe[positions[r] * sz.C + k];
}
`;

/** The embedding op: a pipeline per storage of wte, compiled once. */
export class EmbedOp {
  #kernels = new Map<WeightStorage, Kernel>();

  /** An op on `ctx`'s device; each storage's kernel compiles when first used. */
  constructor(private ctx: GpuContext) {}

  #kernel(storage: WeightStorage): Kernel {
    let k = this.#kernels.get(storage);
    if (!k) {
      const access = ["read", "read", "read", "read", "write"] as const;
      k = this.ctx.kernel(`embed-${storage}`, code(storage), access);
      this.#kernels.set(storage, k);
    }
    return k;
  }

  /**
   * Records the rows whose token is in [vStart, vStart + vCount).
   * @param out       (rows, C) f32
   * @param tokens    (rows) i32
   * @param positions (rows) i32
   * @param wte       rows vStart … vStart + vCount − 1 of the (V, C) embedding, as `storage`
   * @param wpe       (n_ctx, C) f32
   */
  record(
    out: GpuTensor,
    tokens: GpuTensor,
    positions: GpuTensor,
    wte: Binding,
    storage: WeightStorage,
    wpe: GpuTensor,
    sizes: { rows: number; C: number; vStart: number; vCount: number },
  ): void {
    const { rows, C, vStart, vCount } = sizes;
    this.ctx.dispatch(
      this.#kernel(storage),
      [rows, C, vStart, vCount],
      [{ tensor: tokens }, { tensor: positions }, wte, { tensor: wpe }, { tensor: out }],
      [Math.ceil(C / 64), rows],
    );
  }
}
