/**
 * The access log: one entry per request, written when its answer has ended (a stream's
 * last event, or the client going away), as a line of text for people or a JSON object
 * per line for machines.
 *
 * @module
 */

/** One request, as the access log records it. */
export interface AccessLogEntry {
  /** When the request came, as an ISO 8601 time. */
  readonly time: string;
  /** The client's address, when known. */
  readonly remote: string | null;
  /** The HTTP method. */
  readonly method: string;
  /** The URL's path, without its query. */
  readonly path: string;
  /** The HTTP status sent (499: the client went away before an answer could be sent). */
  readonly status: number;
  /** Milliseconds from the request's arrival to its answer's end. */
  readonly ms: number;
  /** For a generation: the prompts' tokens. */
  readonly promptTokens: number | null;
  /** For a generation: the tokens generated. */
  readonly completionTokens: number | null;
  /** For a generation: the prompt tokens found in the KV cache (usage's `cached_tokens`). */
  readonly cachedTokens: number | null;
  /** Why the request failed or ended early, in one line; null when it did not. */
  readonly error: string | null;
}

/** How log lines are written: `text` for people, `json` for machines (one object a line). */
export type LogFormat = "text" | "json";

/** The values `--log_format` takes. */
export const LOG_FORMATS: readonly LogFormat[] = ["text", "json"];

/**
 * One log line for `entry`, without its newline.
 *
 * @example
 * ```ts
 * import { formatAccessLog } from "./access_log.ts";
 * const line = formatAccessLog({
 *   time: "2025-01-01T00:00:00.000Z", remote: "127.0.0.1", method: "POST",
 *   path: "/v1/completions", status: 200, ms: 41, promptTokens: 5,
 *   completionTokens: 16, cachedTokens: 4, error: null,
 * }, "text");
 * if (line !== "2025-01-01T00:00:00.000Z 127.0.0.1 POST /v1/completions 200 41ms prompt=5 completion=16 cached=4") {
 *   throw new Error(line);
 * }
 * ```
 */
export function formatAccessLog(entry: AccessLogEntry, format: LogFormat): string {
  if (format === "json") {
    return JSON.stringify({
      time: entry.time,
      remote: entry.remote,
      method: entry.method,
      path: entry.path,
      status: entry.status,
      ms: entry.ms,
      prompt_tokens: entry.promptTokens,
      completion_tokens: entry.completionTokens,
      cached_tokens: entry.cachedTokens,
      error: entry.error,
    });
  }
  const parts = [
    entry.time,
    entry.remote ?? "-",
    entry.method,
    entry.path,
    String(entry.status),
    `${entry.ms}ms`,
  ];
  if (entry.promptTokens !== null) parts.push(`prompt=${entry.promptTokens}`);
  if (entry.completionTokens !== null) parts.push(`completion=${entry.completionTokens}`);
  if (entry.cachedTokens !== null) parts.push(`cached=${entry.cachedTokens}`);
  if (entry.error !== null) parts.push(`error=${JSON.stringify(entry.error)}`);
  return parts.join(" ");
}
