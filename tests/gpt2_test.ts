/**
 * `Gpt2` on the default (wasm) backend: what holds bit for bit (a batch, the shortened last
 * block, sequences in their own slots, each as it runs alone), `truncate` and `reset`, and
 * the checks `forward` makes. tests/conformance/ holds every backend's logits to the
 * reference.
 */
import { assertClose } from "./assert_close.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "./asserts.ts";
import { createBackend } from "../runtime/backend/create.ts";
import { Gpt2, type Gpt2Options } from "../runtime/gpt2/gpt2.ts";
import type { HParams } from "../runtime/gpt2/hparams.ts";
import { Rng } from "../runtime/generate/random.ts";
import { randomWeights } from "../testing/random_model.ts";
import { memorySource } from "../testing/random_model.ts";

const HP: HParams = { n_vocab: 97, n_ctx: 40, n_embd: 48, n_head: 4, n_layer: 3 };
const weights = randomWeights(HP, 11);

async function create(hp: HParams, options: Gpt2Options = {}): Promise<Gpt2> {
  return Gpt2.create(await createBackend("wasm"), hp, options);
}

async function model(options: Gpt2Options = {}): Promise<Gpt2> {
  const g = await create(HP, options);
  await g.load(memorySource(weights));
  return g;
}

/** One sequence's pass in slot 0. */
const one = (tokens: number[]) => [{ slot: 0, tokens }];
/** Sequence b of `rows` in slot b. */
const each = (rows: number[][]) => rows.map((tokens, slot) => ({ slot, tokens }));

function randomTokens(rng: Rng, n: number, V = HP.n_vocab): number[] {
  return Array.from({ length: n }, () => Math.floor(rng.next() * V));
}

Deno.test("the KV cache: truncate() and reset() forget positions as if never seen", async () => {
  const rng = new Rng(3);
  const a = randomTokens(rng, 12);
  const b = randomTokens(rng, 5);
  using g = await model();
  await g.forward(one(a));
  await g.forward(one(randomTokens(rng, 6)));
  g.truncate(0, a.length);
  const afterTruncate = await g.forward(one(b));
  g.reset();
  const fresh = await g.forward(one([...a, ...b]));
  assertClose(afterTruncate, fresh, { rtol: 1e-4, atol: 1e-6 });
  assertThrows(() => g.truncate(0, 100), RangeError, "holds 17");
});

Deno.test("a batch of sequences gives each the logits it gets alone", async () => {
  const rng = new Rng(4);
  const rows = [randomTokens(rng, 9), randomTokens(rng, 9), randomTokens(rng, 9)];
  using batch = await model({ slots: 3 });
  const got = [await batch.forward(each(rows)), await batch.forward(each(rows.map((r) => [r[0]])))];
  for (let b = 0; b < 3; b++) {
    using single = await model();
    const want = [await single.forward(one(rows[b])), await single.forward(one([rows[b][0]]))];
    for (let step = 0; step < 2; step++) {
      // Every row is computed the same way whatever the batch: exactly equal.
      assertEquals(got[step].subarray(b * HP.n_vocab, (b + 1) * HP.n_vocab), want[step]);
    }
  }
});

Deno.test("the last position's logits are the same bit for bit when only they are wanted", async () => {
  // Without allPositions the last block carries only each sequence's last position past
  // attention. Batches of 1 and 3, chunks of 7, prompts of 9 and 7 (one chunk), then a
  // decoded token: the next step reads every key and value the shortened pass wrote.
  const rng = new Rng(7);
  const V = HP.n_vocab;
  for (const B of [1, 3]) {
    for (const T of [9, 7, 1]) {
      const rows = Array.from({ length: B }, () => randomTokens(rng, T));
      const next = rows.map(() => randomTokens(rng, 1));
      using lastOnly = await model({ slots: B, chunk: 7 });
      using every = await model({ slots: B, chunk: 7 });
      const all = await every.forward(each(rows), { allPositions: true });
      const last = await lastOnly.forward(each(rows));
      const msg = `batch ${B}, T ${T}`;
      for (let b = 0; b < B; b++) {
        const at = (b * T + T - 1) * V;
        assertEquals(
          last.subarray(b * V, (b + 1) * V),
          all.subarray(at, at + V),
          `${msg}, row ${b}`,
        );
      }
      assertEquals(
        await lastOnly.forward(each(next)),
        await every.forward(each(next)),
        `${msg}, the step after`,
      );
    }
  }
});

