/**
 * The names and shapes of GPT-2's tensors: OpenAI's TensorFlow checkpoint's, and how
 * other formats name the same tensors.
 */
import type { WeightRole } from "../backend/backend.ts";
import type { HParams } from "./hparams.ts";

/** One tensor of GPT-2: its name and shape in OpenAI's TensorFlow checkpoint, and its role. */
export interface TensorSpec {
  /** The checkpoint's name, such as `model/h0/attn/c_attn/w`. */
  readonly name: string;
  /** The checkpoint's shape: Conv1D weights are (1, nx, nf), as TensorFlow's conv1d stores them. */
  readonly shape: readonly number[];
  /** What the model uses it for, which decides how a backend may store it. */
  readonly role: WeightRole;
}

/** Every tensor of a GPT-2 of shape `hp`, in model order: the one list of them. */
export function gpt2Tensors(hp: HParams): TensorSpec[] {
  const C = hp.n_embd;
  const plain = (name: string, shape: number[]) => ({ name, shape, role: "plain" as const });
  const conv1d = (name: string, nx: number, nf: number) => [
    { name: name + "/w", shape: [1, nx, nf], role: "conv1d" as const },
    plain(name + "/b", [nf]),
  ];
  const norm = (name: string) => [plain(name + "/g", [C]), plain(name + "/b", [C])];
  const list: TensorSpec[] = [
    { name: "model/wte", shape: [hp.n_vocab, C], role: "embedding" },
    plain("model/wpe", [hp.n_ctx, C]),
  ];
  for (let l = 0; l < hp.n_layer; l++) {
    const p = `model/h${l}/`;
    list.push(
      ...norm(p + "ln_1"),
      ...conv1d(p + "attn/c_attn", C, 3 * C),
      ...conv1d(p + "attn/c_proj", C, C),
      ...norm(p + "ln_2"),
      ...conv1d(p + "mlp/c_fc", C, 4 * C),
      ...conv1d(p + "mlp/c_proj", 4 * C, C),
    );
  }
  list.push(...norm("model/ln_f"));
  return list;
}

/**
 * Maps a tensor's name and shape in OpenAI's TensorFlow checkpoint to its name and
 * shape in another format.
 */
export type NameMap = (
  tfName: string,
  tfShape: readonly number[],
) => { name: string; shape: readonly number[] };

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
