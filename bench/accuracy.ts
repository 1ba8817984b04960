/**
 * How far each weight type moves the model from float32, as llama.cpp's perplexity tool
 * reports it against a float32 base: a text runs through the model once per type, and at
 * every position the next-token distribution is compared with float32's. Without --model
 * the model is random with GPT-2 124M's shapes and the text is random tokens. Prints one
 * JSON line.
 *
 *   deno task bench:accuracy [--model DIR] [--text FILE] [--tokens 256] [--threads N]
 *
 * Fields, per type (`f16`, `q8`): kl_mean and kl_p99 (the KL divergence of the type's
 * distribution from float32's, in nats, mean and 99th percentile over positions),
 * top1_agreement (the fraction of positions whose most likely token is float32's) and
 * max_logit_diff (the largest difference of one logit); then tokens and the model's shape.
 */
import { parseArgs } from "node:util";
import type { WeightType } from "../runtime/backend/backend.ts";
import { createBackend } from "../runtime/backend/create.ts";
import type { TensorSource } from "../runtime/io/tensor_source.ts";
import { Gpt2 } from "../runtime/gpt2/gpt2.ts";
import { GPT2_SIZES, type HParams } from "../runtime/gpt2/hparams.ts";
import type { NameMap } from "../runtime/gpt2/tensor_names.ts";
import { openModelFiles } from "../runtime/gpt2/model_files.ts";
import { memorySource, randomWeights } from "../testing/random_model.ts";
import { Rng } from "../runtime/generate/random.ts";
import { argmax } from "../runtime/generate/sampler.ts";
import { Tokenizer } from "../runtime/tokenizer/tokenizer.ts";

/** The types compared with float32. */
const TYPES: readonly WeightType[] = ["f16", "q8"];

/** Logits at every position of `ids` (T, V), from the model in `dtype`. */
async function logitsOf(
  hp: HParams,
  source: TensorSource,
  names: NameMap | undefined,
  ids: number[],
  dtype: WeightType,
  threads: number,
): Promise<Float32Array> {
  using gpt2 = Gpt2.create(await createBackend("wasm", { threads, weightType: dtype }), hp);
  await gpt2.load(source, names);
  return await gpt2.forward([{ slot: 0, tokens: ids }], { allPositions: true });
}

/** log-softmax of a row, in float64. */
function logSoftmax(row: Float32Array): Float64Array {
  let max = -Infinity;
  for (const v of row) max = Math.max(max, v);
  let sum = 0;
  for (const v of row) sum += Math.exp(v - max);
  const log = Math.log(sum) + max;
  return Float64Array.from(row, (v) => v - log);
}

/** KL(p ‖ q) = Σ p (log p − log q), from log-probabilities. */
function kl(logP: Float64Array, logQ: Float64Array): number {
  let s = 0;
  for (let i = 0; i < logP.length; i++) s += Math.exp(logP[i]) * (logP[i] - logQ[i]);
  return s;
}

/** Compares `other` with `base`, both (T, V): the figures of one type. */
export function compare(base: Float32Array, other: Float32Array, V: number) {
  const T = base.length / V;
  const kls: number[] = [];
  let agree = 0, maxDiff = 0;
  for (let t = 0; t < T; t++) {
    const a = base.subarray(t * V, (t + 1) * V), b = other.subarray(t * V, (t + 1) * V);
    kls.push(Math.max(0, kl(logSoftmax(a), logSoftmax(b))));
    if (argmax(a) === argmax(b)) agree++;
    for (let i = 0; i < V; i++) maxDiff = Math.max(maxDiff, Math.abs(a[i] - b[i]));
  }
  kls.sort((x, y) => x - y);
  const round = (x: number) => Number(x.toPrecision(4));
  return {
    kl_mean: round(kls.reduce((s, x) => s + x, 0) / T),
    kl_p99: round(kls[Math.min(T - 1, Math.ceil(0.99 * T) - 1)]),
    top1_agreement: round(agree / T),
    max_logit_diff: round(maxDiff),
  };
}

async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      text: { type: "string" },
      tokens: { type: "string", default: "256" },
      threads: { type: "string", default: String(navigator.hardwareConcurrency) },
    },
  });
  const count = Number(values.tokens), threads = Number(values.threads);
  for (const [name, v] of [["tokens", count], ["threads", threads]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`--${name} must be a positive integer, got ${v}`);
    }
  }
  using files = values.model === undefined ? undefined : await openModelFiles(values.model);
  const hp = files?.hparams ?? GPT2_SIZES["124M"];
  using random = files ? undefined : memorySource(randomWeights(hp, 1));
  const source = files?.source ?? random!;
  let ids: number[];
  if (files && values.text !== undefined) {
    const tokenizer = await Tokenizer.load(values.model!);
    ids = tokenizer.encode(await Deno.readTextFile(values.text));
  } else {
    const rng = new Rng(7);
    ids = Array.from({ length: count }, () => Math.floor(rng.next() * hp.n_vocab));
  }
  ids = ids.slice(0, Math.min(count, hp.n_ctx));
  const base = await logitsOf(hp, source, files?.names, ids, "f32", threads);
  const result: Record<string, unknown> = {};
  for (const dtype of TYPES) {
    const other = await logitsOf(hp, source, files?.names, ids, dtype, threads);
    result[dtype] = compare(base, other, hp.n_vocab);
  }
  console.log(JSON.stringify({ ...result, tokens: ids.length, hparams: hp }));
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (error) {
    console.error(`error: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
