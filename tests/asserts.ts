/**
 * The assertions the tests use, in one place: today `node:assert/strict`, so that moving to
 * `@std/assert` later changes this file only.
 */
import assert from "node:assert/strict";

/** Any error class, whatever its constructor takes. */
// deno-lint-ignore no-explicit-any
type ErrorClassType = new (...args: any[]) => Error;

export function assertEquals<T>(actual: T, expected: T, msg?: string): void {
  assert.deepStrictEqual(actual, expected, msg);
}

export function assert_(condition: unknown, msg?: string): asserts condition {
  assert.ok(condition, msg);
}

export { assert_ as assert };

/** Asserts that `fn` throws an instance of `ErrorClass` whose message includes `includes`. */
export function assertThrows(
  fn: () => unknown,
  ErrorClass: ErrorClassType = Error,
  includes = "",
): Error {
  try {
    fn();
  } catch (e) {
    return checkError(e, ErrorClass, includes);
  }
  throw new assert.AssertionError({ message: `expected ${ErrorClass.name} to be thrown` });
}

/** Async form of {@linkcode assertThrows}. */
export async function assertRejects(
  fn: () => Promise<unknown>,
  ErrorClass: ErrorClassType = Error,
  includes = "",
): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    return checkError(e, ErrorClass, includes);
  }
  throw new assert.AssertionError({ message: `expected ${ErrorClass.name} to be rejected` });
}

function checkError(
  e: unknown,
  ErrorClass: ErrorClassType,
  includes: string,
): Error {
  assert.ok(e instanceof ErrorClass, `expected ${ErrorClass.name}, got ${e}`);
  assert.ok(
    e.message.includes(includes),
    `expected message to include "${includes}", got "${e.message}"`,
  );
  return e;
}
