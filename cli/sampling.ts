/**
 * What `cli/repl.ts` and `cli/generate_unconditional.ts` share, as OpenAI's two sampling
 * scripts do: the flags, the model folder, and printing samples between
 * `=== SAMPLE n ===` separators, the first streamed token by token as it is generated.
 *
 * @module
 */
import type { FlagSpec, FlagValues } from "./flags.ts";
import { loadNotes, MODEL_FLAGS, modelOptions } from "./model_flags.ts";
import { loadModel, type Model } from "../runtime/generate/model.ts";
import { Rng } from "../runtime/generate/random.ts";
import { UsageError } from "../runtime/errors.ts";

/** The flags of `interact_model` and `sample_model`, with the originals' defaults. */
export function samplingFlags(nsamples: number) {
  return {
    model_name: {
      type: "string",
      default: "124M",
      help: "which model to use: a folder in models_dir, or a .gguf file there",
    },
    seed: {
      type: "int",
      help: "seed for the random generator; the same seed gives the same samples",
    },
    nsamples: {
      type: "int",
      default: nsamples,
      help: nsamples === 0 ? "number of samples, 0 for no end" : "number of samples per prompt",
    },
    batch_size: {
      type: "int",
      default: 1,
      help: "samples decoded together; nsamples must be a multiple of it",
    },
    length: { type: "int", help: "tokens per sample; n_ctx / 2 when absent or <= 0" },
    temperature: {
      type: "float",
      default: 1,
      help: "divides the logits: lower is more predictable, 0 is greedy",
    },
    top_k: {
      type: "int",
      default: 0,
      help: "sample from the k most likely tokens; 0 for no limit",
    },
    top_p: {
      type: "float",
      default: 1,
      help: "sample from the smallest set of tokens with this much probability",
    },
    models_dir: { type: "string", default: "models", help: "folder holding the model folders" },
    ...MODEL_FLAGS,
  } satisfies Record<string, FlagSpec>;
}

export type SamplingFlags = FlagValues<ReturnType<typeof samplingFlags>>;

/** A model loaded for the flags, with the length to generate and a session generator. */
export interface Session extends Disposable {
  readonly model: Model;
  readonly length: number;
  /** Gives each batch its own seed, so a seeded session is reproducible from start to end. */
  readonly rng: Rng;
}

/** Checks the flags against each other and the model, and loads the model. */
export async function openSession(flags: SamplingFlags): Promise<Session> {
  const { nsamples = 0, batch_size = 1 } = flags;
  if (batch_size < 1) throw new UsageError(`--batch_size must be at least 1, got ${batch_size}`);
  if (nsamples < 0) throw new UsageError(`--nsamples must be at least 0, got ${nsamples}`);
  if (nsamples % batch_size !== 0) {
    throw new UsageError(
      `--nsamples (${nsamples}) must be a multiple of --batch_size (${batch_size})`,
    );
  }
  if (flags.temperature! < 0) {
    throw new UsageError(`--temperature must be >= 0, got ${flags.temperature}`);
  }
  if (flags.top_k! < 0) throw new UsageError(`--top_k must be >= 0, got ${flags.top_k}`);
  if (!(flags.top_p! > 0 && flags.top_p! <= 1)) {
    throw new UsageError(`--top_p must be in (0, 1], got ${flags.top_p}`);
  }
  const model = await loadModel(`${flags.models_dir}/${flags.model_name}`, {
    ...modelOptions(flags),
    batch: batch_size,
    // The samples decode with generateBatch alone: no slots for concurrent generations.
    slots: batch_size,
  });
  const { n_ctx } = model.hparams;
  const length = flags.length === undefined || flags.length <= 0
    ? Math.floor(n_ctx / 2)
    : flags.length;
  if (length >= n_ctx) {
    model[Symbol.dispose]();
    throw new UsageError(
      `Can't get samples longer than window size: ${n_ctx} (--length is ${length})`,
    );
  }
  for (const note of loadNotes(flags, model)) console.error(note);
  const seed = flags.seed ?? crypto.getRandomValues(new Uint32Array(1))[0];
  return { model, length, rng: new Rng(seed), [Symbol.dispose]: () => model[Symbol.dispose]() };
}

const encoder = new TextEncoder();

/** Writes all of `text` to standard output. */
export function write(text: string): void {
  const bytes = encoder.encode(text);
  let done = 0;
  while (done < bytes.length) done += Deno.stdout.writeSync(bytes.subarray(done));
}

/** `"=" * 40 + " SAMPLE n " + "=" * 40`, the original's separator. */
export function sampleHeader(n: number): string {
  return `${"=".repeat(40)} SAMPLE ${n} ${"=".repeat(40)}`;
}

/**
 * Generates one batch after `ids` and prints each sample under its header, numbered from
 * `first`: sample `first` streams as it is generated, the others print when the batch is
 * done. Returns false if `signal` stopped it.
 */
export async function printBatch(
  session: Session,
  flags: SamplingFlags,
  ids: readonly number[],
  first: number,
  signal: AbortSignal,
): Promise<boolean> {
  const { model, length } = session;
  const decoders = Array.from({ length: model.batch }, () => model.tokenizer.decoder());
  const texts = decoders.map(() => "");
  write(sampleHeader(first) + "\n");
  try {
    for await (
      const step of model.generateBatch(ids, {
        length,
        temperature: flags.temperature,
        topK: flags.top_k,
        topP: flags.top_p,
        seed: session.rng.nextUint32(),
        signal,
      })
    ) {
      write(decoders[0].push(step[0]));
      for (let b = 1; b < step.length; b++) texts[b] += decoders[b].push(step[b]);
    }
  } catch (e) {
    if (signal.aborted) {
      write(decoders[0].flush() + "\n");
      return false;
    }
    throw e;
  }
  write(decoders[0].flush() + "\n");
  for (let b = 1; b < model.batch; b++) {
    write(sampleHeader(first + b) + "\n" + texts[b] + decoders[b].flush() + "\n");
  }
  return true;
}

/**
 * Runs `work` with Ctrl-C (SIGINT) aborting the signal it gets instead of ending the
 * process; `onIdleInterrupt` runs for a Ctrl-C that comes while no work runs.
 */
export class Interrupts implements Disposable {
  #controller: AbortController | undefined;
  readonly #listener = () => {
    if (this.#controller) this.#controller.abort(new DOMException("Interrupted", "AbortError"));
    else this.onIdleInterrupt();
  };

  constructor(readonly onIdleInterrupt: () => void) {
    Deno.addSignalListener("SIGINT", this.#listener);
  }

  async run<T>(work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    this.#controller = new AbortController();
    try {
      return await work(this.#controller.signal);
    } finally {
      this.#controller = undefined;
    }
  }

  [Symbol.dispose](): void {
    Deno.removeSignalListener("SIGINT", this.#listener);
  }
}
