/**
 * The weight formats of the wasm backend, one entry per `WeightType`, after ggml's
 * `type_traits`: how many bytes a stored matrix takes, how it is packed from the
 * checkpoint's float32, and which kernels run it. The backend reads the entry of a weight's
 * type and never branches on the type itself; a new type is a new entry plus its kernels.
 *
 * Every format stores the Conv1D weights (C, OC) in panels of `PANEL` output columns, and
 * biases as float32 padded to whole panels. The token embedding wte (V, C), looked up by
 * row and also the output head, is stored either as its float32 rows or, like a Conv1D
 * weight over wteᵀ, in panels of `PANEL` vocabulary rows. The layouts themselves are
 * documented in asm/matmul.ts, asm/matmul_f16.ts, asm/matmul_q8.ts and asm/matmul_q4.ts.
 *
 * @module
 */
import type { WeightType } from "../backend.ts";
import type { BlockType } from "../../io/tensor_types.ts";
import { type Op, OPS } from "./ops.ts";
import { PANEL, panels, Q4_BLOCK, Q8_BLOCK, widenedPanelBytes } from "./layout.ts";

/** One stored weight type: its sizes, its packing and its kernels. */
export interface WeightFormat {
  /** The type it stores. */
  readonly type: WeightType;
  /** Bytes of a Conv1D weight (C, OC) as its kernels read it. */
  conv1dBytes(C: number, OC: number): number;
  /** Bytes of the token embedding (V, C) as its `embed` and `logits` kernels read it. */
  embeddingBytes(V: number, C: number): number;
  /**
   * Packs a Conv1D weight from its float32 (C, OC) rows at `src` into `dst`; for a format
   * with `misfit`, returns how many values it could not store.
   */
  readonly packConv1d: Op<"dst" | "src" | "C" | "OC">;
  /**
   * Packs panels [first, first + panels) of the embedding from those rows of its float32
   * (V, C) at `src`, so that a large wte can be converted a chunk of rows at a time;
   * absent when the embedding is stored as its float32 rows, read in place. Returns as
   * `packConv1d` does.
   */
  readonly packEmbedding?: Op<"dst" | "src" | "C" | "V" | "first" | "panels">;
  /**
   * For a format that cannot store every finite float32: what to say of a matrix whose
   * packing met `count` values it could not store, a sentence that names the fix.
   */
  misfit?(count: number): string;
  /**
   * How the products' inputs are quantised before the kernels read them, for a format
   * whose products run on integers: each row of C floats becomes `rowBytes(C)` bytes. A
   * product then takes the quantised rows as its `inp` (or `h`). Absent: inputs are f32.
   */
  readonly quantize?: {
    readonly op: Op<"dst" | "inp" | "rows" | "C">;
    rowBytes(C: number): number;
  };
  /**
   * Bytes of scratch each thread needs for a product over C input features, for a format
   * whose products take `scratch` (that many bytes per thread, one thread's after
   * another's); absent: none.
   */
  threadScratchBytes?(C: number): number;
  /**
   * For a format that stores one of ggml's block types as it is: the type, and how its
   * blocks are packed, from the bytes of the matrix as ggml stores it (rows of C / block
   * size blocks, one row per output column of a Conv1D weight (C, OC), or per vocabulary
   * row of the embedding (V, C)). `packConv1d` takes all OC rows at `src`;
   * `packEmbedding` packs panels [first, first + panels) from those rows (row PANEL · first
   * on) at `src`, as the f32 `packEmbedding` does. A GGUF tensor of that type then loads
   * without float32 in between (`Backend.loadBlocks`).
   */
  readonly blocks?: {
    readonly ggmlType: BlockType;
    readonly packConv1d: Op<"dst" | "src" | "C" | "OC">;
    readonly packEmbedding: Op<"dst" | "src" | "C" | "V" | "first" | "panels">;
  };
  /** Conv1D, out = mode(inp · weight + bias), for each of the kernels' modes. */
  readonly conv1d: Op<"out" | "inp" | "weight" | "bias" | "rows" | "C" | "OC" | "mode" | "scratch">;
  /** The tied output head, out = h · wteᵀ. */
  readonly logits: Op<"out" | "h" | "wte" | "rows" | "C" | "V" | "scratch">;
  /** The embedding lookup, out = wte[tokens] + wpe[positions]. */
  readonly embed: Op<"out" | "tokens" | "positions" | "wte" | "wpe" | "rows" | "C">;
}

