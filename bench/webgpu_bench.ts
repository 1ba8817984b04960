/**
 * The WebGPU kernels at GPT-2 124M shapes, and a whole decoding step of a 124M-shaped
 * random model. Each iteration records an op REPEAT times and waits for them with a
 * 4-byte read, so the rate includes one submit and one map per REPEAT ops. At the end a
 * table gives each kernel's rate (GFLOP/s, or GB/s of weights streamed) and, per decoding
 * step, the dispatches, submits and bytes read back, which are the same on every GPU.
 *
 * On Mesa's software driver (llvmpipe) the figures only show that the kernels run; on a
 * machine with a GPU they measure it:
 *
 *   deno task bench bench/webgpu_bench.ts
 */
import { WebGpuBackend } from "../runtime/backend/webgpu/webgpu_backend.ts";
import type { Tensor, WeightRole } from "../runtime/backend/backend.ts";
import { Gpt2 } from "../runtime/gpt2/gpt2.ts";
import { GPT2_SIZES } from "../runtime/gpt2/hparams.ts";
import { memorySource, randomWeights } from "../testing/random_model.ts";
import { Rng } from "../runtime/generate/random.ts";

const rng = new Rng(0);
let backend: WebGpuBackend | null = null;
try {
  backend = await WebGpuBackend.create();
} catch (e) {
  console.error(`webgpu_bench: skipped, ${(e as Error).message}`);
}
// A software adapter takes seconds for a prompt-sized product: it gets a lighter run.
const software = backend?.isFallbackAdapter ?? true;
const REPEAT = software ? 1 : 10;
const ITERATIONS = software ? 2 : 10;
const PROMPT = software ? 16 : 128;

const rows: string[][] = [];
const probe = new Float32Array(1);

function randn(n: number, scale: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * scale;
  return a;
}

async function put(
  b: WebGpuBackend,
  shape: number[],
  scale = 1,
  role: WeightRole = "plain",
): Promise<Tensor> {
  const t = b.weight(role, shape);
  const n = shape.reduce((x, y) => x * y, 1);
  await b.loadWeight(t, (dest) => Promise.resolve(dest.set(randn(n, scale))));
  return t;
}

/** Registers a benchmark of `record` (REPEAT times, then a wait) doing `work` units each. */
function benchOp(
  b: WebGpuBackend,
  name: string,
  work: number,
  unit: "GFLOP/s" | "GB/s",
  wait: Tensor,
  record: () => void,
): void {
  const times: number[] = [];
  Deno.bench({
    name,
    group: "webgpu",
    n: ITERATIONS,
    warmup: 1,
    async fn(ctx) {
      const t0 = performance.now();
      ctx.start();
      for (let i = 0; i < REPEAT; i++) record();
      await b.read(wait, probe);
      ctx.end();
      times.push(performance.now() - t0);
    },
  });
  report.push(() => {
    if (!times.length) return;
    const ms = [...times].sort((x, y) => x - y)[Math.floor(times.length / 2)];
    rows.push([name, `${(work * REPEAT / (ms / 1000) / 1e9).toPrecision(4)} ${unit}`]);
  });
}

const report: (() => void)[] = [];

if (backend) {
  const b = backend;
  for (const T of [1, PROMPT]) {
    for (const [C, OC] of [[768, 2304], [768, 3072], [3072, 768]]) {
      const inp = await put(b, [T, C]);
      const w = await put(b, [C, OC], 0.02, "conv1d");
      const bias = await put(b, [OC], 0.02);
      const out = b.tensor([T, OC]);
      const gelu = OC === 4 * C;
      benchOp(
        b,
        `conv1d${gelu ? "Gelu" : ""} T=${T} ${C}x${OC}`,
        2 * T * C * OC,
        "GFLOP/s",
        out,
        () => (gelu ? b.conv1dGelu : b.conv1d).call(b, out, inp, w, bias, T),
      );
    }
  }
  {
    const [C, V] = [768, 50257];
    const wte = await put(b, [V, C], 0.02, "embedding");
    for (const T of [1, 4]) {
      const h = await put(b, [T, C]);
      const out = b.tensor([T, V]);
      // Streaming the 154 MB wte (in vocabulary ranges where the binding limit is below
      // it) is the cost: bytes per second.
      benchOp(b, `logits T=${T} ${C}x${V}`, V * C * 4, "GB/s", out, () => {
        b.logits(out, h, wte, T);
      });
    }
  }
  for (const past of [128, 1023]) {
    const [H, D, P] = [12, 64, 1024];
    const C = H * D;
    const cache = b.kvCache({ layers: 1, slots: 1, positions: P, heads: H, headDim: D });
    const qkv = await put(b, [1, 3 * C]);
    const seqs = b.tensor([1, 2], "i32");
    b.write(seqs, Int32Array.of(0, past));
    const out = b.tensor([1, C]);
    benchOp(b, `attention T=1 past=${past}`, 4 * H * (past + 1) * D, "GFLOP/s", out, () => {
      b.attention(out, qkv, cache, 0, seqs, 1, 1);
    });
  }
}

// A decoding step of a 124M-shaped random model on its own backend, at batch 1.
let step: { dispatches: number; submits: number; bytesRead: number; bytesWritten: number } | null =
  null;
if (backend) {
  const hp = GPT2_SIZES["124M"];
  const model = Gpt2.create(await WebGpuBackend.create(), hp, { slots: 1, chunk: 16 });
  await model.load(memorySource(randomWeights(hp, 1)));
  const gb = model.backend as WebGpuBackend;
  await model.forward([{ slot: 0, tokens: [464, 2068, 7586, 21831] }]);
  let token = 0;
  const times: number[] = [];
  Deno.bench({
    name: "decoding step 124M (batch 1)",
    group: "webgpu model",
    n: ITERATIONS,
    warmup: 1,
    async fn(ctx) {
      if (model.cached(0) >= hp.n_ctx - 1) model.truncate(0, 4);
      gb.resetStats();
      const t0 = performance.now();
      ctx.start();
      await model.forward([{ slot: 0, tokens: [token] }]);
      ctx.end();
      times.push(performance.now() - t0);
      step = gb.stats();
      token = (token + 1) % hp.n_vocab;
    },
  });
  report.push(() => {
    if (!times.length) return;
    const ms = [...times].sort((x, y) => x - y)[Math.floor(times.length / 2)];
    rows.push(["decoding step 124M (batch 1)", `${(1000 / ms).toPrecision(4)} tok/s`]);
    if (step) {
      rows.push([
        "  per step",
        `${step.dispatches} dispatches, ${step.submits} submit, ${step.bytesRead} bytes read`,
      ]);
    }
  });
  globalThis.addEventListener("unload", () => model[Symbol.dispose]());
}

globalThis.addEventListener("unload", () => {
  for (const r of report) r();
  if (backend) {
    const note = backend.isFallbackAdapter
      ? " (a software fallback adapter: these figures only show that the kernels run)"
      : "";
    console.log(`\nWebGPU on ${backend.adapter}${note}`);
    backend.dispose();
  }
  const width = Math.max(0, ...rows.map((r) => r[0].length));
  for (const [name, rate] of rows) console.log(`${name.padEnd(width)}  ${rate}`);
});
