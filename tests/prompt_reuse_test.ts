/**
 * What prompt reuse rests on: on the wasm backend a prompt run as a cached prefix and then
 * the rest (in one pass, or one token at a time) gives the logits of one pass over it, bit
 * for bit, for every weight type, both Conv1D panel layouts (inputs up to 1024 features in
 * two 8-column strips, wider ones in 16-column rows) and any thread count.
 */
import { assertEquals } from "./asserts.ts";
import { WasmBackend } from "../runtime/backend/wasm/wasm_backend.ts";
import { WEIGHT_TYPES } from "../runtime/backend/backend.ts";
import { Gpt2 } from "../runtime/gpt2/gpt2.ts";
import type { HParams } from "../runtime/gpt2/hparams.ts";
import { Rng } from "../runtime/generate/random.ts";
import { memorySource, randomWeights } from "../testing/random_model.ts";

// n_embd 288: the MLP's projection has 4 × 288 = 1152 inputs, past the strips' 1024.
const HP: HParams = { n_vocab: 300, n_ctx: 80, n_embd: 288, n_head: 4, n_layer: 1 };
const weights = randomWeights(HP, 5);

for (const weightType of WEIGHT_TYPES) {
  Deno.test(`wasm ${weightType}: a cached prefix and the rest give the logits of one pass, bit for bit`, async () => {
    for (const threads of [1, 2]) {
      using gpt2 = Gpt2.create(await WasmBackend.create({ threads, weightType }), HP, {
        slots: 2,
        chunk: 32,
      });
      await gpt2.load(memorySource(weights));
      const rng = new Rng(threads);
      const tokens = Array.from({ length: 70 }, () => Math.floor(rng.next() * HP.n_vocab));
      const whole = (await gpt2.forward([{ slot: 0, tokens }])).slice();
      for (const split of [1, 9, 33, 64, 69]) {
        gpt2.reset(1);
        await gpt2.forward([{ slot: 1, tokens: tokens.slice(0, split) }]);
        const rest = await gpt2.forward([{ slot: 1, tokens: tokens.slice(split) }]);
        assertEquals(rest, whole, `${threads} threads, prefix of ${split} in one pass`);
        gpt2.reset(1);
        for (const t of tokens.slice(0, split)) await gpt2.forward([{ slot: 1, tokens: [t] }]);
        const after = await gpt2.forward([{ slot: 1, tokens: tokens.slice(split) }]);
        assertEquals(after, whole, `${threads} threads, prefix of ${split} token by token`);
      }
    }
  });
}
