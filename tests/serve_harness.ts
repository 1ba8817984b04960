/** What the served-mode tests share: a small model folder, a server on loopback, SSE parsing. */
import type { HParams } from "../runtime/gpt2/hparams.ts";
import { randomWeights, writeModelFolder } from "../testing/random_model.ts";
import { ApiServer, type ApiServerOptions } from "../runtime/serve/server.ts";
import type { CompletionModel } from "../runtime/serve/completion.ts";
import { loadStaticFiles } from "../runtime/serve/static_files.ts";
import { type LoopbackServer, serveOnLoopback } from "../testing/loopback_server.ts";

/** The test model's shape: small enough to generate in milliseconds. */
export const TEST_HPARAMS: HParams = { n_vocab: 300, n_ctx: 64, n_embd: 32, n_head: 4, n_layer: 2 };

/**
 * Writes the test model (or one of another shape) to a new temporary folder and returns
 * it. Its weights are larger than GPT-2's initialisation so that the logits spread and
 * sampling varies.
 */
export async function writeTestModel(hparams: HParams = TEST_HPARAMS): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "gpt2-serve-" });
  const weights = randomWeights(hparams, 9);
  for (const t of weights.values()) {
    if (t.shape.length > 1) t.data.forEach((v, i, a) => a[i] = v * 8);
  }
  await writeModelFolder(dir, hparams, weights);
  return dir;
}

/** A running server on 127.0.0.1 and a free port, and the API it serves. */
export interface TestServer extends LoopbackServer {
  readonly api: ApiServer;
}

/** Serves `model` on loopback; disposing it shuts the server down. */
export async function startServer(
  model: CompletionModel,
  options: Partial<ApiServerOptions> = {},
): Promise<TestServer> {
  const api = new ApiServer(model, {
    modelId: "test",
    slots: 4,
    staticFiles: await loadStaticFiles(),
    ...options,
  });
  return Object.assign(await serveOnLoopback(api), { api });
}

/**
 * `model` with each generated token held back `ms` milliseconds, so that a test can act
 * while a generation runs; while `hold()` is true a token waits for its generation's signal,
 * so that only an abort (a client gone) can end that generation, however slow the machine.
 */
export function slowModel(
  model: CompletionModel,
  ms: number,
  hold: () => boolean = () => false,
): CompletionModel {
  return {
    tokenizer: model.tokenizer,
    hparams: model.hparams,
    async *generateSteps(ids, options) {
      for await (const step of model.generateSteps(ids, options)) {
        await new Promise((resolve) => setTimeout(resolve, ms));
        while (hold() && !options?.signal?.aborted) {
          await new Promise((resolve) => setTimeout(resolve, ms));
        }
        yield step;
      }
    },
  };
}

/** POSTs `body` as JSON to `url`. */
export function post(url: string, body: unknown, headers: Record<string, string> = {}) {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
}

/** The `data:` payloads of a server-sent-events body, in order. */
export async function readEvents(response: Response): Promise<string[]> {
  const text = await response.text();
  return parseEvents(text);
}

/** Splits an SSE text into its `data:` payloads; every event must end with a blank line. */
export function parseEvents(text: string): string[] {
  if (!text.endsWith("\n\n")) {
    throw new Error(`The stream does not end an event: ${text.slice(-80)}`);
  }
  return text.slice(0, -2).split("\n\n").map((event) => {
    if (!event.startsWith("data: ")) throw new Error(`Not a data event: ${event}`);
    return event.slice(6);
  });
}

/**
 * `model` that generates the tokens of `text` (then `<|endoftext|>`) whatever the prompt
 * and the sampling, so that a test knows what the model "says".
 */
export function scriptedModel(model: CompletionModel, text: string): CompletionModel {
  const script = [...model.tokenizer.encode(text), model.tokenizer.endOfText];
  return {
    tokenizer: model.tokenizer,
    hparams: model.hparams,
    async *generateSteps(_ids, options) {
      for (const token of script.slice(0, options?.length ?? script.length)) {
        options?.signal?.throwIfAborted();
        await Promise.resolve();
        yield { token };
      }
    },
  };
}

/** A model whose generations can be watched: how many run at once, and how many at most. */
export interface GatedModel extends CompletionModel {
  readonly slotsBusy: number;
  readonly waiting: number;
  /** The most generations that ran at once so far. */
  readonly mostAtOnce: number;
}

/**
 * `model` with `slots` places: a generation waits for one (first come, first served),
 * holds it while its tokens come, each held back `ms` milliseconds, and frees it at its
 * end. It reports `slotsBusy` and `waiting` as the library's model does, so that a test
 * can watch the server's metrics while generations run.
 */
export function gatedModel(model: CompletionModel, slots: number, ms: number): GatedModel {
  let busy = 0;
  let most = 0;
  const line: (() => void)[] = [];
  // A freed place goes straight to the first in line, if any.
  const free = () => {
    const next = line.shift();
    if (next) next();
    else busy--;
  };
  return {
    tokenizer: model.tokenizer,
    hparams: model.hparams,
    get slotsBusy() {
      return busy;
    },
    get waiting() {
      return line.length;
    },
    get mostAtOnce() {
      return most;
    },
    async *generateSteps(ids, options) {
      if (busy < slots) busy++;
      else await new Promise<void>((resolve) => line.push(resolve));
      most = Math.max(most, busy);
      try {
        for await (const step of model.generateSteps(ids, options)) {
          await new Promise((resolve) => setTimeout(resolve, ms));
          yield step;
        }
      } finally {
        free();
      }
    },
  };
}
