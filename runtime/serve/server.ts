/**
 * The HTTP API over a model: OpenAI's completions and chat completions APIs
 * (`POST /v1/completions`, `POST /v1/chat/completions`, streaming or not), `GET /v1/models`,
 * `GET /health`, `GET /metrics` (Prometheus), llama.cpp's `POST /tokenize` and
 * `POST /detokenize`, and the page at `GET /`. Every error is answered in OpenAI's shape;
 * nothing a client sends throws out of `fetch`, and every request ends in one access-log
 * entry. The generation itself is the library's: this file only checks requests, admits
 * them, and writes answers.
 *
 * @module
 */
import { timingSafeEqual } from "node:crypto";
import type { AccessLogEntry } from "./access_log.ts";
import { type Answer, collectAnswer, streamAnswer, Usage } from "./answer.ts";
import { ApiError, errorResponse, invalidField, jsonResponse } from "./api_error.ts";
import { chatFormat } from "./chat_format.ts";
import { parseChatRequest } from "./chat_request.ts";
import { type CompletionModel, generateChoice } from "./completion.ts";
import { completionFormat } from "./completion_format.ts";
import { parseCompletionRequest } from "./completion_request.ts";
import { DEFAULT_BODY_LIMIT, DEFAULT_BODY_TIMEOUT_MS, readJsonBody } from "./json_body.ts";
import { type LoadGauges, Metrics, METRICS_CONTENT_TYPE } from "./metrics.ts";
import type { Endpoint } from "./request_fields.ts";
import type { StaticFile } from "./static_files.ts";
import { fileResponse } from "./file_response.ts";

/** How an `ApiServer` behaves. */
export interface ApiServerOptions {
  /** The model's id in requests and in `/v1/models`, such as `"124M"`. */
  modelId: string;
  /** Sequences that decode at once (the model's slots). */
  slots: number;
  /** Sequences that may wait for a slot; a request beyond them gets a 503 (default 4 × slots). */
  queue?: number;
  /** When set, every API request must send `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** The largest request body in bytes (default 1 MiB); a larger one gets a 413. */
  bodyLimit?: number;
  /** Milliseconds a request's body may take to arrive (default 30 s); a later one gets a 408. */
  bodyTimeout?: number;
  /** The largest `n` (default 8). */
  maxChoices?: number;
  /** The most prompts one completions request may batch (default 16). */
  maxPrompts?: number;
  /**
   * Called once per request when its answer has ended (a stream's last event, or the
   * client going away): what the access log writes.
   */
  onRequest?: (entry: AccessLogEntry) => void;
  /** The page's files by URL path (`loadStaticFiles()`); none: `GET /` is a 404. */
  staticFiles?: Map<string, StaticFile>;
  /**
   * The model's folder on disk, served at `/models/<modelId>/` (with ranges and ETags) so
   * that the page can run the model in the tab; none: those paths are a 404.
   */
  modelDir?: string;
}

/**
 * Headers that make the page cross-origin isolated, so that its workers share memory
 * (threads in the tab), with the wasm compilation its scripts need allowed.
 */
export const ISOLATION_HEADERS: Readonly<Record<string, string>> = {
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-embedder-policy": "require-corp",
  "cross-origin-resource-policy": "same-origin",
};

/** Routes and the methods they take. */
const ROUTES: Record<string, string[]> = {
  "/v1/completions": ["POST"],
  "/v1/chat/completions": ["POST"],
  "/metrics": ["GET"],
  "/v1/models": ["GET"],
  "/health": ["GET"],
  "/tokenize": ["POST"],
  "/detokenize": ["POST"],
};

/** Paths that need no API key: the page and the health check. */
const PUBLIC = new Set(["/", "/app.js", "/style.css", "/health"]);

const encoder = new TextEncoder();

/** The error streams get when the server shuts down while they run. */
export class ShutdownError extends ApiError {
  /** A 503 whose code is `server_shutdown`. */
  constructor() {
    super(503, "The server is shutting down", { type: "server_error", code: "server_shutdown" });
  }
}

/**
 * Answers HTTP requests for `model`. Hand its `fetch` to `Deno.serve`; `shutdown()` ends
 * the completions in flight (streams get an error event) before the HTTP server stops.
 */
