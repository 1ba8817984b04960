/**
 * Small random GPT-2 models for tests and benchmarks: every tensor the real checkpoint
 * has, with the TensorFlow checkpoint's names and shapes, filled from a seeded generator.
 */
import { writeTextFileAtomically } from "../runtime/io/atomic_file.ts";
import { writeSafetensors } from "../runtime/io/safetensors.ts";
import { writeCheckpointFile, writeTfBundle } from "./tf_bundle_writer.ts";
import type { HParams } from "../runtime/gpt2/hparams.ts";
import type { TensorInfo, TensorSource } from "../runtime/io/tensor_source.ts";
import { ModelFileError } from "../runtime/errors.ts";
import { Rng } from "../runtime/generate/random.ts";
import { bytesToUnicode } from "../runtime/tokenizer/tokenizer.ts";
import { gpt2Tensors, hfNames } from "../runtime/gpt2/tensor_names.ts";

/** A named float32 tensor held in memory. */
export interface NamedTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** The tensors of a GPT-2 checkpoint, by their names in OpenAI's TensorFlow checkpoint. */
export type Weights = Map<string, NamedTensor>;

/**
 * Random weights for a model of shape `hp`: matrices ~ N(0, 0.02²) (GPT-2's own
 * initialisation; wpe 0.01), norm gains near 1, biases and norm shifts small, so that
 * activations stay in the range a trained model sees.
 */
export function randomWeights(hp: HParams, seed = 0): Weights {
  const rng = new Rng(seed);
  const weights: Weights = new Map();
  for (const { name, shape } of gpt2Tensors(hp)) {
    const data = new Float32Array(shape.reduce((a, b) => a * b, 1));
    const leaf = name.slice(name.lastIndexOf("/") + 1);
    const isNorm = name.includes("/ln_");
    for (let i = 0; i < data.length; i++) {
      const z = rng.normal();
      data[i] = leaf === "g"
        ? 1 + 0.1 * z
        : leaf === "b"
        ? (isNorm ? 0.05 : 0.02) * z
        : name.endsWith("wpe")
        ? 0.01 * z
        : 0.02 * z;
    }
    weights.set(name, { shape, data });
  }
  return weights;
}

/** How `writeRandomModel` writes a model folder. */
export interface WriteModelOptions {
  /** OpenAI's TensorFlow checkpoint, or Hugging Face's safetensors (default "tensorflow"). */
  format?: "tensorflow" | "safetensors";
  /** How the file stores the weights: float16 only for safetensors (default "float32"). */
  storedDType?: "float32" | "float16";
  /** For safetensors: the names' prefix, "" as in `gpt2`'s own file or "transformer.". */
  prefix?: "" | "transformer.";
}

/**
 * Writes `weights` as a complete model folder, tokenizer included, in the real on-disk
 * format: what `download_model.py` fetches (`hparams.json`, `checkpoint`, `model.ckpt.*`,
 * `encoder.json`, `vocab.bpe`) or what Hugging Face hosts (`config.json`,
 * `model.safetensors` with the `attn.bias` mask buffers, `vocab.json`, `merges.txt`).
 * The tokenizer is `syntheticVocabulary(n_vocab)`.
 */
export async function writeModelFolder(
  dir: string,
  hp: HParams,
  weights: Weights,
  options: WriteModelOptions = {},
): Promise<void> {
  const { format = "tensorflow", storedDType: dtype = "float32", prefix = "" } = options;
  if (dtype === "float16" && format !== "safetensors") {
    throw new TypeError("float16 weights can only be written as safetensors");
  }
  await Deno.mkdir(dir, { recursive: true });
  const { encoder, merges } = syntheticVocabulary(hp.n_vocab);
  const bpe = "#version: 0.2\n" + merges.map(([a, b]) => `${a} ${b}`).join("\n") + "\n";
  const bytes = (data: Float32Array) => {
    const out = dtype === "float16" ? new Float16Array(data) : data;
    return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
  };
  if (format === "tensorflow") {
    await writeTextFileAtomically(`${dir}/hparams.json`, JSON.stringify(hp, null, 2) + "\n");
    await writeTfBundle(
      `${dir}/model.ckpt`,
      [...weights].map(([name, t]) => ({ name, dtype, shape: t.shape, data: bytes(t.data) })),
    );
    await writeCheckpointFile(dir, "model.ckpt");
    await writeTextFileAtomically(
      `${dir}/encoder.json`,
      JSON.stringify(Object.fromEntries(encoder)),
    );
    await writeTextFileAtomically(`${dir}/vocab.bpe`, bpe);
  } else {
    const config = {
      model_type: "gpt2",
      architectures: ["GPT2LMHeadModel"],
      vocab_size: hp.n_vocab,
      n_positions: hp.n_ctx,
      n_ctx: hp.n_ctx,
      n_embd: hp.n_embd,
      n_head: hp.n_head,
      n_layer: hp.n_layer,
      layer_norm_epsilon: 1e-5,
      activation_function: "gelu_new",
      torch_dtype: dtype,
    };
    await writeTextFileAtomically(`${dir}/config.json`, JSON.stringify(config, null, 2) + "\n");
    const names = hfNames(prefix);
    const tensors = [...weights].map(([name, t]) => {
      const mapped = names(name, [...t.shape]);
      return { name: mapped.name, dtype, shape: mapped.shape, data: bytes(t.data) };
    });
    // The causal mask buffers Hugging Face stores and a loader must skip.
    const mask = new Float32Array(hp.n_ctx * hp.n_ctx);
    for (let i = 0; i < hp.n_ctx; i++) mask.fill(1, i * hp.n_ctx, i * hp.n_ctx + i + 1);
    for (let l = 0; l < hp.n_layer; l++) {
      tensors.push({
        name: `${prefix}h.${l}.attn.bias`,
        dtype,
        shape: [1, 1, hp.n_ctx, hp.n_ctx],
        data: bytes(mask),
      });
    }
    await writeSafetensors(`${dir}/model.safetensors`, tensors, { format: "pt" });
    await writeTextFileAtomically(`${dir}/vocab.json`, JSON.stringify(Object.fromEntries(encoder)));
    await writeTextFileAtomically(`${dir}/merges.txt`, bpe);
  }
}

