/**
 * The whole generated model on the WebGPU backend against `referenceForward` (the scalar
 * model with no cache, sums in float64), held to a normalised mean squared error of at
 * most 1e-6 over the logits: with and without the KV cache, prompts in chunks, batches of
 * sequences at different lengths in scattered slots, the head split by vocabulary
 * ranges, float16 weights; greedy decoding against the reference and wasm backends'
 * tokens, and `loadModel(dir, { backend: "webgpu" })` on a model folder.
 */
import { assertEquals } from "./asserts.ts";
import { assertNmse, gpuTest, openWebGpu } from "./webgpu_harness.ts";
import { ReferenceBackend } from "../runtime/backend/reference/reference_backend.ts";
import { referenceForward } from "../testing/reference_model.ts";
import { WebGpuBackend, type WebGpuOptions } from "../runtime/backend/webgpu/webgpu_backend.ts";
import type { Backend } from "../runtime/backend/backend.ts";
import { Gpt2, type Gpt2Options } from "../runtime/gpt2/gpt2.ts";
import type { HParams } from "../runtime/gpt2/hparams.ts";
import { memorySource, randomWeights } from "../testing/random_model.ts";
import { Rng } from "../runtime/generate/random.ts";
import { loadModel } from "../runtime/generate/model.ts";
import { writeModelFolder } from "../testing/random_model.ts";
import { withTempDir } from "./temp_dir.ts";

const HP: HParams = { n_vocab: 101, n_ctx: 40, n_embd: 48, n_head: 4, n_layer: 3 };
const weights = randomWeights(HP, 11);
/** Checks that an adapter exists; each test makes its own backend, which its model owns. */
const probe = await openWebGpu();
if (!(probe instanceof Error)) probe.dispose();

async function model(
  options: Gpt2Options,
  gpu: WebGpuOptions = {},
  backend?: Backend,
): Promise<Gpt2> {
  const m = Gpt2.create(backend ?? await WebGpuBackend.create(gpu), HP, options);
  await m.load(memorySource(weights));
  return m;
}

function tokens(seed: number, n: number): number[] {
  const rng = new Rng(seed);
  return Array.from({ length: n }, () => Math.floor(rng.next() * HP.n_vocab));
}

/** The reference logits of the last position of `ids`. */
function lastLogits(ids: readonly number[]): Float32Array {
  return referenceForward(weights, HP, ids).subarray((ids.length - 1) * HP.n_vocab);
}

gpuTest("every position's logits of a prompt equal referenceForward", probe, async () => {
  using m = await model({ chunk: 40 });
  const ids = tokens(1, 17);
  const got = await m.forward([{ slot: 0, tokens: ids }], { allPositions: true });
  assertNmse(got, referenceForward(weights, HP, ids), "17-token prompt, no cache");
});

gpuTest("decoding with the KV cache equals referenceForward without one", probe, async () => {
  using m = await model({ chunk: 40 });
  const ids = tokens(2, 12);
  await m.forward([{ slot: 0, tokens: ids.slice(0, 5) }]);
  for (let n = 6; n <= ids.length; n++) {
    const got = await m.forward([{ slot: 0, tokens: [ids[n - 1]] }]);
    assertNmse(got, lastLogits(ids.slice(0, n)), `step ${n}`);
  }
  assertEquals(m.cached(0), ids.length);
});

gpuTest("a prompt in chunks equals it in one pass", probe, async () => {
  using m = await model({ chunk: 4 });
  const ids = tokens(3, 19);
  const b = m.backend as WebGpuBackend;
  b.resetStats();
  const last = await m.forward([{ slot: 0, tokens: ids }]);
  assertEquals(b.stats().submits, 1, "five chunks, one submit");
  assertNmse(last, lastLogits(ids), "last logits of 5 chunks");
  m.reset();
  const all = await m.forward([{ slot: 0, tokens: ids }], { allPositions: true });
  assertNmse(all, referenceForward(weights, HP, ids), "all logits of 5 chunks");
});

