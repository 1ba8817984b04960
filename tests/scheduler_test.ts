/**
 * Continuous batching: concurrent generations on one Gpt2 with KV-cache slots each get
 * the tokens they get alone, whatever their options and whatever runs beside them.
 */
import { assert, assertEquals, assertRejects } from "./asserts.ts";
import { ReferenceBackend } from "../runtime/backend/reference/reference_backend.ts";
import { Gpt2 } from "../runtime/gpt2/gpt2.ts";
import type { HParams } from "../runtime/gpt2/hparams.ts";
import { memorySource, randomWeights } from "../testing/random_model.ts";
import {
  type GenerationStep,
  Scheduler,
  type SequenceOptions,
} from "../runtime/generate/scheduler.ts";

const HP: HParams = { n_vocab: 120, n_ctx: 48, n_embd: 16, n_head: 2, n_layer: 2 };
const weights = randomWeights(HP, 4);
// Larger weights than GPT-2's initialisation make the logits spread, so sampling varies.
for (const t of weights.values()) if (t.shape.length > 1) t.data.forEach((v, i, a) => a[i] = v * 8);
const EOT = HP.n_vocab - 1;

async function open(slots: number): Promise<Gpt2> {
  const gpt2 = Gpt2.create(new ReferenceBackend(), HP, { slots });
  await gpt2.load(memorySource(weights));
  return gpt2;
}

/** The tokens of a generation's steps. */
async function collect(steps: AsyncIterable<GenerationStep>): Promise<number[]> {
  const out: number[] = [];
  for await (const step of steps) out.push(step.token);
  return out;
}

/** Requests of different prompts, lengths and sampling options. */
const REQUESTS: { ids: number[]; options: SequenceOptions }[] = [
  { ids: [1, 2, 3], options: { length: 12, temperature: 0 } },
  { ids: [4], options: { length: 20, seed: 1, topK: 10 } },
  { ids: [5, 6, 7, 8, 9, 10, 11], options: { length: 7, seed: 2, topP: 0.9, temperature: 0.7 } },
  { ids: [12, 13], options: { length: 15, seed: 3 } },
  { ids: [14, 15, 16], options: { length: 9, seed: 4, topK: 3 } },
  { ids: [17], options: { length: 25, seed: 5, temperature: 1.3 } },
  {
    ids: [18, 19, 18],
    options: { length: 14, seed: 6, repetitionPenalty: 1.5, presencePenalty: 0.5, minP: 0.05 },
  },
  {
    ids: [20, 21],
    options: { length: 16, temperature: 0, noRepeatNgramSize: 2, logitBias: { 5: 3 } },
  },
];

Deno.test("concurrent generations each get their tokens alone, with fewer slots than requests", async () => {
  using alone = await open(1);
  const solo = new Scheduler(alone, { endOfText: EOT });
  const want: number[][] = [];
  for (const r of REQUESTS) want.push(await collect(solo.generate(r.ids, r.options)));
  assert(new Set(want.map((w) => w.join())).size === REQUESTS.length, "the requests differ");

  using shared = await open(3);
  // Which batch sizes the passes ran, to see that sequences did decode together.
  const sizes: number[] = [];
  const forward = shared.forward.bind(shared);
  shared.forward = (seqs, options) => {
    sizes.push(seqs.length);
    return forward(seqs, options);
  };
  const scheduler = new Scheduler(shared, { endOfText: EOT });
  // Started at once, and some again later while others are mid-way.
  const first = REQUESTS.map((r) => collect(scheduler.generate(r.ids, r.options)));
  await new Promise((resolve) => setTimeout(resolve, 5));
  const later = REQUESTS.slice(0, 3).map((r) => collect(scheduler.generate(r.ids, r.options)));
  assertEquals(await Promise.all(first), want);
  assertEquals(await Promise.all(later), want.slice(0, 3));
  assertEquals(scheduler.active + scheduler.waiting, 0);
  assertEquals(Math.max(...sizes), 3, "three slots: passes of three sequences");
  const prompts = REQUESTS.length + 3;
  const tokens = [...REQUESTS, ...REQUESTS.slice(0, 3)].reduce((n, r) => n + r.options.length, 0);
  // Each prompt is a pass of its own, giving the first token; every later token is one
  // row of a decoding pass, and passes held several rows.
  assertEquals(sizes.reduce((a, b) => a + b, 0), tokens);
  assert(sizes.length - prompts < tokens - prompts, "fewer decoding passes than their rows");
});