export class ApiServer {
  /** The options it was made with, the defaults filled in. */
  readonly options:
    & Required<Omit<ApiServerOptions, "apiKey" | "staticFiles" | "modelDir" | "onRequest">>
    & ApiServerOptions;
  /** Sequences admitted and not yet finished (decoding or waiting for a slot). */
  #inFlight = 0;
  /** The completions running, to abort on shutdown. */
  readonly #running = new Set<AbortController>();
  #closing = false;
  readonly #created = Math.floor(Date.now() / 1000);
  readonly #metrics = new Metrics();
  /** HTTP requests whose answer has not ended. */
  #requestsInFlight = 0;

  /** A server for `model`; `options.modelId` and `options.slots` are required. */
  constructor(readonly model: CompletionModel, options: ApiServerOptions) {
    this.options = {
      queue: 4 * options.slots,
      bodyLimit: DEFAULT_BODY_LIMIT,
      bodyTimeout: DEFAULT_BODY_TIMEOUT_MS,
      maxChoices: 8,
      maxPrompts: 16,
      ...options,
    };
  }

  /** Sequences admitted and not yet finished. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /**
   * Answers one request; never throws. `info` (from `Deno.serve`) gives the access log the
   * client's address.
   */
  fetch = async (request: Request, info?: Deno.ServeHandlerInfo): Promise<Response> => {
    // Read now: a request's fields cannot be read once its connection has closed.
    const remote = (info?.remoteAddr as Partial<Deno.NetAddr> | undefined)?.hostname ?? null;
    const record: RequestRecord = {
      start: performance.now(),
      time: new Date().toISOString(),
      remote,
      method: request.method,
      path: new URL(request.url).pathname,
      error: null,
    };
    this.#requestsInFlight++;
    let response: Response;
    try {
      response = await this.#route(request, record);
    } catch (e) {
      // A server fault is shown whole; a client's mistake is its log line alone.
      if (!(e instanceof ApiError)) console.error("Request failed:", e);
      record.error = e instanceof ApiError ? e.message : "The server failed to process the request";
      response = errorResponse(e);
    }
    const finish = () => this.#finish(response.status, record);
    if (record.ended) record.ended.then(finish);
    else finish();
    return response;
  };

  /** Ends every completion in flight with a `ShutdownError`; new ones are refused. */
  shutdown(): void {
    this.#closing = true;
    for (const c of this.#running) c.abort(new ShutdownError());
  }

  /**
   * Resolves once no completion is in flight (their streams have written their last
   * event), or after `timeoutMs`: wait for it before closing the connections.
   */
  async drained(timeoutMs = 2000): Promise<void> {
    const end = performance.now() + timeoutMs;
    while (this.#running.size > 0 && performance.now() < end) {
      await new Promise((resolve) => setTimeout(resolve, 10));
    }
  }

  async #route(request: Request, record: RequestRecord): Promise<Response> {
    const { pathname } = new URL(request.url);
    const file = this.options.staticFiles?.get(pathname);
    if (file) {
      if (request.method !== "GET" && request.method !== "HEAD") {
        throw methodNotAllowed(request.method, pathname, ["GET", "HEAD"]);
      }
      return new Response(request.method === "HEAD" ? null : file.body, {
        headers: {
          "content-type": file.type,
          "cache-control": "no-cache",
          "content-security-policy": "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'",
          ...ISOLATION_HEADERS,
        },
      });
    }
    const modelPrefix = `/models/${encodeURIComponent(this.options.modelId)}/`;
    if (this.options.modelDir !== undefined && pathname.startsWith(modelPrefix)) {
      return await this.#modelFile(request, decodeURIComponent(pathname.slice(modelPrefix.length)));
    }
    const methods = ROUTES[pathname] ?? (pathname.startsWith("/v1/models/") ? ["GET"] : null);
    if (!methods) {
      throw new ApiError(
        404,
        `Unknown path ${pathname}: see /v1/models, /v1/completions, /v1/chat/completions`,
        {
          code: "not_found",
        },
      );
    }
    if (!methods.includes(request.method)) {
      throw methodNotAllowed(request.method, pathname, methods);
    }
    if (!PUBLIC.has(pathname)) this.#checkKey(request);
    switch (pathname) {
      case "/health":
        return jsonResponse({
          status: "ok",
          sequences_in_flight: this.#inFlight,
          slots: this.options.slots,
        });
      case "/v1/models":
        return jsonResponse({ object: "list", data: [this.#modelObject()] });
      case "/v1/completions":
        return await this.#generation(request, record, "completions");
      case "/v1/chat/completions":
        return await this.#generation(request, record, "chat");
      case "/metrics":
        return new Response(this.#metrics.render(this.#load()), {
          headers: { "content-type": METRICS_CONTENT_TYPE },
        });
      case "/tokenize":
        return await this.#tokenize(request);
      case "/detokenize":
        return await this.#detokenize(request);
    }
    const id = decodeURIComponent(pathname.slice("/v1/models/".length));
    if (id !== this.options.modelId) {
      throw new ApiError(404, `The model "${id}" does not exist`, { code: "model_not_found" });
    }
    return jsonResponse(this.#modelObject());
  }

  /** A file of the model's folder, for the page to run the model in the tab. */
  async #modelFile(request: Request, name: string): Promise<Response> {
    if (request.method !== "GET" && request.method !== "HEAD") {
      throw methodNotAllowed(request.method, new URL(request.url).pathname, ["GET", "HEAD"]);
    }
    this.#checkKey(request);
    const response = name === "" || /[\\/]|^\.\.?$/.test(name)
      ? undefined
      : await fileResponse(request, `${this.options.modelDir}/${name}`, {
        "content-type": "application/octet-stream",
        "cache-control": "no-cache",
        ...ISOLATION_HEADERS,
      });
    if (response === undefined) {
      throw new ApiError(404, `The model "${this.options.modelId}" has no file "${name}"`, {
        code: "not_found",
      });
    }
    return response;
  }

  #modelObject() {
    return {
      id: this.options.modelId,
      object: "model",
      created: this.#created,
      owned_by: "openai",
    };
  }

  #checkKey(request: Request): void {
    const key = this.options.apiKey;
    if (key === undefined) return;
    const header = request.headers.get("authorization") ?? "";
    const given = header.startsWith("Bearer ") ? header.slice(7).trim() : "";
    const a = encoder.encode(given);
    const b = encoder.encode(key);
    if (given === "" || a.length !== b.length || !timingSafeEqual(a, b)) {
      throw new ApiError(
        401,
        given === ""
          ? "No API key given: send the header Authorization: Bearer <key>"
          : "The API key is wrong: send the key the server was started with",
        { code: "invalid_api_key", headers: { "www-authenticate": "Bearer" } },
      );
    }
  }

