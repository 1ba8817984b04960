/**
 * End-to-end speed of GPT-2 124M's shape (fp32) on the WebAssembly kernels: loading,
 * prefill of a prompt, greedy decoding after it and after 896 cached positions, and the
 * machine's read bandwidth measured with the same threads in the same run. Without
 * --model the weights are synthetic, with the shapes of GPT-2 --size (124M by default;
 * speed does not depend on their values); with it, any model folder in either format. The
 * model is created as the tools create it (createGpt2: the backend's estimate decides
 * whether the weight type fits), with --batch slots. Prints one JSON line.
 *
 *   deno task bench:generate [--model DIR | --size 124M] [--backend wasm] [--dtype f32] [--threads N] [--prompt 128] [--generate 128] [--batch 1]
 *
 * Fields: load_s (kernels started, weights in place and packed); prefill_tok_s (prompt
 * tokens per second, all sequences, the median of three passes after one warm-up pass);
 * decode_tok_s (generated tokens per second, all sequences, the cache holding `prompt`
 * positions and more: two runs, before and after the next); decode_tok_s_past896 (the
 * same from 896 cached positions); read_gb_s (a plain SIMD sum over 1 GiB, or less where
 * the model leaves less of the wasm memory, the mean of one run before prefill and one
 * after decoding); decode_gb_s (weight bytes one decoding
 * step reads, weight_bytes, times steps per second); bandwidth_fraction (decode_gb_s / read_gb_s);
 * peak_rss_mb (the process's peak resident memory up to the end of decoding, less what
 * the bandwidth probe adds); threads; backend; dtype; batch. With --batch above 1 also
 * decode_tok_s_batch1 (one sequence decoding the same way, two runs, each right after one
 * of the batch's) and batch_speedup (decode_tok_s / decode_tok_s_batch1), so that the
 * gain of batching is measured against a baseline of the same moment. With --backend
 * webgpu also step_dispatches, step_submits and step_bytes_read: one decoding step's
 * compute dispatches, queue submits and bytes read back (the same on any GPU).
 */
import type { Backend } from "../runtime/backend/backend.ts";
import type { Gpt2 } from "../runtime/gpt2/gpt2.ts";
import { GPT2_SIZES } from "../runtime/gpt2/hparams.ts";
import { openModelFiles } from "../runtime/gpt2/model_files.ts";
import { argmax } from "../runtime/generate/sampler.ts";
import { checkLoadOptions, createGpt2, type LoadOptions } from "../runtime/generate/model.ts";
import { syntheticSource } from "../testing/random_model.ts";

interface Options {
  model?: string;
  size: string;
  backend: string;
  dtype: string;
  threads: number;
  prompt: number;
  generate: number;
  batch: number;
}

function parseOptions(args: string[]): Options {
  const options: Options = {
    size: "124M",
    backend: "wasm",
    dtype: "f32",
    threads: navigator.hardwareConcurrency,
    prompt: 128,
    generate: 128,
    batch: 1,
  };
  for (let i = 0; i < args.length; i += 2) {
    const key = args[i].replace(/^--/, "");
    if (["--model", "--size", "--backend", "--dtype"].includes(args[i])) {
      options[key as "model" | "size" | "backend" | "dtype"] = args[i + 1];
      continue;
    }
    const value = Number(args[i + 1]);
    if (!(key in options) || !args[i].startsWith("--")) {
      throw new TypeError(
        `Unknown option ${
          args[i]
        }; usage: [--model DIR | --size 124M] [--backend wasm|webgpu|auto] [--dtype f32|f16|q8|q4|auto] [--threads N] [--prompt 128] [--generate 128] [--batch 1]`,
      );
    }
    if (!Number.isInteger(value) || value < 1) {
      throw new RangeError(`--${key} must be a positive integer, got ${args[i + 1]}`);
    }
    options[key as "threads" | "prompt" | "generate" | "batch"] = value;
  }
  return options;
}

/** Greedy decoding of `steps` tokens in each of `slots` after `logits`; returns seconds. */
async function decode(
  gpt2: Gpt2,
  slots: readonly number[],
  logits: Float32Array,
  steps: number,
): Promise<number> {
  const V = gpt2.hparams.n_vocab;
  const out = new Float32Array(slots.length * V);
  const t0 = performance.now();
  for (let s = 0; s < steps; s++) {
    logits = await gpt2.forward(
      slots.map((slot, b) => ({ slot, tokens: [argmax(logits.subarray(b * V, (b + 1) * V))] })),
      { out },
    );
  }
  return (performance.now() - t0) / 1000;
}

/**
 * The backend's read bandwidth in GB/s where it can measure it (the wasm backend: a
 * plain SIMD sum over `bytes` with the same threads as the kernels), and the bytes the
 * probe keeps resident.
 */
function readProbe(backend: Backend, bytes: number): { gbPerS: () => number; resident: number } {
  const probe = (backend as Partial<ReadProbe>).readBandwidthProbe?.(bytes);
  return probe ?? { gbPerS: () => NaN, resident: 0 };
}

/** What one decoding step cost a backend that counts its GPU work. */
interface StepCounts {
  dispatches: number;
  submits: number;
  bytesRead: number;
}

/** What the WebGPU backend offers beyond the interface to count its work. */
interface CountingBackend {
  stats(): StepCounts;
  resetStats(): void;
}

/** What the wasm backend offers beyond the interface to measure its memory. */
interface ReadProbe {
  readBandwidthProbe(bytes: number): { gbPerS: () => number; resident: number };
}

let peakRss = 0;
/** Bytes the bandwidth probe keeps resident beyond the model's memory, left out of peakRss. */
let probeBytes = 0;
function sampleRss(): void {
  peakRss = Math.max(peakRss, Deno.memoryUsage().rss - probeBytes);
}

