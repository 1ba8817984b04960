/**
 * Reading a request's JSON body within a size limit: a body that says (Content-Length) or
 * turns out (while streaming in) to be longer than the limit is refused with a 413
 * without reading the rest; a body that is not JSON, or cannot be read, is a 400; a body
 * that has not all come within the time limit is a 408, so that a stalled client does not
 * hold its connection; a client that closes its connection before the whole body has come
 * gets a 499 (nginx's "client closed request"), which only the access log sees.
 *
 * @module
 */
import { ApiError } from "./api_error.ts";

/** The default limit on request bodies: 1 MiB, far more than n_ctx tokens of text. */
export const DEFAULT_BODY_LIMIT = 1 << 20;

/** The default time a request's body may take to arrive: 30 s, as nginx's body timeout is 60. */
export const DEFAULT_BODY_TIMEOUT_MS = 30_000;

/**
 * The parsed JSON body of `request`.
 * @throws {ApiError} 413 for a body over `limit` bytes, 400 for one that is not JSON, 408
 *   for one not all there after `timeoutMs`, 499 for one the client stopped sending
 */
export async function readJsonBody(
  request: Request,
  limit: number,
  timeoutMs = DEFAULT_BODY_TIMEOUT_MS,
): Promise<unknown> {
  const tooLarge = () =>
    new ApiError(413, `The request body is larger than the limit of ${limit} bytes`, {
      code: "request_too_large",
    });
  const declared = Number(request.headers.get("content-length") ?? NaN);
  if (declared > limit) throw tooLarge();
  const chunks: Uint8Array[] = [];
  let size = 0;
  if (request.body) {
    const reader = request.body.getReader();
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      reader.cancel().catch(() => {});
    }, timeoutMs);
    try {
      while (true) {
        const { done, value } = await reader.read();
        if (timedOut) {
          throw new ApiError(
            408,
            `The request body did not arrive within ${timeoutMs / 1000} s: send the whole body ` +
              `at once`,
            { code: "request_timeout" },
          );
        }
        if (done) break;
        size += value.length;
        if (size > limit) throw tooLarge();
        chunks.push(value);
      }
    } catch (e) {
      throw e instanceof ApiError ? e : unreadable(e);
    } finally {
      clearTimeout(timer);
      reader.releaseLock();
    }
  }
  const bytes = new Uint8Array(size);
  let offset = 0;
  for (const c of chunks) {
    bytes.set(c, offset);
    offset += c.length;
  }
  let text: string;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new ApiError(400, "The request body is not valid UTF-8", { code: "invalid_json" });
  }
  if (text.trim() === "") {
    throw new ApiError(400, "The request body is empty: send a JSON object", {
      code: "invalid_json",
    });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ApiError(
      400,
      `The request body is not valid JSON (${(e as Error).message}): send a JSON object`,
      { code: "invalid_json" },
    );
  }
}

/** The error for a body whose reading failed: the connection went away, or the body was malformed. */
function unreadable(e: unknown): ApiError {
  if (
    e instanceof Deno.errors.BadResource || e instanceof Deno.errors.ConnectionReset ||
    e instanceof Deno.errors.BrokenPipe || e instanceof Deno.errors.UnexpectedEof ||
    e instanceof Deno.errors.Interrupted
  ) {
    return new ApiError(499, "The client closed the connection before sending the whole body", {
      code: "client_closed",
    });
  }
  return new ApiError(
    400,
    `The request body could not be read (${(e as Error)?.message ?? e}): send it whole`,
    { code: "invalid_body" },
  );
}