Deno.test("sequences at different positions in any slots each get the logits they get alone", async () => {
  // Continuous batching: slot 3 holds 11 positions, slot 1 holds 4, slot 0 is idle; one
  // pass decodes 2 tokens of each, then one pass decodes only slot 1.
  const rng = new Rng(8);
  const [a, b] = [randomTokens(rng, 11), randomTokens(rng, 4)];
  const [na, nb] = [randomTokens(rng, 2), randomTokens(rng, 2)];
  using g = await model({ slots: 4, chunk: 5 });
  await g.forward([{ slot: 3, tokens: a }]);
  await g.forward([{ slot: 1, tokens: b }]);
  const both = await g.forward([{ slot: 1, tokens: nb }, { slot: 3, tokens: na }]);
  const again = await g.forward([{ slot: 1, tokens: [7] }]);
  assertEquals([g.cached(0), g.cached(1), g.cached(3)], [0, 7, 13]);
  using single = await model();
  const V = HP.n_vocab;
  const alone = async (tokens: number[]) => {
    single.reset();
    return await single.forward(one(tokens));
  };
  assertEquals(both.subarray(0, V), await alone([...b, ...nb]));
  assertEquals(both.subarray(V, 2 * V), await alone([...a, ...na]));
  assertEquals(again, await alone([...b, ...nb, 7]));
});

Deno.test("forward() asserts what its callers guarantee, with a RangeError that says what is wrong", async () => {
  using g = await model({ slots: 2 });
  const bad = async (seqs: { slot: number; tokens: number[] }[], what: string) =>
    await assertRejects(() => g.forward(seqs), RangeError, what);
  await bad(one([HP.n_vocab]), "outside the vocabulary");
  await bad(one([-1]), "outside the vocabulary");
  await bad(one([1.5]), "outside the vocabulary");
  await bad(one([]), "no tokens");
  await bad([], "a pass runs 1 to 2");
  await bad(each([[1], [2], [3]]), "a pass runs 1 to 2");
  await bad([{ slot: 2, tokens: [1] }], "outside the model's slots [0, 2)");
  await bad([{ slot: 1, tokens: [1] }, { slot: 1, tokens: [2] }], "slot 1 twice");
  await bad(each([[1, 2], [3]]), "sequences of 2 and 1 new tokens");
  await bad(one(new Array(HP.n_ctx + 1).fill(0)), "past n_ctx 40");
  await g.forward(one(new Array(HP.n_ctx).fill(0)));
  await bad(one([0]), "after 40 cached");
  assertEquals(g.cached(0), HP.n_ctx, "a refused pass caches nothing");
  assertThrows(() => g.cached(-1), RangeError, "Slot -1");
});

Deno.test("forward() with `out` writes the same logits into it and returns a view of them", async () => {
  const rng = new Rng(6);
  const tokens = randomTokens(rng, 9);
  using fresh = await model();
  using reused = await model();
  const out = new Float32Array(HP.n_vocab * 9 + 5).fill(NaN);
  const all = await reused.forward(one(tokens), { allPositions: true, out });
  assertEquals(all.buffer, out.buffer);
  assertEquals(all.length, HP.n_vocab * 9);
  assertEquals(all, await fresh.forward(one(tokens), { allPositions: true }));
  assert(Number.isNaN(out[HP.n_vocab * 9]), "wrote past the logits");
  // Decoding into the same array step after step.
  for (let step = 0; step < 3; step++) {
    const id = randomTokens(rng, 1);
    const last = await reused.forward(one(id), { out });
    assertEquals(last.buffer, out.buffer);
    assertEquals(last, await fresh.forward(one(id)));
  }
  await assertRejects(
    () => reused.forward(one([0]), { out: new Float32Array(HP.n_vocab - 1) }),
    RangeError,
    "these logits need 97",
  );
});
