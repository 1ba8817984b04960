/**
 * Errors a user can act on. The CLI prints their message alone, on one line, and exits
 * with code 1; any other error is a bug and keeps its stack trace.
 */

/** A model file that is missing, truncated, corrupt, or holds the wrong names or shapes. */
export class ModelFileError extends Error {
  /** `"ModelFileError"`, as printed before the message. */
  override name = "ModelFileError";
}

/** A download that could not complete: offline, a bad status, a short or dropped body. */
export class DownloadError extends Error {
  /** `"DownloadError"`, as printed before the message. */
  override name = "DownloadError";
}

/**
 * A backend that cannot run the model as asked: the model, its KV cache and activations
 * do not fit its memory, or its device is missing or lost. The message names the backend
 * and the fix (a smaller model, fewer slots, another backend).
 */
export class BackendError extends Error {
  /** `"BackendError"`, as printed before the message. */
  override name = "BackendError";
}

/** Whether `e` is an error the user caused and can fix, so a one-line message suffices. */
export function isUserError(e: unknown): e is Error {
  return e instanceof ModelFileError || e instanceof DownloadError || e instanceof BackendError;
}
