/**
 * Tiled matrix products in WGSL: the three Conv1D forms (bias; bias then GELU; bias added
 * onto the residual stream) and the output head (h · wteᵀ), in two kernels:
 * - many rows (a prompt): a workgroup computes a BM × BN block of the output; it stages
 *   BM × BK of the input and BK × BN of the weight in workgroup memory, so each value read
 *   from the storage buffers serves BN (or BM) products, and each thread accumulates
 *   TM × TN outputs in registers;
 * - up to 8 rows (decoding): reading the weight once is the whole cost, so a workgroup
 *   takes few columns and splits K among its threads (split-K): it stages a chunk of
 *   every row of the input in workgroup memory, each thread multiplies a strided part of
 *   K for all rows, and the partial sums are added in workgroup memory. Many narrow
 *   workgroups keep a whole GPU streaming where BN-wide blocks would leave most of it idle.
 * Threads that read the weight read consecutive addresses: along a row of the (K, N)
 * Conv1D weight, along a row of wte for the head.
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

/** Many rows (a prompt): square-ish blocks, 16 products per thread per k. */
const WIDE: Tile = { BM: 32, BN: 64, BK: 16, TM: 4, TN: 4 };
/** Rows up to which the split-K kernel is used. */
const FEW_ROWS = 8;
/** The split-K kernel: threads per workgroup, and K staged per step. */
const SPLIT_THREADS = 256;
const SPLIT_KC = 128;

/** The WGSL shared by both kernels: sizes, bindings, GELU, and the store of value v. */
function common(epilogue: MatmulEpilogue, storage: WeightStorage): string {
  const head = epilogue === "head";
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

// GPT-2's tanh GELU; tanh's argument is clamped where tanh is ±1 in f32 anyway, since
// some drivers compute tanh through exp and overflow to NaN for large inputs.
fn gelu(x: f32) -> f32 {
  let u = clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -15.0, 15.0);
  return 0.5 * x * (1.0 + tanh(u));
}

// Stores the product v of row r, column c, with the epilogue.
fn store(r: u32, c: u32, v: f32) {
  let o = r * sz.ldOut + sz.colOff + c;
  ${
    {
      bias: "out[o] = v + bias[c];",
      gelu: "out[o] = gelu(v + bias[c]);",
      residual: "out[o] = out[o] + (v + bias[c]);",
      head: "out[o] = v;",
    }[epilogue]
  }
}
`;
}

/** Columns per workgroup and threads per column of the split-K kernel. */
function splitShape(epilogue: MatmulEpilogue): { COLS: number; SLICES: number } {
  // Conv1D: 32 neighbouring columns of a weight row per k; head: 32 neighbouring k of 8
  // rows of wte.
  return epilogue === "head" ? { COLS: 8, SLICES: 32 } : { COLS: 32, SLICES: 8 };
}

function splitShader(epilogue: MatmulEpilogue, storage: WeightStorage): string {
  const head = epilogue === "head";
  const { COLS, SLICES } = splitShape(epilogue);
  return /* wgsl */ `${common(epilogue, storage)}
const COLS = ${COLS}u; const SLICES = ${SLICES}u; const KC = ${SPLIT_KC}u;
const MAXR = ${FEW_ROWS}u; const NT = ${SPLIT_THREADS}u;
var<workgroup> a: array<f32, ${FEW_ROWS * SPLIT_KC}>;
var<workgroup> part: array<f32, ${SLICES * FEW_ROWS * COLS}>;

@compute @workgroup_size(NT)
fn main(@builtin(workgroup_id) wg: vec3u, @builtin(local_invocation_index) li: u32) {
  let c = ${head ? "li / SLICES" : "li % COLS"};
  let s = ${head ? "li % SLICES" : "li / COLS"};
  let col = wg.x * COLS + c;
  let rows = sz.rows;
  var acc: array<f32, MAXR>;
  for (var k0 = 0u; k0 < sz.K; k0 += KC) {
    for (var i = li; i < rows * KC; i += NT) {
      let r = i / KC; let k = k0 + i % KC;
      var v = 0.0;
      if (k < sz.K) { v = inp[r * sz.K + k]; }
      a[i] = v;
    }
    workgroupBarrier();
    if (col < sz.N) {
      let kn = min(KC, sz.K - k0);
      for (var k = s; k < kn; k += SLICES) {
        let wv = w_load(${head ? "col * sz.K + k0 + k" : "(k0 + k) * sz.N + col"});
        for (var r = 0u; r < rows; r++) { acc[r] = fma(a[r * KC + k], wv, acc[r]); }
      }
    }
    workgroupBarrier();
  }
  for (var r = 0u; r < rows; r++) { part[(s * MAXR + r) * COLS + c] = acc[r]; }
  workgroupBarrier();
  if (li < rows * COLS) {
    let r = li / COLS;
    let cc = li % COLS;
    let oc = wg.x * COLS + cc;
    if (oc < sz.N) {
      var v = 0.0;
      for (var q = 0u; q < SLICES; q++) { v += part[(q * MAXR + r) * COLS + cc]; }
      store(r, oc, v);
    }
  }
}
`;
}

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
  return /* wgsl */ `${common(epilogue, storage)}
const BM = ${BM}u; const BN = ${BN}u; const BK = ${BK}u;
const TM = ${TM}u; const TN = ${TN}u;
const WX = ${WX}u; const WY = ${WY}u; const NT = ${WX * WY}u;
var<workgroup> As: array<f32, ${BM * BK}>;
var<workgroup> Bs: array<f32, ${BK * BN}>;

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
      store(r, c, acc[i * TN + j]);
    }
  }
}
`;
}

/** One matrix-product op: a pipeline per tile shape and weight storage, compiled once. */
export class MatmulOp {
  #kernels = new Map<string, Kernel>();

  /** An op on `ctx`'s device; each kernel compiles when first used. */
  constructor(private ctx: GpuContext, readonly epilogue: MatmulEpilogue) {}

  #kernel(few: boolean, storage: WeightStorage): Kernel {
    const label = `matmul-${this.epilogue}-${few ? "split-k" : "tiled"}-${storage}`;
    let k = this.#kernels.get(label);
    if (!k) {
      const access: ("read" | "write")[] = this.epilogue === "head"
        ? ["read", "read", "write"]
        : ["read", "read", "read", "write"];
      const code = few ? splitShader(this.epilogue, storage) : shader(WIDE, this.epilogue, storage);
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
    const few = rows <= FEW_ROWS;
    const bindings: Binding[] = bias ? [inp, w, bias, out] : [inp, w, out];
    const groups: [number, number] = few
      ? [Math.ceil(N / splitShape(this.epilogue).COLS), 1]
      : [Math.ceil(N / WIDE.BN), Math.ceil(rows / WIDE.BM)];
    this.ctx.dispatch(this.#kernel(few, storage), [rows, K, N, ldOut, colOff], bindings, groups);
  }
}
