/**
 * Each op of the wasm backend at GPT-2 124M shapes beside the plain scalar TypeScript
 * reference, on random data (speed does not depend on the values). The table at the end
 * gives GFLOP/s (or GB/s) and the speed-up over the reference measured in the same run.
 * The heaviest ops run on one thread and on two ("2 threads"), and the "dispatch" group
 * times one call that has next to nothing to do, split across both threads: the overhead
 * of waking the workers and waiting for them, back to back and after 200 µs idle.
 *
 *   deno task bench bench/kernels_bench.ts
 */
import { benchRate } from "./report.ts";
import { randn } from "../tests/kernel_harness.ts";
import { weight } from "../tests/backend_weights.ts";
import { WasmBackend } from "../runtime/backend/wasm/wasm_backend.ts";
import { Rng } from "../runtime/generate/random.ts";
import {
  refAttention,
  refConv1d,
  refLayerNorm,
  refLogits,
} from "../runtime/backend/reference/ops.ts";

const one = await WasmBackend.create({ threads: 1 });
const two = await WasmBackend.create({ threads: 2 });
const backends = [[one, ""], [two, " 2 threads"]] as const;
globalThis.addEventListener("unload", () => {
  one[Symbol.dispose]();
  two[Symbol.dispose]();
});
const rng = new Rng(0);

// conv1d: out (T, OC) = inp (T, C) · w (C, OC) + b.
for (const T of [1, 128]) {
  for (const [C, OC] of [[768, 2304], [768, 768], [768, 3072], [3072, 768]]) {
    const inp = randn(rng, T * C);
    const w = randn(rng, C * OC, 0.02);
    const b = randn(rng, OC);
    const group = `conv1d T=${T} ${C}x${OC}`;
    const work = 2 * T * C * OC;
    for (const [be, suffix] of backends) {
      const [pi, pw, pb] = [
        await weight(be, "plain", [T, C], inp),
        await weight(be, "conv1d", [C, OC], w),
        await weight(be, "plain", [OC], b),
      ];
      const out = be.tensor([T, OC]);
      benchRate({ group, name: `${group} wasm${suffix}`, work, unit: "GFLOP/s" }, () => {
        be.conv1d(out, pi, pw, pb, T);
      });
      if (OC === 4 * C && be === one) {
        benchRate({ group, name: `${group} wasm + gelu`, work, unit: "GFLOP/s" }, () => {
          be.conv1dGelu(out, pi, pw, pb, T);
        });
      }
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
  const tables = await Promise.all(backends.map(([be]) => weight(be, "embedding", [V, C], wte)));
  for (const T of [1, 4]) {
    const x = randn(rng, T * C);
    const group = `logits T=${T} 768x50257`;
    // Streaming the 154 MB wte is the cost here: report bytes per second.
    const work = V * C * 4;
    for (const [i, [be, suffix]] of backends.entries()) {
      const [px, out] = [await weight(be, "plain", [T, C], x), be.tensor([T, V])];
      benchRate(
        { group, name: `${group} wasm${suffix}`, work, unit: "GB/s" },
        () => be.logits(out, px, tables[i], T),
      );
    }
    benchRate(
      { group, name: `${group} scalar TS`, work, unit: "GB/s", baseline: true, n: 3 },
      () => {
        refLogits(x, wte, T, C, V);
      },
    );
  }
}

// Attention of one new token over `past` cached ones, 12 heads of 64 (the cache holds
// zeros: speed does not depend on the values).
{
  const [nHead, dHead, nCtx] = [12, 64, 1024];
  const C = nHead * dHead;
  const qkv = randn(rng, 3 * C);
  const setups = await Promise.all(backends.map(async ([be]) => {
    const cache = be.kvCache({
      layers: 1,
      slots: 1,
      positions: nCtx,
      heads: nHead,
      headDim: dHead,
    });
    return {
      cache,
      seqs: be.tensor([1, 2], "i32"),
      qkv: await weight(be, "plain", [1, 3 * C], qkv),
      out: be.tensor([1, C]),
    };
  }));
  for (const past of [16, 128, 512, 1024 - 1]) {
    const pastK = randn(rng, nHead * past * dHead);
    const pastV = randn(rng, nHead * past * dHead);
    const group = `attention T=1 past=${past}`;
    const work = 4 * nHead * (past + 1) * dHead; // q·k and w·v
    for (const [i, [be, suffix]] of backends.entries()) {
      const s = setups[i];
      be.write(s.seqs, Int32Array.from([0, past]));
      benchRate({ group, name: `${group} wasm${suffix}`, work, unit: "GFLOP/s" }, () => {
        be.attention(s.out, s.qkv, s.cache, 0, s.seqs, 1, 1);
      });
    }
    benchRate(
      { group, name: `${group} scalar TS`, work, unit: "GFLOP/s", baseline: true, n: 10 },
      () => {
        refAttention(qkv, pastK, pastV, 1, 1, past, nHead, dHead);
      },
    );
  }
}

{
  const [rows, C] = [128, 768];
  const x = randn(rng, rows * C);
  const g = randn(rng, C);
  const b = randn(rng, C);
  const [px, pg, pb] = [
    await weight(one, "plain", [rows, C], x),
    await weight(one, "plain", [C], g),
    await weight(one, "plain", [C], b),
  ];
  const out = one.tensor([rows, C]);
  const group = "layer_norm 128x768";
  const work = rows * C * 8;
  benchRate(
    { group, name: `${group} wasm`, work, unit: "GB/s" },
    () => one.layerNorm(out, px, pg, pb, rows),
  );
  benchRate(
    { group, name: `${group} scalar TS`, work, unit: "GB/s", baseline: true, n: 10 },
    () => {
      refLayerNorm(x, g, b, rows, C);
    },
  );
}

{
  // One layer norm of a 16-float row, split across both threads all the same.
  const quick = await WasmBackend.create({ threads: 2, serialBelow: 0 });
  const still = await WasmBackend.create({ threads: 2, serialBelow: 0, spinMicros: 0 });
  globalThis.addEventListener("unload", () => {
    quick[Symbol.dispose]();
    still[Symbol.dispose]();
  });
  for (const [name, be] of [["spin 1 ms", quick], ["no spin", still]] as const) {
    const x = be.tensor([2, 16]);
    const g = be.weight("plain", [16]);
    const call = () => be.layerNorm(x, x, g, g, 2);
    Deno.bench({ group: "dispatch", name: `dispatch back to back, ${name}`, n: 20000 }, call);
    Deno.bench({ group: "dispatch", name: `dispatch after 200 µs idle, ${name}`, n: 2000 }, (b) => {
      const idle = performance.now() + 0.2;
      while (performance.now() < idle);
      b.start();
      call();
      b.end();
    });
  }
}