/**
 * A byte-level BPE vocabulary of exactly `n_vocab` tokens (at least 257) laid out like
 * GPT-2's: the 256 single bytes, then one token per merge, then `<|endoftext|>` last.
 * The merges join pairs of byte characters, letters first, so any text encodes and
 * decodes; they are not learned from data, which a random model does not need.
 */
export function syntheticVocabulary(
  n_vocab: number,
): { encoder: Map<string, number>; merges: [string, string][] } {
  if (n_vocab < 257 || n_vocab > 256 + 256 * 256 + 1) {
    throw new RangeError(`A synthetic vocabulary needs 257 to 65793 tokens, got ${n_vocab}`);
  }
  const chars = bytesToUnicode();
  const encoder = new Map<string, number>();
  chars.forEach((c) => encoder.set(c, encoder.size));
  // Letters and the space marker first, so that common pairs merge.
  const order = [..."etaoinshrdlcumwfgypbvkjxqzĠETAOINSHRDLCUMWFGYPBVKJXQZ"];
  const rest = chars.filter((c) => !order.includes(c));
  const all = [...order, ...rest];
  const merges: [string, string][] = [];
  outer: for (const a of all) {
    for (const b of all) {
      if (merges.length === n_vocab - 257) break outer;
      merges.push([a, b]);
      encoder.set(a + b, encoder.size);
    }
  }
  encoder.set("<|endoftext|>", encoder.size);
  return { encoder, merges };
}

/** A `TensorSource` over weights held in memory, as `randomWeights` makes them. */
export function memorySource(weights: Weights, path = "<memory>"): TensorSource {
  const tensors = new Map<string, TensorInfo>(
    [...weights].map((
      [name, t],
    ) => [name, { name, dtype: "float32", shape: t.shape, byteLength: t.data.byteLength }]),
  );
  return {
    path,
    tensors,
    read(name, dest) {
      const t = weights.get(name);
      if (!t) throw new ModelFileError(`Cannot load tensor "${name}": not found in ${path}`);
      dest.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength));
      return Promise.resolve();
    },
    [Symbol.dispose]() {},
  };
}

/**
 * Every tensor of a model of shape `hp`, filled with small values from a fast generator
 * (an LCG): ±0.035 uniform for matrices (about GPT-2's N(0, 0.02²) spread), gains near 1.
 */
export function syntheticSource(hp: HParams): TensorSource {
  const tensors = new Map<string, TensorInfo>();
  for (const { name, shape } of gpt2Tensors(hp)) {
    const n = shape.reduce((a, b) => a * b, 1);
    tensors.set(name, { name, dtype: "float32", shape, byteLength: n * 4 });
  }
  let state = 12345;
  return {
    path: "<synthetic>",
    tensors,
    read(name, dest) {
      const f = new Float32Array(dest.buffer, dest.byteOffset, dest.byteLength / 4);
      const gain = name.endsWith("/g");
      for (let i = 0; i < f.length; i++) {
        state = (Math.imul(state, 1664525) + 1013904223) | 0;
        const u = state / 2 ** 31; // [-1, 1)
        f[i] = gain ? 1 + 0.1 * u : 0.035 * u;
      }
      return Promise.resolve();
    },
    [Symbol.dispose]() {},
  };
}
