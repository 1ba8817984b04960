/**
 * The kernels as one WebAssembly instance on the calling thread, and the table that says
 * how each kernel's work splits into independent units (rows, panels, heads), which the
 * worker pool (runtime/worker_pool.ts) shares out between threads.
 */
import type { Kernels } from "./kernels.ts";
import { MAX_MEMORY_BYTES, PANEL } from "./memory_plan.ts";
import { quantPanels } from "./quant_layout.ts";

/** The exports of asm/build/gpt2.wasm, with the work ranges each kernel takes last. */
/** A Conv1D export: `Conv1d`'s arguments, then the panels [p0, p1) to compute. */
type Conv1dPanels = (
  out: number,
  inp: number,
  weight: number,
  bias: number,
  T: number,
  C: number,
  OC: number,
  p0: number,
  p1: number,
) => void;

export interface KernelExports {
  embed(
    out: number,
    tokens: number,
    wte: number,
    wpe: number,
    T: number,
    C: number,
    past: number,
    r0: number,
    r1: number,
  ): void;
  layer_norm(
    out: number,
    inp: number,
    gain: number,
    bias: number,
    C: number,
    r0: number,
    r1: number,
  ): void;
  conv1d: Conv1dPanels;
  conv1d_gelu: Conv1dPanels;
  conv1d_residual: Conv1dPanels;
  logits(
    out: number,
    h: number,
    wte: number,
    T: number,
    C: number,
    V: number,
    v0: number,
    v1: number,
  ): void;
  attention(
    out: number,
    qkv: number,
    cache: number,
    scratch: number,
    T: number,
    past: number,
    nHead: number,
    dHead: number,
    nCtx: number,
    seqStride: number,
    u0: number,
    u1: number,
  ): void;
  gelu(out: number, inp: number, i0: number, i1: number): void;
  add(out: number, a: number, b: number, i0: number, i1: number): void;
  softmax(out: number, inp: number, cols: number, r0: number, r1: number): void;
  pack_panels(dst: number, src: number, C: number, OC: number, p0: number, p1: number): void;
  read_sum(out: number, inp: number, b0: number, b1: number): void;
  /** out = e^inp on elements [i0, i1): the kernels' vector exp, exported for its test. */
  exp(out: number, inp: number, i0: number, i1: number): void;
  static_data_end(): number;

  // Int8 and float16 weights (asm/matmul_q8.ts, asm/matmul_f16.ts).
  quantize_q8(dst: number, inp: number, C: number, r0: number, r1: number): void;
  pack_q8(
    dst: number,
    src: number,
    C: number,
    OC: number,
    transposed: number,
    p0: number,
    p1: number,
  ): void;
  conv1d_q8: Conv1dPanels;
  conv1d_q8_gelu: Conv1dPanels;
  conv1d_q8_residual: Conv1dPanels;
  logits_q8(
    out: number,
    qh: number,
    wte: number,
    T: number,
    C: number,
    V: number,
    p0: number,
    p1: number,
  ): void;
  embed_q8: KernelExports["embed"];
  /** out (4 i32) = the relaxed int8 dot product of 16 bytes at a and b, for its test. */
  relaxed_dot_probe(out: number, a: number, b: number): void;
  pack_f16(dst: number, src: number, C: number, OC: number, p0: number, p1: number): void;
  convert_f16(dst: number, src: number, i0: number, i1: number): void;
  conv1d_f16: Conv1dPanels;
  conv1d_f16_gelu: Conv1dPanels;
  conv1d_f16_residual: Conv1dPanels;
  logits_f16: KernelExports["logits"];
  embed_f16: KernelExports["embed"];
}

/** Floats per partial sum of `read_sum`; must equal `READ_BLOCK` in asm/memory.ts. */
export const READ_BLOCK = 16384;

/**
 * One kernel as the runtime calls it: its arguments (offsets and sizes, in the order of
 * the `Kernels` method), how many independent units of work they make, and a call that
 * does units [u0, u1). Every output element belongs to exactly one unit and is computed
 * by the same instructions whichever range it falls in, so any split of the units gives
 * bit-identical results.
 */
export interface KernelOp {
  /** Index in `KERNEL_OPS`, the number the worker pool sends. */
  readonly id: number;
  readonly name: string;
  /** Independent units of work of a call. */
  units(a: ArrayLike<number>): number;
  /** Units a split keeps together (16 floats of an element range: one cache line). */
  readonly align: number;
  /** About how many floats a call reads and writes: small calls are not worth a split. */
  size(a: ArrayLike<number>): number;
  run(k: KernelExports, a: ArrayLike<number>, u0: number, u1: number): void;
}

