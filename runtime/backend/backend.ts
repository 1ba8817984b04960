/**
 * The seam between GPT-2 and the hardware that runs it. A backend owns its memory: it
 * allocates tensors, stores each weight the way its kernels want it (packed panels,
 * another element type, a GPU buffer), holds the KV cache, runs the ops the model chains,
 * and hands logits back through an asynchronous read. The model (runtime/gpt2/) only
 * names ops and tensors; it never sees a byte offset or a layout.
 *
 * Ops are enqueued in call order and may run later (a GPU records them into one command
 * buffer); `read` is the one place that waits, so a decoding step costs one await.
 *
 * @module
 */

/** Element types of activations and token tensors. */
export type ActivationType = "f32" | "i32";

/**
 * How a backend stores the model's matrices (the Conv1D weights and the token embedding):
 * float32 as the checkpoint gives them, IEEE float16, int8 in blocks of 32 with one
 * float16 scale per block (`q8`, ggml's Q8_0), or ggml's Q4_0, 4 bits in blocks of 32 with
 * one float16 scale per block (`q4`). Norms, biases and the position embedding stay float32.
 */
export type WeightType = "f32" | "f16" | "q8" | "q4";

/** Every weight type, most faithful first. */
export const WEIGHT_TYPES: readonly WeightType[] = ["f32", "f16", "q8", "q4"];

/**
 * A weight holding values its backend's weight type cannot store (f16 panels: magnitudes
 * of 64 or more, or not finite); the message says how many and the fix.
 */
export class UnstorableWeightError extends RangeError {
  override name = "UnstorableWeightError";
}

/**
 * The weight types `dtype: "auto"` chooses among, most faithful first: q4 trades accuracy
 * for speed, so it is used only when asked for (or when a GGUF file holds it).
 */
export const AUTO_WEIGHT_TYPES: readonly WeightType[] = ["f32", "f16", "q8"];

/**
 * What a weight is for, which decides how a backend may store it:
 * - `"conv1d"`: a Conv1D weight (C, OC), only ever multiplied from the left by
 *   activations, so it may be packed, transposed or quantised;
 * - `"embedding"`: the token embedding (V, C), looked up by row in `embed` and used
 *   transposed as the output head in `logits`;
 * - `"plain"`: anything else (biases, layer-norm gains, position embeddings), read as
 *   float32 values in their own shape.
 */
export type WeightRole = "conv1d" | "embedding" | "plain";

/**
 * What a model will allocate on a backend, before it allocates it: every weight by role
 * and shape, every activation, the KV cache (runtime/gpt2/plan.ts makes GPT-2's). A
 * backend's estimate of the bytes a model needs reads this list.
 */
export interface ModelPlan {
  /** Each weight, as `Backend.weight` is called for it. */
  readonly weights: readonly { readonly role: WeightRole; readonly shape: readonly number[] }[];
  /** Each activation, as `Backend.tensor` is called for it. */
  readonly activations: readonly {
    readonly shape: readonly number[];
    readonly type: ActivationType;
  }[];
  /** The KV cache, as `Backend.kvCache` is called for it. */
  readonly cache: KVCacheShape;
}

/**
 * How a model would fit a backend, known before the backend is created: the bytes it
 * would hold, and what keeps it from fitting, if anything.
 */
export interface Fit {
  /** Bytes the backend would hold for the model: weights, activations, cache, its scratch. */
  readonly bytes: number;
  /**
   * Why the model does not fit, in a sentence that names the limit (e.g. `The model needs
   * 4.49 GiB of wasm memory, more than the 4 GiB a WebAssembly memory holds`); absent when
   * it fits.
   */
  readonly misfit?: string;
}

/**
 * A handle to a tensor the backend owns. Its storage is the backend's business; only
 * the backend that made it can use it.
 */
export interface Tensor {
  /** The logical shape, row-major. */
  readonly shape: readonly number[];
  /**
   * The element type of an activation (an `ActivationType`), or the type a backend stores
   * a weight in (a `WeightType`).
   */
  readonly type: string;
  /** Bytes the backend holds for it (what a kernel reads to use it whole). */
  readonly bytes: number;
}

/** The shape of a KV cache: every layer's keys and values for `slots` sequences. */
export interface KVCacheShape {
  /** Transformer blocks (n_layer). */
  readonly layers: number;
  /** Sequences the cache holds side by side; each step names which slots it runs. */
  readonly slots: number;
  /** Positions per sequence (n_ctx). */
  readonly positions: number;
  /** Attention heads (n_head). */
  readonly heads: number;
  /** Features per head (n_embd / n_head). */
  readonly headDim: number;
}

/**
 * A place GPT-2 runs: memory, weights in the backend's own format, and the seven ops
 * the model calls. Sizes that a tensor's shape gives (C, OC, V) are taken from it; the
 * number of rows an op covers is an argument, since activations are allocated for the
 * largest step and most steps use fewer rows. Callers validate token ids, positions and
 * row counts before a call: ops do not check them.
 */
export interface Backend extends Disposable {
  /** The name it is selected by (`"wasm"`, `"webgpu"`, `"reference"`). */
  readonly name: string;
  /** How it stores the model's matrices. */
  readonly weightType: WeightType;
  /**
   * Whether each row's sums run in one order however a pass groups the rows (its T and B),
   * so that a prefix left in the KV cache by one pass gives the logits of recomputing it,
   * bit for bit: what prompt reuse needs before a cached prefix stands for the prompt.
   */
  readonly splitInvariant: boolean;