gpuTest("a batch of sequences at different lengths in scattered slots", probe, async () => {
  using m = await model({ slots: 4, chunk: 8 });
  const seqs = [tokens(4, 20), tokens(5, 20), tokens(6, 20)];
  const slots = [3, 0, 2];
  const len = [0, 0, 0];
  // Sequence 0 starts alone; then all three advance together, from different pasts.
  await m.forward([{ slot: slots[0], tokens: seqs[0].slice(0, 6) }]);
  len[0] = 6;
  await m.forward([{ slot: slots[2], tokens: seqs[2].slice(0, 2) }]);
  len[2] = 2;
  for (const T of [3, 1, 1, 9]) {
    const got = await m.forward(
      seqs.map((s, b) => ({ slot: slots[b], tokens: s.slice(len[b], len[b] + T) })),
    );
    seqs.forEach((s, b) => {
      len[b] += T;
      const row = got.subarray(b * HP.n_vocab, (b + 1) * HP.n_vocab);
      assertNmse(row, lastLogits(s.slice(0, len[b])), `T=${T} sequence ${b} at ${len[b]}`);
    });
  }
});

gpuTest("the output head split by vocabulary ranges gives the same logits", probe, async () => {
  // 48 floats a row: 1024 bytes bind 16 rows of wte (256-byte aligned), so 7 ranges.
  using m = await model({ slots: 2, chunk: 8 }, { vocabularySplitBytes: 1024 });
  const ids = [tokens(7, 9), tokens(8, 9)];
  const got = await m.forward(ids.map((t, b) => ({ slot: b, tokens: t })));
  ids.forEach((t, b) => {
    assertNmse(
      got.subarray(b * HP.n_vocab, (b + 1) * HP.n_vocab),
      lastLogits(t),
      `sequence ${b}`,
    );
  });
});

gpuTest(
  "float16 weights give referenceForward's logits on the rounded weights",
  probe,
  async () => {
    // The reference on the weights a float16 backend holds: Conv1D weights and wte rounded.
    const rounded = new Map(
      [...weights].map(([name, t]) => [
        name,
        name.endsWith("/w") || name === "model/wte"
          ? { shape: t.shape, data: new Float32Array(new Float16Array(t.data)) }
          : t,
      ]),
    );
    for (const shaderF16 of [true, false]) {
      using m = await model({ slots: 2, chunk: 5 }, { weightType: "f16", shaderF16 });
      const ids = tokens(12, 11);
      const got = await m.forward([{ slot: 1, tokens: ids }], { allPositions: true });
      assertNmse(got, referenceForward(rounded, HP, ids), `shaderF16: ${shaderF16}`);
    }
  },
);

gpuTest("greedy decoding picks the reference backend's tokens", probe, async () => {
  const greedy = async (m: Gpt2) => {
    const out: number[][] = [tokens(9, 4), tokens(10, 4)];
    let next = out.map((t) => t);
    for (let step = 0; step < 12; step++) {
      const logits = await m.forward(next.map((t, b) => ({ slot: b, tokens: t })));
      next = out.map((seq, b) => {
        const row = logits.subarray(b * HP.n_vocab, (b + 1) * HP.n_vocab);
        let best = 0;
        for (let v = 1; v < row.length; v++) if (row[v] > row[best]) best = v;
        seq.push(best);
        return [best];
      });
    }
    return out;
  };
  using gpu = await model({ slots: 2, chunk: 8 });
  using ref = await model({ slots: 2, chunk: 8 }, {}, new ReferenceBackend());
  assertEquals(await greedy(gpu), await greedy(ref));
});

