/** What the served-mode tests share: a small model folder, a server on loopback, SSE parsing. */
import type { HParams } from "../runtime/gpt2/hparams.ts";
import { randomWeights, writeModelFolder } from "../testing/random_model.ts";
import { ApiServer, type ApiServerOptions } from "../runtime/serve/server.ts";
import type { CompletionModel } from "../runtime/serve/completion.ts";
import { loadStaticFiles } from "../runtime/serve/static_files.ts";

/** The test model's shape: small enough to generate in milliseconds. */
export const TEST_HPARAMS: HParams = { n_vocab: 300, n_ctx: 64, n_embd: 32, n_head: 4, n_layer: 2 };

/**
 * Writes the test model to a new temporary folder and returns it. Its weights are larger
 * than GPT-2's initialisation so that the logits spread and sampling varies.
 */
export async function writeTestModel(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "gpt2-serve-" });
  const weights = randomWeights(TEST_HPARAMS, 9);
  for (const t of weights.values()) {
    if (t.shape.length > 1) t.data.forEach((v, i, a) => a[i] = v * 8);
  }
  await writeModelFolder(dir, TEST_HPARAMS, weights);
  return dir;
}

/** A running server on 127.0.0.1 and a free port. */
export interface TestServer extends AsyncDisposable {
  /** `http://127.0.0.1:PORT/` */
  readonly url: string;
  readonly api: ApiServer;
  readonly http: Deno.HttpServer;
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
  const stop = new AbortController();
  const { promise, resolve } = Promise.withResolvers<string>();
  const http = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: stop.signal,
    onListen: ({ port }) => resolve(`http://127.0.0.1:${port}/`),
  }, api.fetch);
  const url = await promise;
  return {
    url,
    api,
    http,
    async [Symbol.asyncDispose]() {
      api.shutdown();
      stop.abort();
      await http.finished;
    },
  };
}

/**
 * `model` with each generated token held back `ms` milliseconds, so that a test can act
 * while a generation runs.
 */
export function slowModel(model: CompletionModel, ms: number): CompletionModel {
  return {
    tokenizer: model.tokenizer,
    hparams: model.hparams,
    async *generateSteps(ids, options) {
      for await (const step of model.generateSteps(ids, options)) {
        await new Promise((resolve) => setTimeout(resolve, ms));
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
