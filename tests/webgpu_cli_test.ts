/**
 * `--backend webgpu` from a command-line tool, as a user runs it: the same greedy samples
 * as `--backend wasm`, `--backend auto` working on whatever this machine has, and no
 * adapter as one line on stderr with exit code 1.
 */
import { assert, assertEquals } from "./asserts.ts";
import { gpuTest, openWebGpu } from "./webgpu_harness.ts";
import { randomWeights, writeModelFolder } from "../testing/random_model.ts";
import type { HParams } from "../runtime/gpt2/hparams.ts";
import { WebGpuBackend } from "../runtime/backend/webgpu/webgpu_backend.ts";

const HP: HParams = { n_vocab: 400, n_ctx: 64, n_embd: 32, n_head: 2, n_layer: 2 };
const modelsDir = await Deno.makeTempDir({ prefix: "gpt2-webgpu-cli-" });
// Larger weights than GPT-2's initialisation spread the logits, so greedy picks are not
// near ties that float32 rounding could flip.
const weights = randomWeights(HP, 2);
for (const t of weights.values()) if (t.shape.length > 1) t.data.forEach((v, i, a) => a[i] = v * 8);
await writeModelFolder(`${modelsDir}/tiny`, HP, weights);
// A model too wide for the adapter in float32 and float16 (a c_fc weight of 170 MB in
// float16, over llvmpipe's 128 MiB bindings), which wasm holds in q8: only its
// hparams.json is read before the tools refuse it.
await writeModelFolder(`${modelsDir}/wide`, HP, weights);
await Deno.writeTextFile(
  `${modelsDir}/wide/hparams.json`,
  JSON.stringify({ n_vocab: 400, n_ctx: 64, n_embd: 4608, n_head: 36, n_layer: 9 }),
);
// Mesa's Vulkan loader prints a line to stderr for each device when this is unset.
const runtimeDir = await Deno.makeTempDir({ prefix: "gpt2-xdg-" });
globalThis.addEventListener("unload", () => {
  Deno.removeSync(modelsDir, { recursive: true });
  Deno.removeSync(runtimeDir, { recursive: true });
});
const probe = await openWebGpu();
if (!(probe instanceof Error)) probe.dispose();

async function generate(
  backend: string,
  env: Record<string, string> = {},
  model = "tiny",
): Promise<{ code: number; stdout: string; stderr: string }> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      "cli/generate_unconditional.ts",
      `--models_dir=${modelsDir}`,
      `--model_name=${model}`,
      "--nsamples=2",
      "--batch_size=2",
      "--length=12",
      "--temperature=0",
      `--backend=${backend}`,
    ],
    cwd: new URL("..", import.meta.url),
    env: { NO_COLOR: "1", XDG_RUNTIME_DIR: runtimeDir, ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

gpuTest(
  "generate --backend webgpu prints the greedy samples of --backend wasm",
  probe,
  async () => {
    const [gpu, wasm] = [await generate("webgpu"), await generate("wasm")];
    assertEquals(gpu.code, 0, gpu.stderr);
    // Only the line that says what --dtype auto chose: no driver noise.
    assertEquals(gpu.stderr, "Running on webgpu with f32 weights (--dtype auto)\n");
    assert(gpu.stdout.includes("SAMPLE 2"), gpu.stdout);
    assertEquals(gpu.stdout, wasm.stdout);
  },
);

gpuTest(
  "generate --backend webgpu on a model that fits neither f32 nor f16 says so, and what would help",
  probe,
  async () => {
    const r = await generate("webgpu", {}, "wide");
    assertEquals(r.code, 1);
    assertEquals(r.stdout, "");
    const lines = r.stderr.trim().split("\n");
    assertEquals(lines.length, 1, r.stderr);
    assert(
      lines[0].startsWith(
        // --batch_size 2: two slots.
        "error: The model fits the webgpu backend in neither f32 nor f16 weights, with 2 slots " +
          "(a conv1d weight [4608, 18432] is 169869312 bytes, more than the",
      ),
      lines[0],
    );
    assert(lines[0].endsWith(': use backend "wasm" with dtype "q8"'), lines[0]);
  },
);

Deno.test("generate --backend auto runs on this machine's best backend", async () => {
  const r = await generate("auto");
  assertEquals(r.code, 0, r.stderr);
  // A software adapter, or none, is slower than wasm: auto takes WebGPU on a real GPU only.
  const chosen = await WebGpuBackend.adapterKind() === "gpu" ? "webgpu" : "wasm";
  assertEquals(r.stderr, `Running on ${chosen} with f32 weights (--backend auto, --dtype auto)\n`);
  assertEquals(r.stdout, (await generate("wasm")).stdout);
});

Deno.test("generate --backend webgpu without an adapter: one line naming the fix, exit 1", async () => {
  // Vulkan alone, with no Vulkan driver to load: wgpu finds no adapter.
  const r = await generate("webgpu", {
    DENO_WEBGPU_BACKEND: "vulkan",
    VK_ICD_FILENAMES: "/nonexistent.json",
  });
  assertEquals(r.code, 1);
  assertEquals(r.stdout, "");
  assertEquals(
    r.stderr,
    "error: webgpu backend: no WebGPU adapter found (install a GPU driver, or Mesa's " +
      'mesa-vulkan-drivers for a software one); use backend "wasm"\n',
  );
});
