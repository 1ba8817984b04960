/**
 * Where everything lives in the one shared WebAssembly memory: the weights, the
 * activations of one forward pass and the KV cache, laid out once, up front. Kernels get
 * byte offsets from here and nothing else.
 */
import type { HParams } from "../../gpt2/hparams.ts";

/**
 * Columns per packed Conv1D weight panel; must equal `PANEL` in asm/matmul.ts, which also
 * decides how the columns of a panel are laid out (the runtime only needs its size).
 */
export const PANEL = 16;

/**
 * Bytes at the start of memory kept for the wasm module's static data (from offset 1024,
 * a few hundred bytes: `static_data_end()` in asm/memory.ts says where it ends) and for
 * the worker pool's control block.
 */
export const RESERVED_BYTES = 65536;

/**
 * Where the worker pool's control block lives (runtime/worker_pool.ts): inside the
 * reserved bytes, far above the module's static data. `WorkerPool.create` checks that
 * the two do not overlap.
 */
export const CONTROL_OFFSET = 32768;

/** Bytes of the control block: counters, kernel arguments and an error message. */
export const CONTROL_BYTES = 4096;

/** The largest memory a wasm32 module can address. */
export const MAX_MEMORY_BYTES = 65536 * 65536;

const ALIGN = 64;

/** Byte offsets of one transformer block's parameters, named as in the checkpoint. */
export interface LayerPlan {
  readonly ln_1_g: number;
  readonly ln_1_b: number;
  /** Packed (see `PANEL`): (ceil(3C / PANEL), C, PANEL). */
  readonly c_attn_w: number;
  readonly c_attn_b: number;
  readonly attn_proj_w: number;
  readonly attn_proj_b: number;
  readonly ln_2_g: number;
  readonly ln_2_b: number;
  readonly c_fc_w: number;
  readonly c_fc_b: number;
  readonly mlp_proj_w: number;
  readonly mlp_proj_b: number;
}

export interface MemoryPlan {
  readonly hparams: HParams;
  /** Sequences decoded side by side. */
  readonly batch: number;
  /** The most new tokens per sequence one kernel pass takes; longer inputs go in chunks. */
  readonly chunk: number;

  /** (n_vocab, n_embd), also the output head. */
  readonly wte: number;
  /** (n_ctx, n_embd). */
  readonly wpe: number;
  readonly layers: readonly LayerPlan[];
  readonly ln_f_g: number;
  readonly ln_f_b: number;

  /** (batch · chunk) i32 token ids of the pass. */
  readonly tokens: number;
  /** (rows, C) the residual stream. */
  readonly x: number;
  /** (rows, C) layer-norm output. */
  readonly h: number;
  /** (rows, 3C) query, key and value. */
  readonly qkv: number;
  /** (rows, C) attention output, before its projection. */
  readonly attn: number;
  /** (rows, 4C) the MLP's hidden layer. */
  readonly fc: number;
  /** (batch, C) the final-norm rows whose logits are wanted. */
  readonly last: number;
  /** (batch, n_vocab) logits. */
  readonly logits: number;
  /** (batch · n_head, cachePositions) attention weights, one row per (sequence, head). */
  readonly scratch: number;
  /**
   * (C, 4C) slots for raw Conv1D weights on their way to being packed, so that one is
   * read while another is checksummed and a third packed. They lie in the token
   * embedding's memory when it is big enough (so the loader must read wte after every
   * staged weight is packed, and staging then costs no memory of its own), else over the
   * activations and the KV cache; both hold nothing yet while the weights load.
   */
  readonly staging: readonly number[];

  /**
   * (batch, n_layer, 2, n_head, cachePositions, d_head) the KV cache: keys then values of
   * each layer. asm/attention.ts lays each head's keys out in blocks of four positions.
   */
  readonly cache: number;
  /** Positions per head in the cache and per row of `scratch`: n_ctx up to a multiple of 4. */
  readonly cachePositions: number;
  /** Floats from one layer's cache to the next. */
  readonly cacheLayerStride: number;
  /** Floats from one sequence's cache to the next. */
  readonly cacheSeqStride: number;

  /** Total bytes the memory must hold. */
  readonly bytes: number;
}

