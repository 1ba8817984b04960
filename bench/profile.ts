/**
 * Where the time of a prefill and of a decoding step goes, kernel by kernel and thread
 * by thread, on the wasm backend: every kernel call is timed on the calling thread (from
 * dispatch until all threads are done) and on each thread (inside the kernel), so a
 * thread's idle time in an op is its wall time less that thread's busy time, and time
 * outside every kernel (JavaScript between calls, waking workers) is the pass's wall time
 * less the kernels'. Without --model the weights are synthetic, with GPT-2 124M's shapes.
 *
 *   deno task bench:profile [--model DIR] [--dtype f32|f16|q8] [--threads N] [--prompt 128] [--steps 32]
 *
 * Prints one JSON line per op and sizes, then one summary line, for each phase
 * ("prefill": a prompt of --prompt tokens, three passes after a warm-up; "decode": --steps
 * single-token steps after that prompt). Per op: calls and wall_ms per pass, busy_ms per
 * thread per pass, share (of the pass's wall time), and for the matrix products gflop_s
 * (2·rows·C·OC per call, or 2·rows·C·V for the head, over the wall time). Summary:
 * pass_ms, kernels_ms, outside_ms, idle_ms per thread (summed over ops), tok_s.
 */
import { WEIGHT_TYPES, type WeightType } from "../runtime/backend/backend.ts";
import { WasmBackend } from "../runtime/backend/wasm/wasm_backend.ts";
import type { OpProfile } from "../runtime/backend/wasm/worker_pool.ts";
import { Gpt2 } from "../runtime/gpt2/gpt2.ts";
import { GPT2_SIZES } from "../runtime/gpt2/hparams.ts";
import { openModelFiles } from "../runtime/gpt2/model_files.ts";
import { argmax } from "../runtime/generate/sampler.ts";
import { syntheticSource } from "../testing/random_model.ts";

const USAGE = "usage: [--model DIR] [--dtype f32|f16|q8] [--threads N] [--prompt 128] [--steps 32]";

function parseOptions(args: string[]) {
  const o = {
    model: undefined as string | undefined,
    dtype: "f32",
    threads: navigator.hardwareConcurrency,
    prompt: 128,
    steps: 32,
  };
  for (let i = 0; i < args.length; i += 2) {
    const key = args[i].replace(/^--/, "");
    const value = args[i + 1];
    if (!args[i].startsWith("--") || !(key in o) || value === undefined) {
      throw new TypeError(`Unknown option ${args[i]}; ${USAGE}`);
    }
    if (key === "model" || key === "dtype") o[key] = value;
    else {
      const n = Number(value);
      if (!Number.isInteger(n) || n < 1) {
        throw new RangeError(`--${key} must be a positive integer, got ${value}`);
      }
      o[key as "threads" | "prompt" | "steps"] = n;
    }
  }
  if (!(WEIGHT_TYPES as readonly string[]).includes(o.dtype)) {
    throw new RangeError(`Unknown --dtype "${o.dtype}": choose one of ${WEIGHT_TYPES.join(", ")}`);
  }
  return o;
}

/** Floating-point operations of one call of a matrix product, from its sizes. */
function flops(p: OpProfile): number | undefined {
  const { rows, C, OC, V } = p.sizes;
  if (rows === undefined || C === undefined) return undefined;
  const cols = OC ?? V;
  return cols === undefined ? undefined : 2 * rows * C * cols;
}

const round = (x: number, digits = 3) => Number(x.toPrecision(digits + 1));

/** Prints a phase's profile, `passes` passes of `passMs` each that made `tokens` tokens each. */
function report(
  phase: string,
  profile: OpProfile[],
  passes: number,
  passMs: number,
  tokens: number,
) {
  let kernels = 0;
  const idle = new Array(profile[0]?.busyMs.length ?? 0).fill(0);
  for (const p of profile) {
    const wall = p.wallMs / passes;
    kernels += wall;
    p.busyMs.forEach((b, t) => idle[t] += wall - b / passes);
    const f = flops(p);
    console.log(JSON.stringify({
      phase,
      op: p.label,
      calls: round(p.calls / passes),
      wall_ms: round(wall),
      busy_ms: p.busyMs.map((b) => round(b / passes)),
      share: round(wall / passMs, 2),
      ...(f !== undefined && { gflop_s: round((f * p.calls) / (p.wallMs * 1e6)) }),
    }));
  }
  console.log(JSON.stringify({
    phase,
    summary: true,
    pass_ms: round(passMs),
    kernels_ms: round(kernels),
    outside_ms: round(passMs - kernels),
    idle_ms: idle.map((x) => round(x)),
    tok_s: round((tokens * 1000) / passMs),
  }));
}

async function main(): Promise<void> {
  const o = parseOptions(Deno.args);
  using files = o.model === undefined ? undefined : await openModelFiles(o.model);
  const hp = files?.hparams ?? GPT2_SIZES["124M"];
  if (o.prompt + o.steps > hp.n_ctx) {
    throw new RangeError(`--prompt plus --steps exceeds the context of ${hp.n_ctx}`);
  }
  const backend = await WasmBackend.create({
    threads: o.threads,
    weightType: o.dtype as WeightType,
    profile: true,
  });
  using gpt2 = Gpt2.create(backend, hp, { slots: 1, chunk: Math.min(o.prompt, 256) });
  using synthetic = files ? undefined : syntheticSource(hp);
  await gpt2.load(files?.source ?? synthetic!, files?.names);
  const tokens = Array.from({ length: o.prompt }, (_, t) => (t * 104729) % hp.n_vocab);
  const prefill = () => {
    gpt2.reset();
    return gpt2.forward([{ slot: 0, tokens }]);
  };
  const decode = async (logits: Float32Array, steps: number) => {
    for (let s = 0; s < steps; s++) {
      logits = await gpt2.forward([{ slot: 0, tokens: [argmax(logits)] }]);
    }
  };
  // Warm-up: the kernels reach V8's optimising tier and fresh pages are touched.
  await decode(await prefill(), 4);

  const passes = 3;
  backend.resetProfile();
  let t0 = performance.now();
  for (let r = 0; r < passes; r++) await prefill();
  report("prefill", backend.profile()!, passes, (performance.now() - t0) / passes, o.prompt);

  const logits = await prefill();
  backend.resetProfile();
  t0 = performance.now();
  await decode(logits, o.steps);
  report("decode", backend.profile()!, o.steps, (performance.now() - t0) / o.steps, 1);
}

if (import.meta.main) {
  try {
    await main();
  } catch (error) {
    console.error(`error: ${error instanceof Error ? error.message : error}`);
    Deno.exit(1);
  }
}
