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
  if (hp.untied_head) list.push({ name: "model/head", shape: [hp.n_vocab, C], role: "embedding" });
  return list;
}

/**
 * Maps a tensor's name and shape in OpenAI's TensorFlow checkpoint to its name and
 * shape in another format, and whether that format stores it transposed (a matrix
 * (R, C) there is the checkpoint's (C, R), and is transposed back while it loads).
 */
export type NameMap = (
  tfName: string,
  tfShape: readonly number[],
) => { name: string; shape: readonly number[]; transposed?: boolean };

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

/** llama.cpp's names for the parts of a GPT-2 block, by the checkpoint's. */
const GGUF_BLOCK_PARTS: Readonly<Record<string, string>> = {
  ln_1: "attn_norm",
  "attn/c_attn": "attn_qkv",
  "attn/c_proj": "attn_output",
  ln_2: "ffn_norm",
  "mlp/c_fc": "ffn_up",
  "mlp/c_proj": "ffn_down",
};

/**
 * llama.cpp's names, as its `convert_hf_to_gguf.py` writes GPT-2: `token_embd.weight`,
 * `position_embd.weight`, `blk.N.attn_norm.weight` … `blk.N.ffn_down.bias`,
 * `output_norm.weight` and `.bias`. Shapes are outermost first (ggml's `ne` reversed).
 *
 * GGUF stores every matrix as ggml's matrix product takes it, (out, in) with ggml's
 * ne0 = in, while GPT-2's Conv1D weight is (nx, nf) = (in, out), as OpenAI's checkpoint and
 * Hugging Face's Conv1D keep it (llama.cpp's converter transposes them on the way in). So
 * each Conv1D weight is the checkpoint's transposed, and is transposed back while it loads:
 * this is the one place that says so. The token embedding is (n_vocab, n_embd) in both.
 */
export const ggufNames: NameMap = (tfName, tfShape) => {
  const leaf = tfName.slice(tfName.lastIndexOf("/") + 1);
  const suffix = leaf === "b" ? "bias" : "weight";
  if (tfName === "model/wte") return { name: "token_embd.weight", shape: tfShape };
  if (tfName === "model/wpe") return { name: "position_embd.weight", shape: tfShape };
  if (tfName === "model/head") return { name: "output.weight", shape: tfShape };
  if (tfName.startsWith("model/ln_f/")) return { name: `output_norm.${suffix}`, shape: tfShape };
  const block = /^model\/h(\d+)\/(.+)\/[wgb]$/.exec(tfName);
  const part = block ? GGUF_BLOCK_PARTS[block[2]] : undefined;
  if (!block || part === undefined) {
    throw new RangeError(`No GGUF name for the checkpoint tensor "${tfName}"`);
  }
  const name = `blk.${block[1]}.${part}.${suffix}`;
  if (leaf !== "w") return { name, shape: tfShape };
  const [, nx, nf] = tfShape; // (1, nx, nf)
  return { name, shape: [nf, nx], transposed: true };
};
