/**
 * The GPT-2 forward pass as a chain of backend ops, as picoGPT's `gpt2()` writes it:
 * embeddings, then each block's `x = x + attn(ln_1(x))` and `x = x + mlp(ln_2(x))`, then
 * the final norm and the output head (the token embedding, unless the model has its own).
 * Shapes are in rows of the pass: B sequences with T new positions each, rows = B·T.
 *
 * @module
 */
import type { Backend, Tensor } from "../backend/backend.ts";
import type { Params } from "./params.ts";

/** The activations of one pass, allocated for the largest one (rows = slots · chunk). */
export interface Activations {
  /** (rows) i32 token ids. */
  readonly tokens: Tensor;
  /** (rows) i32 the position of each row in its sequence. */
  readonly positions: Tensor;
  /** (slots, 2) i32 each sequence's cache slot and cached positions. */
  readonly seqs: Tensor;
  /** (rows, C) the residual stream. */
  readonly x: Tensor;
  /** (rows, C) a layer norm's output. */
  readonly h: Tensor;
  /** (rows, 3C) queries, keys and values. */
  readonly qkv: Tensor;
  /** (rows, C) attention's output, before its projection. */
  readonly attn: Tensor;
  /** (rows, 4C) the MLP's hidden layer. */
  readonly fc: Tensor;
  /** (slots, C) the residual stream of each sequence's last position. */
  readonly xLast: Tensor;
  /** (slots, C) the normed rows whose logits are wanted. */
  readonly last: Tensor;
  /** (slots, n_vocab) their logits. */
  readonly logits: Tensor;
}

/**
 * Embeds the pass's tokens (already written to `a.tokens`, `a.positions`, `a.seqs`) and
 * runs every block. With `lastOnly`, the last block computes every position's keys and
 * values but carries only each sequence's last position through its projection and MLP,
 * as only that one's logits are wanted. Returns the residual stream and its rows.
 */
export function blocks(
  be: Backend,
  w: Params,
  a: Activations,
  cache: Tensor,
  B: number,
  T: number,
  lastOnly: boolean,
): { x: Tensor; rows: number } {
  let rows = B * T;
  let x = a.x;
  be.embed(x, a.tokens, a.positions, w.wte, w.wpe, rows); // [rows] -> [rows, C]
  w.h.forEach((block, layer) => {
    // x = x + attn(ln_1(x))
    be.layerNorm(a.h, x, block.ln_1.g, block.ln_1.b, rows); // [rows, C]
    be.conv1d(a.qkv, a.h, block.attn.c_attn.w, block.attn.c_attn.b, rows); // -> [rows, 3C]
    be.attention(a.attn, a.qkv, cache, layer, a.seqs, B, T); // -> [rows, C]
    let attn = a.attn;
    if (lastOnly && T > 1 && layer === w.h.length - 1) {
      const last = Array.from({ length: B }, (_, b) => b * T + T - 1);
      be.gatherRows(a.xLast, x, last); // [B, C]
      be.gatherRows(a.h, a.attn, last); // [B, C]
      [x, attn, rows] = [a.xLast, a.h, B];
    }
    be.conv1dResidual(x, attn, block.attn.c_proj.w, block.attn.c_proj.b, rows); // [rows, C]
    // x = x + mlp(ln_2(x))
    be.layerNorm(a.h, x, block.ln_2.g, block.ln_2.b, rows); // [rows, C]
    be.conv1dGelu(a.fc, a.h, block.mlp.c_fc.w, block.mlp.c_fc.b, rows); // -> [rows, 4C]
    be.conv1dResidual(x, a.fc, block.mlp.c_proj.w, block.mlp.c_proj.b, rows); // -> [rows, C]
  });
  return { x, rows };
}

/**
 * The final layer norm of the residual stream `x` ((rows, C), rows = B · kept), into
 * `a.h`, ready for `head`.
 */
export function finalNorm(be: Backend, w: Params, a: Activations, x: Tensor, rows: number): void {
  be.layerNorm(a.h, x, w.ln_f.g, w.ln_f.b, rows); // [rows, C]
}

/**
 * The logits of rows `rows` of `a.h` (at most `slots` of them), read into `into`
 * (rows.length · n_vocab floats): the one wait of a decoding step.
 */
export function head(
  be: Backend,
  w: Params,
  a: Activations,
  rows: readonly number[],
  into: Float32Array,
): Promise<void> {
  be.gatherRows(a.last, a.h, rows); // [R, C]
  be.logits(a.logits, a.last, w.head ?? w.wte, rows.length); // -> [R, n_vocab]
  return be.read(a.logits, into);
}
