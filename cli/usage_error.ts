/**
 * The command-line tools' error: a bad flag or value, said in flags. The library never
 * throws it; the tools turn its errors into this one where a flag is to blame.
 *
 * @module
 */

/** A bad command-line flag or value; `runMain` prints its message alone and exits 1. */
export class UsageError extends Error {
  /** `"UsageError"`, as printed before the message. */
  override name = "UsageError";
}
