import { assert, assertEquals, assertThrows } from "./asserts.ts";
import { assertClose, assertNmse, nmse } from "./assert_close.ts";

Deno.test("assertClose() accepts equal arrays with zero tolerance", () => {
  assertClose([1, -2, 0.5], new Float32Array([1, -2, 0.5]));
});

Deno.test("assertClose() accepts differences within atol + rtol * |expected|", () => {
  assertClose([1.04], [1], { atol: 0.05 });
  assertClose([100.9], [100], { rtol: 0.01 });
  assertClose([100.6], [100], { atol: 0.1, rtol: 0.005 });
});

Deno.test("assertClose() rejects a difference just beyond the tolerance and names the element", () => {
  assertThrows(() => assertClose([0, 1.2], [0, 1], { atol: 0.1 }), RangeError, "element 1");
  assertThrows(() => assertClose([102], [100], { rtol: 0.01 }), RangeError, "rtol 0.01");
});

Deno.test("assertClose() reports the worst element", () => {
  assertThrows(() => assertClose([1.5, 3, 1.2], [1, 1, 1], { atol: 0.1 }), RangeError, "element 1");
});

Deno.test("assertClose() rejects NaN and infinities unless both sides match exactly", () => {
  assertThrows(() => assertClose([NaN], [0], { atol: 1 }), RangeError);
  assertThrows(() => assertClose([0], [NaN], { atol: 1 }), RangeError);
  assertThrows(() => assertClose([Infinity], [1e38], { rtol: 1 }), RangeError);
  assertClose([NaN, -Infinity], [NaN, -Infinity]);
});

Deno.test("assertClose() rejects arrays of different lengths", () => {
  assertThrows(() => assertClose([1, 2], [1]), RangeError, "length");
});

Deno.test("nmse() is Σ(a − b)² / Σb², zero for equal arrays and independent of scale", () => {
  assertEquals(nmse([3, 4], [3, 4]), 0);
  assertEquals(nmse([3, 5], [3, 4]), 1 / 25);
  assertEquals(nmse([0, 0], [3, 4]), 1);
  const tiny = 2 ** -70;
  assertEquals(nmse([3 * tiny, 5 * tiny], [3 * tiny, 4 * tiny]), 1 / 25);
  const expected = Float32Array.from({ length: 100 }, (_, i) => Math.sin(i) * 1000);
  const actual = expected.map((v) => v * (1 + 1e-3));
  assertClose([nmse(actual, expected)], [1e-6], { rtol: 1e-3 });
});

Deno.test("nmse() of an all-zero expected array is 0 only for an all-zero actual one", () => {
  assertEquals(nmse([0, 0], [0, 0]), 0);
  assertEquals(nmse([0, 1e-30], [0, 0]), Infinity);
  assertEquals(nmse([], []), 0);
});

Deno.test("nmse() is NaN when a NaN meets a number, and identical non-finite elements add nothing", () => {
  assert(Number.isNaN(nmse([NaN, 1], [1, 1])));
  assert(Number.isNaN(nmse([1, 1], [NaN, 1])));
  // A NaN in expected makes Σb² NaN, even where actual has the same NaN.
  assert(Number.isNaN(nmse([NaN, 1.5], [NaN, 1])));
  assertEquals(nmse([Infinity, 2], [Infinity, 2]), 0);
  assertThrows(() => nmse([1, 2], [1]), RangeError, "lengths 2 and 1");
});

Deno.test("assertNmse() accepts an error at the limit and rejects one just above it", () => {
  assertNmse([3, 5], [3, 4], 1 / 25, "at the limit");
  assertNmse(new Float32Array([1, 2]), [1, 2], 0, "equal");
  assertThrows(
    () => assertNmse([3, 5], [3, 4], 0.039, "conv1d"),
    RangeError,
    "conv1d: normalised mean squared error 0.04 > limit 0.039 (worst element 1 is 5, expected 4)",
  );
});

Deno.test("assertNmse() names the element that differs most", () => {
  assertThrows(
    () => assertNmse([1.1, 2.5, 3.2], [1, 2, 3], 1e-6, "layerNorm"),
    RangeError,
    "worst element 1 is 2.5, expected 2",
  );
});

Deno.test("assertNmse() rejects NaN in actual, any non-finite expected value, and a length mismatch", () => {
  assertThrows(
    () => assertNmse([1, NaN, 3], [1, 2, 3], 1, "x"),
    RangeError,
    "worst element 1 is NaN",
  );
  assertThrows(() => assertNmse([1, Infinity], [1, 2], 1e9, "x"), RangeError, "is Infinity");
  assertThrows(() => assertNmse([NaN], [NaN], 1, "x"), RangeError, "expected element 0 is NaN");
  assertThrows(() => assertNmse([Infinity], [Infinity], 1, "x"), RangeError, "not a finite");
  assertThrows(() => assertNmse([1, 2], [1], 1, "logits"), RangeError, "logits: length 2");
});
