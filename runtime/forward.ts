/**
 * The GPT-2 forward pass, as a chain of kernel calls over the memory plan. Like the
 * original `model(X, past)`, it appends the new positions' keys and values to the cache
 * and returns logits.
 */
import type { Kernels } from "./backend/wasm/kernels.ts";
import type { KVCache } from "./kv_cache.ts";

export interface ForwardOptions {
  /** Return the logits of every new position, (B, T, n_vocab), not only the last, (B, n_vocab). */
  allPositions?: boolean;
  /**
   * Write the logits into this array (its first elements) and return a view of them,
   * instead of a fresh array: a decoding loop that reuses one saves allocating and
   * faulting in B · n_vocab new floats every step.
   */
  out?: Float32Array;
}

/**
 * Runs `tokens` through the model: one row of new token ids per sequence of the batch, all
 * rows of the same length. Returns the logits: a fresh Float32Array, or a view of
 * `options.out`.
 */
export function forward(
  kernels: Kernels,
  cache: KVCache,
  tokens: readonly ArrayLike<number>[],
  options: ForwardOptions = {},
): Float32Array {
  const plan = cache.plan;
  const { n_vocab: V, n_ctx } = plan.hparams;
  const B = plan.batch;
  if (tokens.length !== B) {
    throw new RangeError(`Expected ${B} rows of tokens (the batch size), got ${tokens.length}`);
  }
  const T = tokens[0].length;
  for (let b = 0; b < B; b++) {
    const row = tokens[b];
    if (row.length !== T) {
      throw new RangeError(
        `Every row of tokens must have the same length: row 0 has ${T}, row ${b} has ${row.length}`,
      );
    }
    for (let t = 0; t < T; t++) {
      const id = row[t];
      if (!Number.isInteger(id) || id < 0 || id >= V) {
        throw new RangeError(
          `Token ${id} at row ${b}, position ${t} is outside the vocabulary [0, ${V})`,
        );
      }
    }
  }
  if (T === 0) throw new RangeError("Cannot run the model on no tokens");
  if (cache.length + T > n_ctx) {
    throw new RangeError(
      `Cannot run ${T} new tokens after ${cache.length} cached ones: the context window is ${n_ctx}`,
    );
  }

  const all = options.allPositions ?? false;
  const size = (all ? B * T : B) * V;
  if (options.out && options.out.length < size) {
    throw new RangeError(
      `The output array holds ${options.out.length} floats; these logits need ${size}`,
    );
  }
  const result = options.out?.subarray(0, size) ?? new Float32Array(size);
  const C = plan.hparams.n_embd;
  for (let start = 0; start < T; start += plan.chunk) {
    const n = Math.min(plan.chunk, T - start);
    const ids = new Int32Array(kernels.memory.buffer, plan.tokens, B * n);
    for (let b = 0; b < B; b++) {
      for (let t = 0; t < n; t++) ids[b * n + t] = tokens[b][start + t];
    }
    // Logits of this chunk's last position only, or of all, or (an earlier chunk) of none.
    const wanted = all ? n : (start + n === T ? 1 : 0);
    // `kept` rows per sequence leave the blocks: all n, or only the last when that is all
    // the logits need (the last block then skips the others' projection and MLP).
    const kept = runBlocks(kernels, cache, n, wanted === 1 ? 1 : n);
    const f32 = new Float32Array(kernels.memory.buffer);
    // Final norm, then logits for the wanted rows, `B` at a time through `last`.
    kernels.layerNorm(plan.h, plan.x, plan.ln_f_g, plan.ln_f_b, B * kept, C);
    for (let t = kept - wanted; t < kept; t++) {
      for (let b = 0; b < B; b++) {
        const from = (plan.h >> 2) + (b * kept + t) * C;
        f32.copyWithin((plan.last >> 2) + b * C, from, from + C);
      }
      kernels.logits(plan.logits, plan.last, plan.wte, B, C, V);
      for (let b = 0; b < B; b++) {
        const at = all ? (b * T + start + t) * V : b * V;
        result.set(f32.subarray((plan.logits >> 2) + b * V, (plan.logits >> 2) + (b + 1) * V), at);
      }
    }
  }
  return result;
}

/**
 * Embeds `T` new tokens per sequence (already in plan.tokens) and runs every block. With
 * `kept` = 1, the last block computes every position's keys and values but carries only each
 * sequence's last position through its projection and MLP, as only that one's logits are
 * needed: the hidden states leave as B rows instead of B · T. Returns rows per sequence.
 */
function runBlocks(k: Kernels, cache: KVCache, T: number, kept: number): number {
  const plan = cache.plan;
  const { n_embd: C, n_head, n_layer } = plan.hparams;
  const B = plan.batch;
  const past = cache.length;
  let rows = B * T;
  k.embed(plan.x, plan.tokens, plan.wte, plan.wpe, B, T, C, past);
  plan.layers.forEach((w, l) => {
    // x = x + attn(ln_1(x))
    k.layerNorm(plan.h, plan.x, w.ln_1_g, w.ln_1_b, rows, C);
    k.conv1d(plan.qkv, plan.h, w.c_attn_w, w.c_attn_b, rows, C, 3 * C);
    k.attention(
      plan.attn,
      plan.qkv,
      cache.layerOffset(l),
      plan.scratch,
      B,
      T,
      past,
      n_head,
      C / n_head,
      plan.cachePositions,
      plan.cacheSeqStride,
    );
    if (l === n_layer - 1 && kept < T) {
      keepLastRows(k.memory, [plan.x, plan.attn], B, T, C);
      rows = B;
    }
    k.conv1dResidual(plan.x, plan.attn, w.attn_proj_w, w.attn_proj_b, rows, C, C);
    // x = x + mlp(ln_2(x))
    k.layerNorm(plan.h, plan.x, w.ln_2_g, w.ln_2_b, rows, C);
    k.conv1dGelu(plan.fc, plan.h, w.c_fc_w, w.c_fc_b, rows, C, 4 * C);
    k.conv1dResidual(plan.x, plan.fc, w.mlp_proj_w, w.mlp_proj_b, rows, 4 * C, C);
  });
  cache.advance(T);
  return rows / B;
}

/**
 * Moves row `b · T + T − 1` (sequence b's last position) of each (B · T, C) activation to
 * row b. Every kernel computes a row the same way however many rows it is given, so the
 * kept rows come out as they would have among all of them.
 */
function keepLastRows(
  memory: WebAssembly.Memory,
  offsets: readonly number[],
  B: number,
  T: number,
  C: number,
): void {
  const f32 = new Float32Array(memory.buffer);
  for (const offset of offsets) {
    const base = offset >> 2;
    for (let b = 0; b < B; b++) {
      const from = base + (b * T + T - 1) * C;
      f32.copyWithin(base + b * C, from, from + C);
    }
  }
}