const READ_BYTES = 2 ** 30;

async function main(): Promise<void> {
  const options = parseOptions(Deno.args);
  const { threads, prompt, generate, batch } = options;
  // The library's own check of names, and below its own planning: a model the tools run
  // in a type runs here in that type.
  const load = { backend: options.backend, dtype: options.dtype, threads } as LoadOptions;
  checkLoadOptions(load);
  const t0 = performance.now();
  using files = options.model === undefined ? undefined : await openModelFiles(options.model);
  if (!(options.size in GPT2_SIZES)) {
    throw new RangeError(
      `Unknown --size "${options.size}": choose one of ${Object.keys(GPT2_SIZES).join(", ")}`,
    );
  }
  const hp = files?.hparams ?? GPT2_SIZES[options.size];
  if (prompt + generate > hp.n_ctx) {
    throw new RangeError(
      `--prompt ${prompt} plus --generate ${generate} exceeds the context of ${hp.n_ctx}`,
    );
  }
  // As many slots as the batch, the weight type and backend as the tools choose them.
  using gpt2 = await createGpt2(hp, { ...load, slots: batch, chunk: Math.min(prompt, 256) });
  const backend = gpt2.backend;
  using synthetic = files ? undefined : syntheticSource(hp);
  await gpt2.load(files?.source ?? synthetic!, files?.names);
  const loadS = (performance.now() - t0) / 1000;
  sampleRss();

  // Read bandwidth, with the same threads: before prefill and after decoding, and
  // read_gb_s is the mean of the two, since this machine's bandwidth drifts.
  const probe = readProbe(backend, READ_BYTES);
  probeBytes = probe.resident;
  const readBefore = probe.gbPerS();

  // Prefill, then decode from `prompt` cached positions.
  const slots = Array.from({ length: batch }, (_, b) => b);
  const rows = slots.map(
    (b) => Array.from({ length: prompt }, (_, t) => (b * 7919 + t * 104729) % hp.n_vocab),
  );
  const prefill = (tokens: number[][] = rows) => {
    gpt2.reset();
    return gpt2.forward(slots.map((slot) => ({ slot, tokens: tokens[slot] })));
  };
  // A warm-up pass of the same size: the kernels reach V8's optimising tier, and the
  // activations and the prompt's cache rows have been touched once (first touches of
  // fresh pages cost the first pass of a session alone).
  let logits = await prefill();
  const prefills: number[] = [];
  for (let r = 0; r < 3; r++) {
    const t1 = performance.now();
    logits = await prefill();
    prefills.push((performance.now() - t1) / 1000);
  }
  const prefillS = prefills.sort((a, b) => a - b)[1];
  sampleRss();
  const prompted = logits;
  let decodeS = await decode(gpt2, slots, logits, generate);
  sampleRss();

  // One sequence, for batch_speedup: slot 0 alone, on the same weights.
  const decodeSingle = async () => {
    gpt2.reset();
    return decode(gpt2, [0], await gpt2.forward([{ slot: 0, tokens: rows[0] }]), generate);
  };
  let singleS = batch > 1 ? await decodeSingle() : 0;

  // Decode from 896 cached positions: the prompt repeated to fill them, then new tokens.
  const far = Math.min(896, hp.n_ctx - 1);
  const farSteps = Math.min(generate, hp.n_ctx - far);
  logits = await prefill(rows.map((r) => Array.from({ length: far }, (_, t) => r[t % prompt])));
  const decodeFarS = await decode(gpt2, slots, logits, farSteps);
  sampleRss();

  // The work of one decoding step after the prompt, where the backend counts it (WebGPU:
  // dispatches, submits and bytes read back, the same on any GPU).
  let perStep: StepCounts | undefined;
  const counting = backend as Partial<CountingBackend>;
  if (counting.stats && counting.resetStats) {
    await prefill();
    counting.resetStats();
    await gpt2.forward(slots.map((slot) => ({ slot, tokens: [rows[slot][0]] })));
    perStep = counting.stats();
  }

  // Decode after the prompt once more, so that both lengths are measured around the same
  // moment of this machine's drifting speed; decode_tok_s counts both runs.
  await prefill();
  decodeS = (decodeS + await decode(gpt2, slots, prompted, generate)) / 2;
  if (batch > 1) singleS = (singleS + await decodeSingle()) / 2;

  const readGbS = (readBefore + probe.gbPerS()) / 2;

  // Every weight is read once per decoding step, whatever the batch, in the type stored.
  const stepsPerS = generate / decodeS;
  const decodeGbS = (gpt2.weightBytes * stepsPerS) / 1e9;
  const round = (x: number, digits = 3) => Number(x.toPrecision(digits + 1));
  console.log(JSON.stringify({
    load_s: round(loadS),
    prefill_tok_s: round((batch * prompt) / prefillS),
    decode_tok_s: round((batch * generate) / decodeS),
    decode_tok_s_past896: round((batch * farSteps) / decodeFarS),
    read_gb_s: round(readGbS),
    decode_gb_s: round(decodeGbS),
    weight_bytes: gpt2.weightBytes,
    bandwidth_fraction: round(decodeGbS / readGbS),
    peak_rss_mb: Math.round(peakRss / 2 ** 20),
    // Threads run only the wasm kernels; another backend has none to report.
    threads: (backend as { threads?: number }).threads ?? null,
    backend: backend.name,
    dtype: backend.weightType,
    batch,
    ...(perStep && {
      step_dispatches: perStep.dispatches,
      step_submits: perStep.submits,
      step_bytes_read: perStep.bytesRead,
    }),
    ...(batch > 1 && {
      decode_tok_s_batch1: round(generate / singleS),
      batch_speedup: round(singleS * batch / decodeS),
    }),
  }));
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    console.error(`error: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
