/**
 * A stopgap until the library's `Model` gives each concurrent `generate` a KV-cache slot of
 * its own: today's `Model` has one cache, which two interleaved generations would share,
 * so this wrapper runs its `generate` calls one at a time, first come first served. A
 * caller waiting its turn whose signal is aborted leaves the line.
 *
 * @module
 */
import type { GenerateOptions } from "../model.ts";
import type { SamplerOptions } from "../sampler.ts";
import type { CompletionModel } from "./completion.ts";

/** `model` with its `generate` calls run one after another. */
export function serialModel(model: CompletionModel): CompletionModel {
  let tail: Promise<void> = Promise.resolve();
  return {
    tokenizer: model.tokenizer,
    hparams: model.hparams,
    async *generate(ids: readonly number[], options: GenerateOptions & SamplerOptions = {}) {
      let release!: () => void;
      const done = new Promise<void>((resolve) => release = resolve);
      const turn = tail;
      tail = tail.then(() => done);
      try {
        await waitUnlessAborted(turn, options.signal);
        yield* model.generate(ids, options);
      } finally {
        release();
      }
    },
  };
}

/** Resolves when `p` does, or rejects with the signal's reason when it is aborted first. */
function waitUnlessAborted(p: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (!signal) return p;
  signal.throwIfAborted();
  return new Promise((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    p.then(() => {
      signal.removeEventListener("abort", onAbort);
      resolve();
    });
  });
}
