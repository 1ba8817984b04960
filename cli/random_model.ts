/**
 * `deno task random-model <dir>`: writes a GPT-2 model folder with random weights, in
 * OpenAI's checkpoint format or Hugging Face's, to try the runtime without a download or
 * to benchmark it with real shapes (speed does not depend on the values).
 *
 *   deno task random-model models/random-124M --size=124M
 *
 * @module
 */
import { describeFlags, parseCommandLine } from "./flags.ts";
import { runMain } from "./run_main.ts";
import { write } from "./sampling.ts";
import { UsageError } from "./usage_error.ts";
import { GPT2_SIZES, type HParams } from "../runtime/gpt2/hparams.ts";
import { randomWeights, writeModelFolder } from "../testing/random_model.ts";

/** A small shape that loads in milliseconds. */
const TINY: HParams = { n_vocab: 1000, n_ctx: 128, n_embd: 64, n_head: 4, n_layer: 2 };

const FLAGS = {
  size: {
    type: "string",
    default: "tiny",
    help: `tiny, or a GPT-2 size: ${Object.keys(GPT2_SIZES).join(", ")}`,
  },
  format: {
    type: "string",
    default: "tensorflow",
    help: "tensorflow (OpenAI's files) or safetensors",
  },
  stored_dtype: {
    type: "string",
    default: "float32",
    help: "how the file stores the weights: float32, or float16 (safetensors only)",
  },
  seed: { type: "int", default: 0, help: "seed of the random weights" },
} as const;

export const USAGE = `usage: deno task random-model <dir> [flags]

Writes a complete GPT-2 model folder with random weights (and a synthetic tokenizer) to
<dir>, e.g. models/random, for: deno task repl --model_name=random

flags:
${describeFlags(FLAGS)}`;

export async function main(args: string[]): Promise<number> {
  const dir = args.find((a) => !a.startsWith("-"));
  const flags = parseCommandLine(args.filter((a) => a !== dir), FLAGS, USAGE);
  if (!flags) return 0;
  if (dir === undefined) {
    throw new UsageError("Give the folder to write, e.g. models/random, see --help");
  }
  const hparams = flags.size === "tiny" ? TINY : GPT2_SIZES[flags.size];
  if (!hparams) {
    throw new UsageError(
      `Unknown --size "${flags.size}", expected tiny or one of ${
        Object.keys(GPT2_SIZES).join(", ")
      }`,
    );
  }
  if (flags.format !== "tensorflow" && flags.format !== "safetensors") {
    throw new UsageError(`Unknown --format "${flags.format}", expected tensorflow or safetensors`);
  }
  const stored = flags.stored_dtype;
  if (stored !== "float32" && !(stored === "float16" && flags.format === "safetensors")) {
    throw new UsageError(
      `--stored_dtype must be float32, or float16 with --format=safetensors, got "${stored}"`,
    );
  }
  await writeModelFolder(dir, hparams, randomWeights(hparams, flags.seed), {
    format: flags.format,
    storedDType: stored,
  });
  write(`Wrote a random ${flags.size} model (${flags.format}, ${stored}) to ${dir}\n`);
  return 0;
}

if (import.meta.main) runMain(() => main(Deno.args));
