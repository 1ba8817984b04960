/**
 * How far each weight type moves the model from float32, as llama.cpp's perplexity tool
 * reports it against a float32 base: a text runs through the model once per type, in
 * non-overlapping windows of n_ctx tokens, and at every position the next-token
 * distribution is compared with float32's. Prints one JSON line per type, float32 first.
 *
 *   deno task bench:accuracy [--model DIR|FILE] [--text FILE] [--gguf DIR|FILE,…]
 *                            [--tokens 1024] [--threads N]
 *
 * Without --model it runs on real text: the trained fixture (../shared/fixtures/trained-
 * tiny) and its held-out text, with the fixture's GGUF files beside the backend's types;
 * where the fixture is absent, a random model with GPT-2 124M's shapes on random tokens.
 *
 * Fields: type (`f32`, `f16`, `q8`, `q4`: the backend's own types, from the model's float32
 * weights; `gguf:Q4_0` …: a GGUF file's weights, loaded as a GGUF file loads by default,
 * into the weight type `stored` names: Q8_0 and Q4_0 kept as they are, other types
 * converted),
 * bytes_per_weight (what the matrices take: in the backend, or in the GGUF file), kl_mean
 * and kl_p99 (the KL divergence of the type's next-token distribution from float32's, in
 * nats, mean and 99th percentile over positions), top1_agreement (the fraction of
 * positions whose most likely token is float32's), max_logit_diff, perplexity (over the
 * positions whose next token is in their window), positions, and the model and text.
 */
import { parseArgs } from "node:util";
import { fileURLToPath } from "node:url";
import type { WeightType } from "../runtime/backend/backend.ts";
import { createBackend } from "../runtime/backend/create.ts";
import { Gpt2 } from "../runtime/gpt2/gpt2.ts";
import { GPT2_SIZES, type HParams } from "../runtime/gpt2/hparams.ts";
import { type ModelFiles, openModelFiles } from "../runtime/gpt2/model_files.ts";
import type { TensorSource } from "../runtime/io/tensor_source.ts";
import { TYPE_LAYOUTS } from "../runtime/io/tensor_types.ts";
import type { NameMap } from "../runtime/gpt2/tensor_names.ts";
import { memorySource, randomWeights } from "../testing/random_model.ts";
import { Rng } from "../runtime/generate/random.ts";
import { argmax } from "../runtime/generate/sampler.ts";

/** The backend's own types compared with float32. */
const TYPES: readonly WeightType[] = ["f16", "q8", "q4"];

/**
 * Bytes per weight of the backend's matrices in each type (q8: int8 + a float16 scale per
 * 32, as ggml's Q8_0; q4: 4 bits + a float16 scale per 32, as Q4_0).
 */
const BACKEND_BYTES: Readonly<Record<WeightType, number>> = {
  f32: 4,
  f16: 2,
  q8: 1.0625,
  q4: 0.5625,
};

const FIXTURE = fileURLToPath(new URL("../../shared/fixtures/", import.meta.url));

/** log Σ exp(row), in float64. */
function logSumExp(row: Float32Array): number {
  let max = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i] > max) max = row[i];
  let sum = 0;
  for (let i = 0; i < row.length; i++) sum += Math.exp(row[i] - max);
  return max + Math.log(sum);
}

/**
 * KL(p ‖ q) = Σ p (log p − log q) of the softmaxes of `a` and `b`, given their log Σ exp.
 */
function kl(a: Float32Array, logZa: number, b: Float32Array, logZb: number): number {
  let s = 0;
  for (let i = 0; i < a.length; i++) {
    const logP = a[i] - logZa;
    s += Math.exp(logP) * (logP - (b[i] - logZb));
  }
  return s;
}

const round = (x: number) => Number(x.toPrecision(4));

/** Gathers one type's figures position by position, a window at a time. */
export class Comparison {
  readonly #kls: number[] = [];
  #agree = 0;
  #maxDiff = 0;
  #nll = 0;
  #scored = 0;

