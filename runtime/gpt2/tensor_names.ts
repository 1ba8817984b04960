/**
 * The names and shapes of GPT-2's tensors: OpenAI's TensorFlow checkpoint's, and how
 * other formats name the same tensors.
 */
import type { HParams } from "./hparams.ts";

/** Each tensor's name and shape in OpenAI's TensorFlow checkpoint, in model order. */
export function tfTensorShapes(hp: HParams): [string, number[]][] {
  const C = hp.n_embd;
  const list: [string, number[]][] = [
    ["model/wte", [hp.n_vocab, C]],
    ["model/wpe", [hp.n_ctx, C]],
  ];
  for (let l = 0; l < hp.n_layer; l++) {
    const p = `model/h${l}/`;
    list.push(
      [p + "ln_1/g", [C]],
      [p + "ln_1/b", [C]],
      [p + "attn/c_attn/w", [1, C, 3 * C]],
      [p + "attn/c_attn/b", [3 * C]],
      [p + "attn/c_proj/w", [1, C, C]],
      [p + "attn/c_proj/b", [C]],
      [p + "ln_2/g", [C]],
      [p + "ln_2/b", [C]],
      [p + "mlp/c_fc/w", [1, C, 4 * C]],
      [p + "mlp/c_fc/b", [4 * C]],
      [p + "mlp/c_proj/w", [1, 4 * C, C]],
      [p + "mlp/c_proj/b", [C]],
    );
  }
  list.push(["model/ln_f/g", [C]], ["model/ln_f/b", [C]]);
  return list;
}

/**
 * Maps a tensor's name and shape in OpenAI's TensorFlow checkpoint to its name and
 * shape in another format.
 */
export type NameMap = (tfName: string, tfShape: number[]) => { name: string; shape: number[] };

/** OpenAI's TensorFlow checkpoint names, unchanged. */
export const tfNames: NameMap = (name, shape) => ({ name, shape });

/**
 * Hugging Face's names (`h.0.attn.c_attn.weight`, with or without a `transformer.`
 * prefix). Its Conv1D weights have the TensorFlow layout (nx, nf) without the leading 1,
 * so they load the same way.
 */
export function hfNames(prefix: "" | "transformer."): NameMap {
  return (tfName, tfShape) => {
    const parts = tfName.replace(/^model\//, "").split("/");
    const leaf = parts.pop()!;
    const suffix = leaf === "w" || leaf === "g"
      ? "weight"
      : leaf === "b"
      ? "bias"
      : `${leaf}.weight`;
    const path = parts.map((p) => p.replace(/^h(\d+)$/, "h.$1"));
    return {
      name: prefix + [...path, suffix].join("."),
      shape: leaf === "w" ? tfShape.slice(1) : tfShape,
    };
  };
}
