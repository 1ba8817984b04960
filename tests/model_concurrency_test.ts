/**
 * Concurrent generations on one loaded model: each gets a KV-cache slot of its own (or
 * waits for one) and the tokens it gets alone, whatever its options and whatever runs
 * beside it; on the wasm backend, whose batched passes must give each row the numbers it
 * gets alone.
 */
import { assert, assertEquals } from "./asserts.ts";
import { loadModel } from "../runtime/generate/model.ts";
import type { GenerateOptions } from "../runtime/generate/model.ts";
import type { HParams } from "../runtime/gpt2/hparams.ts";
import { randomWeights, writeModelFolder } from "../testing/random_model.ts";

const HP: HParams = { n_vocab: 300, n_ctx: 64, n_embd: 32, n_head: 4, n_layer: 2 };
const dir = await Deno.makeTempDir({ prefix: "gpt2-concurrency-" });
// Larger weights than GPT-2's initialisation make the logits spread, so sampling varies.
const weights = randomWeights(HP, 5);
for (const t of weights.values()) if (t.shape.length > 1) t.data.forEach((v, i, a) => a[i] = v * 8);
await writeModelFolder(dir, HP, weights);

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

const REQUESTS: { prompt: string; options: GenerateOptions }[] = [
  { prompt: "Hello there", options: { length: 20, temperature: 0 } },
  { prompt: "a", options: { length: 30, seed: 1, topK: 10 } },
  { prompt: "Once upon a time, far away", options: { length: 12, seed: 2, topP: 0.9 } },
  { prompt: "xyz", options: { length: 25, seed: 3, temperature: 1.4 } },
  { prompt: "The", options: { length: 18, seed: 4, topK: 3, temperature: 0.6 } },
  { prompt: "1 2 3", options: { length: 8, seed: 5 } },
];

Deno.test("interleaved generate() calls with different options each give their tokens alone", async () => {
  using model = await loadModel(dir, { slots: 3 });
  assertEquals(model.slots, 3);
  const run = (r: typeof REQUESTS[number]) =>
    collect(model.generate(model.tokenizer.encode(r.prompt), r.options));
  const alone: number[][] = [];
  for (const r of REQUESTS) alone.push(await run(r));
  assert(new Set(alone.map((a) => a.join())).size === REQUESTS.length, "the requests differ");
  // All at once (three decode, three wait), then again with starts staggered.
  assertEquals(await Promise.all(REQUESTS.map(run)), alone);
  const staggered = REQUESTS.map(async (r, i) => {
    await new Promise((resolve) => setTimeout(resolve, 3 * i));
    return run(r);
  });
  assertEquals(await Promise.all(staggered), alone);
  // And read step by step by hand, in turn.
  const gens = REQUESTS.slice(0, 3).map((r) =>
    model.generate(model.tokenizer.encode(r.prompt), r.options)
  );
  const got: number[][] = [[], [], []];
  for (let step = 0; step < 30; step++) {
    for (const [i, g] of gens.entries()) {
      const { done, value } = await g.next();
      if (!done) got[i].push(value);
    }
  }
  assertEquals(got, alone.slice(0, 3));
});

Deno.test("generateText, generateBatch and logits share the model with running generations", async () => {
  using model = await loadModel(dir, { slots: 2, batch: 2 });
  const ids = model.tokenizer.encode("Hello");
  const text = (await collect(model.generateText("Hello", { length: 15, seed: 7 }))).join("");
  const batch = await collect(model.generateBatch(ids, { length: 10, seed: 8 }));
  const logits = await model.logits(ids);
  const [t2, b2, l2] = await Promise.all([
    collect(model.generateText("Hello", { length: 15, seed: 7 })).then((p) => p.join("")),
    collect(model.generateBatch(ids, { length: 10, seed: 8 })),
    model.logits(ids),
    collect(model.generate(ids, { length: 20, seed: 9 })),
  ]);
  assertEquals(t2, text);
  assertEquals(b2, batch);
  assertEquals(l2, logits);
});

Deno.test("teardown: the concurrency test's model folder", async () => {
  await Deno.remove(dir, { recursive: true });
});
