/** The library API on a generated model folder: loadModel, logits, generate and kin. */
import { assert, assertEquals, assertRejects } from "./asserts.ts";
import { createGpt2, loadModel, type LoadOptions, type Model } from "../runtime/generate/model.ts";
import { BackendError } from "../runtime/errors.ts";
import type { BackendName } from "../runtime/backend/create.ts";
import type { WeightType } from "../runtime/backend/backend.ts";
import { GPT2_SIZES, type HParams } from "../runtime/gpt2/hparams.ts";
import { randomWeights, writeModelFolder } from "../testing/random_model.ts";
import { argmax } from "../runtime/generate/sampler.ts";
import { stepLogprobs } from "../runtime/generate/logprobs.ts";

const HP: HParams = { n_vocab: 300, n_ctx: 48, n_embd: 32, n_head: 4, n_layer: 2 };
const dir = await Deno.makeTempDir({ prefix: "gpt2-model-api-" });
// Larger weights than GPT-2's initialisation make the logits spread, so sampling varies.
const weights = randomWeights(HP, 9);
for (const t of weights.values()) if (t.shape.length > 1) t.data.forEach((v, i, a) => a[i] = v * 8);
await writeModelFolder(dir, HP, weights);

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

/** Greedy decoding the slow way: the whole context from scratch for every token. */
async function greedyFromScratch(model: Model, ids: number[], length: number): Promise<number[]> {
  const ctx = [...ids];
  for (let i = 0; i < length; i++) ctx.push(argmax(await model.logits(ctx)));
  return ctx.slice(ids.length);
}

Deno.test("loadModel() reads the folder: hparams, tokenizer, logits", async () => {
  using model = await loadModel(dir);
  assertEquals(model.hparams, HP);
  const ids = model.tokenizer.encode("Hello there");
  assertEquals(model.tokenizer.decode(ids), "Hello there");
  const a = await model.logits(ids);
  assertEquals(a.length, HP.n_vocab);
  await model.logits([1, 2, 3]);
  assertEquals(await model.logits(ids), a, "logits() starts from an empty context every call");
});

Deno.test("greedy decoding with the KV cache equals recomputing from scratch; temperature 0, top_k 1, tiny top_p agree", async () => {
  using model = await loadModel(dir);
  const ids = model.tokenizer.encode("Once upon a time");
  const want = await greedyFromScratch(model, ids, 12);
  assertEquals(await collect(model.generate(ids, { length: 12, temperature: 0 })), want);
  assertEquals(await collect(model.generate(ids, { length: 12, topK: 1, seed: 3 })), want);
  assertEquals(await collect(model.generate(ids, { length: 12, topP: 1e-7, seed: 4 })), want);
});

Deno.test("greedy decoding of a batch gives each sequence the tokens it gets alone", async () => {
  using single = await loadModel(dir);
  using batch = await loadModel(dir, { batch: 3 });
  const ids = single.tokenizer.encode("abc");
  const alone = await collect(single.generate(ids, { length: 10, temperature: 0 }));
  const steps = await collect(batch.generateBatch(ids, { length: 10, temperature: 0 }));
  for (let b = 0; b < 3; b++) assertEquals(steps.map((s) => s[b]), alone);
});

Deno.test("the same seed gives the same tokens; sampled batch rows differ", async () => {
  using model = await loadModel(dir, { batch: 2 });
  const ids = [5, 6, 7];
  const run = (seed: number) => collect(model.generateBatch(ids, { length: 15, seed, topK: 40 }));
  const a = await run(1);
  assertEquals(await run(1), a);
  assert(JSON.stringify(await run(2)) !== JSON.stringify(a), "another seed, other tokens");
  assert(a.some((s) => s[0] !== s[1]), "rows sample independently");
});

Deno.test("generateText() streams exactly the decoded tokens", async () => {
  using model = await loadModel(dir);
  const opts = { length: 20, seed: 5, temperature: 1.5 };
  const ids = await collect(model.generate(model.tokenizer.encode("Hi"), opts));
  const pieces = await collect(model.generateText("Hi", opts));
  assertEquals(pieces.join(""), model.tokenizer.decode(ids));
  assert(pieces.every((p) => p.length > 0));
});

Deno.test("stopAtEndOfText ends generation after <|endoftext|>", async () => {
  using model = await loadModel(dir);
  const eot = model.tokenizer.endOfText;
  // Find a seed whose sample hits <|endoftext|> early, at a high temperature.
  for (let seed = 0; seed < 200; seed++) {
    const opts = { length: 40, seed, temperature: 50 };
    const all = await collect(model.generate([1], opts));
    const at = all.indexOf(eot);
    if (at < 0 || at === all.length - 1) continue;
    assertEquals(
      await collect(model.generate([1], { ...opts, stopAtEndOfText: true })),
      all.slice(0, at + 1),
    );
    return;
  }
  throw new Error("no seed sampled <|endoftext|> early");
});

