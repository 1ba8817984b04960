/**
 * The int8 (q8), 4-bit (q4) and float16 Conv1D kernels beside the float32 one at GPT-2 124M shapes,
 * for one token (T = 1, decoding) and a 128-token prompt, on one thread and on a 2-thread
 * worker pool. The q8 and q4 figures include quantising the input rows (`quantizeQ8`,
 * `quantizeQ4`), which the model pays before each such product. The table gives GFLOP/s and the ratio to the f32
 * kernel on the same threads in the same run, and the weights read per second. At T = 1
 * each iteration uses the next of several copies of the weight, 64 MB or more of them, so
 * that the weights come from memory (the L3 cache here is 32 MB), as when decoding; at
 * T = 128 one copy serves every row. The output head (T = 1) follows in GB/s of weights
 * read (its 43–154 MB never fit in cache), also in GFLOP/s.
 *
 *   deno task bench bench/quant_kernels_bench.ts
 */
import { benchRate } from "./report.ts";
import { Harness, randn } from "../tests/kernel_harness.ts";
import { panels, widenedPanelBytes } from "../runtime/backend/wasm/layout.ts";
import { WEIGHT_FORMATS } from "../runtime/backend/wasm/weight_formats.ts";
import { Rng } from "../runtime/generate/random.ts";
import { instantiate, kernelModule } from "../runtime/backend/wasm/kernel_module.ts";
import { namedArgs, type Op, OPS } from "../runtime/backend/wasm/ops.ts";
import { WorkerPool } from "../runtime/backend/wasm/worker_pool.ts";

const h = await Harness.create(1.5 * 2 ** 30);
const rng = new Rng(0);
const { exports, constants } = instantiate(await kernelModule(), h.memory);
const PANEL = constants.PANEL;
const pool = await WorkerPool.create(await kernelModule(), h.memory, 2);
const { f16, q8, q4 } = WEIGHT_FORMATS;
const STORE = constants.modes.store;
globalThis.addEventListener("unload", () => pool[Symbol.dispose]());

/** Runs `op` (its arguments in `op.args` order) whole on this thread, or on the pool's two. */
function run(threads: 1 | 2, op: Op, values: number[]): void {
  const args = namedArgs(op, values);
  if (threads === 2) pool.run(op, args);
  else op.run(exports, args, 0, op.units(args, constants));
}

const bytes = (n: number) => h.put(Math.ceil(n / 4));

for (const T of [1, 128]) {
  for (const [C, OC] of [[768, 2304], [768, 768], [768, 3072], [3072, 768]]) {
    const x = randn(rng, T * C);
    const w = randn(rng, C * OC, 0.02);
    const bias = h.put(randn(rng, Math.ceil(OC / PANEL) * PANEL, 0.1));
    const [px, po, src] = [h.put(x), h.put(T * OC), h.put(w)];
    /** Copies of a weight of `size` bytes packed by `pack`: one, or 64 MB of them at T = 1. */
    const copies = (size: number, pack: (at: number) => void) => {
      const list = Array.from({ length: T === 1 ? Math.ceil(64e6 / size) : 1 }, () => bytes(size));
      list.forEach(pack);
      let i = 0;
      return () => list[i++ % list.length];
    };
    const p32 = copies(
      4 * C * Math.ceil(OC / PANEL) * PANEL,
      (at) => run(1, OPS.packPanels, [at, src, C, OC]),
    );
    const p16 = copies(f16.conv1dBytes(C, OC), (at) => run(1, OPS.packF16, [at, src, C, OC]));
    const p8 = copies(q8.conv1dBytes(C, OC), (at) => run(1, OPS.packQ8, [at, src, C, OC]));
    const p4 = copies(q4.conv1dBytes(C, OC), (at) => run(1, OPS.packQ4, [at, src, C, OC]));
    const qx = bytes(T * Math.max(q8.quantize!.rowBytes(C), q4.quantize!.rowBytes(C)));
    // The f16 kernel's scratch, a widened panel for each of the pool's two threads.
    const scratch = bytes(2 * widenedPanelBytes(C));
    const work = 2 * T * C * OC;
    for (const threads of [1, 2] as const) {
      const group = `conv1d T=${T} ${C}x${OC} ${threads === 1 ? "1 thread" : "2 threads"}`;
      const n = T > 1 ? 20 : 200;
      benchRate({
        group,
        name: `${group} f32`,
        work,
        unit: "GFLOP/s",
        baseline: true,
        n,
        weightBytes: 4 * C * OC,
      }, () => {
        run(threads, OPS.conv1d, [po, px, p32(), bias, T, C, OC, STORE]);
      });
      benchRate(
        { group, name: `${group} f16`, work, unit: "GFLOP/s", n, weightBytes: 2 * C * OC },
        () => {
          run(threads, OPS.conv1dF16, [po, px, p16(), bias, T, C, OC, STORE, scratch]);
        },
      );
      benchRate({
        group,
        name: `${group} q8`,
        work,
        unit: "GFLOP/s",
        n,
        weightBytes: q8.conv1dBytes(C, OC),
      }, () => {
        run(threads, OPS.quantizeQ8, [qx, px, T, C]);
        run(threads, OPS.conv1dQ8, [po, qx, p8(), bias, T, C, OC, STORE]);
      });
      benchRate({
        group,
        name: `${group} q4`,
        work,
        unit: "GFLOP/s",
        n,
        weightBytes: q4.conv1dBytes(C, OC),
      }, () => {
        run(threads, OPS.quantizeQ4, [qx, px, T, C]);
        run(threads, OPS.conv1dQ4, [po, qx, p4(), bias, T, C, OC, STORE]);
      });
    }
  }
}