gpuTest("a decoding step is one submit and one read of B · n_vocab floats", probe, async () => {
  using m = await model({ slots: 2, chunk: 8 });
  const b = m.backend as WebGpuBackend;
  await m.forward([{ slot: 0, tokens: [1, 2, 3] }, { slot: 1, tokens: [4, 5, 6] }]);
  b.resetStats();
  await m.forward([{ slot: 0, tokens: [7] }, { slot: 1, tokens: [8] }]);
  const s = b.stats();
  assertEquals([s.submits, s.bytesRead], [1, 2 * HP.n_vocab * 4]);
  // Per layer: 2 layer norms, 4 matrix products, attention's append and attend; then
  // the embedding, the final norm and the head.
  assertEquals(s.dispatches, HP.n_layer * 8 + 3);
});

gpuTest(
  'loadModel(dir, { backend: "webgpu" }) generates the wasm backend\'s greedy tokens',
  probe,
  async () => {
    await withTempDir(async (dir) => {
      // Larger weights than GPT-2's initialisation spread the logits, so greedy picks are
      // not near ties that float32 rounding could flip.
      const hp = { ...HP, n_vocab: 300 };
      const big = randomWeights(hp, 13);
      for (const t of big.values()) {
        if (t.shape.length > 1) t.data.forEach((v, i, a) => a[i] = v * 8);
      }
      await writeModelFolder(dir, hp, big);
      const collect = async (it: AsyncIterable<number[]>) => {
        const out: number[][] = [];
        for await (const x of it) out.push(x);
        return out;
      };
      const ids = tokens(14, 6);
      const run = async (backend: "webgpu" | "wasm") => {
        using m = await loadModel(dir, { backend, batch: 2, threads: 1 });
        const steps = await collect(m.generateBatch(ids, { length: 20, temperature: 0 }));
        return { name: m.backend, steps };
      };
      const gpu = await run("webgpu");
      const wasm = await run("wasm");
      assertEquals(gpu.name, "webgpu");
      assertEquals(gpu.steps, wasm.steps);
    });
  },
);

gpuTest(
  "124M's 154 MB wte, over a 128 MiB binding limit, gives the reference logits",
  probe,
  async () => {
    // One block of 124M's width and vocabulary: the head and the embedding bind wte in
    // vocabulary ranges wherever the adapter's maxStorageBufferBindingSize is below 154 MB.
    const hp: HParams = { n_vocab: 50257, n_ctx: 8, n_embd: 768, n_head: 12, n_layer: 1 };
    const big = randomWeights(hp, 15);
    const b = await WebGpuBackend.create();
    using m = Gpt2.create(b, hp);
    await m.load(memorySource(big));
    const ids = [50256, 464, 2068];
    b.resetStats();
    const got = await m.forward([{ slot: 0, tokens: ids }]);
    // A block's 8, the final norm, and the embedding and the head once per range of wte.
    const ranges = Math.ceil(hp.n_vocab * hp.n_embd * 4 / b.bindingLimit);
    assertEquals(b.stats().dispatches, 8 + 1 + 2 * ranges);
    const want = referenceForward(big, hp, ids).subarray(2 * hp.n_vocab);
    assertNmse(got, want, "logits of the last position");
  },
);

gpuTest(
  "prompt reuse runs where the backend is split-invariant: wasm's cached prefix, webgpu's whole prompt",
  probe,
  async () => {
    await withTempDir(async (dir) => {
      const hp = { ...HP, n_vocab: 300 };
      await writeModelFolder(dir, hp, randomWeights(hp, 16));
      const ids = tokens(16, 12);
      for (const backend of ["wasm", "webgpu"] as const) {
        using m = await loadModel(dir, { backend, threads: 1 });
        const cached: (number | undefined)[] = [];
        for (let run = 0; run < 2; run++) {
          for await (const step of m.generateSteps(ids, { length: 2, seed: 1 })) {
            cached.push(step.cachedTokens);
            break;
          }
        }
        const reuse = m.backend === "wasm";
        assertEquals(cached, [0, reuse ? ids.length - 1 : 0], `${backend}: cached tokens per run`);
      }
    });
  },
);
