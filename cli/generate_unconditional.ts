/**
 * `deno task generate`: samples with no prompt, as OpenAI's
 * `generate_unconditional_samples.py`: each starts from `<|endoftext|>`.
 *
 *   deno task generate --model_name=124M --nsamples=3 --top_k=40
 *
 * @module
 */
import { describeFlags, parseCommandLine } from "./flags.ts";
import { runMain } from "./run_main.ts";
import { Interrupts, openSession, printBatch, samplingFlags } from "./sampling.ts";

const FLAGS = samplingFlags(0);

export const USAGE = `usage: deno task generate [flags]

Prints samples of GPT-2 text that start from nothing (<|endoftext|>), as OpenAI's
generate_unconditional_samples.py does. Ctrl-C stops.

flags:
${describeFlags(FLAGS)}`;

export async function main(args: string[]): Promise<number> {
  const flags = parseCommandLine(args, FLAGS, USAGE);
  if (!flags) return 0;
  using session = await openSession(flags);
  using interrupts = new Interrupts(() => {});
  const start = [session.model.tokenizer.endOfText];
  const nsamples = flags.nsamples!;
  for (
    let generated = 0;
    nsamples === 0 || generated < nsamples;
    generated += session.model.batch
  ) {
    const done = await interrupts.run((signal) =>
      printBatch(session, start, generated + 1, signal)
    );
    if (!done) break;
  }
  return 0;
}

if (import.meta.main) runMain(() => main(Deno.args));