Deno.test("interleaved step by step by hand, generations do not disturb each other", async () => {
  using gpt2 = await open(2);
  const scheduler = new Scheduler(gpt2, { endOfText: EOT });
  const want = await collect(scheduler.generate([3, 4], { length: 10, seed: 9 }));
  const a = scheduler.generate([3, 4], { length: 10, seed: 9 });
  const b = scheduler.generate([7], { length: 10, temperature: 0 });
  const got: number[] = [];
  for (let i = 0; i < 10; i++) {
    got.push(((await a.next()).value as GenerationStep).token);
    await b.next();
  }
  assertEquals(got, want);
});

Deno.test("a generation that returns early frees its slot for one that waits", async () => {
  using gpt2 = await open(1);
  const scheduler = new Scheduler(gpt2, { endOfText: EOT });
  const want = await collect(scheduler.generate([9, 9], { length: 5, seed: 1 }));
  const early = scheduler.generate([1], { length: HP.n_ctx - 1 });
  await early.next();
  // The generator runs (and joins the line) at its first `next()`, which collect calls now.
  const waiting = collect(scheduler.generate([9, 9], { length: 5, seed: 1 }));
  assertEquals(scheduler.waiting, 1, "one slot: the second waits");
  await early.return(undefined);
  assertEquals(await waiting, want);
});

Deno.test("aborting throws the reason and frees the slot; a waiting generation can be aborted", async () => {
  using gpt2 = await open(1);
  const scheduler = new Scheduler(gpt2, { endOfText: EOT });
  const running = new AbortController();
  const queued = new AbortController();
  const a = collect(scheduler.generate([1], { length: HP.n_ctx - 1, signal: running.signal }));
  const b = collect(scheduler.generate([2], { length: HP.n_ctx - 2, signal: queued.signal }));
  queued.abort(new Error("not wanted"));
  await assertRejects(() => b, Error, "not wanted");
  running.abort(new Error("stop"));
  await assertRejects(() => a, Error, "stop");
  assertEquals((await collect(scheduler.generate([1], { length: 3 }))).length, 3);
  assertEquals(scheduler.active + scheduler.waiting, 0);
});

Deno.test("stopAtEndOfText ends a sequence after <|endoftext|>; bad prompts are refused before anything runs", async () => {
  using gpt2 = await open(2);
  // The token greedy decoding picks first, taken as the end-of-text id.
  const first = (await collect(new Scheduler(gpt2, { endOfText: EOT }).generate([5], {
    length: 1,
    temperature: 0,
  })))[0];
  const scheduler = new Scheduler(gpt2, { endOfText: first });
  assertEquals(
    await collect(scheduler.generate([5], { length: 10, temperature: 0, stopAtEndOfText: true })),
    [first],
  );
  const fails = (ids: number[], length: number, includes: string) =>
    assertRejects(() => collect(scheduler.generate(ids, { length })), RangeError, includes);
  await fails([], 3, "empty");
  await fails([HP.n_vocab], 3, "outside the vocabulary");
  await fails([1, 2], HP.n_ctx - 1, "context window");
  await fails([1], 0, "length");
});

