import { assert, assertEquals } from "./asserts.ts";
import { GPT2_SIZES } from "../runtime/gpt2/hparams.ts";
import { packedSize, planMemory } from "../runtime/backend/wasm/memory_plan.ts";

Deno.test("staging slots lie in the token embedding when it holds them, else past the weights", () => {
  // GPT-2 124M: wte (154 MB) holds the three (C, 4C) slots, so staging adds no memory.
  const big = planMemory(GPT2_SIZES["124M"]);
  const C = 768;
  assertEquals(big.staging[0], big.wte);
  const slotEnd = big.staging.at(-1)! + C * 4 * C * 4;
  assert(slotEnd <= big.wpe, "the slots end inside wte");

  // A tiny vocabulary cannot hold them: they go after the weights, into the activations
  // and the cache, and the memory is large enough for all three.
  const hp = { n_vocab: 97, n_ctx: 40, n_embd: 48, n_head: 4, n_layer: 3 };
  const small = planMemory(hp);
  assertEquals(small.staging[0], small.tokens);
  assert(small.staging[0] >= small.ln_f_b + 48 * 4, "the slots start after the weights");
  const slots = small.staging.map((at) => [at, at + packedSize(48, 4 * 48) * 4]);
  for (let i = 1; i < slots.length; i++) assert(slots[i][0] >= slots[i - 1][1], "no overlap");
  assert(slots.at(-1)![1] <= small.bytes, "the slots fit in the memory");
});
