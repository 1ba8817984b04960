/**
 * The op table: every kernel the wasm backend calls, once. An entry names its arguments
 * (byte offsets and sizes), says how its work splits into independent units (rows,
 * panels, vocabulary rows, (sequence, head) pairs), estimates its size, and calls the
 * export with its arguments by name. The worker pool sends the arguments by position, in
 * the order of `args`. Adding an op is adding an entry.
 *
 * Every output element belongs to exactly one unit and is computed by the same
 * instructions whichever range it falls in, so any split of the units gives bit-identical
 * results.
 */
import type { KernelConstants, KernelExports } from "./kernel_module.ts";
import { QUANT_PANEL, quantPanels } from "./quant_layout.ts";

/** An op's arguments by name. */
export type OpArgs<A extends string = string> = Readonly<Record<A, number>>;

/** One kernel as the backend calls it. */
export interface Op<A extends string = string> {
  /** Its index in `OP_LIST`, the number the worker pool sends. */
  readonly id: number;
  /** Its key in `OPS`, named in error messages. */
  readonly name: string;
  /** Its arguments, in the order the worker pool sends them. */
  readonly args: readonly A[];
  /** Independent units of work of a call. */
  units(a: OpArgs<A>, c: KernelConstants): number;
  /** Units a split keeps together. */
  readonly align: number;
  /** About how many floats a call reads and writes: small calls are not worth a split. */
  size(a: OpArgs<A>, c: KernelConstants): number;
  /** Does units [u0, u1) of the call. */
  run(x: KernelExports, a: OpArgs<A>, u0: number, u1: number): void;
}

type Spec<A extends string> = Omit<Op<A>, "id" | "name" | "align" | "args"> & {
  align?: number;
};

function op<const A extends string>(args: readonly A[], spec: Spec<A>): Omit<Op<A>, "id" | "name"> {
  return { align: 1, ...spec, args };
}

const panels = (OC: number, c: KernelConstants) => Math.ceil(OC / c.PANEL);

/** The three Conv1D kernels share their arguments and split: by output panel. */
const conv1dOp = (kernel: string) =>
  op(["out", "inp", "weight", "bias", "rows", "C", "OC"], {
    units: (a, c) => panels(a.OC, c),
    size: (a) => (a.rows + a.C) * a.OC,
    run: (x, a, u0, u1) => x[kernel](a.out, a.inp, a.weight, a.bias, a.rows, a.C, a.OC, u0, u1),
  });

/**
 * The q8 Conv1D kernels: `qinp` holds the input rows quantised by `quantizeQ8`; the
 * split is by panels of `QUANT_PANEL` columns.
 */
const conv1dQ8Op = (kernel: string) =>
  op(["out", "qinp", "weight", "bias", "rows", "C", "OC"], {
    units: (a) => quantPanels(a.OC),
    size: (a) => (a.rows + a.C) * a.OC / 4,
    run: (x, a, u0, u1) => x[kernel](a.out, a.qinp, a.weight, a.bias, a.rows, a.C, a.OC, u0, u1),
  });

/** The f16 Conv1D kernels, split by panels of `QUANT_PANEL` columns. */
const conv1dF16Op = (kernel: string) =>
  op(["out", "inp", "weight", "bias", "rows", "C", "OC"], {
    units: (a) => quantPanels(a.OC),
    size: (a) => (a.rows + a.C) * a.OC / 2,
    run: (x, a, u0, u1) => x[kernel](a.out, a.inp, a.weight, a.bias, a.rows, a.C, a.OC, u0, u1),
  });

/**
 * `pack_q8` / `pack_f16` over `panels` panels from panel `first` on, with src holding the
 * weight from that panel on only: a chunk of wte's rows (transposed = 1), packed into the
 * whole of dst. Units are the chunk's panels.
 */
const packChunkOp = (kernel: string) =>
  op(["dst", "src", "C", "OC", "transposed", "first", "panels"], {
    units: (a) => a.panels,
    size: (a) => 2 * a.C * QUANT_PANEL * a.panels,
    run: (x, a, u0, u1) =>
      x[kernel](a.dst, a.src, a.C, a.OC, a.transposed, a.first, a.first + u0, a.first + u1),
  });

/** `embed` with wte stored as q8 or f16. */
const embedOp = (kernel: string) =>
  op(["out", "tokens", "positions", "wte", "wpe", "rows", "C"], {
    units: (a) => a.rows,
    size: (a) => 2 * a.rows * a.C,
    run: (x, a, u0, u1) => x[kernel](a.out, a.tokens, a.positions, a.wte, a.wpe, a.C, u0, u1),
  });