/** Bytes of (C, OC) float32 weights packed into whole panels, zero past OC. */
function f32PanelBytes(C: number, OC: number): number {
  return 4 * panels(OC) * PANEL * C;
}

/** Bytes of (C, OC) float16 weights in panels: C rows of `PANEL` halves each. */
function f16PanelBytes(C: number, OC: number): number {
  return 2 * panels(OC) * PANEL * C;
}

/**
 * Bytes of (C, OC) q8 weights in panels: per panel and block of 32 features, `PANEL`
 * float16 scales and PANEL × 32 int8 weights (544 bytes, 1.0625 bytes a weight, as ggml's
 * Q8_0 blocks of 34 bytes).
 */
function q8PanelBytes(C: number, OC: number): number {
  return panels(OC) * Math.ceil(C / Q8_BLOCK) * (2 * PANEL + PANEL * Q8_BLOCK);
}

/**
 * Bytes of (C, OC) q4 weights in panels: per panel and block of 32 features, `PANEL`
 * float16 scales and PANEL × 32 four-bit weights (288 bytes, 0.5625 bytes a weight, as
 * ggml's Q4_0).
 */
function q4PanelBytes(C: number, OC: number): number {
  return panels(OC) * Math.ceil(C / Q4_BLOCK) * (2 * PANEL + PANEL * Q4_BLOCK / 2);
}

/** Every format, by the type it stores. */
export const WEIGHT_FORMATS: Readonly<Record<WeightType, WeightFormat>> = {
  f32: {
    type: "f32",
    conv1dBytes: f32PanelBytes,
    // wte's own (V, C) rows: `embed` copies one, `logits` reads each as one stream.
    embeddingBytes: (V, C) => 4 * V * C,
    packConv1d: OPS.packPanels,
    conv1d: OPS.conv1d,
    logits: OPS.logits,
    embed: OPS.embed,
  },
  f16: {
    type: "f16",
    conv1dBytes: f16PanelBytes,
    embeddingBytes: (V, C) => f16PanelBytes(C, V),
    packConv1d: OPS.packF16,
    packEmbedding: OPS.packF16Rows,
    // The panels hold each weight times 2^10 (asm/matmul_f16.ts): at most 65504 / 2^10.
    misfit: (count) =>
      `it has ${count} ${count === 1 ? "value" : "values"} of magnitude 63.98 or more, or ` +
      `not finite, which "f16" weights do not hold: load the model as "f32" or "q8"`,
    // A panel widened to f32 once per call of many rows (asm/matmul_f16.ts).
    threadScratchBytes: widenedPanelBytes,
    conv1d: OPS.conv1dF16,
    logits: OPS.logitsF16,
    embed: OPS.embedF16,
  },
  q8: {
    type: "q8",
    conv1dBytes: q8PanelBytes,
    embeddingBytes: (V, C) => q8PanelBytes(C, V),
    packConv1d: OPS.packQ8,
    packEmbedding: OPS.packQ8Rows,
    blocks: { ggmlType: "q8_0", packConv1d: OPS.packQ8Blocks, packEmbedding: OPS.packQ8BlockRows },
    // Per block of 32: the 8-bit values as i16, then an f32 scale.
    quantize: { op: OPS.quantizeQ8, rowBytes: (C) => Math.ceil(C / Q8_BLOCK) * (2 * Q8_BLOCK + 4) },
    conv1d: OPS.conv1dQ8,
    logits: OPS.logitsQ8,
    embed: OPS.embedQ8,
  },
  q4: {
    type: "q4",
    conv1dBytes: q4PanelBytes,
    embeddingBytes: (V, C) => q4PanelBytes(C, V),
    packConv1d: OPS.packQ4,
    packEmbedding: OPS.packQ4Rows,
    blocks: { ggmlType: "q4_0", packConv1d: OPS.packQ4Blocks, packEmbedding: OPS.packQ4BlockRows },
    // Per block of 32: the int8 values, an f32 scale and an i32 correction (−8 · Σ a).
    quantize: { op: OPS.quantizeQ4, rowBytes: (C) => Math.ceil(C / Q4_BLOCK) * (Q4_BLOCK + 8) },
    conv1d: OPS.conv1dQ4,
    logits: OPS.logitsQ4,
    embed: OPS.embedQ4,
  },
};
