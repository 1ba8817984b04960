/**
 * The assertions the tests use, in one place: today `node:assert/strict`, so that moving to
 * `@std/assert` later changes this file only.
 */
import assert from "node:assert/strict";

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
  // deno-lint-ignore no-explicit-any
  ErrorClass: new (...args: any[]) => Error = Error,
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
  // deno-lint-ignore no-explicit-any
  ErrorClass: new (...args: any[]) => Error = Error,
  includes = "",
): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    return checkError(e, ErrorClass, includes);
  }
  throw new assert.AssertionError({ message: `expected ${ErrorClass.name} to be rejected` });
}

// deno-lint-ignore no-explicit-any
function checkError(
  e: unknown,
  ErrorClass: new (...args: any[]) => Error,
  includes: string,
): Error {
  assert.ok(e instanceof ErrorClass, `expected ${ErrorClass.name}, got ${e}`);
  assert.ok(
    e.message.includes(includes),
    `expected message to include "${includes}", got "${e.message}"`,
  );
  return e;
}