/** Floats a packed (C, OC) Conv1D weight takes. */
export function packedSize(C: number, OC: number): number {
  return Math.ceil(OC / PANEL) * PANEL * C;
}

/** Positions per block of the key cache; must equal `KEY_BLOCK` in asm/attention.ts. */
export const KEY_BLOCK = 4;

/** Conv1D weights in flight while loading: one read, one checksummed, one packed. */
const STAGING_SLOTS = 3;

class Allocator {
  offset = RESERVED_BYTES;
  /** Reserves `floats` 4-byte elements and returns their byte offset. */
  take(floats: number): number {
    const at = this.offset;
    this.offset = Math.ceil((at + floats * 4) / ALIGN) * ALIGN;
    return at;
  }
}

/**
 * Lays out the memory for a model of shape `hparams`, decoding `batch` sequences with at
 * most `chunk` new tokens per sequence per pass (default: min(n_ctx, 256)).
 */
export function planMemory(
  hparams: HParams,
  options: { batch?: number; chunk?: number } = {},
): MemoryPlan {
  const { n_vocab: V, n_ctx, n_embd: C, n_head, n_layer } = hparams;
  const batch = options.batch ?? 1;
  const chunk = Math.min(options.chunk ?? 256, n_ctx);
  if (!Number.isInteger(batch) || batch < 1) {
    throw new RangeError(`batch must be a positive integer, got ${batch}`);
  }
  if (!Number.isInteger(chunk) || chunk < 1) {
    throw new RangeError(`chunk must be a positive integer, got ${chunk}`);
  }
  const padded = (n: number) => Math.ceil(n / PANEL) * PANEL;
  const a = new Allocator();

  const wte = a.take(V * C);
  const wpe = a.take(n_ctx * C);
  const layers: LayerPlan[] = [];
  for (let l = 0; l < n_layer; l++) {
    layers.push({
      ln_1_g: a.take(C),
      ln_1_b: a.take(C),
      c_attn_w: a.take(packedSize(C, 3 * C)),
      c_attn_b: a.take(padded(3 * C)),
      attn_proj_w: a.take(packedSize(C, C)),
      attn_proj_b: a.take(padded(C)),
      ln_2_g: a.take(C),
      ln_2_b: a.take(C),
      c_fc_w: a.take(packedSize(C, 4 * C)),
      c_fc_b: a.take(padded(4 * C)),
      mlp_proj_w: a.take(packedSize(4 * C, C)),
      mlp_proj_b: a.take(padded(C)),
    });
  }
  const ln_f_g = a.take(C);
  const ln_f_b = a.take(C);

  const rows = batch * chunk;
  const activationsStart = a.offset;
  const tokens = a.take(rows);
  const x = a.take(rows * C);
  const h = a.take(rows * C);
  const qkv = a.take(rows * 3 * C);
  const attn = a.take(rows * C);
  const fc = a.take(rows * 4 * C);
  const last = a.take(batch * C);
  const logits = a.take(batch * V);
  const cachePositions = Math.ceil(n_ctx / KEY_BLOCK) * KEY_BLOCK;
  const scratch = a.take(batch * n_head * cachePositions);

  const cacheLayerStride = 2 * cachePositions * C;
  const cacheSeqStride = n_layer * cacheLayerStride;
  const cache = a.take(batch * cacheSeqStride);

  // Staging is only used while loading: in wte, read last, or where no activation or cache
  // entry is live yet.
  const slot = Math.ceil((C * 4 * C * 4) / ALIGN) * ALIGN;
  const inWte = V * C * 4 >= STAGING_SLOTS * slot;
  const stagingStart = inWte ? wte : activationsStart;
  const staging = Array.from({ length: STAGING_SLOTS }, (_, i) => stagingStart + i * slot);
  a.offset = Math.max(a.offset, stagingStart + STAGING_SLOTS * slot);

  return {
    hparams,
    batch,
    chunk,
    wte,
    wpe,
    layers,
    ln_f_g,
    ln_f_b,
    tokens,
    x,
    h,
    qkv,
    attn,
    fc,
    last,
    logits,
    scratch,
    staging,
    cache,
    cachePositions,
    cacheLayerStride,
    cacheSeqStride,
    bytes: a.offset,
  };
}