  constructor(readonly V: number) {}

  /**
   * Adds the positions of one window: `base` and `other` are its logits (T, V); `next`
   * the token after each position, or -1 where it lies outside the window.
   */
  add(base: Float32Array, other: Float32Array, next: readonly number[] = []): void {
    const V = this.V;
    for (let t = 0; t < base.length / V; t++) {
      const a = base.subarray(t * V, (t + 1) * V), b = other.subarray(t * V, (t + 1) * V);
      const logZa = logSumExp(a), logZb = logSumExp(b);
      this.#kls.push(Math.max(0, kl(a, logZa, b, logZb)));
      if (argmax(a) === argmax(b)) this.#agree++;
      for (let i = 0; i < V; i++) this.#maxDiff = Math.max(this.#maxDiff, Math.abs(a[i] - b[i]));
      const token = next[t] ?? -1;
      if (token >= 0) {
        this.#nll -= b[token] - logZb;
        this.#scored++;
      }
    }
  }

  /** The figures so far; perplexity only when some position had a next token. */
  result() {
    const kls = [...this.#kls].sort((x, y) => x - y);
    const T = kls.length;
    return {
      kl_mean: round(kls.reduce((s, x) => s + x, 0) / T),
      kl_p99: round(kls[Math.min(T - 1, Math.ceil(0.99 * T) - 1)]),
      top1_agreement: round(this.#agree / T),
      max_logit_diff: round(this.#maxDiff),
      ...(this.#scored > 0
        ? { perplexity: Number(Math.exp(this.#nll / this.#scored).toPrecision(7)) }
        : {}),
    };
  }
}

/** Compares `other` with `base`, both (T, V): the figures of one type. */
export function compare(base: Float32Array, other: Float32Array, V: number) {
  const c = new Comparison(V);
  c.add(base, other);
  return c.result();
}

/** One model to compare: where its weights come from and how the backend stores them. */
interface Variant {
  readonly type: string;
  readonly bytesPerWeight: number;
  readonly source: TensorSource;
  readonly names?: NameMap;
  readonly weightType: WeightType;
}

/** A GPT-2 of `variant`'s weights on the wasm backend. */
async function modelOf(hp: HParams, v: Variant, threads: number): Promise<Gpt2> {
  const gpt2 = Gpt2.create(await createBackend("wasm", { threads, weightType: v.weightType }), hp);
  await gpt2.load(v.source, v.names);
  return gpt2;
}

/** Logits at every position of `ids` (T, V), starting from an empty context. */
async function logitsOf(gpt2: Gpt2, ids: readonly number[]): Promise<Float32Array> {
  gpt2.reset(0);
  return await gpt2.forward([{ slot: 0, tokens: ids }], { allPositions: true });
}

/** The GGUF files named by `list` (comma-separated files or folders), sorted. */
function ggufPaths(list: string): string[] {
  return list.split(",").filter((p) => p.length > 0).flatMap((p) => {
    if (Deno.statSync(p).isFile) return [p];
    return [...Deno.readDirSync(p)].map((e) => e.name).filter((n) => n.endsWith(".gguf"))
      .sort().map((n) => `${p}/${n}`);
  });
}

function exists(path: string): boolean {
  try {
    Deno.statSync(path);
    return true;
  } catch {
    return false;
  }
}

async function main(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      text: { type: "string" },
      gguf: { type: "string" },
      tokens: { type: "string" },
      threads: { type: "string", default: String(navigator.hardwareConcurrency) },
    },
  });
  const threads = Number(values.threads);
  const fixture = values.model === undefined && exists(`${FIXTURE}trained-tiny/heldout.txt`);
  const modelPath = values.model ?? (fixture ? `${FIXTURE}trained-tiny` : undefined);
  const textPath = values.text ?? (fixture ? `${FIXTURE}trained-tiny/heldout.txt` : undefined);
  const gguf = values.gguf ?? (fixture ? `${FIXTURE}trained-tiny-gguf` : undefined);
  const count = Number(values.tokens ?? (textPath ? 1024 : 256));
  for (const [name, v] of [["tokens", count], ["threads", threads]] as const) {
    if (!Number.isInteger(v) || v < 1) {
      throw new RangeError(`--${name} must be a positive integer, got ${v}`);
    }
  }

  const files: ModelFiles[] = [];
  try {
    const base = modelPath === undefined ? undefined : await openModelFiles(modelPath);
    if (base) files.push(base);
    const hp = base?.hparams ?? GPT2_SIZES["124M"];
    const source = base?.source ?? memorySource(randomWeights(hp, 1));
    let ids: number[];
    if (base && textPath !== undefined) {
      ids = (await base.tokenizer()).encode(await Deno.readTextFile(textPath));
    } else {
      const rng = new Rng(7);
      ids = Array.from({ length: count }, () => Math.floor(rng.next() * hp.n_vocab));
    }
    ids = ids.slice(0, count);
    const variants: Variant[] = TYPES.map((weightType) => ({
      type: weightType,
      bytesPerWeight: BACKEND_BYTES[weightType],
      source,
      names: base?.names,
      weightType,
    }));
    for (const path of gguf === undefined ? [] : ggufPaths(gguf)) {
      const f = await openModelFiles(path);
      files.push(f);
      if (JSON.stringify(f.hparams) !== JSON.stringify(hp)) {
        throw new RangeError(`"${path}" is not of the model's shape ${JSON.stringify(hp)}`);
      }
      const embedding = [...f.source.tensors.values()].find((t) => t.name === "token_embd.weight");
      const layout = TYPE_LAYOUTS[embedding?.dtype as keyof typeof TYPE_LAYOUTS];
      variants.push({
        type: `gguf:${layout?.ggmlName ?? "?"}`,
        bytesPerWeight: layout ? layout.blockBytes / layout.blockSize : NaN,
        source: f.source,
        names: f.names,
        weightType: f.weightTypes?.[0] ?? "f32",
      });
    }

    // Windows of n_ctx tokens; row t of a window predicts its token t + 1, if any.
    const windows: { ids: number[]; next: number[] }[] = [];
    for (let begin = 0; begin < ids.length; begin += hp.n_ctx) {
      const w = ids.slice(begin, begin + hp.n_ctx);
      windows.push({ ids: w, next: w.map((_, t) => w[t + 1] ?? -1) });
    }
    const what = {
      positions: ids.length,
      model: modelPath ?? "random 124M",
      text: textPath ?? "random tokens",
    };
    const f32 = {
      type: "f32",
      bytesPerWeight: 4,
      source,
      names: base?.names,
      weightType: "f32" as const,
    };
    using baseModel = await modelOf(hp, f32, threads);
    const baseLogits: Float32Array[] = [];
    for (const w of windows) baseLogits.push(await logitsOf(baseModel, w.ids));
    const self = new Comparison(hp.n_vocab);
    windows.forEach((w, i) => self.add(baseLogits[i], baseLogits[i], w.next));
    console.log(JSON.stringify({ type: "f32", bytes_per_weight: 4, ...self.result(), ...what }));
    for (const v of variants) {
      using model = await modelOf(hp, v, threads);
      const c = new Comparison(hp.n_vocab);
      for (const [i, w] of windows.entries()) {
        c.add(baseLogits[i], await logitsOf(model, w.ids), w.next);
      }
      console.log(JSON.stringify({
        type: v.type,
        ...(v.type.startsWith("gguf:") ? { stored: v.weightType } : {}),
        bytes_per_weight: round(v.bytesPerWeight),
        ...c.result(),
        ...what,
      }));
    }
  } finally {
    for (const f of files) f[Symbol.dispose]();
  }
}

if (import.meta.main) {
  try {
    await main(Deno.args);
  } catch (error) {
    console.error(`error: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
