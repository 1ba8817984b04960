/**
 * The whole model on small random checkpoints: the WebAssembly forward pass against the
 * scalar reference, and decoding with the KV cache against recomputing from scratch.
 */
import { assertClose } from "./assert_close.ts";
import { assert, assertEquals, assertThrows } from "./asserts.ts";
import { Engine } from "../runtime/engine.ts";
import type { HParams } from "../runtime/gpt2/hparams.ts";
import { Rng } from "../runtime/random.ts";
import { randomWeights } from "../runtime/random_model.ts";
import { referenceForward } from "../runtime/backend/reference/ops.ts";
import { memorySource } from "../runtime/random_model.ts";

const HP: HParams = { n_vocab: 97, n_ctx: 40, n_embd: 48, n_head: 4, n_layer: 3 };
const weights = randomWeights(HP, 11);

async function engine(hp = HP, options: { batch?: number; chunk?: number } = {}) {
  const e = await Engine.create(hp, options);
  await e.load(memorySource(hp === HP ? weights : randomWeights(hp, 5)));
  return e;
}

function randomTokens(rng: Rng, n: number, V = HP.n_vocab): number[] {
  return Array.from({ length: n }, () => Math.floor(rng.next() * V));
}

/** Splits `n` into random positive parts. */
function randomChunks(rng: Rng, n: number): number[] {
  const parts = [];
  while (n > 0) {
    const k = 1 + Math.floor(rng.next() * Math.min(n, 9));
    parts.push(k);
    n -= k;
  }
  return parts;
}

Deno.test("forward() gives the reference model's logits at every position", async () => {
  // Odd sizes too: n_embd 30 is no multiple of 4, d_head 10 no multiple of 4 or 16, n_ctx
  // 21 no multiple of the key cache's blocks of 4 positions. Its attention is sharpened
  // (c_attn × 20: GPT-2's initial weights attend almost evenly), so that a key read from
  // the wrong place changes the logits well beyond the tolerance.
  const odd: HParams = { n_vocab: 31, n_ctx: 21, n_embd: 30, n_head: 3, n_layer: 2 };
  const sharp = randomWeights(odd, 5);
  for (const [name, t] of sharp) {
    if (name.endsWith("/c_attn/w")) t.data.forEach((v, i, a) => a[i] = 20 * v);
  }
  for (const [hp, w] of [[HP, weights], [odd, sharp]] as const) {
    using e = await Engine.create(hp, { chunk: 7 });
    await e.load(memorySource(w));
    const tokens = randomTokens(new Rng(1), hp.n_ctx, hp.n_vocab);
    const got = e.forward([tokens], { allPositions: true });
    assertClose(got, referenceForward(w, hp, tokens), { atol: 1e-4, rtol: 1e-4 });
  }
});

Deno.test("the KV cache: one token at a time or random chunks equal one pass over the whole sequence", async () => {
  const rng = new Rng(2);
  const tokens = randomTokens(rng, HP.n_ctx);
  using whole = await engine();
  const all = whole.forward([tokens], { allPositions: true });
  const V = HP.n_vocab;
  for (
    const chunks of [
      new Array(HP.n_ctx).fill(1),
      randomChunks(rng, HP.n_ctx),
      randomChunks(rng, HP.n_ctx),
    ]
  ) {
    using e = await engine();
    let at = 0;
    for (const n of chunks) {
      const logits = e.forward([tokens.slice(at, at + n)]);
      at += n;
      assertClose(logits, all.subarray((at - 1) * V, at * V), {
        rtol: 1e-4,
        atol: 1e-6,
        msg: `after ${at}`,
      });
    }
    assertEquals(e.cache.length, HP.n_ctx);
  }
});

Deno.test("the KV cache: truncate() and reset() forget positions as if never seen", async () => {
  const rng = new Rng(3);
  const a = randomTokens(rng, 12);
  const b = randomTokens(rng, 5);
  using e = await engine();
  e.forward([a]);
  e.forward([randomTokens(rng, 6)]);
  e.cache.truncate(a.length);
  const afterTruncate = e.forward([b]);
  e.cache.reset();
  const fresh = e.forward([[...a, ...b]]);
  assertClose(afterTruncate, fresh, { rtol: 1e-4, atol: 1e-6 });
  assertThrows(() => e.cache.truncate(100), RangeError, "holds 17");
});

Deno.test("a batch of sequences gives each the logits it gets alone", async () => {
  const rng = new Rng(4);
  const rows = [randomTokens(rng, 9), randomTokens(rng, 9), randomTokens(rng, 9)];
  using batch = await engine(HP, { batch: 3 });
  const got = [batch.forward(rows), batch.forward(rows.map((r) => [r[0]]))];
  for (let b = 0; b < 3; b++) {
    using single = await engine();
    const want = [single.forward([rows[b]]), single.forward([[rows[b][0]]])];
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
      using lastOnly = await engine(HP, { batch: B, chunk: 7 });
      using every = await engine(HP, { batch: B, chunk: 7 });
      const all = every.forward(rows, { allPositions: true });
      const last = lastOnly.forward(rows);
      const msg = `batch ${B}, T ${T}`;
      for (let b = 0; b < B; b++) {
        const at = (b * T + T - 1) * V;
        assertEquals(
          last.subarray(b * V, (b + 1) * V),
          all.subarray(at, at + V),
          `${msg}, row ${b}`,
        );
      }
      assertEquals(lastOnly.forward(next), every.forward(next), `${msg}, the step after`);
    }
  }
});

Deno.test("forward() rejects bad input with a RangeError that says what is wrong", async () => {
  using e = await engine();
  assertThrows(() => e.forward([[HP.n_vocab]]), RangeError, "outside the vocabulary");
  assertThrows(() => e.forward([[-1]]), RangeError, "outside the vocabulary");
  assertThrows(() => e.forward([[1.5]]), RangeError, "outside the vocabulary");
  assertThrows(() => e.forward([[]]), RangeError, "no tokens");
  assertThrows(() => e.forward([[1], [2]]), RangeError, "batch size");
  assertThrows(
    () => e.forward([new Array(HP.n_ctx + 1).fill(0)]),
    RangeError,
    "context window is 40",
  );
  e.forward([new Array(HP.n_ctx).fill(0)]);
  assertThrows(() => e.forward([[0]]), RangeError, "after 40 cached");
});

Deno.test("forward() with `out` writes the same logits into it and returns a view of them", async () => {
  const rng = new Rng(6);
  const tokens = randomTokens(rng, 9);
  using fresh = await engine();
  using reused = await engine();
  const out = new Float32Array(HP.n_vocab * 9 + 5).fill(NaN);
  const all = reused.forward([tokens], { allPositions: true, out });
  assertEquals(all.buffer, out.buffer);
  assertEquals(all.length, HP.n_vocab * 9);
  assertEquals(all, fresh.forward([tokens], { allPositions: true }));
  assert(Number.isNaN(out[HP.n_vocab * 9]), "wrote past the logits");
  // Decoding into the same array step after step.
  for (let step = 0; step < 3; step++) {
    const id = randomTokens(rng, 1);
    const last = reused.forward([id], { out });
    assertEquals(last.buffer, out.buffer);
    assertEquals(last, fresh.forward([id]));
  }
  assertThrows(
    () => reused.forward([[0]], { out: new Float32Array(HP.n_vocab - 1) }),
    RangeError,
    "these logits need 97",
  );
});
