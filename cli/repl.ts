/**
 * `deno task repl`: an interactive prompt session, as OpenAI's
 * `interactive_conditional_samples.py`, streaming each sample as it is generated.
 *
 *   deno task repl --model_name=124M --top_k=40 --length=100
 *
 * @module
 */
import { describeFlags, parseCommandLine } from "./flags.ts";
import { stdinLineReader } from "./line_reader.ts";
import { runMain } from "./run_main.ts";
import {
  Interrupts,
  openSession,
  printBatch,
  samplingFlags,
  type SamplingFlagSpecs,
  write,
} from "./sampling.ts";

const FLAGS: SamplingFlagSpecs = samplingFlags(1);

/** The text `--help` prints. */
export const USAGE = `usage: deno task repl [flags]

Reads a prompt, prints samples of what GPT-2 writes after it, and asks again, as
OpenAI's interactive_conditional_samples.py does. Ctrl-C stops a sample; Ctrl-C at the
prompt or Ctrl-D ends the session.

flags:
${describeFlags(FLAGS)}`;

/** The CLI: parses `args`, runs the session until its input ends, and returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const flags = parseCommandLine(args, FLAGS, USAGE);
  if (!flags) return 0;
  using session = await openSession(flags);
  const { model, length } = session;
  const max = model.hparams.n_ctx - length;
  using reader = stdinLineReader();
  using interrupts = new Interrupts(() => {
    write("\n");
    Deno.exit(0);
  });
  const nsamples = flags.nsamples!;
  const batch = model.batch;
  while (true) {
    let text = await reader.readLine("Model prompt >>> ");
    while (text === "") {
      write("Prompt should not be empty!\n");
      text = await reader.readLine("Model prompt >>> ");
    }
    if (text === null) {
      write("\n");
      return 0;
    }
    const ids = model.tokenizer.encode(text);
    if (ids.length > max) {
      write(`Number of tokens should be in range of 1 - ${max}, got: ${ids.length}!\n`);
      continue;
    }
    reader.pauseForWork();
    try {
      let generated = 0;
      while (generated < nsamples) {
        const done = await interrupts.run((signal) =>
          printBatch(session, ids, generated + 1, signal)
        );
        if (!done) break;
        generated += batch;
      }
      if (generated === nsamples) write("=".repeat(80) + "\n");
    } finally {
      reader.resumeAfterWork();
    }
  }
}

if (import.meta.main) runMain(() => main(Deno.args));
