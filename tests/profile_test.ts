/**
 * The wasm backend's profile (bench/profile.ts reads it): every kernel call is counted
 * under its op and sizes, each thread's busy time is within the call's wall time, and
 * profiling changes no result.
 */
import { assert, assertEquals } from "./asserts.ts";
import { WasmBackend } from "../runtime/backend/wasm/wasm_backend.ts";
import { Gpt2 } from "../runtime/gpt2/gpt2.ts";
import type { HParams } from "../runtime/gpt2/hparams.ts";
import { memorySource, randomWeights } from "../testing/random_model.ts";

const HP: HParams = { n_vocab: 97, n_ctx: 40, n_embd: 48, n_head: 4, n_layer: 3 };
const weights = randomWeights(HP, 5);
const TOKENS = [3, 14, 15, 92, 65, 35, 89, 79];

async function run(profile: boolean) {
  const backend = await WasmBackend.create({ threads: 2, serialBelow: 0, profile });
  using gpt2 = Gpt2.create(backend, HP);
  await gpt2.load(memorySource(weights));
  backend.resetProfile();
  const logits = await gpt2.forward([{ slot: 0, tokens: TOKENS }]);
  return { logits, profile: backend.profile() };
}

Deno.test("profile() counts every call of a pass under its op and sizes, busy within wall", async () => {
  const { profile } = await run(true);
  assert(profile !== undefined);
  const calls = (label: string) => profile.find((p) => p.label === label)?.calls;
  const T = TOKENS.length, C = HP.n_embd;
  // Every block's qkv product and attention; the prompt's last block runs its MLP on one row.
  assertEquals(calls(`conv1d(store, rows=${T}, C=${C}, OC=${3 * C})`), HP.n_layer);
  assertEquals(calls(`attention(B=1, T=${T}, heads=${HP.n_head})`), HP.n_layer);
  assertEquals(calls(`conv1d(gelu, rows=${T}, C=${C}, OC=${4 * C})`), HP.n_layer - 1);
  assertEquals(calls(`conv1d(gelu, rows=1, C=${C}, OC=${4 * C})`), 1);
  assertEquals(calls(`logits(rows=1, C=${C}, V=${HP.n_vocab})`), 1);
  for (const p of profile) {
    assertEquals(p.busyMs.length, 2, p.label);
    // Each thread's busy time lies inside the caller's wall time, give or take the clocks.
    for (const b of p.busyMs) {
      assert(b >= 0 && b <= p.wallMs + 0.5, `${p.label}: ${b} > ${p.wallMs}`);
    }
  }
});

Deno.test("profiling changes no logit, and a backend without it has no profile", async () => {
  const on = await run(true);
  const off = await run(false);
  assertEquals(off.profile, undefined);
  assertEquals(on.logits, off.logits);
});