type OpSpec = Omit<KernelOp, "id" | "align"> & { align?: number };

const panels = (OC: number) => Math.ceil(OC / PANEL);

// Argument order of each op = the `Kernels` method's parameters.
const SPECS = {
  // out, tokens, wte, wpe, B, T, C, past
  embed: {
    name: "embed",
    units: (a) => a[4] * a[5],
    size: (a) => 2 * a[4] * a[5] * a[6],
    run: (k, a, u0, u1) => k.embed(a[0], a[1], a[2], a[3], a[5], a[6], a[7], u0, u1),
  },
  // out, inp, gain, bias, rows, C
  layerNorm: {
    name: "layerNorm",
    units: (a) => a[4],
    size: (a) => 2 * a[4] * a[5],
    run: (k, a, u0, u1) => k.layer_norm(a[0], a[1], a[2], a[3], a[5], u0, u1),
  },
  // out, inp, weight, bias, rows, C, OC
  conv1d: {
    name: "conv1d",
    units: (a) => panels(a[6]),
    size: (a) => (a[4] + a[5]) * a[6],
    run: (k, a, u0, u1) => k.conv1d(a[0], a[1], a[2], a[3], a[4], a[5], a[6], u0, u1),
  },
  // out, inp, weight, bias, rows, C, OC
  conv1dGelu: {
    name: "conv1dGelu",
    units: (a) => panels(a[6]),
    size: (a) => (a[4] + a[5]) * a[6],
    run: (k, a, u0, u1) => k.conv1d_gelu(a[0], a[1], a[2], a[3], a[4], a[5], a[6], u0, u1),
  },
  // out, inp, weight, bias, rows, C, OC
  conv1dResidual: {
    name: "conv1dResidual",
    units: (a) => panels(a[6]),
    size: (a) => (a[4] + a[5]) * a[6],
    run: (k, a, u0, u1) => k.conv1d_residual(a[0], a[1], a[2], a[3], a[4], a[5], a[6], u0, u1),
  },
  // out, h, wte, rows, C, V
  logits: {
    name: "logits",
    units: (a) => a[5],
    size: (a) => (a[3] + a[4]) * a[5],
    run: (k, a, u0, u1) => k.logits(a[0], a[1], a[2], a[3], a[4], a[5], u0, u1),
  },
  // out, qkv, cache, scratch, B, T, past, nHead, dHead, nCtx, seqStride
  attention: {
    name: "attention",
    units: (a) => a[4] * a[7],
    size: (a) => a[4] * a[7] * a[8] * (2 * (a[6] + a[5]) + 4 * a[5]),
    run: (k, a, u0, u1) =>
      k.attention(a[0], a[1], a[2], a[3], a[5], a[6], a[7], a[8], a[9], a[10], u0, u1),
  },
  // out, inp, n
  gelu: {
    name: "gelu",
    units: (a) => a[2],
    align: 16,
    size: (a) => 2 * a[2],
    run: (k, a, u0, u1) => k.gelu(a[0], a[1], u0, u1),
  },
  // out, a, b, n
  add: {
    name: "add",
    units: (a) => a[3],
    align: 16,
    size: (a) => 3 * a[3],
    run: (k, a, u0, u1) => k.add(a[0], a[1], a[2], u0, u1),
  },
  // out, inp, rows, cols
  softmax: {
    name: "softmax",
    units: (a) => a[2],
    size: (a) => 8 * a[2] * a[3],
    run: (k, a, u0, u1) => k.softmax(a[0], a[1], a[3], u0, u1),
  },
  // dst, src, C, OC
  packPanels: {
    name: "packPanels",
    units: (a) => panels(a[3]),
    size: (a) => 2 * a[2] * a[3],
    run: (k, a, u0, u1) => k.pack_panels(a[0], a[1], a[2], a[3], u0, u1),
  },
  // out, inp, blocks
  readSum: {
    name: "readSum",
    units: (a) => a[2],
    size: (a) => a[2] * READ_BLOCK,
    run: (k, a, u0, u1) => k.read_sum(a[0], a[1], u0, u1),
  },
  // Int8 (q8) weights: activations go through quantizeQ8 into a (rows, q8RowBytes(C))
  // buffer, which the q8 products read in place of f32 rows.
  // dst, inp, rows, C
  quantizeQ8: {
    name: "quantizeQ8",
    units: (a) => a[2],
    size: (a) => 2 * a[2] * a[3],
    run: (k, a, u0, u1) => k.quantize_q8(a[0], a[1], a[3], u0, u1),
  },
  // dst, src, C, OC, transposed (1: src is (OC, C))
  packQ8: {
    name: "packQ8",
    units: (a) => quantPanels(a[3]),
    size: (a) => 2 * a[2] * a[3],
    run: (k, a, u0, u1) => k.pack_q8(a[0], a[1], a[2], a[3], a[4], u0, u1),
  },
  // out, qinp, weight, bias, rows, C, OC
  conv1dQ8: {
    name: "conv1dQ8",
    units: (a) => quantPanels(a[6]),
    size: (a) => (a[4] + a[5]) * a[6] / 4,
    run: (k, a, u0, u1) => k.conv1d_q8(a[0], a[1], a[2], a[3], a[4], a[5], a[6], u0, u1),
  },
  // out, qinp, weight, bias, rows, C, OC
  conv1dQ8Gelu: {
    name: "conv1dQ8Gelu",
    units: (a) => quantPanels(a[6]),
    size: (a) => (a[4] + a[5]) * a[6] / 4,
    run: (k, a, u0, u1) => k.conv1d_q8_gelu(a[0], a[1], a[2], a[3], a[4], a[5], a[6], u0, u1),
  },
  // out, qinp, weight, bias, rows, C, OC
  conv1dQ8Residual: {
    name: "conv1dQ8Residual",
    units: (a) => quantPanels(a[6]),
    size: (a) => (a[4] + a[5]) * a[6] / 4,
    run: (k, a, u0, u1) => k.conv1d_q8_residual(a[0], a[1], a[2], a[3], a[4], a[5], a[6], u0, u1),
  },
  // out, qh, wte, rows, C, V
  logitsQ8: {
    name: "logitsQ8",
    units: (a) => quantPanels(a[5]),
    size: (a) => (a[3] + a[4]) * a[5] / 4,
    run: (k, a, u0, u1) => k.logits_q8(a[0], a[1], a[2], a[3], a[4], a[5], u0, u1),
  },
  // out, tokens, wte, wpe, B, T, C, past
  embedQ8: {
    name: "embedQ8",
    units: (a) => a[4] * a[5],
    size: (a) => 2 * a[4] * a[5] * a[6],
    run: (k, a, u0, u1) => k.embed_q8(a[0], a[1], a[2], a[3], a[5], a[6], a[7], u0, u1),
  },
  // Float16 weights.
  // dst, src, C, OC
  packF16: {
    name: "packF16",
    units: (a) => quantPanels(a[3]),
    size: (a) => 2 * a[2] * a[3],
    run: (k, a, u0, u1) => k.pack_f16(a[0], a[1], a[2], a[3], u0, u1),
  },
  // dst, src, n
  convertF16: {
    name: "convertF16",
    units: (a) => a[2],
    align: 16,
    size: (a) => 2 * a[2],
    run: (k, a, u0, u1) => k.convert_f16(a[0], a[1], u0, u1),
  },
  // out, inp, weight, bias, rows, C, OC
  conv1dF16: {
    name: "conv1dF16",
    units: (a) => quantPanels(a[6]),
    size: (a) => (a[4] + a[5]) * a[6] / 2,
    run: (k, a, u0, u1) => k.conv1d_f16(a[0], a[1], a[2], a[3], a[4], a[5], a[6], u0, u1),
  },
  // out, inp, weight, bias, rows, C, OC
  conv1dF16Gelu: {
    name: "conv1dF16Gelu",
    units: (a) => quantPanels(a[6]),
    size: (a) => (a[4] + a[5]) * a[6] / 2,
    run: (k, a, u0, u1) => k.conv1d_f16_gelu(a[0], a[1], a[2], a[3], a[4], a[5], a[6], u0, u1),
  },
  // out, inp, weight, bias, rows, C, OC
  conv1dF16Residual: {
    name: "conv1dF16Residual",
    units: (a) => quantPanels(a[6]),
    size: (a) => (a[4] + a[5]) * a[6] / 2,
    run: (k, a, u0, u1) => k.conv1d_f16_residual(a[0], a[1], a[2], a[3], a[4], a[5], a[6], u0, u1),
  },
  // out, h, wte, rows, C, V
  logitsF16: {
    name: "logitsF16",
    units: (a) => a[5],
    size: (a) => (a[3] + a[4]) * a[5] / 2,
    run: (k, a, u0, u1) => k.logits_f16(a[0], a[1], a[2], a[3], a[4], a[5], u0, u1),
  },
  // out, tokens, wte, wpe, B, T, C, past
  embedF16: {
    name: "embedF16",
    units: (a) => a[4] * a[5],
    size: (a) => 2 * a[4] * a[5] * a[6],
    run: (k, a, u0, u1) => k.embed_f16(a[0], a[1], a[2], a[3], a[5], a[6], a[7], u0, u1),
  },
} satisfies Record<string, OpSpec>;

