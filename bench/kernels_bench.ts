/**
 * Each WebAssembly kernel at GPT-2 124M shapes beside the plain scalar TypeScript
 * reference, on random data (speed does not depend on the values). The table at the end
 * gives GFLOP/s (or GB/s) and the speed-up over the reference measured in the same run.
 *
 *   deno task bench bench/kernels_bench.ts
 */
import { benchRate } from "./report.ts";
import { Harness, randn } from "../tests/kernel_harness.ts";
import { packedSize, PANEL } from "../runtime/memory_plan.ts";
import { Rng } from "../runtime/random.ts";
import {
  refAttention,
  refConv1d,
  refGelu,
  refLayerNorm,
  refLogits,
  refSoftmax,
} from "../runtime/reference.ts";

const h = await Harness.create(1 << 30);
const k = h.kernels;
const rng = new Rng(0);

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
  const x = randn(rng, C);
  const wte = randn(rng, V * C, 0.02);
  const [px, pw, po] = [h.put(x), h.put(wte), h.put(V)];
  const group = "logits T=1 768x50257";
  // Streaming the 154 MB wte is the cost here: report bytes per second.
  const work = V * C * 4;
  benchRate(
    { group, name: `${group} wasm`, work, unit: "GB/s" },
    () => k.logits(po, px, pw, 1, C, V),
  );
  benchRate({ group, name: `${group} scalar TS`, work, unit: "GB/s", baseline: true, n: 5 }, () => {
    refLogits(x, wte, 1, C, V);
  });
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