Deno.test("aborting the signal stops generation between tokens", async () => {
  using model = await loadModel(dir);
  const controller = new AbortController();
  const got: number[] = [];
  await assertRejects(async () => {
    for await (
      const id of model.generate([1, 2], { length: 30, signal: controller.signal, seed: 1 })
    ) {
      got.push(id);
      if (got.length === 3) controller.abort();
    }
  }, DOMException);
  assertEquals(got.length, 3);
});

Deno.test("generateSteps() gives each token the log-probabilities of the logits it was drawn from", async () => {
  using model = await loadModel(dir);
  const ids = model.tokenizer.encode("Once");
  const options = { length: 10, seed: 5, temperature: 0.8, topK: 20 };
  const tokens = await collect(model.generate(ids, options));
  const plain = await collect(model.generateSteps(ids, options));
  assertEquals(plain.map((s) => s.token), tokens);
  assert(plain.every((s) => s.logprobs === undefined), "no logprobs unless asked");
  // Concurrent generations, so that steps of several sequences interleave.
  const [steps, other] = await Promise.all([
    collect(model.generateSteps(ids, { ...options, logprobs: 3 })),
    collect(model.generateSteps([7, 8], { length: 10, seed: 1, logprobs: 2 })),
  ]);
  assertEquals(steps.map((s) => s.token), tokens);
  assertEquals(other.map((s) => s.logprobs?.chosen.token), other.map((s) => s.token));
  for (const [i, step] of steps.entries()) {
    const logits = await model.logits([...ids, ...tokens.slice(0, i)]);
    assertEquals(step.logprobs, stepLogprobs(logits, step.token, 3), `token ${i}`);
  }
  await assertRejects(
    () => collect(model.generateSteps(ids, { length: 2, logprobs: 6 })),
    RangeError,
    "logprobs",
  );
});

Deno.test("generate() honours the sampling controls: a ban, a bias, greedy or sampled", async () => {
  using model = await loadModel(dir);
  const ids = [5, 6, 5];
  for (const options of [{ temperature: 0 }, { seed: 2, topK: 50 }]) {
    const free = await collect(model.generate(ids, { ...options, length: 20 }));
    const banned = await collect(
      model.generate(ids, { ...options, length: 20, noRepeatNgramSize: 1 }),
    );
    assert(new Set([...ids, ...free]).size < ids.length + 20, "unbanned, the model repeats itself");
    assertEquals(new Set([...ids, ...banned]).size, new Set(ids).size + 20, "banned, it cannot");
    const biased = await collect(
      model.generate(ids, { ...options, length: 5, logitBias: { 42: 100 } }),
    );
    assertEquals(biased, [42, 42, 42, 42, 42]);
  }
  await assertRejects(
    () => collect(model.generate(ids, { logitBias: { 300: 1 } })),
    RangeError,
    'logitBias has the key "300"',
  );
});

Deno.test("prompt reuse through generate: a growing conversation gets the tokens and logprobs of a cold model, bit for bit", async () => {
  using model = await loadModel(dir, { threads: 2 });
  const options = { length: 6, seed: 6, temperature: 0.9, logprobs: 5 };
  let conversation = [40, 41, 42, 43, 44, 45, 46, 47, 48, 49];
  for (let turn = 0; turn < 3; turn++) {
    const warm = await collect(model.generateSteps(conversation, options));
    using cold = await loadModel(dir, { threads: 1, slots: 1 });
    const want = await collect(cold.generateSteps(conversation, options));
    assertEquals(want[0].cachedTokens, 0);
    assertEquals(warm[0].cachedTokens! > 0, turn > 0, `turn ${turn}: ${warm[0].cachedTokens}`);
    const strip = (steps: typeof warm) => steps.map(({ token, logprobs }) => ({ token, logprobs }));
    assertEquals(strip(warm), strip(want), `turn ${turn}`);
    conversation = [...conversation, ...warm.map((s) => s.token), 20, 21];
  }
});

Deno.test("bad input throws a RangeError that says which", async () => {
  using model = await loadModel(dir);
  await assertRejects(() => model.logits([]), RangeError, "empty");
  await assertRejects(() => model.logits([300]), RangeError, "outside the vocabulary");
  await assertRejects(
    () => collect(model.generate([1, 2], { length: 47 })),
    RangeError,
    "context window of 48",
  );
  await assertRejects(() => model.logits(new Array(49).fill(1)), RangeError, "context window");
  await assertRejects(() => collect(model.generate([1], { length: 0 })), RangeError, "length");
  await assertRejects(() => collect(model.generate([1], { topP: 2 })), RangeError, "topP");
});

