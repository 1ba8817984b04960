/**
 * The one interface the model calls its kernels through. Every argument named like a
 * buffer is a byte offset into the backend's shared memory; the rest are sizes. A backend
 * (one wasm instance, a pool of workers, a GPU) implements it whole, and the model never
 * knows which it has. Callers validate sizes and offsets first: kernels do not check.
 */
/**
 * A Conv1D kernel: out (rows, OC) from inp (rows, C) · weight + bias, with the weight
 * packed by `packPanels` and the bias padded to whole panels.
 */
export type Conv1d = (
  out: number,
  inp: number,
  weight: number,
  bias: number,
  rows: number,
  C: number,
  OC: number,
) => void;

export interface Kernels extends Disposable {
  /** The memory every offset points into. */
  readonly memory: WebAssembly.Memory;
  /** Threads that run each call (1 for a single instance). */
  readonly threads: number;

  /** out (B·T, C) = wte[tokens] + wpe[past + t]; tokens (B·T) i32. */
  embed(
    out: number,
    tokens: number,
    wte: number,
    wpe: number,
    B: number,
    T: number,
    C: number,
    past: number,
  ): void;
  /** out (rows, C) = layer norm of inp (rows, C) with gain, bias (C). */
  layerNorm(out: number, inp: number, gain: number, bias: number, rows: number, C: number): void;
  /** out (rows, OC) = inp (rows, C) · weight + bias, weight packed by `packPanels`. */
  conv1d: Conv1d;
  /** out (rows, OC) = gelu(inp (rows, C) · weight + bias): `conv1d` then `gelu` in one pass. */
  conv1dGelu: Conv1d;
  /**
   * out (rows, OC) += inp (rows, C) · weight + bias: `conv1d` added onto the residual
   * stream in one pass; inp must not overlap out.
   */
  conv1dResidual: Conv1d;
  /** out (rows, V) = h (rows, C) · wteᵀ, wte (V, C). */
  logits(out: number, h: number, wte: number, rows: number, C: number, V: number): void;
  /**
   * Masked attention of B sequences' T new positions over `past + T` cached ones; appends
   * the new keys and values to `cache` (this layer's, sequence 0; `seqStride` floats
   * apart; nCtx positions per head, a multiple of 4, keys in the block layout of
   * asm/attention.ts). out (B·T, C), qkv (B·T, 3C), scratch (B·nHead, nCtx).
   */
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
  ): void;
  /** out (n) = gelu(inp (n)). */
  gelu(out: number, inp: number, n: number): void;
  /** out (n) = a + b. */
  add(out: number, a: number, b: number, n: number): void;
  /** out (rows, cols) = row-wise softmax of inp. */
  softmax(out: number, inp: number, rows: number, cols: number): void;
  /** dst = src (C, OC) repacked into column panels for `conv1d`. */
  packPanels(dst: number, src: number, C: number, OC: number): void;
  /**
   * out[b] = the sum of block b of inp, for `blocks` blocks of `READ_BLOCK` (16384)
   * floats: a plain streaming read that measures memory bandwidth. out (blocks) f32.
   */
  readSum(out: number, inp: number, blocks: number): void;
}