Deno.test("a lease holds free slots with no generation stepping; generations then go on unchanged", async () => {
  using gpt2 = await open(3);
  const scheduler = new Scheduler(gpt2, { endOfText: EOT });
  const want = await collect(scheduler.generate([2, 3], { length: 30, seed: 8 }));
  let alone: Float32Array;
  {
    using solo = await scheduler.lease(1);
    alone = await gpt2.forward([{ slot: solo.slots[0], tokens: [9, 8, 7] }]);
  }
  const running = scheduler.generate([2, 3], { length: 30, seed: 8 });
  const got = [((await running.next()).value as GenerationStep).token];
  const lease = await scheduler.lease(2);
  assertEquals(lease.slots.length, 2);
  assert(lease.slots.every((s) => gpt2.cached(s) === 0), "leased slots start empty");
  const forward = gpt2.forward.bind(gpt2);
  let passes = 0;
  gpt2.forward = (seqs, options) => {
    passes++;
    return forward(seqs, options);
  };
  const rest = collect(running);
  await new Promise((resolve) => setTimeout(resolve, 10));
  assertEquals(passes, 0, "no generation steps while the lease is held");
  const logits = await forward(lease.slots.map((slot) => ({ slot, tokens: [9, 8, 7] })));
  assertEquals(logits.slice(0, HP.n_vocab), alone);
  assertEquals(logits.slice(HP.n_vocab), alone);
  lease[Symbol.dispose]();
  got.push(...await rest);
  assertEquals(got, want);
  await assertRejects(() => scheduler.lease(4), RangeError, "slots");
});

Deno.test("aborting stops a generation at once, even with tokens generated ahead of its reader", async () => {
  using gpt2 = await open(1);
  const scheduler = new Scheduler(gpt2, { endOfText: EOT });
  const abort = new AbortController();
  const g = scheduler.generate([1], { length: HP.n_ctx - 1, signal: abort.signal });
  await g.next();
  await new Promise((resolve) => setTimeout(resolve, 20)); // the decoding runs ahead
  abort.abort(new Error("enough"));
  await assertRejects(() => g.next(), Error, "enough");
  assertEquals(scheduler.active, 0);
});

/** `gpt2` with every pass recorded: its slots and new-token counts, and a copy of its logits. */
function recordPasses(gpt2: Gpt2) {
  const passes: { slots: number[]; tokens: number[]; logits: Float32Array }[] = [];
  const forward = gpt2.forward.bind(gpt2);
  gpt2.forward = async (seqs, options) => {
    const logits = await forward(seqs, options);
    passes.push({
      slots: seqs.map((s) => s.slot),
      tokens: seqs.map((s) => s.tokens.length),
      logits: logits.slice(),
    });
    return logits;
  };
  return passes;
}

/** A generation's steps, all of them. */
async function steps(it: AsyncIterable<GenerationStep>): Promise<GenerationStep[]> {
  const out: GenerationStep[] = [];
  for await (const step of it) out.push(step);
  return out;
}

Deno.test("prompt reuse: a prompt that extends a finished one runs only the rest, with the logits and tokens of a cold run", async () => {
  const history = [3, 1, 4, 1, 5, 9, 2, 6, 5, 3];
  const options = { length: 6, seed: 3, logprobs: 2 };
  using cold = await open(2);
  const coldRun = new Scheduler(cold, { endOfText: EOT });
  const first = await steps(coldRun.generate(history, options));
  const turn = [...history, ...first.map((s) => s.token), 7, 8];
  using fresh = await open(2);
  const freshPasses = recordPasses(fresh);
  const want = await steps(new Scheduler(fresh, { endOfText: EOT }).generate(turn, options));

  using gpt2 = await open(2);
  const scheduler = new Scheduler(gpt2, { endOfText: EOT });
  assertEquals(await steps(scheduler.generate(history, options)), first);
  const passes = recordPasses(gpt2);
  const got = await steps(scheduler.generate(turn, options));
  // The slot held the history and the first five generated tokens (the sixth never ran).
  const cached = history.length + 5;
  assertEquals(got[0].cachedTokens, cached);
  assertEquals(passes[0].tokens, [turn.length - cached], "only the rest of the prompt ran");
  assertEquals(passes[0].logits, freshPasses[0].logits, "the first logits, bit for bit");
  assertEquals(
    got.map(({ token, logprobs }) => ({ token, logprobs })),
    want.map(({ token, logprobs }) => ({ token, logprobs })),
  );
  assertEquals(want[0].cachedTokens, 0);
  // The same prompt again: all but its last token come from the cache, and one runs.
  const again = await steps(scheduler.generate(turn, options));
  assertEquals(again[0].cachedTokens, turn.length - 1);
  assertEquals(passes.at(-again.length)!.tokens, [1]);
  assertEquals(again.map((s) => s.token), want.map((s) => s.token));
  // cachePrompt false runs the whole prompt.
  const coldAgain = await steps(scheduler.generate(turn, { ...options, cachePrompt: false }));
  assertEquals(coldAgain[0].cachedTokens, 0);
  assertEquals(passes.at(-coldAgain.length)!.tokens, [turn.length]);
  assertEquals(coldAgain.map((s) => s.token), want.map((s) => s.token));
});