Deno.test("loadModel() runs the backend it is given; an unknown one, or the tests' reference, is a RangeError", async () => {
  using model = await loadModel(dir, { backend: "wasm" });
  assertEquals(model.backend, "wasm");
  for (const name of ["reference", "cuda", ""]) {
    await assertRejects(
      () => loadModel(dir, { backend: name as BackendName }),
      RangeError,
      "choose one of wasm",
    );
  }
});

Deno.test("loadModel() takes fewer slots when the default four do not fit the backend's memory", async () => {
  // Each slot's KV cache is 1 GiB (64 layers of 65536 positions): four and the weights are
  // over the 4 GiB of a wasm memory, two fit. Untouched memory costs nothing resident.
  const hp: HParams = { n_vocab: 300, n_ctx: 65536, n_embd: 32, n_head: 2, n_layer: 64 };
  const big = await Deno.makeTempDir();
  try {
    await writeModelFolder(big, hp, randomWeights(hp, 2));
    {
      using model = await loadModel(big);
      assertEquals(model.slots, 2);
      assertEquals(
        (await collect(model.generate([1, 2], { length: 3, temperature: 0 }))).length,
        3,
      );
    }
    await assertRejects(() => loadModel(big, { slots: 4 }), BackendError, "more than the 4 GiB");
  } finally {
    await Deno.remove(big, { recursive: true });
  }
});

Deno.test("dtype auto keeps float32 where it fits, else float16, else q8; fewer slots before a less faithful type", async () => {
  // Only allocation: memory that is never touched costs nothing resident.
  const cases: [string, LoadOptions, string, number][] = [
    ["124M", {}, "f32", 4],
    ["774M", {}, "f32", 2], // 3.1 GB of weights: two slots' caches fit beside them
    ["1558M", {}, "f16", 1], // 6.2 GB in float32 cannot fit 4 GiB
    ["1558M", { dtype: "q8" }, "q8", 4], // 3.97 GiB of wasm memory with four slots
    ["124M", { dtype: "f16", slots: 3 }, "f16", 3],
  ];
  for (const [size, options, dtype, slots] of cases) {
    using gpt2 = await createGpt2(GPT2_SIZES[size], options);
    assertEquals(
      [gpt2.backend.weightType, gpt2.slots],
      [dtype, slots],
      `${size} ${JSON.stringify(options)}`,
    );
  }
  await assertRejects(
    () => createGpt2(GPT2_SIZES["1558M"], { dtype: "f32" }),
    BackendError,
    "more than the 4 GiB",
  );
  await assertRejects(
    () => createGpt2(GPT2_SIZES["124M"], { dtype: "f8" as WeightType }),
    RangeError,
    "f32, f16, q8, q4, auto",
  );
});

Deno.test("loadModel() stores the weights in the type asked for; model.dtype says which", async () => {
  const ids = [5, 6, 7];
  const greedy = async (dtype: WeightType | "auto") => {
    using model = await loadModel(dir, { dtype });
    assertEquals(model.dtype, dtype === "auto" ? "f32" : dtype);
    return await collect(model.generate(ids, { length: 8, temperature: 0 }));
  };
  const f32 = await greedy("f32");
  assertEquals(await greedy("auto"), f32);
  assertEquals(await greedy("f16"), f32, "float16 weights keep the greedy tokens of a small model");
  assertEquals((await greedy("q8")).length, 8);
});

Deno.test("a tokenizer that does not match n_vocab is refused", async () => {
  const other = await Deno.makeTempDir();
  try {
    await writeModelFolder(other, HP, weights);
    const encoder = JSON.parse(await Deno.readTextFile(`${other}/encoder.json`));
    encoder["<|extra|>"] = 300;
    await Deno.writeTextFile(`${other}/encoder.json`, JSON.stringify(encoder));
    await assertRejects(
      () => loadModel(other),
      Error,
      "has 301 tokens, but the model's n_vocab is 300",
    );
  } finally {
    await Deno.remove(other, { recursive: true });
  }
});

globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));

Deno.test("logits and sampled tokens are bit-identical for 1, 2 and 3 threads", async () => {
  const results = [];
  for (const threads of [1, 2, 3]) {
    using model = await loadModel(dir, { threads, batch: 2 });
    const logits = await model.logits([3, 1, 4, 1, 5, 9, 2, 6]);
    const tokens = await collect(model.generateBatch([2, 7], { length: 20, seed: 8, topP: 0.9 }));
    const penalised = await collect(model.generate([2, 7], {
      length: 20,
      seed: 8,
      repetitionPenalty: 1.3,
      frequencyPenalty: 0.4,
      noRepeatNgramSize: 3,
      minP: 0.02,
    }));
    results.push({ logits, tokens, penalised });
  }
  assertEquals(results[1], results[0]);
  assertEquals(results[2], results[0]);
});
