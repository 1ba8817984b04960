/**
 * `deno task perplexity`: Hugging Face's sliding windows as properties, the trained
 * fixture's perplexity against its independent float64 reference, and the tool driven
 * through a pipe: its figures equal the library's, its mistakes are one line.
 */
import fc from "fast-check";
import { fileURLToPath } from "node:url";
import { assert, assertEquals } from "./asserts.ts";
import { progressBar, scoreTokens, slidingWindows } from "../cli/perplexity.ts";
import { loadModel } from "../runtime/generate/model.ts";

const FIXTURES = fileURLToPath(new URL("../../shared/fixtures/", import.meta.url));
const TF_DIR = `${FIXTURES}trained-tiny`;
const hasFixture = (() => {
  try {
    Deno.statSync(`${TF_DIR}/reference.json`);
    return true;
  } catch {
    console.warn(`Skipping the perplexity fixture tests: ${TF_DIR} not found`);
    return false;
  }
})();

Deno.test("slidingWindows() scores every token once, with ctx − stride tokens of context or all before it", () => {
  fc.assert(
    fc.property(
      fc.integer({ min: 1, max: 300 }),
      fc.integer({ min: 2, max: 64 }),
      fc.integer({ min: 1, max: 64 }),
      (n, ctx, strideRaw) => {
        const stride = Math.min(strideRaw, ctx);
        const windows = slidingWindows(n, ctx, stride);
        const scored = new Array<number>(n).fill(0);
        windows.forEach(({ begin, end, scoreFrom }, k) => {
          assertEquals(begin, k * stride);
          assert(end - begin <= ctx && end <= n && scoreFrom > begin);
          for (let t = scoreFrom; t < end; t++) {
            scored[t]++;
            // Context within the window: all of the text before t, or at least ctx − stride.
            assert(t - begin >= Math.min(t, ctx - stride), `token ${t} in window ${k}`);
          }
        });
        assertEquals(windows[windows.length - 1].end, n); // the last reaches the end
        assert(windows.length === 1 || windows[windows.length - 2].end < n); // no window after
        // Each token after the first is scored once, except a window's first token when
        // that window does not overlap the one before (stride = ctx): nothing precedes it.
        const unscorable = new Set(
          windows.filter((w, k) => k > 0 && windows[k - 1].end === w.begin).map((w) => w.begin),
        );
        for (let t = 1; t < n; t++) {
          assertEquals(scored[t], unscorable.has(t) ? 0 : 1, `token ${t}`);
        }
        assertEquals(scored[0], 0);
      },
    ),
  );
});

Deno.test("progressBar() fits the terminal and counts windows", () => {
  const line = progressBar(12, 215, { nll: 12 * 5, tokens: 12, windows: 12 }, 60);
  assert(line.length <= 60, line);
  assert(line.includes("12/215 windows") && line.includes(Math.exp(5).toFixed(2)), line);
  assert(progressBar(215, 215, { nll: 1, tokens: 1, windows: 215 }).startsWith("[=="));
});

Deno.test({
  name:
    "perplexity of the fixture's held-out text in 128-token windows equals the float64 reference's to 1e-4",
  ignore: !hasFixture,
  async fn() {
    const reference = JSON.parse(Deno.readTextFileSync(`${TF_DIR}/reference.json`)).heldout;
    // 32 slots: the head then computes 32 positions' logits per read of the embedding.
    using model = await loadModel(TF_DIR, { dtype: "f32", threads: 2, slots: 32 });
    const ids = model.tokenizer.encode(Deno.readTextFileSync(`${TF_DIR}/heldout.txt`));
    assertEquals(ids.length, reference.tokens);
    const score = await scoreTokens(model, ids, { ctx: 128, stride: 128 });
    assertEquals([score.tokens, score.windows], [reference.predicted_tokens, reference.windows]);
    const perplexity = Math.exp(score.nll / score.tokens);
    const relative = Math.abs(perplexity / reference.perplexity - 1);
    assert(relative < 1e-4, `perplexity ${perplexity} vs ${reference.perplexity}: ${relative}`);
  },
});

async function run(args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-env", "cli/perplexity.ts", ...args],
    cwd: new URL("..", import.meta.url),
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

Deno.test({
  name:
    "deno task perplexity prints the library's figures for overlapping windows, and no bar into a pipe",
  ignore: !hasFixture,
  async fn() {
    const path = await Deno.makeTempFile({ suffix: ".txt" });
    try {
      const text = Deno.readTextFileSync(`${TF_DIR}/heldout.txt`).slice(0, 3000);
      await Deno.writeTextFile(path, text);
      const r = await run([
        `--model=${TF_DIR}`,
        `--file=${path}`,
        "--ctx=64",
        "--stride=24",
        "--dtype=f32",
      ]);
      assertEquals(r.code, 0, r.stderr);
      assertEquals(r.stderr, ""); // no progress bar, nothing chosen for the user
      using model = await loadModel(TF_DIR, { dtype: "f32", threads: 2 });
      const ids = model.tokenizer.encode(text);
      const score = await scoreTokens(model, ids, { ctx: 64, stride: 24 });
      const mean = score.nll / score.tokens;
      const bytes = new TextEncoder().encode(text).length;
      assertEquals(r.stdout.split("\n").slice(0, 3), [
        `perplexity: ${Math.exp(mean).toFixed(6)}`,
        `mean NLL: ${mean.toFixed(10)} nats per token (${score.tokens} of ${ids.length} tokens ` +
        `scored, ${score.windows} windows of 64, stride 24)`,
        `bits per byte: ${(score.nll / Math.LN2 / bytes).toFixed(6)} (${bytes} bytes)`,
      ]);
      assertEquals(score.tokens, ids.length - 1); // overlapping windows score all but the first
    } finally {
      await Deno.remove(path);
    }
  },
});

Deno.test("deno task perplexity: each mistake is one line and exit code 1", async () => {
  const here = fileURLToPath(import.meta.url);
  const cases: [string[], string][] = [
    [[`--file=${here}`], "--model is required"],
    [[`--model=${TF_DIR}`], "--file is required"],
    [[`--model=${TF_DIR}`, "--file=/no/such.txt"], 'Cannot read --file "/no/such.txt"'],
    [[`--model=/no/model`, `--file=${here}`], 'Cannot find the model folder "/no/model"'],
    [["--ctx=12.5"], "--ctx must be an integer"],
    [["--windows=3"], "Unknown flag --windows"],
  ];
  if (hasFixture) {
    cases.push([
      [`--model=${TF_DIR}`, `--file=${here}`, "--ctx=1000"],
      "--ctx must be in [2, 128]",
    ]);
    cases.push([
      [`--model=${TF_DIR}`, `--file=${here}`, "--stride=200"],
      "--stride must be in [1, 128]",
    ]);
  }
  for (const [args, message] of cases) {
    const r = await run(args);
    assertEquals(r.code, 1, `${args}: ${r.stderr}`);
    assert(r.stderr.includes(message), `${args}: ${r.stderr}`);
    assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
  }
});
