/**
 * Tiled matrix products in WGSL: the three Conv1D forms (bias; bias then GELU; bias added
 * onto the residual stream) and the output head (h · wteᵀ). A workgroup computes a
 * BM × BN block of the output; it stages BM × BK of the input and BK × BN of the weight
 * in workgroup memory, so each value read from the storage buffers serves BN (or BM)
 * products, and each thread accumulates TM × TN outputs in registers.
 *
 * @module
 */
import type { Binding, GpuContext, Kernel } from "./context.ts";
import { weightBinding, weightHeader, type WeightStorage } from "./weight_storage.ts";

/** What follows the product: + bias; + bias then GELU; out += product + bias; nothing. */
export type MatmulEpilogue = "bias" | "gelu" | "residual" | "head";

/** A block shape: BM × BN outputs per workgroup, K in steps of BK, TM × TN per thread. */
interface Tile {
  readonly BM: number;
  readonly BN: number;
  readonly BK: number;
  readonly TM: number;
  readonly TN: number;
}

/** Few rows (a decoding step): wide blocks of columns, so few threads sit idle. */
const NARROW: Tile = { BM: 4, BN: 128, BK: 16, TM: 1, TN: 2 };
/** Many rows (a prompt): square-ish blocks, 16 products per thread per k. */
const WIDE: Tile = { BM: 32, BN: 64, BK: 16, TM: 4, TN: 4 };
/** Rows up to which the narrow tile is used. */
const NARROW_ROWS = 8;

function shader(tile: Tile, epilogue: MatmulEpilogue, storage: WeightStorage): string {
  const { BM, BN, BK, TM, TN } = tile;
  const WX = BN / TN;
  const WY = BM / TM;
  const head = epilogue === "head";
  // The weight tile's element (k, n): w is (K, N) for Conv1D, (N, K) for the head.
  const loadB = head
    ? `let k = i % BK; let n = i / BK;
      let col = col0 + n; let kk = k0 + k;
      var v = 0.0;
      if (col < sz.N && kk < sz.K) { v = w_load(col * sz.K + kk); }
      Bs[k * BN + n] = v;`
    : `let n = i % BN; let k = i / BN;
      let col = col0 + n; let kk = k0 + k;
      var v = 0.0;
      if (col < sz.N && kk < sz.K) { v = w_load(kk * sz.N + col); }
      Bs[k * BN + n] = v;`;
  const store = {
    bias: "out[o] = v + bias[c];",
    gelu: "out[o] = gelu(v + bias[c]);",
    residual: "out[o] = out[o] + (v + bias[c]);",
    head: "out[o] = v;",
  }[epilogue];
  return /* wgsl */ `${weightHeader(storage)}
struct Sizes { rows: u32, K: u32, N: u32, ldOut: u32, colOff: u32 }
@group(0) @binding(0) var<uniform> sz: Sizes;
@group(0) @binding(1) var<storage, read> inp: array<f32>;
${weightBinding(storage, "w", 2)}
${
    head
      ? "@group(0) @binding(3) var<storage, read_write> out: array<f32>;"
      : `@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<f32>;`
  }

const BM = ${BM}u; const BN = ${BN}u; const BK = ${BK}u;
const TM = ${TM}u; const TN = ${TN}u;
const WX = ${WX}u; const WY = ${WY}u; const NT = ${WX * WY}u;
var<workgroup> As: array<f32, ${BM * BK}>;
var<workgroup> Bs: array<f32, ${BK * BN}>;

// GPT-2's tanh GELU; tanh's argument is clamped where tanh is ±1 in f32 anyway, since
// some drivers compute tanh through exp and overflow to NaN for large inputs.
fn gelu(x: f32) -> f32 {
  let u = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -15.0, 15.0);
  return 0.5 * x * (1.0 + tanh(u));
}

@compute @workgroup_size(${WX * WY})
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let row0 = wg.y * BM;
  let col0 = wg.x * BN;
  let tx = li % WX;
  let ty = li / WX;
  var acc: array<f32, ${TM * TN}>;
  var a: array<f32, ${TM}>;
  var b: array<f32, ${TN}>;
  for (var k0 = 0u; k0 < sz.K; k0 += BK) {
    for (var i = li; i < BM * BK; i += NT) {
      let k = i % BK; let m = i / BK;
      let r = row0 + m; let kk = k0 + k;
      var v = 0.0;
      if (r < sz.rows && kk < sz.K) { v = inp[r * sz.K + kk]; }
      As[i] = v;
    }
    for (var i = li; i < BK * BN; i += NT) {
      ${loadB}
    }
    workgroupBarrier();
    for (var k = 0u; k < BK; k++) {
      for (var i = 0u; i < TM; i++) { a[i] = As[(ty + i * WY) * BK + k]; }
      for (var j = 0u; j < TN; j++) { b[j] = Bs[k * BN + tx + j * WX]; }
      for (var i = 0u; i < TM; i++) {
        for (var j = 0u; j < TN; j++) { acc[i * TN + j] = fma(a[i], b[j], acc[i * TN + j]); }
      }
    }
    workgroupBarrier();
  }
  for (var i = 0u; i < TM; i++) {
    let r = row0 + ty + i * WY;
    if (r >= sz.rows) { continue; }
    for (var j = 0u; j < TN; j++) {
      let c = col0 + tx + j * WX;
      if (c >= sz.N) { continue; }
      let v = acc[i * TN + j];
      let o = r * sz.ldOut + sz.colOff + c;
      ${store}
    }
  }
}
`;
}

/** One matrix-product op: a pipeline per tile shape and weight storage, compiled once. */
export class MatmulOp {
  #kernels = new Map<string, Kernel>();

  constructor(private ctx: GpuContext, readonly epilogue: MatmulEpilogue) {}

  #kernel(narrow: boolean, storage: WeightStorage): Kernel {
    const label = `matmul-${this.epilogue}-${narrow ? "narrow" : "wide"}-${storage}`;
    let k = this.#kernels.get(label);
    if (!k) {
      const access: ("read" | "write")[] = this.epilogue === "head"
        ? ["read", "read", "write"]
        : ["read", "read", "read", "write"];
      const code = shader(narrow ? NARROW : WIDE, this.epilogue, storage);
      k = this.ctx.kernel(label, code, access);
      this.#kernels.set(label, k);
    }
    return k;
  }

  /**
   * Records out[r, colOff + c] (=, or += for "residual") inp[r] · column c of w (+ bias[c]).
   * @param out    (rows, ldOut) f32
   * @param inp    (rows, K) f32
   * @param w      (K, N), or (N, K) for "head", stored as `storage`; a binding, so a
   *               slice of wte can be used
   * @param bias   (N), unused for "head"
   */
  record(
    out: Binding,
    inp: Binding,
    w: Binding,
    storage: WeightStorage,
    bias: Binding | null,
    sizes: { rows: number; K: number; N: number; ldOut: number; colOff: number },
  ): void {
    const { rows, K, N, ldOut, colOff } = sizes;
    const narrow = rows <= NARROW_ROWS;
    const tile = narrow ? NARROW : WIDE;
    const bindings: Binding[] = bias ? [inp, w, bias, out] : [inp, w, out];
    this.ctx.dispatch(
      this.#kernel(narrow, storage),
      [rows, K, N, ldOut, colOff],
      bindings,
      [Math.ceil(N / tile.BN), Math.ceil(rows / tile.BM)],
    );
  }
}
