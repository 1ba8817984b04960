/**
 * The whole model as picoGPT would run it (no cache, one sequence), composed of the scalar
 * reference ops: the oracle every backend's logits are held to in the tests.
 *
 * @module
 */
import type { HParams } from "../runtime/gpt2/hparams.ts";
import {
  refAdd,
  refAttention,
  refConv1d,
  refEmbed,
  refGelu,
  refLayerNorm,
  refLogits,
} from "../runtime/backend/reference/ops.ts";
import type { Weights } from "./random_model.ts";

/** Logits (T, n_vocab) of every position of `tokens`, with no cache: the whole model. */
export function referenceForward(
  weights: Weights,
  hp: HParams,
  tokens: readonly number[],
): Float32Array {
  const W = (name: string) => {
    const t = weights.get(name);
    if (!t) throw new RangeError(`referenceForward: no tensor "${name}"`);
    return t.data;
  };
  const C = hp.n_embd;
  const T = tokens.length;
  const dHead = C / hp.n_head;
  let x = refEmbed(tokens, W("model/wte"), W("model/wpe"), T, C, 0);
  for (let l = 0; l < hp.n_layer; l++) {
    const p = `model/h${l}/`;
    let h = refLayerNorm(x, W(p + "ln_1/g"), W(p + "ln_1/b"), T, C);
    const qkv = refConv1d(h, W(p + "attn/c_attn/w"), W(p + "attn/c_attn/b"), T, C, 3 * C);
    const empty = new Float32Array(0);
    const { out } = refAttention(qkv, empty, empty, 1, T, 0, hp.n_head, dHead);
    x = refAdd(x, refConv1d(out, W(p + "attn/c_proj/w"), W(p + "attn/c_proj/b"), T, C, C));
    h = refLayerNorm(x, W(p + "ln_2/g"), W(p + "ln_2/b"), T, C);
    const fc = refGelu(refConv1d(h, W(p + "mlp/c_fc/w"), W(p + "mlp/c_fc/b"), T, C, 4 * C));
    x = refAdd(x, refConv1d(fc, W(p + "mlp/c_proj/w"), W(p + "mlp/c_proj/b"), T, 4 * C, C));
  }
  const h = refLayerNorm(x, W("model/ln_f/g"), W("model/ln_f/b"), T, C);
  return refLogits(h, W("model/wte"), T, C, hp.n_vocab);
}