  async #tokenize(request: Request): Promise<Response> {
    const body = await this.#jsonObject(request);
    if (typeof body.content !== "string") {
      throw invalidField("content", "content must be a string: the text to tokenize");
    }
    if (body.with_pieces !== undefined && typeof body.with_pieces !== "boolean") {
      throw invalidField("with_pieces", "with_pieces must be a boolean");
    }
    const { tokenizer } = this.model;
    const ids = tokenizer.encode(body.content);
    const tokens = body.with_pieces
      ? ids.map((id) => ({ id, piece: tokenizer.decode([id]) }))
      : ids;
    return jsonResponse({ tokens });
  }

  async #detokenize(request: Request): Promise<Response> {
    const body = await this.#jsonObject(request);
    const { tokenizer } = this.model;
    const tokens = body.tokens;
    if (
      !Array.isArray(tokens) ||
      !tokens.every((t) => Number.isInteger(t) && t >= 0 && t < tokenizer.vocabSize)
    ) {
      throw invalidField(
        "tokens",
        `tokens must be an array of token ids, integers in [0, ${tokenizer.vocabSize})`,
      );
    }
    return jsonResponse({ content: tokenizer.decode(tokens) });
  }

  async #jsonObject(request: Request): Promise<Record<string, unknown>> {
    const body = await readJsonBody(request, this.options.bodyLimit, this.options.bodyTimeout);
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw new ApiError(400, "The request body must be a JSON object", { code: "invalid_json" });
    }
    return body as Record<string, unknown>;
  }

  async #generation(
    request: Request,
    record: RequestRecord,
    endpoint: Endpoint,
  ): Promise<Response> {
    const body = await readJsonBody(request, this.options.bodyLimit, this.options.bodyTimeout);
    const { tokenizer, hparams } = this.model;
    const limits = {
      modelId: this.options.modelId,
      contextLength: hparams.n_ctx,
      vocabSize: hparams.n_vocab,
      maxChoices: this.options.maxChoices,
      maxPrompts: this.options.maxPrompts,
      encode: (text: string) => tokenizer.encode(text),
      decode: (ids: readonly number[]) => tokenizer.decode(ids),
      promptLogprobs: this.model.promptLogprobs !== undefined,
    };
    const req = endpoint === "chat"
      ? parseChatRequest(body, limits)
      : parseCompletionRequest(body, limits);
    if (this.#closing) throw new ShutdownError();
    // A request that fits no more goes away with a 503; one alone is always admitted.
    const sequences = req.prompts.length * req.n;
    const capacity = this.options.slots + this.options.queue;
    if (this.#inFlight > 0 && this.#inFlight + sequences > capacity) {
      throw new ApiError(
        503,
        `The server is busy: ${this.#inFlight} sequences are running or waiting, retry later`,
        { type: "server_error", code: "overloaded", headers: { "retry-after": "1" } },
      );
    }
    this.#inFlight += sequences;
    const controller = new AbortController();
    this.#running.add(controller);
    // The client going away (the connection closes) stops the generation at its next step.
    const onGone = () => controller.abort(new DOMException("Client disconnected", "AbortError"));
    request.signal.addEventListener("abort", onGone, { once: true });
    // It may have gone while its body was read: the signal fires no more.
    if (request.signal.aborted) onGone();
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      request.signal.removeEventListener("abort", onGone);
      this.#inFlight -= sequences;
      this.#running.delete(controller);
    };
    const usage = new Usage(req, this.#metrics);
    record.usage = usage;
    this.#metrics.prompt(usage.promptTokens);
    const format = endpoint === "chat" ? chatFormat(req, tokenizer) : completionFormat(req);
    const answer: Answer = {
      request: req,
      format,
      id: format.idPrefix + crypto.randomUUID().replaceAll("-", ""),
      created: Math.floor(Date.now() / 1000),
      choices: Array.from(
        { length: sequences },
        (_, i) => generateChoice(this.model, req, i, controller.signal),
      ),
      usage,
    };
    if (req.stream) {
      const ended = Promise.withResolvers<void>();
      record.ended = ended.promise;
      const events = streamAnswer(answer, controller.signal, (why) => {
        record.error = why;
        release();
        ended.resolve();
      });
      return new Response(events, {
        headers: {
          "content-type": "text/event-stream",
          "cache-control": "no-cache",
          "x-accel-buffering": "no",
        },
      });
    }
    try {
      return jsonResponse(await collectAnswer(answer));
    } catch (e) {
      controller.abort(e); // the other choices stop at their next step
      const reason = controller.signal.reason;
      if (reason instanceof ApiError) throw reason;
      // Nobody reads the answer to a client that went away.
      if (request.signal.aborted) {
        record.error = "client disconnected";
        return new Response(null, { status: 499 });
      }
      throw e;
    } finally {
      release();
    }
  }

  /** The moment's load, for `/metrics`. */
  #load(): LoadGauges {
    const { slots } = this.options;
    return {
      requestsInFlight: this.#requestsInFlight,
      sequencesInFlight: this.#inFlight,
      slotsBusy: this.model.slotsBusy,
      slots,
      queueLength: this.model.waiting,
    };
  }

  /** Writes `record`'s access-log entry and counts it, once its answer has ended. */
  #finish(status: number, record: RequestRecord): void {
    this.#requestsInFlight--;
    const ms = performance.now() - record.start;
    const { usage } = record;
    this.#metrics.request(status);
    if (usage) {
      const first = usage.firstTokenAt === undefined
        ? undefined
        : (usage.firstTokenAt - record.start) / 1000;
      this.#metrics.generation(ms / 1000, first);
    }
    this.options.onRequest?.({
      time: record.time,
      remote: record.remote,
      method: record.method,
      path: record.path,
      status,
      ms: Math.round(ms),
      promptTokens: usage?.promptTokens ?? null,
      completionTokens: usage?.completionTokens ?? null,
      cachedTokens: usage?.cachedTokens ?? null,
      error: record.error,
    });
  }
}

/** What the access log and the metrics learn of one request while it is answered. */
interface RequestRecord {
  /** `performance.now()` at its arrival. */
  readonly start: number;
  /** Its arrival as an ISO 8601 time. */
  readonly time: string;
  /** The client's address, when known. */
  readonly remote: string | null;
  readonly method: string;
  /** The URL's path. */
  readonly path: string;
  /** A generation's usage, counted as its tokens come. */
  usage?: Usage;
  /** Why it failed or ended early, in one line. */
  error: string | null;
  /** For a streamed answer: resolves when its last event is written or the client left. */
  ended?: Promise<void>;
}

function methodNotAllowed(method: string, path: string, allowed: string[]): ApiError {
  return new ApiError(405, `${path} takes ${allowed.join(" or ")}, not ${method}`, {
    code: "method_not_allowed",
    headers: { allow: allowed.join(", ") },
  });
}