const SPECS = {
  embed: op(["out", "tokens", "positions", "wte", "wpe", "rows", "C"], {
    units: (a) => a.rows,
    size: (a) => 2 * a.rows * a.C,
    run: (x, a, u0, u1) => x.embed(a.out, a.tokens, a.positions, a.wte, a.wpe, a.C, u0, u1),
  }),
  layerNorm: op(["out", "inp", "gain", "bias", "rows", "C"], {
    units: (a) => a.rows,
    size: (a) => 2 * a.rows * a.C,
    run: (x, a, u0, u1) => x.layer_norm(a.out, a.inp, a.gain, a.bias, a.C, u0, u1),
  }),
  conv1d: conv1dOp("conv1d"),
  conv1dGelu: conv1dOp("conv1d_gelu"),
  conv1dResidual: conv1dOp("conv1d_residual"),
  logits: op(["out", "h", "wte", "rows", "C", "V"], {
    units: (a) => a.V,
    size: (a) => (a.rows + a.C) * a.V,
    run: (x, a, u0, u1) => x.logits(a.out, a.h, a.wte, a.rows, a.C, a.V, u0, u1),
  }),
  // `keys` (the most positions a sequence attends over, its past + T) only sizes the call.
  attention: op([
    "out",
    "qkv",
    "cache",
    "scratch",
    "seqs",
    "B",
    "T",
    "heads",
    "headDim",
    "positions",
    "slotStride",
    "keys",
  ], {
    units: (a) => a.B * a.heads,
    size: (a) => a.B * a.heads * a.headDim * (2 * a.keys + 4 * a.T),
    run: (x, a, u0, u1) =>
      x.attention(
        a.out,
        a.qkv,
        a.cache,
        a.scratch,
        a.seqs,
        a.T,
        a.heads,
        a.headDim,
        a.positions,
        a.slotStride,
        u0,
        u1,
      ),
  }),
  packPanels: op(["dst", "src", "C", "OC"], {
    units: (a, c) => panels(a.OC, c),
    size: (a) => 2 * a.C * a.OC,
    run: (x, a, u0, u1) => x.pack_panels(a.dst, a.src, a.C, a.OC, u0, u1),
  }),
  readSum: op(["out", "inp", "blocks"], {
    units: (a) => a.blocks,
    size: (a, c) => a.blocks * c.READ_BLOCK,
    run: (x, a, u0, u1) => x.read_sum(a.out, a.inp, u0, u1),
  }),
  // Int8 weights (asm/matmul_q8.ts): activations are quantised by rows into a buffer of
  // rows · q8RowBytes(C) bytes, which the q8 products read.
  quantizeQ8: op(["dst", "inp", "rows", "C"], {
    units: (a) => a.rows,
    size: (a) => 2 * a.rows * a.C,
    run: (x, a, u0, u1) => x.quantize_q8(a.dst, a.inp, a.C, u0, u1),
  }),
  // transposed = 1: src is (OC, C), the output head's wte.
  packQ8: op(["dst", "src", "C", "OC", "transposed"], {
    units: (a) => quantPanels(a.OC),
    size: (a) => 2 * a.C * a.OC,
    run: (x, a, u0, u1) => x.pack_q8(a.dst, a.src, a.C, a.OC, a.transposed, 0, u0, u1),
  }),
  packQ8Chunk: packChunkOp("pack_q8"),
  conv1dQ8: conv1dQ8Op("conv1d_q8"),
  conv1dQ8Gelu: conv1dQ8Op("conv1d_q8_gelu"),
  conv1dQ8Residual: conv1dQ8Op("conv1d_q8_residual"),
  logitsQ8: op(["out", "qh", "wte", "rows", "C", "V"], {
    units: (a) => quantPanels(a.V),
    size: (a) => (a.rows + a.C) * a.V / 4,
    run: (x, a, u0, u1) => x.logits_q8(a.out, a.qh, a.wte, a.rows, a.C, a.V, u0, u1),
  }),
  embedQ8: embedOp("embed_q8"),
  // Float16 weights (asm/matmul_f16.ts).
  // transposed = 1: src is (OC, C), the output head's wte.
  packF16: op(["dst", "src", "C", "OC", "transposed"], {
    units: (a) => quantPanels(a.OC),
    size: (a) => 2 * a.C * a.OC,
    run: (x, a, u0, u1) => x.pack_f16(a.dst, a.src, a.C, a.OC, a.transposed, 0, u0, u1),
  }),
  packF16Chunk: packChunkOp("pack_f16"),
  convertF16: op(["dst", "src", "n"], {
    units: (a) => a.n,
    align: 16,
    size: (a) => 2 * a.n,
    run: (x, a, u0, u1) => x.convert_f16(a.dst, a.src, u0, u1),
  }),
  conv1dF16: conv1dF16Op("conv1d_f16"),
  conv1dF16Gelu: conv1dF16Op("conv1d_f16_gelu"),
  conv1dF16Residual: conv1dF16Op("conv1d_f16_residual"),
  logitsF16: op(["out", "h", "wte", "rows", "C", "V"], {
    units: (a) => quantPanels(a.V),
    size: (a) => (a.rows + a.C) * a.V / 2,
    run: (x, a, u0, u1) => x.logits_f16(a.out, a.h, a.wte, a.rows, a.C, a.V, u0, u1),
  }),
  embedF16: embedOp("embed_f16"),
};

/** The ops by name, each typed with its own argument names. */
export type Ops = { readonly [K in keyof typeof SPECS]: Op<(typeof SPECS)[K]["args"][number]> };

/** Every op, by name. */
export const OPS: Ops = Object.fromEntries(
  Object.entries(SPECS).map(([name, spec], id) => [name, { ...spec, id, name }]),
) as unknown as Ops;

/** Every op, by `id`. */
export const OP_LIST: readonly Op[] = Object.values(OPS);

/** The named arguments of `op` from the values the worker pool sent, in `op.args` order. */
export function namedArgs(op: Op, values: ArrayLike<number>): OpArgs {
  const a: Record<string, number> = {};
  for (let i = 0; i < op.args.length; i++) a[op.args[i]] = values[i];
  return a;
}
