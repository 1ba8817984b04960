/**
 * Each WebAssembly kernel at GPT-2 124M shapes beside the plain scalar TypeScript
 * reference, on random data (speed does not depend on the values). The table at the end
 * gives GFLOP/s (or GB/s) and the speed-up over the reference measured in the same run.
 * The heaviest kernels run again on a 2-thread worker pool ("2 threads"), and the
 * "dispatch" group times one pool call that has next to nothing to do: the overhead of
 * waking the workers and waiting for them, back to back and after 200 µs idle.
 *
 *   deno task bench bench/kernels_bench.ts
 */
import { benchRate } from "./report.ts";
import { Harness, randn } from "../tests/kernel_harness.ts";
import { packedSize, PANEL } from "../runtime/backend/wasm/memory_plan.ts";
import { Rng } from "../runtime/random.ts";
import { createMemory, kernelModule } from "../runtime/backend/wasm/wasm_kernels.ts";
import { WorkerPool } from "../runtime/backend/wasm/worker_pool.ts";
import {
  refAttention,
  refConv1d,
  refGelu,
  refLayerNorm,
  refLogits,
  refSoftmax,
} from "../runtime/backend/reference/ops.ts";

const h = await Harness.create(1 << 30);
const k = h.kernels;
const rng = new Rng(0);
// A second instance of the kernels on the same memory, on two threads.
const pool = await WorkerPool.create(await kernelModule(), h.memory, 2);
globalThis.addEventListener("unload", () => pool[Symbol.dispose]());

// conv1d: out (T, OC) = inp (T, C) · w (C, OC) + b.
for (const T of [1, 128]) {
  for (const [C, OC] of [[768, 2304], [768, 768], [768, 3072], [3072, 768]]) {
    const inp = randn(rng, T * C);
    const w = randn(rng, C * OC, 0.02);
    const b = randn(rng, OC);
    const bias = new Float32Array(Math.ceil(OC / PANEL) * PANEL);
    bias.set(b);
    const packed = h.put(packedSize(C, OC));
    k.packPanels(packed, h.put(w), C, OC);
    const [pi, pb, po] = [h.put(inp), h.put(bias), h.put(T * OC)];
    const group = `conv1d T=${T} ${C}x${OC}`;
    const work = 2 * T * C * OC;
    benchRate({ group, name: `${group} wasm`, work, unit: "GFLOP/s" }, () => {
      k.conv1d(po, pi, packed, pb, T, C, OC);
    });
    benchRate({ group, name: `${group} wasm 2 threads`, work, unit: "GFLOP/s" }, () => {
      pool.conv1d(po, pi, packed, pb, T, C, OC);
    });
    if (OC === 4 * C) {
      benchRate({ group, name: `${group} wasm + gelu`, work, unit: "GFLOP/s" }, () => {
        k.conv1dGelu(po, pi, packed, pb, T, C, OC);
      });
    }
    benchRate({
      group,
      name: `${group} scalar TS`,
      work,
      unit: "GFLOP/s",
      baseline: true,
      n: T > 1 ? 2 : 10,
    }, () => {
      refConv1d(inp, w, b, T, C, OC);
    });
  }
}

{
  const [C, V] = [768, 50257];
  const wte = randn(rng, V * C, 0.02);
  const pw = h.put(wte);
  for (const T of [1, 4]) {
    const x = randn(rng, T * C);
    const [px, po] = [h.put(x), h.put(T * V)];
    const group = `logits T=${T} 768x50257`;
    // Streaming the 154 MB wte is the cost here: report bytes per second.
    const work = V * C * 4;
    benchRate(
      { group, name: `${group} wasm`, work, unit: "GB/s" },
      () => k.logits(po, px, pw, T, C, V),
    );
    benchRate(
      { group, name: `${group} wasm 2 threads`, work, unit: "GB/s" },
      () => pool.logits(po, px, pw, T, C, V),
    );
    benchRate(
      { group, name: `${group} scalar TS`, work, unit: "GB/s", baseline: true, n: 3 },
      () => {
        refLogits(x, wte, T, C, V);
      },
    );
  }
}

