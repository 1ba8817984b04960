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
import { PANEL, panels, widenedPanelBytes } from "./layout.ts";

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
  /**
   * Does units [u0, u1) of the call, as part `part` of it (0, the default, on the calling
   * thread; a worker's index on a worker), which picks the thread's own scratch. Returns
   * nothing, or, for a kernel that counts something over its units, the count (the worker
   * pool returns the sum over the parts).
   */
  run(x: KernelExports, a: OpArgs<A>, u0: number, u1: number, part?: number): number | void;
  /** Which form of the op a call is, where its arguments choose one (a Conv1D's mode). */
  variant?(a: OpArgs<A>, c: KernelConstants): string;
}

type Spec<A extends string> = Omit<Op<A>, "id" | "name" | "align" | "args"> & {
  align?: number;
};

function op<const A extends string>(args: readonly A[], spec: Spec<A>): Omit<Op<A>, "id" | "name"> {
  return { align: 1, ...spec, args };
}

/**
 * A Conv1D kernel: out = mode(inp · weight + bias), `mode` one of the module's STORE, GELU
 * and RESIDUAL; `inp` is f32 rows, or for a format that quantises its activations the rows
 * its quantiser wrote. Split by output panels of `PANEL` columns; `bytesPerWeight` sizes a
 * call.
 */
const conv1dOp = (kernel: string, bytesPerWeight: number) =>
  op(["out", "inp", "weight", "bias", "rows", "C", "OC", "mode"], {
    units: (a) => panels(a.OC),
    size: (a) => (a.rows + a.C) * a.OC * bytesPerWeight / 4,
    run: (x, a, u0, u1) =>
      x[kernel](a.out, a.inp, a.weight, a.bias, a.rows, a.C, a.OC, a.mode, u0, u1),
    variant: (a, c) => Object.entries(c.modes).find(([, m]) => m === a.mode)?.[0] ?? "",
  });

/** The output head, logits = h · wteᵀ, with `h` as `conv1dOp`'s `inp`: split by vocabulary panels. */
const logitsOp = (kernel: string, bytesPerWeight: number) =>
  op(["out", "h", "wte", "rows", "C", "V"], {
    units: (a) => panels(a.V),
    size: (a) => (a.rows + a.C) * a.V * bytesPerWeight / 4,
    run: (x, a, u0, u1) => x[kernel](a.out, a.h, a.wte, a.rows, a.C, a.V, u0, u1),
  });

/**
 * Where part `part` of a call finds its own scratch of `widenedPanelBytes(C)` bytes: from
 * `scratch`, each part's after the one before (0: the call has none).
 */
function partScratch(a: OpArgs<"scratch" | "C">, part = 0): number {
  return a.scratch ? a.scratch + part * widenedPanelBytes(a.C) : 0;
}

/**
 * The float16 products (asm/matmul_f16.ts): `conv1dOp`'s and `logitsOp`'s, plus `scratch`,
 * where each thread widens a panel for a call of many rows.
 */
const conv1dF16Op = op(["out", "inp", "weight", "bias", "rows", "C", "OC", "mode", "scratch"], {
  ...conv1dOp("conv1d_f16", 2),
  run: (x, a, u0, u1, part) =>
    x.conv1d_f16(
      a.out,
      a.inp,
      a.weight,
      a.bias,
      a.rows,
      a.C,
      a.OC,
      a.mode,
      u0,
      u1,
      partScratch(a, part),
    ),
});
const logitsF16Op = op(["out", "h", "wte", "rows", "C", "V", "scratch"], {
  ...logitsOp("logits_f16", 2),
  run: (x, a, u0, u1, part) =>
    x.logits_f16(a.out, a.h, a.wte, a.rows, a.C, a.V, u0, u1, partScratch(a, part)),
});

/**
 * A Conv1D weight (C, OC) packed from its f32 rows: split by panels. Returns what the
 * kernel does (`pack_f16`: how many weights did not fit).
 */
const packOp = (kernel: string) =>
  op(["dst", "src", "C", "OC"], {
    units: (a) => panels(a.OC),
    size: (a) => 2 * a.C * a.OC,
    run: (x, a, u0, u1) => x[kernel](a.dst, a.src, a.C, a.OC, 0, 0, u0, u1),
  });

/**
 * `pack_q8` / `pack_f16` of the embedding wte (V, C), whose rows become the panels'
 * columns (transposed), over `panels` panels from panel `first` on, with src holding wte
 * from row PANEL · first on only: a chunk of rows, packed into the whole of dst. Units
 * are the chunk's panels. Returns what the kernel does, as `packOp`.
 */
const packRowsOp = (kernel: string) =>
  op(["dst", "src", "C", "V", "first", "panels"], {
    units: (a) => a.panels,
    size: (a) => 2 * a.C * PANEL * a.panels,
    run: (x, a, u0, u1) =>
      x[kernel](a.dst, a.src, a.C, a.V, 1, a.first, a.first + u0, a.first + u1),
  });

/** `embed` with wte stored in any format. */
const embedOp = (kernel: string) =>
  op(["out", "tokens", "positions", "wte", "wpe", "rows", "C"], {
    units: (a) => a.rows,
    size: (a) => 2 * a.rows * a.C,
    run: (x, a, u0, u1) => x[kernel](a.out, a.tokens, a.positions, a.wte, a.wpe, a.C, u0, u1),
  });

