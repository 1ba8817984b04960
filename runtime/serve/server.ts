/**
 * The HTTP API over a model: OpenAI's completions API (`POST /v1/completions`, streaming
 * or not), `GET /v1/models`, `GET /health`, llama.cpp's `POST /tokenize` and
 * `POST /detokenize`, and the page at `GET /`. Every error is answered in OpenAI's shape;
 * nothing a client sends throws out of `fetch`. The generation itself is the library's:
 * this file only checks requests, admits them, and writes answers.
 *
 * @module
 */
import { timingSafeEqual } from "node:crypto";
import { ApiError, errorResponse, invalidField, jsonResponse } from "./api_error.ts";
import {
  appendLogprobs,
  type ChoiceStep,
  type CompletionModel,
  type FinishReason,
  generateChoice,
  type LogprobsObject,
} from "./completion.ts";
import { type CompletionRequest, parseCompletionRequest } from "./completion_request.ts";
import { DEFAULT_BODY_LIMIT, readJsonBody } from "./json_body.ts";
import { merge } from "./merge.ts";
import type { StaticFile } from "./static_files.ts";

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
  /** The largest `n` (default 8). */
  maxChoices?: number;
  /** The page's files by URL path (`loadStaticFiles()`); none: `GET /` is a 404. */
  staticFiles?: Map<string, StaticFile>;
}

/** Routes and the methods they take. */
const ROUTES: Record<string, string[]> = {
  "/v1/completions": ["POST"],
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
  constructor() {
    super(503, "The server is shutting down", { type: "server_error", code: "server_shutdown" });
  }
}

/**
 * Answers HTTP requests for `model`. Hand its `fetch` to `Deno.serve`; `shutdown()` ends
 * the completions in flight (streams get an error event) before the HTTP server stops.
 */
export class ApiServer {
  readonly options: Required<Omit<ApiServerOptions, "apiKey" | "staticFiles">> & ApiServerOptions;
  /** Sequences admitted and not yet finished (decoding or waiting for a slot). */
  #inFlight = 0;
  /** The completions running, to abort on shutdown. */
  readonly #running = new Set<AbortController>();
  #closing = false;
  readonly #created = Math.floor(Date.now() / 1000);

  constructor(readonly model: CompletionModel, options: ApiServerOptions) {
    this.options = {
      queue: 4 * options.slots,
      bodyLimit: DEFAULT_BODY_LIMIT,
      maxChoices: 8,
      ...options,
    };
  }

