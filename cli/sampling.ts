/**
 * What `cli/repl.ts` and `cli/generate_unconditional.ts` share, as OpenAI's two sampling
 * scripts do: the flags, the model folder, and printing samples between
 * `=== SAMPLE n ===` separators, the first streamed token by token as it is generated.
 *
 * @module
 */
import type { FlagSpec, FlagValues, NumberFlag, StringFlag } from "./flags.ts";
import { loadNotes, MODEL_FLAGS, type ModelFlags, modelOptions } from "./model_flags.ts";
import { loadModel, type Model } from "../runtime/generate/model.ts";
import { Rng } from "../runtime/generate/random.ts";
import { UsageError } from "./usage_error.ts";
import {
  checkControl,
  SAMPLING_CONTROLS,
  type SamplingOptions,
} from "../runtime/generate/sampling_controls.ts";

/** A flag per sampling control (runtime/generate/sampling_controls.ts), with its default. */
const SAMPLING_FLAGS: Record<string, FlagSpec> = Object.fromEntries(
  SAMPLING_CONTROLS.map((c) => [c.flag, {
    type: c.kind === "bias" ? "string" : c.kind === "integer" ? "int" : "float",
    default: c.kind === "bias" ? undefined : c.default as number,
    help: c.help,
  }]),
);

/**
 * The sampling controls the flags set, checked by the table's rules and said in flags
 * (`--logit_bias` keys against `vocabSize` when given).
 * @throws {UsageError} naming the flag at fault
 */
export function samplingOptions(
  flags: Record<string, unknown>,
  vocabSize?: number,
): SamplingOptions {
  const out: Record<string, unknown> = {};
  for (const c of SAMPLING_CONTROLS) {
    let value = flags[c.flag];
    if (value === undefined) continue;
    if (c.kind === "bias") {
      try {
        value = JSON.parse(value as string);
      } catch {
        throw new UsageError(
          `--${c.flag} must be JSON such as '{"50256": -100}', got ${value}`,
        );
      }
    }
    try {
      out[c.option] = checkControl(c, value, { name: `--${c.flag}`, vocabSize });
    } catch (e) {
      if (e instanceof RangeError) throw new UsageError(e.message);
      throw e;
    }
  }
  return out as SamplingOptions;
}

/**
 * The flags of `interact_model` and `sample_model`: theirs, a flag per sampling control
 * (typed as any flag: they come from a table), and the model's.
 */
export type SamplingFlagSpecs = ModelFlags & Readonly<Record<string, FlagSpec>> & {
  readonly model_name: StringFlag;
  readonly seed: NumberFlag;
  readonly nsamples: NumberFlag;
  readonly batch_size: NumberFlag;
  readonly length: NumberFlag;
  readonly models_dir: StringFlag;
};

/** The flags of `interact_model` and `sample_model`, with the originals' defaults. */
export function samplingFlags(nsamples: number): SamplingFlagSpecs {
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
    ...SAMPLING_FLAGS,
    models_dir: { type: "string", default: "models", help: "folder holding the model folders" },
    ...MODEL_FLAGS,
  };
}

/** The values of the sampling flags, as parsed. */
export type SamplingFlags = FlagValues<SamplingFlagSpecs>;

/** A model loaded for the flags, with the length to generate and a session generator. */
export interface Session extends Disposable {
  readonly model: Model;
  readonly length: number;
  /** The sampling controls the flags set. */
  readonly sampling: SamplingOptions;
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
  const sampling = samplingOptions(flags);
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
  // A bias on a token the model does not have, said before the first prompt.
  try {
    samplingOptions(flags, model.hparams.n_vocab);
  } catch (e) {
    model[Symbol.dispose]();
    throw e;
  }
  for (const note of loadNotes(flags, model)) console.error(note);
  const seed = flags.seed ?? crypto.getRandomValues(new Uint32Array(1))[0];
  return {
    model,
    length,
    sampling,
    rng: new Rng(seed),
    [Symbol.dispose]: () => model[Symbol.dispose](),
  };
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
        ...session.sampling,
        length,
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
