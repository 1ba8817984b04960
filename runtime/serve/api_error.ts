/**
 * Errors as OpenAI's API shapes them: an HTTP status and
 * `{"error": {"message", "type", "param", "code"}}`, where `param` names the request
 * field at fault (or is null) and `code` is a short machine-readable reason (or null).
 *
 * @module
 */

/** What `ApiError` takes besides its status and message. */
export interface ApiErrorOptions {
  /** OpenAI's error type (default `"invalid_request_error"`). */
  type?: string;
  /** The request field at fault. */
  param?: string | null;
  /** A short machine-readable reason, such as `"invalid_api_key"`. */
  code?: string | null;
  /** Extra response headers, such as `Allow` or `Retry-After`. */
  headers?: Record<string, string>;
}

/** An error a request caused (or met), answered with `status` and OpenAI's error body. */
export class ApiError extends Error {
  /** `"ApiError"`. */
  override name = "ApiError";
  /** OpenAI's error type, such as `"invalid_request_error"`. */
  readonly type: string;
  /** The request field at fault, or null. */
  readonly param: string | null;
  /** A short machine-readable reason, or null. */
  readonly code: string | null;
  /** Extra response headers, such as `Allow` or `Retry-After`. */
  readonly headers: Record<string, string>;

  /** An error answered with HTTP `status` and `message` (one line, naming the field). */
  constructor(readonly status: number, message: string, options: ApiErrorOptions = {}) {
    super(message);
    this.type = options.type ?? "invalid_request_error";
    this.param = options.param ?? null;
    this.code = options.code ?? null;
    this.headers = options.headers ?? {};
  }

  /** The JSON body: `{"error": {"message", "type", "param", "code"}}`. */
  toJSON(): {
    error: { message: string; type: string; param: string | null; code: string | null };
  } {
    return {
      error: { message: this.message, type: this.type, param: this.param, code: this.code },
    };
  }
}

/** A 400 for request field `param`, with a message that names it. */
export function invalidField(param: string, message: string): ApiError {
  return new ApiError(400, message, { param, code: "invalid_value" });
}

/** A JSON response with `status`. */
export function jsonResponse(
  body: unknown,
  status = 200,
  headers: Record<string, string> = {},
): Response {
  return new Response(JSON.stringify(body), {
    status,
    headers: { "content-type": "application/json", ...headers },
  });
}

/**
 * The response for any error: an `ApiError` as itself, anything else as a 500 that does
 * not leak its details (the server logs them).
 */
export function errorResponse(e: unknown): Response {
  const error = e instanceof ApiError
    ? e
    : new ApiError(500, "The server failed to process the request", { type: "server_error" });
  return jsonResponse(error.toJSON(), error.status, error.headers);
}