{
  // The output head for one token: streaming wte is the cost, so GB/s of weights read.
  const [T, C, V] = [1, 768, 50257];
  const wte = randn(rng, V * C, 0.02);
  const [px, po, p32] = [h.put(randn(rng, T * C)), h.put(T * V), h.put(wte)];
  const p16 = bytes(f16.embeddingBytes(V, C));
  run(1, OPS.packF16Rows, [p16, p32, C, V, 0, panels(V)]);
  const p8 = bytes(q8.embeddingBytes(V, C));
  run(1, OPS.packQ8Rows, [p8, p32, C, V, 0, panels(V)]);
  const p4 = bytes(q4.embeddingBytes(V, C));
  run(1, OPS.packQ4Rows, [p4, p32, C, V, 0, panels(V)]);
  const qx = bytes(T * Math.max(q8.quantize!.rowBytes(C), q4.quantize!.rowBytes(C)));
  // The head's arithmetic as GFLOP/s, so that the ratios compare times.
  const work = 2 * V * C;
  for (const threads of [1, 2] as const) {
    const group = `logits T=1 768x50257 ${threads === 1 ? "1 thread" : "2 threads"}`;
    benchRate({
      group,
      name: `${group} f32`,
      work,
      unit: "GFLOP/s",
      baseline: true,
      n: 30,
      weightBytes: 4 * V * C,
    }, () => run(threads, OPS.logits, [po, px, p32, T, C, V]));
    benchRate(
      {
        group,
        name: `${group} f16`,
        work,
        unit: "GFLOP/s",
        n: 30,
        weightBytes: f16.embeddingBytes(V, C),
      },
      () => run(threads, OPS.logitsF16, [po, px, p16, T, C, V]),
    );
    benchRate({
      group,
      name: `${group} q8`,
      work,
      unit: "GFLOP/s",
      n: 30,
      weightBytes: q8.embeddingBytes(V, C),
    }, () => {
      run(threads, OPS.quantizeQ8, [qx, px, T, C]);
      run(threads, OPS.logitsQ8, [po, qx, p8, T, C, V]);
    });
    benchRate({
      group,
      name: `${group} q4`,
      work,
      unit: "GFLOP/s",
      n: 30,
      weightBytes: q4.embeddingBytes(V, C),
    }, () => {
      run(threads, OPS.quantizeQ4, [qx, px, T, C]);
      run(threads, OPS.logitsQ4, [po, qx, p4, T, C, V]);
    });
  }
}
