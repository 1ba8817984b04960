import { assertThrows } from "./asserts.ts";
import { assertClose } from "./assert_close.ts";

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
