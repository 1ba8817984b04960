/**
 * The tolerance checks of the test suite:
 * - `assertClose`: every element must satisfy `|actual - expected| <= atol + rtol * |expected|`,
 *   the rule numpy's `allclose` uses;
 * - `assertNmse`: the normalised mean squared error of the whole array must be at most a
 *   limit, the measure ggml's `test-backend-ops` holds every backend to.
 *
 * On failure the message names the worst element, its values and the limits.
 *
 * @module
 */

/** How close `assertClose` wants each element. */
export interface CloseOptions {
  /** Absolute tolerance. */
  atol?: number;
  /** Relative tolerance, scaled by `|expected|`. */
  rtol?: number;
  /** Prefix for the failure message. */
  msg?: string;
}

/** Throws a RangeError unless every element of `actual` is within the tolerance of `expected`'s. */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  options: CloseOptions = {},
): void {
  const { atol = 0, rtol = 0, msg = "" } = options;
  const prefix = msg ? `${msg}: ` : "";
  if (actual.length !== expected.length) {
    throw new RangeError(
      `${prefix}length ${actual.length} differs from expected length ${expected.length}`,
    );
  }
  let worst = -1;
  let worstExcess = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    if (Object.is(a, e)) continue;
    const excess = Math.abs(a - e) - (atol + rtol * Math.abs(e));
    // NaN compares false everywhere, so test for "not within" rather than "beyond".
    if (!(excess <= 0) && (worst < 0 || !(excess <= worstExcess))) {
      worst = i;
      worstExcess = excess;
    }
  }
  if (worst >= 0) {
    throw new RangeError(
      `${prefix}element ${worst} is ${actual[worst]}, expected ${expected[worst]} ` +
        `(|diff| ${
          Math.abs(actual[worst] - expected[worst])
        } > atol ${atol} + rtol ${rtol} * |expected|)`,
    );
  }
}

/**
 * The normalised mean squared error of `actual` against `expected`: Σ(a − b)² / Σb², as
 * ggml's `test-backend-ops` compares a backend's output with the CPU's. It is 0 for equal
 * arrays and about ε² for values that each differ by a relative ε, whatever their scale.
 * Elements that are the same (`Object.is`, so NaN and infinities included) add nothing to
 * the sum of differences. An all-zero `expected` gives 0 if `actual` equals it, else
 * Infinity; a NaN anywhere else gives NaN.
 *
 * @example
 * ```ts
 * import { nmse } from "./assert_close.ts";
 * if (nmse([3, 5], [3, 4]) !== 1 / 25 || nmse([3, 4], [3, 4]) !== 0) throw new Error();
 * ```
 */
export function nmse(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) {
    throw new RangeError(
      `Cannot compare arrays of lengths ${actual.length} and ${expected.length}`,
    );
  }
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < actual.length; i++) {
    const a = actual[i];
    const e = expected[i];
    norm += e * e;
    if (!Object.is(a, e)) diff += (a - e) * (a - e);
  }
  if (norm === 0) return diff === 0 ? 0 : diff > 0 ? Infinity : NaN;
  return diff / norm;
}

/**
 * Throws a RangeError unless `nmse(actual, expected) <= limit` and `expected` is finite
 * (a normalised error against NaN or infinity means nothing). The message starts with
 * `what`, gives the error and the limit, and names the element that differs most.
 */
export function assertNmse(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  limit: number,
  what: string,
): void {
  if (actual.length !== expected.length) {
    throw new RangeError(
      `${what}: length ${actual.length} differs from expected length ${expected.length}`,
    );
  }
  for (let i = 0; i < expected.length; i++) {
    if (!Number.isFinite(expected[i])) {
      throw new RangeError(`${what}: expected element ${i} is ${expected[i]}, not a finite number`);
    }
  }
  const error = nmse(actual, expected);
  if (error <= limit) return;
  let worst = 0;
  let worstDiff = -1;
  for (let i = 0; i < actual.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    // NaN compares false everywhere: a NaN element is the worst one.
    if (!(d <= worstDiff)) {
      worst = i;
      worstDiff = d;
      if (Number.isNaN(d)) break;
    }
  }
  throw new RangeError(
    `${what}: normalised mean squared error ${error} > limit ${limit} ` +
      `(worst element ${worst} is ${actual[worst]}, expected ${expected[worst]})`,
  );
}
