/** Properties of the softmax kernel, over rows fast-check generates. */
import fc from "fast-check";
import { assertClose } from "./assert_close.ts";
import { assert, assertEquals } from "./asserts.ts";
import { Harness } from "./kernel_harness.ts";

const h = await Harness.create(16 << 20);

function softmax(row: number[]): Float32Array {
  h.reset();
  const at = h.put(Float32Array.from(row));
  h.exports.softmax(at, at, row.length, 0, 1);
  return h.get(at, row.length);
}

const value = fc.float({ min: -50, max: 50, noNaN: true, noDefaultInfinity: true });
const row = fc.array(value, { minLength: 1, maxLength: 300 });

Deno.test("softmax() rows sum to 1 and every value lies in [0, 1]", () => {
  fc.assert(fc.property(row, (x) => {
    const p = softmax(x);
    let s = 0;
    for (const v of p) {
      assert(v >= 0 && v <= 1, `value ${v} outside [0, 1]`);
      s += v;
    }
    assertClose([s], [1], { atol: 1e-5 });
  }));
});

Deno.test("softmax() is unchanged by adding a constant to a row", () => {
  fc.assert(fc.property(row, fc.integer({ min: -1000, max: 1000 }), (x, c) => {
    // Adding an integer below 2^10 to a float32 of magnitude below 50 rounds it by at most
    // 2^-14 relative to the sum, so the probabilities agree to about 1e-4 of their size.
    const shifted = Float32Array.from(x, (v) => v + c);
    const unshifted = Float32Array.from(shifted, (v) => v - c);
    assertClose(softmax([...shifted]), softmax([...unshifted]), { atol: 1e-7, rtol: 1e-4 });
  }));
});

Deno.test("softmax() preserves order", () => {
  fc.assert(
    fc.property(row, (x) => {
      const f = Float32Array.from(x);
      const p = softmax(x);
      for (let i = 0; i < f.length; i++) {
        for (let j = 0; j < f.length; j++) {
          if (f[i] < f[j]) assert(p[i] <= p[j], `x[${i}] < x[${j}] but p[${i}] > p[${j}]`);
        }
      }
    }),
    { numRuns: 50 },
  );
});

Deno.test("softmax() stays finite for inputs up to ±1e10 and rows of -1e10 mask values", () => {
  const extreme = fc.oneof(
    fc.constantFrom(1e10, -1e10, 0),
    fc.float({ min: -1e10, max: 1e10, noNaN: true, noDefaultInfinity: true }),
  );
  fc.assert(fc.property(fc.array(extreme, { minLength: 1, maxLength: 100 }), (x) => {
    const p = softmax(x);
    let s = 0;
    for (const v of p) {
      assert(Number.isFinite(v), `got ${v} for a row of ${x.length}`);
      s += v;
    }
    assertClose([s], [1], { atol: 1e-5 });
  }));
});

Deno.test("softmax() gives exactly 1 to a row's one unmasked entry and 0 elsewhere", () => {
  fc.assert(fc.property(
    fc.integer({ min: 1, max: 200 }).chain((n) => fc.tuple(fc.constant(n), fc.nat(n - 1), value)),
    ([n, keep, v]) => {
      const x = new Array(n).fill(-1e10);
      x[keep] = v;
      const p = softmax(x);
      const want = new Float32Array(n);
      want[keep] = 1;
      assertEquals(p, want);
    },
  ));
});