// Attention of one new token over `past` cached ones, 12 heads of 64.
for (const past of [16, 128, 512, 1024 - 1]) {
  const [nHead, dHead, nCtx] = [12, 64, 1024];
  const C = nHead * dHead;
  const qkv = randn(rng, 3 * C);
  const pastK = randn(rng, nHead * past * dHead);
  const pastV = randn(rng, nHead * past * dHead);
  const cache = h.put(2 * nHead * nCtx * dHead);
  const [pq, ps, po] = [h.put(qkv), h.put(nHead * nCtx), h.put(C)];
  const group = `attention T=1 past=${past}`;
  const work = 4 * nHead * (past + 1) * dHead; // q·k and w·v
  benchRate({ group, name: `${group} wasm`, work, unit: "GFLOP/s" }, () => {
    k.attention(po, pq, cache, ps, 1, 1, past, nHead, dHead, nCtx, 2 * nHead * nCtx * dHead);
  });
  benchRate({ group, name: `${group} wasm 2 threads`, work, unit: "GFLOP/s" }, () => {
    pool.attention(po, pq, cache, ps, 1, 1, past, nHead, dHead, nCtx, 2 * nHead * nCtx * dHead);
  });
  benchRate(
    { group, name: `${group} scalar TS`, work, unit: "GFLOP/s", baseline: true, n: 10 },
    () => {
      refAttention(qkv, pastK, pastV, 1, 1, past, nHead, dHead);
    },
  );
}

{
  const n = 128 * 3072;
  const x = randn(rng, n);
  const p = h.put(x);
  const group = "gelu 128x3072";
  benchRate({ group, name: `${group} wasm`, work: n * 8, unit: "GB/s" }, () => k.gelu(p, p, n));
  benchRate(
    { group, name: `${group} scalar TS`, work: n * 8, unit: "GB/s", baseline: true, n: 10 },
    () => {
      refGelu(x);
    },
  );
}

{
  const [rows, C] = [128, 768];
  const x = randn(rng, rows * C);
  const g = randn(rng, C);
  const b = randn(rng, C);
  const [px, pg, pb, po] = [h.put(x), h.put(g), h.put(b), h.put(rows * C)];
  const group = "layer_norm 128x768";
  const work = rows * C * 8;
  benchRate(
    { group, name: `${group} wasm`, work, unit: "GB/s" },
    () => k.layerNorm(po, px, pg, pb, rows, C),
  );
  benchRate(
    { group, name: `${group} scalar TS`, work, unit: "GB/s", baseline: true, n: 10 },
    () => {
      refLayerNorm(x, g, b, rows, C);
    },
  );
}

{
  const [rows, cols] = [12, 1024];
  const x = randn(rng, rows * cols, 3);
  const [px, po] = [h.put(x), h.put(rows * cols)];
  const group = "softmax 12x1024";
  const work = rows * cols * 8;
  benchRate(
    { group, name: `${group} wasm`, work, unit: "GB/s" },
    () => k.softmax(po, px, rows, cols),
  );
  benchRate(
    { group, name: `${group} scalar TS`, work, unit: "GB/s", baseline: true, n: 10 },
    () => {
      refSoftmax(x, rows, cols);
    },
  );
}

{
  // One call with 64 floats to add, split across both threads all the same.
  const memory = createMemory(1 << 20);
  const quick = await WorkerPool.create(await kernelModule(), memory, 2, { serialBelow: 0 });
  const still = await WorkerPool.create(await kernelModule(), createMemory(1 << 20), 2, {
    serialBelow: 0,
    spinMicros: 0,
  });
  globalThis.addEventListener("unload", () => {
    quick[Symbol.dispose]();
    still[Symbol.dispose]();
  });
  const at = 65536;
  for (const [name, p] of [["spin 100 µs", quick], ["no spin", still]] as const) {
    Deno.bench({ group: "dispatch", name: `dispatch back to back, ${name}`, n: 20000 }, () => {
      p.add(at, at, at, 64);
    });
    Deno.bench({ group: "dispatch", name: `dispatch after 200 µs idle, ${name}`, n: 2000 }, (b) => {
      const idle = performance.now() + 0.2;
      while (performance.now() < idle);
      b.start();
      p.add(at, at, at, 64);
      b.end();
    });
  }
}
