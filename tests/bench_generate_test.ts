/**
 * `deno task bench:generate` on a generated model folder: the JSON line it prints is whole
 * and its derived figures agree with the ones they come from.
 */
import { assert, assertEquals } from "./asserts.ts";
import { gpt2Tensors } from "../runtime/gpt2/tensor_names.ts";
import { randomWeights, writeModelFolder } from "../testing/random_model.ts";
import type { HParams } from "../runtime/gpt2/hparams.ts";
import { withTempDir } from "./temp_dir.ts";

const HP: HParams = { n_vocab: 300, n_ctx: 64, n_embd: 32, n_head: 2, n_layer: 2 };

async function bench(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-write", "--allow-env", "bench/generate.ts", ...args],
    cwd: new URL("..", import.meta.url),
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

/** a ≈ b to within the four significant digits the benchmark prints. */
function near(a: number, b: number, what: string): void {
  assert(Math.abs(a - b) <= 2e-3 * Math.abs(b), `${what}: ${a}, expected about ${b}`);
}

Deno.test("bench:generate prints one JSON line whose ratios match their parts", async () => {
  await withTempDir(async (dir) => {
    await writeModelFolder(dir, HP, randomWeights(HP, 2));
    const args = ["--model", dir, "--prompt", "8", "--generate", "4", "--batch", "2"];
    const r = await bench([...args, "--threads", "2"]);
    assertEquals(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assertEquals(lines.length, 1, r.stdout);
    const f = JSON.parse(lines[0]);
    assertEquals([f.batch, f.threads, f.backend, f.dtype], [2, 2, "wasm", "f32"]);
    for (
      const key of [
        "load_s",
        "prefill_tok_s",
        "decode_tok_s",
        "decode_tok_s_past896",
        "read_gb_s",
        "decode_gb_s",
        "peak_rss_mb",
        "decode_tok_s_batch1",
      ]
    ) {
      assert(Number.isFinite(f[key]) && f[key] > 0, `${key} is ${f[key]}`);
    }
    near(f.bandwidth_fraction, f.decode_gb_s / f.read_gb_s, "bandwidth_fraction");
    near(f.batch_speedup, f.decode_tok_s / f.decode_tok_s_batch1, "batch_speedup");
    // Every weight is read once per step: a step decodes one token of each sequence.
    // In float32 the backend holds at least every checkpoint float (more where it pads).
    const floats = gpt2Tensors(HP).reduce((n, { shape }) => n + shape.reduce((a, b) => a * b), 0);
    assert(f.weight_bytes >= 4 * floats, `weight_bytes ${f.weight_bytes} < ${4 * floats}`);
    near(f.decode_gb_s, (f.weight_bytes * f.decode_tok_s) / f.batch / 1e9, "decode_gb_s");
  });
});

Deno.test("bench:generate --dtype reports the type and the bytes it really reads", async () => {
  await withTempDir(async (dir) => {
    await writeModelFolder(dir, HP, randomWeights(HP, 2));
    const run = async (dtype: string) => {
      const args = ["--model", dir, "--prompt", "4", "--generate", "2", "--dtype", dtype];
      const r = await bench([...args, "--threads", "1"]);
      assertEquals(r.code, 0, r.stderr);
      return JSON.parse(r.stdout);
    };
    const [f32, f16, q8] = [await run("f32"), await run("f16"), await run("q8")];
    assertEquals([f32.dtype, f16.dtype, q8.dtype], ["f32", "f16", "q8"]);
    // The matrices shrink to half and to about 1.1 bytes a weight; biases and norms stay.
    assert(q8.weight_bytes < f16.weight_bytes && f16.weight_bytes < f32.weight_bytes);
    assert(f16.weight_bytes > f32.weight_bytes / 2, "vectors stay float32");
  });
});

Deno.test("bench:generate refuses an unknown option in one line, with exit code 1", async () => {
  const r = await bench(["--model_dir", "x"]);
  assertEquals(r.code, 1);
  assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
  assert(r.stderr.includes("Unknown option --model_dir"), r.stderr);
});

Deno.test("bench:generate --size takes GPT-2's sizes and refuses another in one line", async () => {
  const r = await bench(["--size", "999M"]);
  assertEquals(r.code, 1);
  assertEquals(
    r.stderr,
    'error: Unknown --size "999M": choose one of 124M, 355M, 774M, 1558M\n',
  );
});