/** Every kernel op, by name. */
export const OPS: { readonly [name in keyof typeof SPECS]: KernelOp } = Object.fromEntries(
  Object.entries(SPECS).map(([name, spec], id) => [name, { align: 1, ...spec, id }]),
) as { [name in keyof typeof SPECS]: KernelOp };

/** Every kernel op, by `id`. */
export const KERNEL_OPS: readonly KernelOp[] = Object.values(OPS);

let compiled: Promise<WebAssembly.Module> | undefined;

/** Compiles asm/build/gpt2.wasm once per process. */
export function kernelModule(): Promise<WebAssembly.Module> {
  compiled ??= Deno.readFile(new URL("../../../asm/build/gpt2.wasm", import.meta.url))
    .then((bytes) => WebAssembly.compile(bytes));
  return compiled;
}

/** A shared memory of at least `bytes` bytes, which never grows. */
export function createMemory(bytes: number): WebAssembly.Memory {
  if (bytes > MAX_MEMORY_BYTES) {
    throw new RangeError(
      `The model needs ${(bytes / 2 ** 30).toFixed(2)} GiB of memory, more than the 4 GiB ` +
        `a WebAssembly memory can hold (use a smaller model, batch or context)`,
    );
  }
  const pages = Math.ceil(bytes / 65536);
  return new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
}