Deno.test("prompt reuse: the free slot with the longest common prefix is taken, else the least recently used", async () => {
  using gpt2 = await open(2);
  const scheduler = new Scheduler(gpt2, { endOfText: EOT });
  const passes = recordPasses(gpt2);
  const run = async (ids: number[]) => {
    const got = await steps(scheduler.generate(ids, { length: 1, temperature: 0 }));
    return { slot: passes.at(-1)!.slots[0], cached: got[0].cachedTokens };
  };
  const a = [10, 11, 12, 13, 14];
  const b = [10, 11, 20, 21, 22];
  // a holds its slot while b starts, so that b takes the other one.
  const ga = scheduler.generate(a, { length: 2, temperature: 0 });
  await ga.next();
  const ra = { slot: passes.at(-1)!.slots[0] };
  const rb = await run(b);
  await steps(ga);
  assert(ra.slot !== rb.slot);
  assertEquals(rb.cached, 0);
  // Shares 3 tokens with a, 2 with b.
  assertEquals(await run([10, 11, 12, 30]), { slot: ra.slot, cached: 3 });
  // Shares nothing: takes the slot used least recently, b's.
  assertEquals(await run([40, 41]), { slot: rb.slot, cached: 0 });
  // b's cache is gone; what a's slot holds now ([10, 11, 12, 30]) still serves.
  assertEquals(await run([...b, 1]), { slot: ra.slot, cached: 2 });
  // A lease leaves nothing behind to reuse.
  {
    using _lease = await scheduler.lease(2);
  }
  assertEquals((await run([...b, 1])).cached, 0);
  // Nor does a scheduler told that its backend cannot reuse prefixes exactly.
  using other = await open(1);
  const noReuse = new Scheduler(other, { endOfText: EOT, promptReuse: false });
  await steps(noReuse.generate(a, { length: 2 }));
  assertEquals((await steps(noReuse.generate(a, { length: 2 })))[0].cachedTokens, 0);
});

Deno.test("a new sequence's first token reaches its consumer before the next pass starts", async () => {
  using gpt2 = await open(2);
  const scheduler = new Scheduler(gpt2, { endOfText: EOT });
  const log: string[] = [];
  const forward = gpt2.forward.bind(gpt2);
  gpt2.forward = (seqs, options) => {
    log.push(`pass ${seqs[0].tokens.length > 1 ? "prompt" : "step"} ${seqs.length}`);
    return forward(seqs, options);
  };
  const read = async (name: string, ids: number[]) => {
    for await (const _ of scheduler.generate(ids, { length: 3, seed: 1 })) {
      log.push(`${name} token`);
    }
  };
  const a = read("a", [1, 2]);
  await new Promise((resolve) => setTimeout(resolve, 0));
  const b = read("b", [3, 4, 5]);
  await Promise.all([a, b]);
  // Each prompt's token is read before any pass after it; then steps of both.
  const firstB = log.indexOf("b token");
  assertEquals(log[log.indexOf("pass prompt 1") + 1], "a token");
  assertEquals(log[firstB - 1], "pass prompt 1", log.join(", "));
  assertEquals(log.filter((e) => e === "pass prompt 1").length, 2);
});
