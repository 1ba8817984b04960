/**
 * The command-line tools driven as a user drives them, through piped standard input, on a
 * generated model folder.
 */
import { assert, assertEquals } from "./asserts.ts";
import { randomWeights, writeModelFolder } from "../testing/random_model.ts";
import { GPT2_SIZES, type HParams } from "../runtime/gpt2/hparams.ts";

const HP: HParams = { n_vocab: 400, n_ctx: 64, n_embd: 32, n_head: 2, n_layer: 2 };
const modelsDir = await Deno.makeTempDir({ prefix: "gpt2-repl-" });
await writeModelFolder(`${modelsDir}/tiny`, HP, randomWeights(HP, 1));
// The tiny model's files under 1558M's shape, which needs 6.2 GB in float32: more than a
// wasm memory holds, which the backend finds before it reads any weight (with --dtype auto
// it would choose float16 and then find the tensors' shapes wrong).
await writeModelFolder(`${modelsDir}/huge`, HP, randomWeights(HP, 1));
await Deno.writeTextFile(`${modelsDir}/huge/hparams.json`, JSON.stringify(GPT2_SIZES["1558M"]));
globalThis.addEventListener("unload", () => Deno.removeSync(modelsDir, { recursive: true }));

const SEP = (n: number) => `${"=".repeat(40)} SAMPLE ${n} ${"=".repeat(40)}`;
const PROMPT = "Model prompt >>> ";

async function run(
  script: string,
  args: string[],
  stdin = "",
): Promise<{ code: number; stdout: string; stderr: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-read", "--allow-env", `cli/${script}`, ...args],
    cwd: new URL("..", import.meta.url),
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(stdin));
  await writer.close();
  const out = await child.output();
  const text = new TextDecoder();
  return { code: out.code, stdout: text.decode(out.stdout), stderr: text.decode(out.stderr) };
}

const tiny = [`--models_dir=${modelsDir}`, "--model_name=tiny"];

Deno.test("repl: prompts, separators, nsamples in batches, the empty-prompt message, exit 0 at EOF", async () => {
  const r = await run("repl.ts", [
    ...tiny,
    "--length=8",
    "--nsamples=4",
    "--batch_size",
    "2",
    "--seed=3",
  ], "Hello\n\nWorld\n");
  assertEquals(r.code, 0, r.stderr);
  assertEquals(r.stderr, "Running on wasm with f32 weights (--dtype auto)\n");
  const out = r.stdout;
  // Two prompts answered, each with four samples then a line of 80 "=".
  assertEquals(out.split(PROMPT).length - 1, 4, out);
  assert(out.includes(`${PROMPT}Prompt should not be empty!\n${PROMPT}`), out);
  for (let n = 1; n <= 4; n++) assertEquals(out.split(SEP(n)).length - 1, 2, `sample ${n} twice`);
  assertEquals(out.split("\n" + "=".repeat(80) + "\n").length - 1, 2);
  assert(!out.includes(SEP(5)));
  assert(!out.includes("\x1b"), "no escape codes when piped");
});

Deno.test("repl: a prompt longer than n_ctx - length tokens is refused and asked again", async () => {
  // "~" never merges in the generated vocabulary: one token per character.
  const r = await run("repl.ts", [...tiny, "--length=40", "--seed=1"], "~".repeat(30) + "\nok\n");
  assertEquals(r.code, 0, r.stderr);
  assert(
    r.stdout.includes("Number of tokens should be in range of 1 - 24, got: 30!\n" + PROMPT),
    r.stdout,
  );
  assertEquals(r.stdout.split(SEP(1)).length - 1, 1, "the next prompt is answered");
});

Deno.test("repl: the same seed gives the same output; another seed another", async () => {
  const args = [...tiny, "--length=20", "--top_k=40", "--temperature=2"];
  const a = await run("repl.ts", [...args, "--seed=7"], "Hi\nagain\n");
  const b = await run("repl.ts", [...args, "--seed=7"], "Hi\nagain\n");
  const c = await run("repl.ts", [...args, "--seed=8"], "Hi\nagain\n");
  assertEquals(a.stdout, b.stdout);
  assert(a.stdout !== c.stdout);
});

Deno.test("repl: temperature 0 is greedy whatever the seed", async () => {
  const a = await run("repl.ts", [...tiny, "--length=12", "--temperature=0", "--seed=1"], "Hi\n");
  const b = await run("repl.ts", [...tiny, "--length=12", "--temperature=0", "--seed=2"], "Hi\n");
  assertEquals(a.stdout, b.stdout);
});

