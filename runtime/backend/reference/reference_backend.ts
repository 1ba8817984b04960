/**
 * The scalar reference as a backend: every op is a plain TypeScript function of ops.ts
 * (sums in float64), every tensor a plain typed array, every weight stored as the
 * checkpoint gives it. Slow and obviously right; the conformance suite holds every
 * other backend to it. It is for tests, not offered to users.
 *
 * @module
 */
import type { ActivationType, Backend, KVCacheShape, Tensor, WeightRole } from "../backend.ts";
import { refAttention, refConv1d, refGelu, refLayerNorm, refLogits } from "./ops.ts";

class RefTensor implements Tensor {
  readonly bytes: number;
  constructor(
    readonly owner: ReferenceBackend,
    readonly shape: readonly number[],
    readonly type: ActivationType,
    readonly data: Float32Array | Int32Array,
  ) {
    this.bytes = data.byteLength;
  }
}

/** A KV cache as plain arrays: keys and values (layers, slots, heads, positions, headDim). */
class RefCache extends RefTensor {
  readonly keys: Float32Array;
  readonly values: Float32Array;
  constructor(owner: ReferenceBackend, readonly spec: KVCacheShape) {
    const { layers, slots, positions, heads, headDim } = spec;
    const size = layers * slots * heads * positions * headDim;
    const data = new Float32Array(2 * size);
    super(owner, [layers, slots, 2, heads, positions, headDim], "f32", data);
    this.keys = data.subarray(0, size);
    this.values = data.subarray(size);
  }

  /** Float index of (layer, slot, head, position 0, feature 0) in `keys` or `values`. */
  at(layer: number, slot: number, head: number): number {
    const { slots, heads, positions, headDim } = this.spec;
    return (((layer * slots + slot) * heads + head) * positions) * headDim;
  }
}

const size = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);

/** The reference backend. */
export class ReferenceBackend implements Backend {
  readonly name = "reference";
  readonly weightType = "f32";
  /** Each row is computed alone, in one order. */
  readonly splitInvariant = true;
  #disposed = false;

  tensor(shape: readonly number[], type: ActivationType = "f32"): Tensor {
    const n = size(shape);
    const data = type === "i32" ? new Int32Array(n) : new Float32Array(n);
    return new RefTensor(this, shape, type, data);
  }

  weight(_role: WeightRole, shape: readonly number[]): Tensor {
    return new RefTensor(this, shape, "f32", new Float32Array(size(shape)));
  }

  async loadWeight(weight: Tensor, read: (dest: Float32Array) => Promise<void>): Promise<void> {
    await read(this.#f32(weight));
  }

  kvCache(shape: KVCacheShape): Tensor {
    return new RefCache(this, shape);
  }

  write(t: Tensor, data: Int32Array): void {
    this.#i32(t).set(data);
  }

  read(t: Tensor, into: Float32Array): Promise<void> {
    this.#check();
    into.set(this.#f32(t).subarray(0, into.length));
    return Promise.resolve();
  }

  embed(
    out: Tensor,
    tokens: Tensor,
    positions: Tensor,
    wte: Tensor,
    wpe: Tensor,
    rows: number,
  ): void {
    const o = this.#f32(out), e = this.#f32(wte), p = this.#f32(wpe);
    const ids = this.#i32(tokens), at = this.#i32(positions);
    const C = wte.shape[1];
    for (let r = 0; r < rows; r++) {
      for (let k = 0; k < C; k++) o[r * C + k] = e[ids[r] * C + k] + p[at[r] * C + k];
    }
  }

  layerNorm(out: Tensor, inp: Tensor, gain: Tensor, bias: Tensor, rows: number): void {
    const C = gain.shape[0];
    const x = this.#f32(inp).subarray(0, rows * C);
    this.#f32(out).set(refLayerNorm(x, this.#f32(gain), this.#f32(bias), rows, C));
  }

  conv1d(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor, rows: number): void {
    this.#f32(out).set(this.#conv1d(inp, weight, bias, rows));
  }

  conv1dGelu(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor, rows: number): void {
    this.#f32(out).set(refGelu(this.#conv1d(inp, weight, bias, rows)));
  }

  conv1dResidual(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor, rows: number): void {
    const o = this.#f32(out);
    this.#conv1d(inp, weight, bias, rows).forEach((v, i) => o[i] += v);
  }

  attention(
    out: Tensor,
    qkv: Tensor,
    cache: Tensor,
    layer: number,
    seqs: Tensor,
    B: number,
    T: number,
  ): void {
    if (!(cache instanceof RefCache) || cache.owner !== this) {
      throw new TypeError("Expected a KV cache of this reference backend");
    }
    const { heads, headDim } = cache.spec;
    const C = heads * headDim;
    const q = this.#f32(qkv), o = this.#f32(out), s = this.#i32(seqs);
    for (let b = 0; b < B; b++) {
      const slot = s[2 * b], past = s[2 * b + 1];
      const pastK = new Float32Array(heads * past * headDim);
      const pastV = new Float32Array(heads * past * headDim);
      for (let h = 0; h < heads; h++) {
        const from = cache.at(layer, slot, h);
        pastK.set(cache.keys.subarray(from, from + past * headDim), h * past * headDim);
        pastV.set(cache.values.subarray(from, from + past * headDim), h * past * headDim);
      }
      const rows = q.subarray(b * T * 3 * C, (b + 1) * T * 3 * C);
      const r = refAttention(rows, pastK, pastV, 1, T, past, heads, headDim);
      o.set(r.out, b * T * C);
      for (let h = 0; h < heads; h++) {
        const ns = (past + T) * headDim;
        cache.keys.set(r.k.subarray(h * ns, (h + 1) * ns), cache.at(layer, slot, h));
        cache.values.set(r.v.subarray(h * ns, (h + 1) * ns), cache.at(layer, slot, h));
      }
    }
  }

  logits(out: Tensor, h: Tensor, wte: Tensor, rows: number): void {
    const [V, C] = wte.shape;
    this.#f32(out).set(refLogits(this.#f32(h).subarray(0, rows * C), this.#f32(wte), rows, C, V));
  }

  gatherRows(out: Tensor, inp: Tensor, rows: readonly number[]): void {
    const o = this.#f32(out), x = this.#f32(inp);
    const C = inp.shape[inp.shape.length - 1];
    rows.forEach((r, i) => o.set(x.subarray(r * C, (r + 1) * C), i * C));
  }

  [Symbol.dispose](): void {
    this.#disposed = true;
  }

  #conv1d(inp: Tensor, weight: Tensor, bias: Tensor, rows: number): Float32Array {
    const [C, OC] = weight.shape;
    const x = this.#f32(inp).subarray(0, rows * C);
    return refConv1d(x, this.#f32(weight), this.#f32(bias), rows, C, OC);
  }

  #f32(t: Tensor): Float32Array {
    this.#check();
    if (!(t instanceof RefTensor) || t.owner !== this || !(t.data instanceof Float32Array)) {
      throw new TypeError("Expected a float32 tensor of this reference backend");
    }
    return t.data;
  }

  #i32(t: Tensor): Int32Array {
    this.#check();
    if (!(t instanceof RefTensor) || t.owner !== this || !(t.data instanceof Int32Array)) {
      throw new TypeError("Expected an int32 tensor of this reference backend");
    }
    return t.data;
  }

  #check(): void {
    if (this.#disposed) throw new Error("This reference backend has been disposed");
  }
}
