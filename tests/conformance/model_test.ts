/**
 * The conformance suite, whole model: every backend of `BACKENDS` (backends.ts) runs
 * `Gpt2` on a generated model and must give the logits of `referenceForward` (the scalar
 * model with no cache) within its NMSE limit, from either checkpoint format (the same
 * logits bit for bit), with the KV cache as without it, in chunks, and with sequences at
 * different positions decoded together in slots out of order.
 */
import { assertNmse } from "../assert_close.ts";
import { assertEquals } from "../asserts.ts";
import { withTempDir } from "../temp_dir.ts";
import { BACKENDS, type BackendUnderTest } from "./backends.ts";
import { referenceForward } from "../../testing/reference_model.ts";
import { Gpt2, type Gpt2Options } from "../../runtime/gpt2/gpt2.ts";
import type { HParams } from "../../runtime/gpt2/hparams.ts";
import { openModelFiles } from "../../runtime/gpt2/model_files.ts";
import { Rng } from "../../runtime/generate/random.ts";
import { memorySource, randomWeights, writeModelFolder } from "../../testing/random_model.ts";

// Odd sizes: n_vocab 263 and n_embd 30 are no multiples of 4 or 16, d_head 10 no multiple
// of 4, n_ctx 21 no multiple of 4 (the synthetic tokenizer needs n_vocab ≥ 257).
const HP: HParams = { n_vocab: 263, n_ctx: 21, n_embd: 30, n_head: 3, n_layer: 2 };
const weights = randomWeights(HP, 13);
// GPT-2's initial weights attend almost evenly; c_attn × 20 sharpens attention, so that a
// key or value read from the wrong place moves the logits well past any limit.
for (const [name, t] of weights) {
  if (name.endsWith("/c_attn/w")) t.data.forEach((v, i, a) => a[i] = 20 * v);
}
const V = HP.n_vocab;

function randomTokens(rng: Rng, n: number): number[] {
  return Array.from({ length: n }, () => Math.floor(rng.next() * V));
}

/** Splits `n` into random positive parts of at most 9. */
function randomChunks(rng: Rng, n: number): number[] {
  const parts = [];
  while (n > 0) {
    const k = 1 + Math.floor(rng.next() * Math.min(n, 9));
    parts.push(k);
    n -= k;
  }
  return parts;
}

/** The reference logits after the last of `tokens`. */
function referenceLast(tokens: readonly number[]): Float32Array {
  return referenceForward(weights, HP, tokens).slice((tokens.length - 1) * V);
}

/** `Gpt2` on a new backend of `entry`, with the generated weights loaded from memory. */
async function model(entry: BackendUnderTest, options: Gpt2Options = {}): Promise<Gpt2> {
  const gpt2 = Gpt2.create(await entry.create(), HP, options);
  await gpt2.load(memorySource(weights));
  return gpt2;
}

for (const entry of BACKENDS) {
  Deno.test(`${entry.name}: a generated model gives the reference logits from either checkpoint format, bit for bit the same`, async () => {
    const tokens = randomTokens(new Rng(1), HP.n_ctx);
    const expected = referenceForward(weights, HP, tokens);
    await withTempDir(async (dir) => {
      const logits = new Map<string, Float32Array>();
      for (const format of ["tensorflow", "safetensors"] as const) {
        await writeModelFolder(`${dir}/${format}`, HP, weights, { format });
        using files = await openModelFiles(`${dir}/${format}`);
        assertEquals(files.format, format);
        assertEquals(files.hparams, HP);
        // Prompts longer than a chunk go through in several passes.
        using gpt2 = Gpt2.create(await entry.create(), files.hparams, { chunk: 8 });
        await gpt2.load(files.source, files.names);
        const got = await gpt2.forward([{ slot: 0, tokens }], { allPositions: true });
        assertNmse(got, expected, entry.nmse, `${entry.name}: ${format}, every position`);
        logits.set(format, got);
      }
      assertEquals(logits.get("safetensors"), logits.get("tensorflow"));
    });
  });

  Deno.test(`${entry.name}: decoding with the KV cache, token by token or in chunks, gives the logits of one pass`, async () => {
    const rng = new Rng(2);
    const tokens = randomTokens(rng, HP.n_ctx);
    using whole = await model(entry);
    const all = await whole.forward([{ slot: 0, tokens }], { allPositions: true });
    assertNmse(all, referenceForward(weights, HP, tokens), entry.nmse, `${entry.name}: one pass`);
    const splits = [new Array(HP.n_ctx).fill(1), randomChunks(rng, HP.n_ctx)];
    for (const [i, chunks] of splits.entries()) {
      using gpt2 = await model(entry, { chunk: 4 });
      let at = 0;
      for (const n of chunks) {
        const got = await gpt2.forward([{ slot: 0, tokens: tokens.slice(at, at + n) }]);
        at += n;
        assertNmse(
          got,
          all.subarray((at - 1) * V, at * V),
          entry.nmse,
          `${entry.name}: split ${i} [${chunks}], after ${at} tokens`,
        );
      }
      assertEquals(gpt2.cached(0), HP.n_ctx);
    }
  });

  Deno.test(`${entry.name}: sequences at different positions decode together in slots out of order`, async () => {
    const rng = new Rng(3);
    // Each sequence's tokens so far, by slot; slot 2 stays empty.
    const seen = new Map<number, number[]>();
    using gpt2 = await model(entry, { slots: 4, chunk: 5 });
    // One pass of `list`; with `allPositions`, every new position is checked, (B, T, V).
    const step = async (
      list: { slot: number; tokens: number[] }[],
      what: string,
      allPositions = false,
    ) => {
      const got = await gpt2.forward(list, { allPositions });
      const T = list[0].tokens.length;
      list.forEach(({ slot, tokens }, b) => {
        const past = seen.get(slot) ?? [];
        const all = [...past, ...tokens];
        seen.set(slot, all);
        assertEquals(gpt2.cached(slot), all.length);
        const expected = allPositions
          ? referenceForward(weights, HP, all).slice(past.length * V)
          : referenceLast(all);
        const rows = allPositions ? T : 1;
        assertNmse(
          got.subarray(b * rows * V, (b + 1) * rows * V),
          expected,
          entry.nmse,
          `${entry.name}: ${what}, sequence ${b} (slot ${slot}, ${all.length} tokens)`,
        );
      });
    };
    await step([{ slot: 3, tokens: randomTokens(rng, 9) }], "a prompt of 9 in slot 3");
    await step(
      [{ slot: 1, tokens: randomTokens(rng, 4) }, { slot: 0, tokens: randomTokens(rng, 4) }],
      "prompts of 4 in slots 1 and 0, every position",
      true,
    );
    for (let i = 0; i < 3; i++) {
      await step(
        [3, 1, 0].map((slot) => ({ slot, tokens: randomTokens(rng, 1) })),
        `decoding step ${i} of slots 3, 1, 0`,
      );
    }
    await step(
      [0, 3].map((slot) => ({ slot, tokens: randomTokens(rng, 3) })),
      "3 more tokens in slots 0 and 3, every position",
      true,
    );
    // Slot 3 goes back to 5 positions and on from there; slot 1 carries on beside it.
    gpt2.truncate(3, 5);
    seen.set(3, seen.get(3)!.slice(0, 5));
    await step(
      [3, 1].map((slot) => ({ slot, tokens: randomTokens(rng, 2) })),
      "slot 3 truncated to 5, with slot 1",
    );
    assertEquals(gpt2.cached(2), 0);
  });
}
