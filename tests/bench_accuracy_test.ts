/**
 * `deno task bench:accuracy`: its comparison of two sets of logits, and its JSON line on a
 * generated model folder.
 */
import { assert, assertEquals } from "./asserts.ts";
import { compare } from "../bench/accuracy.ts";
import { randomWeights, writeModelFolder } from "../testing/random_model.ts";
import type { HParams } from "../runtime/gpt2/hparams.ts";
import { Rng } from "../runtime/generate/random.ts";
import { withTempDir } from "./temp_dir.ts";

Deno.test("compare(): the same logits, or all shifted by a constant, are the same distribution", () => {
  const rng = new Rng(1);
  const V = 50, T = 7;
  const base = Float32Array.from({ length: T * V }, () => rng.normal());
  assertEquals(compare(base, base.slice(), V), {
    kl_mean: 0,
    kl_p99: 0,
    top1_agreement: 1,
    max_logit_diff: 0,
  });
  const shifted = compare(base, base.map((x) => x + 0.5), V);
  assert(shifted.kl_mean < 1e-12, `${shifted.kl_mean}`);
  assertEquals(shifted.top1_agreement, 1);
  assertEquals(shifted.max_logit_diff, 0.5);
});

Deno.test("compare(): a row whose best token moves counts against top-1 and adds KL", () => {
  const V = 4;
  const base = new Float32Array([0, 0, 0, 3, /* row 2 */ 1, 0, 0, 0]);
  const other = new Float32Array([0, 0, 0, 3, /* row 2 */ 0, 1, 0, 0]);
  const r = compare(base, other, V);
  assertEquals(r.top1_agreement, 0.5);
  assertEquals(r.max_logit_diff, 1);
  // Row 2: p = softmax([1,0,0,0]), q = softmax([0,1,0,0]); KL = (p0 − p1)·1.
  const e = Math.E, p0 = e / (e + 3), p1 = 1 / (e + 3);
  // Figures are printed to four significant digits.
  assert(Math.abs(r.kl_mean - (p0 - p1) / 2) < 1e-4, `${r.kl_mean}`);
  assert(Math.abs(r.kl_p99 - (p0 - p1)) < 1e-4, `${r.kl_p99}`);
});

Deno.test("bench:accuracy prints one JSON line: float16 closer to float32 than q8", async () => {
  const hp: HParams = { n_vocab: 500, n_ctx: 64, n_embd: 64, n_head: 4, n_layer: 2 };
  await withTempDir(async (dir) => {
    await writeModelFolder(dir, hp, randomWeights(hp, 4));
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--allow-env", "bench/accuracy.ts", "--model", dir],
      cwd: new URL("..", import.meta.url),
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, stderr);
    const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
    assertEquals(lines.length, 1);
    const r = JSON.parse(lines[0]);
    assertEquals([r.tokens, r.hparams], [64, hp]);
    for (const t of ["f16", "q8"]) {
      assert(0 <= r[t].kl_mean && r[t].kl_mean <= r[t].kl_p99, `${t}: ${JSON.stringify(r[t])}`);
      assert(r[t].top1_agreement >= 0.9, `${t}: ${JSON.stringify(r[t])}`);
    }
    assertEquals(r.f16.top1_agreement, 1);
    assert(r.f16.kl_mean < r.q8.kl_mean && r.f16.max_logit_diff < r.q8.max_logit_diff);
  });
});