const SPECS = {
  layerNorm: op(["out", "inp", "gain", "bias", "rows", "C"], {
    units: (a) => a.rows,
    size: (a) => 2 * a.rows * a.C,
    run: (x, a, u0, u1) => x.layer_norm(a.out, a.inp, a.gain, a.bias, a.C, u0, u1),
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
  readSum: op(["out", "inp", "blocks"], {
    units: (a) => a.blocks,
    size: (a, c) => a.blocks * c.READ_BLOCK,
    run: (x, a, u0, u1) => x.read_sum(a.out, a.inp, u0, u1),
  }),
  // Float32 weights (asm/matmul.ts, asm/embedding.ts).
  packPanels: op(["dst", "src", "C", "OC"], {
    units: (a) => panels(a.OC),
    size: (a) => 2 * a.C * a.OC,
    run: (x, a, u0, u1) => x.pack_panels(a.dst, a.src, a.C, a.OC, u0, u1),
  }),
  conv1d: conv1dOp("conv1d", 4),
  logits: op(["out", "h", "wte", "rows", "C", "V"], {
    units: (a) => a.V,
    size: (a) => (a.rows + a.C) * a.V,
    run: (x, a, u0, u1) => x.logits(a.out, a.h, a.wte, a.rows, a.C, a.V, u0, u1),
  }),
  embed: embedOp("embed"),
  // Float16 weights (asm/matmul_f16.ts).
  packF16: packOp("pack_f16"),
  packF16Rows: packRowsOp("pack_f16"),
  convertF16: op(["dst", "src", "n"], {
    units: (a) => a.n,
    align: 16,
    size: (a) => 2 * a.n,
    run: (x, a, u0, u1) => x.convert_f16(a.dst, a.src, u0, u1),
  }),
  conv1dF16: conv1dF16Op,
  logitsF16: logitsF16Op,
  embedF16: embedOp("embed_f16"),
  // Int8 weights (asm/matmul_q8.ts): activations are quantised by rows into a buffer of
  // rows · q8RowBytes(C) bytes, which the q8 products read.
  quantizeQ8: op(["dst", "inp", "rows", "C"], {
    units: (a) => a.rows,
    size: (a) => 2 * a.rows * a.C,
    run: (x, a, u0, u1) => x.quantize_q8(a.dst, a.inp, a.C, u0, u1),
  }),
  packQ8: packOp("pack_q8"),
  packQ8Rows: packRowsOp("pack_q8"),
  // ggml Q8_0 blocks, as a GGUF file holds them, copied into the panels `pack_q8` writes:
  // a Conv1D weight from its (OC, C) rows of blocks, split by panels, and the embedding's
  // (V, C) rows a chunk at a time as `packRowsOp` takes them. C is a multiple of 32.
  packQ8Blocks: op(["dst", "src", "C", "OC"], {
    units: (a) => panels(a.OC),
    size: (a) => 2 * a.C * a.OC / 4,
    run: (x, a, u0, u1) => x.pack_q8_blocks(a.dst, a.src, a.C, a.OC, 0, u0, u1),
  }),
  packQ8BlockRows: op(["dst", "src", "C", "V", "first", "panels"], {
    units: (a) => a.panels,
    size: (a) => 2 * a.C * PANEL * a.panels / 4,
    run: (x, a, u0, u1) =>
      x.pack_q8_blocks(a.dst, a.src, a.C, a.V, a.first, a.first + u0, a.first + u1),
  }),
  conv1dQ8: conv1dOp("conv1d_q8", 1),
  logitsQ8: logitsOp("logits_q8", 1),
  embedQ8: embedOp("embed_q8"),
  // 4-bit weights (asm/matmul_q4.ts), ggml's Q4_0 blocks: activations quantised by rows as
  // for q8, by the format's own quantiser.
  quantizeQ4: op(["dst", "inp", "rows", "C"], {
    units: (a) => a.rows,
    size: (a) => 2 * a.rows * a.C,
    run: (x, a, u0, u1) => x.quantize_q4(a.dst, a.inp, a.C, u0, u1),
  }),
  packQ4: packOp("pack_q4"),
  packQ4Rows: packRowsOp("pack_q4"),
  // From a GGUF file's Q4_0 blocks, (OC, C) rows of blocks as ggml stores a matrix.
  packQ4Blocks: op(["dst", "src", "C", "OC"], {
    units: (a) => panels(a.OC),
    size: (a) => a.C * a.OC / 2,
    run: (x, a, u0, u1) => x.pack_q4_blocks(a.dst, a.src, a.C, a.OC, 0, u0, u1),
  }),
  packQ4BlockRows: op(["dst", "src", "C", "V", "first", "panels"], {
    units: (a) => a.panels,
    size: (a) => a.C * PANEL * a.panels / 2,
    run: (x, a, u0, u1) =>
      x.pack_q4_blocks(a.dst, a.src, a.C, a.V, a.first, a.first + u0, a.first + u1),
  }),
  conv1dQ4: conv1dOp("conv1d_q4", 0.5),
  logitsQ4: logitsOp("logits_q4", 0.5),
  embedQ4: embedOp("embed_q4"),
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
