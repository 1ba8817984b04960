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
import { fileURLToPath } from "node:url";

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

async function benchAccuracy(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-env", "bench/accuracy.ts", ...args],
    cwd: new URL("..", import.meta.url),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, stderr);
  const lines = new TextDecoder().decode(out.stdout).trim().split("\n");
  return Object.fromEntries(lines.map((l) => JSON.parse(l)).map((r) => [r.type, r]));
}

Deno.test("bench:accuracy prints one JSON line per type: float16 closer to float32 than q8", async () => {
  const hp: HParams = { n_vocab: 500, n_ctx: 64, n_embd: 64, n_head: 4, n_layer: 2 };
  await withTempDir(async (dir) => {
    await writeModelFolder(dir, hp, randomWeights(hp, 4));
    const r = await benchAccuracy(["--model", dir, "--tokens", "100"]);
    assertEquals(Object.keys(r), ["f32", "f16", "q8", "q4"]);
    assertEquals(r.f32.kl_mean, 0);
    for (const t of ["f16", "q8"]) {
      assertEquals([r[t].positions, r[t].text], [100, "random tokens"]);
      assert(0 <= r[t].kl_mean && r[t].kl_mean <= r[t].kl_p99, `${t}: ${JSON.stringify(r[t])}`);
      assert(r[t].top1_agreement >= 0.9, `${t}: ${JSON.stringify(r[t])}`);
    }
    assertEquals(r.f16.top1_agreement, 1);
    assert(r.f16.kl_mean < r.q8.kl_mean && r.f16.max_logit_diff < r.q8.max_logit_diff);
    assert(r.q8.kl_mean < r.q4.kl_mean, `q4 farthest: ${JSON.stringify(r.q4)}`);
  });
});

const FIXTURES = fileURLToPath(new URL("../../shared/fixtures/", import.meta.url));

Deno.test({
  name:
    "bench:accuracy on the fixture's held-out text: q8's mean KL from float32 at most 5.5e-5 (ggml q8_0's), q4 farthest, Q8_0 and Q4_0 GGUF files kept as q8's and q4's own bytes",
  ignore: (() => {
    try {
      return !Deno.statSync(`${FIXTURES}trained-tiny-gguf/trained-tiny-Q8_0.gguf`).isFile;
    } catch {
      return true;
    }
  })(),
  async fn() {
    const r = await benchAccuracy([
      // The first 1024 positions, in windows of the fixture's n_ctx (128).
      "--tokens",
      "1024",
      "--gguf",
      `${FIXTURES}trained-tiny-gguf/trained-tiny-Q8_0.gguf,${FIXTURES}trained-tiny-gguf/trained-tiny-Q4_0.gguf`,
    ]);
    assertEquals(Object.keys(r), ["f32", "f16", "q8", "q4", "gguf:Q8_0", "gguf:Q4_0"]);
    assert(r.f32.text.endsWith("heldout.txt"), r.f32.text);
    // Real text: perplexity is the model's, and every type scores it nearly the same.
    assert(r.f32.perplexity > 5 && r.f32.perplexity < 500, `${r.f32.perplexity}`);
    for (const t of ["f16", "q8", "q4", "gguf:Q8_0", "gguf:Q4_0"]) {
      assert(Math.abs(r[t].perplexity / r.f32.perplexity - 1) < 0.05, `${t}: ${r[t].perplexity}`);
    }
    assert(r.f16.kl_mean < r.q8.kl_mean, "f16 nearest");
    assert(r.q8.kl_mean < r.q4.kl_mean, "4-bit farthest");
    assertEquals(r.q8.positions, 1024);
    // ggml's q8_0 on weights and activations gives about 4.1e-5 here; 7-bit weights gave 8.5e-5.
    assert(r.q8.kl_mean <= 5.5e-5, `q8 mean KL ${r.q8.kl_mean} above 5.5e-5`);
    assert(r.q8.top1_agreement >= 0.99, `q8 top-1 agreement ${r.q8.top1_agreement}`);
    assertEquals(r.q8.bytes_per_weight, 1.063);
    // GGUF files load as their own types, their blocks kept: the ones q8 and q4 make from
    // the checkpoint's float32, so the same figures exactly.
    assertEquals([r["gguf:Q8_0"].stored, r["gguf:Q4_0"].stored], ["q8", "q4"]);
    for (const [file, type] of [["gguf:Q8_0", "q8"], ["gguf:Q4_0", "q4"]]) {
      const { type: _, stored: __, bytes_per_weight: ___, ...kept } = r[file];
      const { type: _t, bytes_per_weight: _b, ...own } = r[type];
      assertEquals(kept, own, file);
    }
    assertEquals([r["gguf:Q8_0"].bytes_per_weight, r["gguf:Q4_0"].bytes_per_weight], [
      1.063,
      0.5625,
    ]);
  },
});