  /** Sequences admitted and not yet finished. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** Answers one request; never throws. */
  fetch = async (request: Request): Promise<Response> => {
    try {
      return await this.#route(request);
    } catch (e) {
      if (!(e instanceof ApiError)) console.error("Request failed:", e);
      return errorResponse(e);
    }
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

  async #route(request: Request): Promise<Response> {
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
          "content-security-policy": "default-src 'self'",
        },
      });
    }
    const methods = ROUTES[pathname] ?? (pathname.startsWith("/v1/models/") ? ["GET"] : null);
    if (!methods) {
      throw new ApiError(404, `Unknown path ${pathname}: see /v1/models, /v1/completions`, {
        code: "not_found",
      });
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
        return await this.#completions(request);
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
    const body = await readJsonBody(request, this.options.bodyLimit);
    if (typeof body !== "object" || body === null || Array.isArray(body)) {
      throw new ApiError(400, "The request body must be a JSON object", { code: "invalid_json" });
    }
    return body as Record<string, unknown>;
  }

  async #completions(request: Request): Promise<Response> {
    const body = await readJsonBody(request, this.options.bodyLimit);
    const { tokenizer, hparams } = this.model;
    const req = parseCompletionRequest(body, {
      modelId: this.options.modelId,
      contextLength: hparams.n_ctx,
      vocabSize: hparams.n_vocab,
      maxChoices: this.options.maxChoices,
      encode: (text) => tokenizer.encode(text),
      decode: (ids) => tokenizer.decode(ids),
      promptLogprobs: this.model.promptLogprobs !== undefined,
    });
    if (this.#closing) throw new ShutdownError();
    // A request that fits no more goes away with a 503; one alone is always admitted.
    const capacity = this.options.slots + this.options.queue;
    if (this.#inFlight > 0 && this.#inFlight + req.n > capacity) {
      throw new ApiError(
        503,
        `The server is busy: ${this.#inFlight} sequences are running or waiting, retry later`,
        { type: "server_error", code: "overloaded", headers: { "retry-after": "1" } },
      );
    }
    this.#inFlight += req.n;
    const controller = new AbortController();
    this.#running.add(controller);
    let released = false;
    const release = () => {
      if (released) return;
      released = true;
      this.#inFlight -= req.n;
      this.#running.delete(controller);
    };
    // The client going away (the connection closes) stops the generation at its next step.
    const onGone = () => controller.abort(new DOMException("Client disconnected", "AbortError"));
    request.signal.addEventListener("abort", onGone, { once: true });
    const cleanup = () => {
      request.signal.removeEventListener("abort", onGone);
      release();
    };
    const id = `cmpl-${crypto.randomUUID().replaceAll("-", "")}`;
    const created = Math.floor(Date.now() / 1000);
    const choices = Array.from(
      { length: req.n },
      (_, i) => generateChoice(this.model, req, i, controller.signal),
    );
    if (req.stream) return this.#stream(req, id, created, choices, controller, cleanup);
    try {
      return jsonResponse(await this.#collect(req, id, created, choices));
    } catch (e) {
      controller.abort(e); // the other choices stop at their next step
      const reason = controller.signal.reason;
      if (reason instanceof ApiError) throw reason;
      // Nobody reads the answer to a client that went away.
      if (request.signal.aborted) return new Response(null, { status: 499 });
      throw e;
    } finally {
      cleanup();
    }
  }

  /** The whole answer, once every choice has ended. */
  async #collect(
    req: CompletionRequest,
    id: string,
    created: number,
    choices: AsyncGenerator<ChoiceStep>[],
  ) {
    let completionTokens = 0;
    const cached = new CachedTokens();
    const results = await Promise.all(choices.map(async (steps, index) => {
      let text = "";
      let finish: FinishReason = "length";
      const logprobs: LogprobsObject | null = req.logprobs === null
        ? null
        : { tokens: [], token_logprobs: [], top_logprobs: [], text_offset: [] };
      for await (const step of steps) {
        text += step.text;
        completionTokens += step.tokens;
        cached.add(step);
        if (logprobs && step.logprobs) appendLogprobs(logprobs, step.logprobs);
        if (step.finishReason) finish = step.finishReason;
      }
      return { text, index, logprobs, finish_reason: finish };
    }));
    const promptTokens = req.promptIds.length;
    return {
      id,
      object: "text_completion",
      created,
      model: req.model,
      choices: results,
      usage: usage(promptTokens, completionTokens, cached.count),
    };
  }

  /** Server-sent events: one per step of each choice, then `[DONE]`. */
  #stream(
    req: CompletionRequest,
    id: string,
    created: number,
    choices: AsyncGenerator<ChoiceStep>[],
    controller: AbortController,
    cleanup: () => void,
  ): Response {
    const event = (data: unknown) => encoder.encode(`data: ${JSON.stringify(data)}\n\n`);
    async function* events(): AsyncGenerator<Uint8Array> {
      let completionTokens = 0;
      const cached = new CachedTokens();
      try {
        for await (const step of merge(choices)) {
          completionTokens += step.tokens;
          cached.add(step);
          yield event({
            id,
            object: "text_completion",
            created,
            model: req.model,
            choices: [{
              text: step.text,
              index: step.index,
              logprobs: step.logprobs,
              finish_reason: step.finishReason,
            }],
          });
        }
        if (req.includeUsage) {
          const promptTokens = req.promptIds.length;
          yield event({
            id,
            object: "text_completion",
            created,
            model: req.model,
            choices: [],
            usage: usage(promptTokens, completionTokens, cached.count),
          });
        }
        yield encoder.encode("data: [DONE]\n\n");
      } catch (e) {
        // A client that went away reads nothing more; anyone else learns why it ended.
        if (controller.signal.aborted && !(controller.signal.reason instanceof ApiError)) return;
        const error = controller.signal.reason instanceof ApiError
          ? controller.signal.reason
          : e instanceof ApiError
          ? e
          : new ApiError(500, "Generation failed", { type: "server_error" });
        if (!(e instanceof ApiError) && !controller.signal.aborted) {
          console.error("Generation failed:", e);
        }
        yield event(error.toJSON());
      } finally {
        cleanup();
      }
    }
    const body = ReadableStream.from(events());
    return new Response(body, {
      headers: {
        "content-type": "text/event-stream",
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
      },
    });
  }
}

/** OpenAI's `usage`, with `prompt_tokens_details.cached_tokens` (prompt reuse). */
function usage(promptTokens: number, completionTokens: number, cachedTokens: number) {
  return {
    prompt_tokens: promptTokens,
    completion_tokens: completionTokens,
    total_tokens: promptTokens + completionTokens,
    prompt_tokens_details: { cached_tokens: cachedTokens },
  };
}

/** The prompt tokens every choice of a request found in the KV cache: the fewest of theirs. */
class CachedTokens {
  #fewest: number | undefined;
  add(step: ChoiceStep): void {
    if (step.cachedTokens === undefined) return;
    this.#fewest = Math.min(this.#fewest ?? Infinity, step.cachedTokens);
  }
  get count(): number {
    return this.#fewest ?? 0;
  }
}

function methodNotAllowed(method: string, path: string, allowed: string[]): ApiError {
  return new ApiError(405, `${path} takes ${allowed.join(" or ")}, not ${method}`, {
    code: "method_not_allowed",
    headers: { allow: allowed.join(", ") },
  });
}