/** Instantiates the kernel module on `memory`. */
export function instantiate(module: WebAssembly.Module, memory: WebAssembly.Memory): KernelExports {
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  return instance.exports as unknown as KernelExports;
}

/**
 * Every kernel call runs whole on this thread. Each method packs its arguments for one
 * op of `OPS` and hands it to `run`, which the worker pool overrides to share the units.
 */
export class WasmKernels implements Kernels {
  readonly threads: number = 1;
  /** The kernel instance of the calling thread. */
  protected readonly exports: KernelExports;

  constructor(module: WebAssembly.Module, readonly memory: WebAssembly.Memory) {
    this.exports = instantiate(module, memory);
  }

  /** Runs all units of `op` on this thread. */
  protected run(op: KernelOp, args: number[]): void {
    op.run(this.exports, args, 0, op.units(args));
  }

  embed(
    out: number,
    tokens: number,
    wte: number,
    wpe: number,
    B: number,
    T: number,
    C: number,
    past: number,
  ): void {
    this.run(OPS.embed, [out, tokens, wte, wpe, B, T, C, past]);
  }
  layerNorm(out: number, inp: number, gain: number, bias: number, rows: number, C: number): void {
    this.run(OPS.layerNorm, [out, inp, gain, bias, rows, C]);
  }
  conv1d(
    out: number,
    inp: number,
    weight: number,
    bias: number,
    rows: number,
    C: number,
    OC: number,
  ): void {
    this.run(OPS.conv1d, [out, inp, weight, bias, rows, C, OC]);
  }
  conv1dGelu(
    out: number,
    inp: number,
    weight: number,
    bias: number,
    rows: number,
    C: number,
    OC: number,
  ): void {
    this.run(OPS.conv1dGelu, [out, inp, weight, bias, rows, C, OC]);
  }
  conv1dResidual(
    out: number,
    inp: number,
    weight: number,
    bias: number,
    rows: number,
    C: number,
    OC: number,
  ): void {
    this.run(OPS.conv1dResidual, [out, inp, weight, bias, rows, C, OC]);
  }
  logits(out: number, h: number, wte: number, rows: number, C: number, V: number): void {
    this.run(OPS.logits, [out, h, wte, rows, C, V]);
  }
  attention(
    out: number,
    qkv: number,
    cache: number,
    scratch: number,
    B: number,
    T: number,
    past: number,
    nHead: number,
    dHead: number,
    nCtx: number,
    seqStride: number,
  ): void {
    this.run(OPS.attention, [out, qkv, cache, scratch, B, T, past, nHead, dHead, nCtx, seqStride]);
  }
  gelu(out: number, inp: number, n: number): void {
    this.run(OPS.gelu, [out, inp, n]);
  }
  add(out: number, a: number, b: number, n: number): void {
    this.run(OPS.add, [out, a, b, n]);
  }
  softmax(out: number, inp: number, rows: number, cols: number): void {
    this.run(OPS.softmax, [out, inp, rows, cols]);
  }
  packPanels(dst: number, src: number, C: number, OC: number): void {
    this.run(OPS.packPanels, [dst, src, C, OC]);
  }
  readSum(out: number, inp: number, blocks: number): void {
    this.run(OPS.readSum, [out, inp, blocks]);
  }
  [Symbol.dispose](): void {}
}
