/**
 * The one tolerance check of the test suite: every element must satisfy
 * `|actual - expected| <= atol + rtol * |expected|`, the rule numpy's `allclose` uses.
 * On failure the message names the worst element, its values and the limits.
 */
export interface CloseOptions {
  /** Absolute tolerance. */
  atol?: number;
  /** Relative tolerance, scaled by `|expected|`. */
  rtol?: number;
  /** Prefix for the failure message. */
  msg?: string;
}

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
