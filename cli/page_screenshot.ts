/**
 * `deno task screenshot`: serves a model, opens the page in headless Chromium, generates
 * once and writes a PNG of the page: what a person sees.
 *
 *   deno task screenshot --out=page.png                      # a small random model
 *   deno task screenshot --models_dir=models --model_name=124M
 *
 * @module
 */
import { describeFlags, type FlagSpec, parseCommandLine } from "./flags.ts";
import { runMain } from "./run_main.ts";
import { drivePage } from "./page_driver.ts";
import { loadModel } from "../runtime/generate/model.ts";
import { randomWeights, writeModelFolder } from "../testing/random_model.ts";
import { ApiServer } from "../runtime/serve/server.ts";
import { loadStaticFiles } from "../runtime/serve/static_files.ts";
import { serveOnLoopback } from "../testing/loopback_server.ts";

const FLAGS = {
  models_dir: { type: "string", help: "folder holding the model folders; none: a random model" },
  model_name: { type: "string", default: "124M", help: "which model, a folder in models_dir" },
  out: { type: "string", default: "page.png", help: "the PNG to write" },
  prompt: { type: "string", default: "The meaning of life is", help: "the prompt to type" },
  max_tokens: { type: "int", default: 40, help: "tokens to generate" },
  seed: { type: "int", default: 1, help: "the seed to type" },
} satisfies Record<string, FlagSpec>;

export const USAGE = `usage: deno task screenshot [flags]

Serves a model (a small random one unless --models_dir is given), opens the page in
headless Chromium (/usr/bin/chromium), generates once and writes a screenshot.

flags:
${describeFlags(FLAGS)}`;

export async function main(args: string[]): Promise<number> {
  const flags = parseCommandLine(args, FLAGS, USAGE);
  if (!flags) return 0;
  let dir = `${flags.models_dir}/${flags.model_name}`;
  let temp: string | undefined;
  if (flags.models_dir === undefined) {
    temp = await Deno.makeTempDir({ prefix: "gpt2-screenshot-" });
    const hp = { n_vocab: 1000, n_ctx: 128, n_embd: 64, n_head: 4, n_layer: 2 };
    await writeModelFolder(temp, hp, randomWeights(hp, 1));
    dir = temp;
  }
  try {
    using model = await loadModel(dir);
    const api = new ApiServer(model, {
      modelId: flags.models_dir === undefined ? "random" : flags.model_name,
      slots: 1,
      staticFiles: await loadStaticFiles(),
    });
    await using server = await serveOnLoopback(api);
    const result = await drivePage({
      url: server.url,
      prompt: flags.prompt,
      max_tokens: flags.max_tokens,
      seed: flags.seed,
      screenshot: flags.out,
    });
    console.log(`Wrote ${flags.out}: ${result.status}, ${result.speed}`);
  } finally {
    if (temp) await Deno.remove(temp, { recursive: true });
  }
  return 0;
}

if (import.meta.main) runMain(() => main(Deno.args));