  /** An activation or index tensor of `shape`, filled with zeros. */
  tensor(shape: readonly number[], type?: ActivationType): Tensor;
  /**
   * A model weight of `shape`, stored as this backend wants for `role`; its values come
   * later, from `loadWeight`.
   */
  weight(role: WeightRole, shape: readonly number[]): Tensor;
  /**
   * Fills `weight`: calls `read` with a float32 array of the weight's element count, in
   * the row-major order of its shape, then converts or packs it. Several loads may be in
   * flight at once (the loader streams a file); the backend bounds the memory they hold.
   */
  loadWeight(weight: Tensor, read: (dest: Float32Array) => Promise<void>): Promise<void>;
  /**
   * The ggml block type (`"q4_0"`, …) that this backend's weight type stores as it is, if
   * any: a GGUF tensor of that type loads through `loadBlocks`, without float32 in between.
   */
  readonly blockType?: string;
  /**
   * Fills a `"conv1d"` or `"embedding"` weight from ggml blocks of `blockType` (any other
   * `ggmlType` is a TypeError): calls `read` with a byte array for the matrix as ggml
   * stores it, rows of C / blockSize blocks along the input features, one row per output
   * column of a Conv1D weight (C, OC) (so (OC, C), as GGUF holds it) or per vocabulary row
   * of the embedding (V, C), then packs them.
   */
  loadBlocks?(
    weight: Tensor,
    ggmlType: string,
    read: (dest: Uint8Array) => Promise<void>,
  ): Promise<void>;
  /** The KV cache, all zeros: (layers, slots, 2, heads, positions, headDim) in some layout. */
  kvCache(shape: KVCacheShape): Tensor;

  /** Copies `data` into the first elements of the i32 tensor `t` (token ids, positions). */
  write(t: Tensor, data: Int32Array): void;
  /**
   * Runs what was enqueued, then copies the first `into.length` elements of the f32
   * tensor `t` into `into`.
   */
  read(t: Tensor, into: Float32Array): Promise<void>;

  /**
   * out[r] = wte[tokens[r]] + wpe[positions[r]] for rows r < `rows`.
   * @param out       (rows, C) f32
   * @param tokens    (rows) i32, each in [0, V)
   * @param positions (rows) i32, each in [0, n_ctx)
   * @param wte       (V, C) the `"embedding"` weight
   * @param wpe       (n_ctx, C) a `"plain"` weight
   */
  embed(
    out: Tensor,
    tokens: Tensor,
    positions: Tensor,
    wte: Tensor,
    wpe: Tensor,
    rows: number,
  ): void;
  /**
   * Layer norm of each row, ε = 1e-5, biased variance: out = (inp − mean) / std · gain + bias.
   * @param out  (rows, C) f32
   * @param inp  (rows, C) f32
   * @param gain (C) `"plain"`
   * @param bias (C) `"plain"`
   */
  layerNorm(out: Tensor, inp: Tensor, gain: Tensor, bias: Tensor, rows: number): void;
  /**
   * Conv1D as GPT-2 names it: out = inp · weight + bias.
   * @param out    (rows, OC) f32
   * @param inp    (rows, C) f32
   * @param weight (C, OC) a `"conv1d"` weight
   * @param bias   (OC) `"plain"`
   */
  conv1d(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor, rows: number): void;
  /** out = gelu(inp · weight + bias), GPT-2's tanh GELU: `conv1d` and the activation in one pass. */
  conv1dGelu(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor, rows: number): void;
  /** out += inp · weight + bias: `conv1d` added onto the residual stream; inp is not out. */
  conv1dResidual(out: Tensor, inp: Tensor, weight: Tensor, bias: Tensor, rows: number): void;
  /**
   * Masked multi-head self-attention of `B` sequences with `T` new positions each, in
   * layer `layer`. Row b of `seqs` is sequence b's [slot, past]: the cache slot it uses
   * and how many positions that slot already holds. The op appends the new keys and
   * values at positions past … past + T − 1 of the slot, then each new position t attends
   * over the slot's positions 0 … past + t (GPT-2's causal mask).
   * @param out   (B·T, C) f32, heads side by side
   * @param qkv   (B·T, 3C) f32: queries, keys, values, as c_attn writes them
   * @param cache from `kvCache`
   * @param seqs  (B, 2) i32
   */
  attention(
    out: Tensor,
    qkv: Tensor,
    cache: Tensor,
    layer: number,
    seqs: Tensor,
    B: number,
    T: number,
  ): void;
  /**
   * The output head: out = h · wteᵀ.
   * @param out (rows, V) f32
   * @param h   (rows, C) f32
   * @param wte (V, C) the `"embedding"` weight
   */
  logits(out: Tensor, h: Tensor, wte: Tensor, rows: number): void;
  /**
   * out[i] = inp[rows[i]]: picks the rows whose logits are wanted.
   * @param out (rows.length, C) f32, not the same tensor as inp
   * @param inp (n, C) f32
   */
  gatherRows(out: Tensor, inp: Tensor, rows: readonly number[]): void;
}
