/**
 * Small random GPT-2 models for tests and benchmarks: every tensor the real checkpoint
 * has, with the TensorFlow checkpoint's names and shapes, filled from a seeded generator.
 */
import type { HParams } from "./hparams.ts";
import { Rng } from "./random.ts";

/** A named float32 tensor held in memory. */
export interface NamedTensor {
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** The tensors of a GPT-2 checkpoint, by their names in OpenAI's TensorFlow checkpoint. */
export type Weights = Map<string, NamedTensor>;

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
 * Random weights for a model of shape `hp`: matrices ~ N(0, 0.02²) (GPT-2's own
 * initialisation; wpe 0.01), norm gains near 1, biases and norm shifts small, so that
 * activations stay in the range a trained model sees.
 */
export function randomWeights(hp: HParams, seed = 0): Weights {
  const rng = new Rng(seed);
  const weights: Weights = new Map();
  for (const [name, shape] of tfTensorShapes(hp)) {
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