Deno.test("repl: the sampling controls reach the sampler: a bias, a ban", async () => {
  // Id 65 is "A" in the generated vocabulary; a bias of 100 makes greedy pick it.
  const biased = await run(
    "repl.ts",
    [...tiny, "--length=6", "--temperature=0", '--logit_bias={"65": 100}'],
    "Hi\n",
  );
  assertEquals(biased.code, 0, biased.stderr);
  assert(biased.stdout.includes(SEP(1) + "\nAAAAAA\n"), biased.stdout);
  // Banning every repeat of a token, the bias can only win once.
  const banned = await run("repl.ts", [
    ...tiny,
    "--length=6",
    "--temperature=0",
    '--logit_bias={"65": 100}',
    "--no_repeat_ngram_size=1",
  ], "Hi\n");
  assertEquals(banned.code, 0, banned.stderr);
  assert(banned.stdout.includes(SEP(1) + "\nA"), banned.stdout);
  assert(!banned.stdout.includes("AA"), banned.stdout);
});

Deno.test("repl: user mistakes get one line on stderr and exit code 1", async () => {
  const cases: [string[], string][] = [
    [["--bogus=1"], "error: Unknown flag --bogus, see --help"],
    [["--top_k=abc"], 'error: Flag --top_k must be an integer, got "abc"'],
    [["--top_k"], "error: Flag --top_k needs a value"],
    [[...tiny, "--length=64"], "error: Can't get samples longer than window size: 64"],
    [
      [...tiny, "--nsamples=3", "--batch_size=2"],
      "error: --nsamples (3) must be a multiple of --batch_size (2)",
    ],
    [[...tiny, "--top_p=0"], "error: --top_p must be a number in (0, 1], got 0"],
    [[...tiny, "--repetition_penalty=0"], "error: --repetition_penalty must be a number > 0"],
    [[...tiny, "--presence_penalty=3"], "error: --presence_penalty must be a number in [-2, 2]"],
    [[...tiny, "--min_p=1.5"], "error: --min_p must be a number in [0, 1], got 1.5"],
    [[...tiny, "--repeat_last_n=-2"], "error: --repeat_last_n must be an integer >= -1"],
    [[...tiny, "--logit_bias={50256: 1}"], "error: --logit_bias must be JSON such as"],
    [[...tiny, '--logit_bias={"5": 200}'], 'error: --logit_bias["5"] must be a number in'],
    [[...tiny, '--logit_bias={"400": -100}'], 'error: --logit_bias has the key "400"'],
    [
      [...tiny, "--backend=reference"],
      'error: Unknown backend "reference": choose one of wasm, webgpu, auto',
    ],
    [
      [...tiny, "--dtype=int4"],
      'error: Unknown dtype "int4": choose one of f32, f16, q8, q4, auto',
    ],
    [
      [`--models_dir=${modelsDir}`, "--model_name=huge", "--dtype=f32"],
      // 1558M in float32 is 6.2 GB: the advice is the type that fits.
      'error: The model needs 6.40 GiB of wasm memory, more than the 4 GiB a WebAssembly memory holds: use dtype "f16"',
    ],
    [
      [`--models_dir=${modelsDir}`, "--model_name=124M"],
      `error: Cannot find the model folder "${modelsDir}/124M" (download it with: deno task download 124M)`,
    ],
  ];
  for (const [args, message] of cases) {
    const r = await run("repl.ts", args, "Hello\n");
    assertEquals(r.code, 1, `${args.join(" ")}: ${r.stderr}`);
    assert(r.stderr.startsWith(message), `${args.join(" ")}: got ${r.stderr}`);
    assertEquals(r.stderr.trim().split("\n").length, 1, r.stderr);
    assertEquals(r.stdout, "");
  }
});

Deno.test("repl --help lists every flag with its meaning", async () => {
  const r = await run("repl.ts", ["--help"]);
  assertEquals(r.code, 0);
  for (
    const flag of [
      "model_name",
      "seed",
      "nsamples",
      "batch_size",
      "length",
      "temperature",
      "top_k",
      "top_p",
      "min_p",
      "repetition_penalty",
      "repeat_last_n",
      "presence_penalty",
      "frequency_penalty",
      "logit_bias",
      "no_repeat_ngram_size",
      "models_dir",
      "backend",
      "dtype",
      "threads",
    ]
  ) {
    assert(r.stdout.includes(`--${flag}=`), flag);
  }
});

Deno.test("generate_unconditional: nsamples samples from <|endoftext|>, numbered across batches", async () => {
  const r = await run("generate_unconditional.ts", [
    ...tiny,
    "--length=5",
    "--nsamples=4",
    "--batch_size=2",
    "--seed=1",
  ]);
  assertEquals(r.code, 0, r.stderr);
  for (let n = 1; n <= 4; n++) assertEquals(r.stdout.split(SEP(n)).length - 1, 1);
  assert(!r.stdout.includes(SEP(5)));
});

Deno.test("repl: the same seed gives the same samples whatever the thread count", async () => {
  const args = [
    ...tiny,
    "--length=24",
    "--top_k=40",
    "--seed=11",
    "--nsamples=2",
    "--batch_size=2",
  ];
  const runs = await Promise.all(
    ["1", "2", "3"].map((t) => run("repl.ts", [...args, `--threads=${t}`], "Hello\n")),
  );
  for (const r of runs) assertEquals(r.code, 0, r.stderr);
  assertEquals(runs[1].stdout, runs[0].stdout);
  assertEquals(runs[2].stdout, runs[0].stdout);
});
