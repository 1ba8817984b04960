/**
 * `deno task serve`: GPT-2 behind OpenAI's completions and chat APIs, with a page to try it
 * in, an access log on stderr and Prometheus metrics.
 *
 *   deno task serve --model_name=124M --port=8080
 *
 * @module
 */
import { describeFlags, type FlagSpec, parseCommandLine } from "./flags.ts";
import { runMain } from "./run_main.ts";
import { loadModel } from "../runtime/generate/model.ts";
import { UsageError } from "./usage_error.ts";
import { loadNotes, MODEL_FLAGS, modelOptions } from "./model_flags.ts";
import { ApiServer } from "../runtime/serve/server.ts";
import { loadStaticFiles } from "../runtime/serve/static_files.ts";
import { DEFAULT_BODY_LIMIT, DEFAULT_BODY_TIMEOUT_MS } from "../runtime/serve/json_body.ts";
import { formatAccessLog, LOG_FORMATS, type LogFormat } from "../runtime/serve/access_log.ts";

const FLAGS = {
  models_dir: { type: "string", default: "models", help: "folder holding the model folders" },
  model_name: {
    type: "string",
    default: "124M",
    help: "which model to serve: a folder or .gguf file in models_dir; also its id in the API",
  },
  host: {
    type: "string",
    default: "127.0.0.1",
    help: "address to listen on; 0.0.0.0 opens it to the network",
  },
  port: { type: "int", default: 8080, help: "port to listen on; 0 picks a free one" },
  slots: { type: "int", default: 4, help: "sequences decoded together in one pass per step" },
  queue: {
    type: "int",
    help: "sequences that may wait for a slot before requests get a 503 (default 4 × slots)",
  },
  api_key: {
    type: "string",
    help: "when set, requests must send Authorization: Bearer KEY (the page and /health need none)",
    formerly: "api-key",
  },
  body_limit: {
    type: "int",
    default: DEFAULT_BODY_LIMIT,
    help: "largest request body in bytes; a larger one gets a 413",
  },
  body_timeout: {
    type: "float",
    default: DEFAULT_BODY_TIMEOUT_MS / 1000,
    help: "seconds a request's body may take to arrive; a slower one gets a 408",
  },
  log_format: {
    type: "string",
    default: "text",
    help: "the access log on stderr, one line per request: text, or json (one object a line)",
  },
  ...MODEL_FLAGS,
} satisfies Record<string, FlagSpec>;

/** The text `--help` prints. */
export const USAGE = `usage: deno task serve [flags]

Serves a GPT-2 model over HTTP: OpenAI's completions and chat APIs (POST /v1/completions,
POST /v1/chat/completions, streaming or not), GET /v1/models, GET /health, GET /metrics
(Prometheus), POST /tokenize, POST /detokenize, and a page to try it in at /, which runs
the model on the server or in the browser tab (from the model's files, served at
/models/<model_name>/). Each request is one line on stderr. Ctrl-C or SIGTERM stops it;
streams still running end with an error event.

flags:
${describeFlags(FLAGS)}`;

/** Runs the server until SIGINT or SIGTERM; `onListen` gets its URL (for tests). */
export async function main(args: string[], onListen?: (url: string) => void): Promise<number> {
  const flags = parseCommandLine(args, FLAGS, USAGE);
  if (!flags) return 0;
  const { port, slots, body_limit } = flags;
  if (!(port! >= 0 && port! <= 65535)) {
    throw new UsageError(`--port must be in [0, 65535], got ${port}`);
  }
  if (!(slots! >= 1)) throw new UsageError(`--slots must be at least 1, got ${slots}`);
  const queue = flags.queue ?? 4 * slots!;
  if (!(queue >= 0)) throw new UsageError(`--queue must be at least 0, got ${queue}`);
  if (!(body_limit! >= 1024)) {
    throw new UsageError(`--body_limit must be at least 1024 bytes, got ${body_limit}`);
  }
  const bodyTimeout = flags.body_timeout!;
  if (!(bodyTimeout > 0)) {
    throw new UsageError(`--body_timeout must be more than 0 seconds, got ${bodyTimeout}`);
  }
  if (flags.api_key === "") throw new UsageError("--api_key must not be empty");
  const logFormat = flags.log_format as LogFormat;
  if (!LOG_FORMATS.includes(logFormat)) {
    throw new UsageError(
      `Unknown --log_format "${flags.log_format}": choose one of ${LOG_FORMATS.join(", ")}`,
    );
  }
  const modelDir = `${flags.models_dir}/${flags.model_name}`;
  using model = await loadModel(modelDir, {
    ...modelOptions(flags),
    slots,
  });
  for (const note of loadNotes(flags, model)) console.error(note);
  const api = new ApiServer(model, {
    modelId: flags.model_name,
    slots: slots!,
    queue,
    apiKey: flags.api_key,
    bodyLimit: body_limit,
    bodyTimeout: bodyTimeout * 1000,
    staticFiles: await loadStaticFiles(),
    modelDir,
    onRequest: (entry) => console.error(formatAccessLog(entry, logFormat)),
  });
  const stop = new AbortController();
  const server = listen(api, flags.host, port!, stop.signal, (url) => {
    console.log(`Serving ${flags.model_name} on ${url} (Ctrl-C stops)`);
    onListen?.(url);
  });
  let signals = 0;
  const onSignal = () => {
    if (++signals > 1) Deno.exit(130); // a second Ctrl-C does not wait
    console.log("Stopping: ending the requests in flight");
    api.shutdown();
    // The streams write their error event before the connections close.
    api.drained().then(() => stop.abort());
  };
  Deno.addSignalListener("SIGINT", onSignal);
  Deno.addSignalListener("SIGTERM", onSignal);
  try {
    await server.finished;
  } finally {
    Deno.removeSignalListener("SIGINT", onSignal);
    Deno.removeSignalListener("SIGTERM", onSignal);
  }
  return 0;
}

/** Starts `Deno.serve` for `api` (it binds at once); a taken port is a UsageError. */
function listen(
  api: ApiServer,
  hostname: string,
  port: number,
  signal: AbortSignal,
  onListen: (url: string) => void,
): Deno.HttpServer {
  try {
    return Deno.serve({
      hostname,
      port,
      signal,
      onListen: (addr) => {
        const host = addr.hostname.includes(":") ? `[${addr.hostname}]` : addr.hostname;
        onListen(`http://${host}:${addr.port}/`);
      },
      onError: (e) => {
        console.error("Request failed:", e);
        return new Response("Internal server error", { status: 500 });
      },
    }, api.fetch);
  } catch (e) {
    if (e instanceof Deno.errors.AddrInUse) {
      throw new UsageError(`Port ${port} on ${hostname} is in use: pick another with --port`);
    }
    if (e instanceof Deno.errors.AddrNotAvailable || e instanceof TypeError) {
      throw new UsageError(`Cannot listen on ${hostname}: ${(e as Error).message}`);
    }
    throw e;
  }
}

if (import.meta.main) runMain(() => main(Deno.args));
