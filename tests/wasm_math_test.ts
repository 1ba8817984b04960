/**
 * The vector math inside the wasm kernels (asm/math.ts, asm/activations.ts), held to the
 * scalar reference through the module's test exports: `exp`, `gelu` and `softmax`. The
 * fused kernels that use them (conv1dGelu, attention) are checked in wasm_backend_test.ts.
 */
import { assertClose } from "./assert_close.ts";
import { assertEquals } from "./asserts.ts";
import { Harness, randn } from "./kernel_harness.ts";
import { Rng } from "../runtime/generate/random.ts";
import { refGelu, refSoftmax } from "../runtime/backend/reference/ops.ts";

const h = await Harness.create(16 << 20);
const k = h.exports;

Deno.test("gelu() equals the reference, in place too", () => {
  const rng = new Rng(4);
  const x = randn(rng, 1003, 4);
  x.set([0, -0, 1e-8, -20, 20, 1e10, -1e10]);
  h.reset();
  const p = h.put(x);
  k.gelu(p, p, 0, x.length);
  // The kernel computes x / (1 + e^(-2u)), the same function as 0.5·x·(1 + tanh u), from
  // u rounded to float32: e^(-2u) then carries a relative error of about |2u| · 2⁻²³,
  // 2e-6 at x = -5 (measured: at most 9e-7 for |x| <= 3, 2.3e-6 for |x| <= 5). Below
  // x = -5, where it grows, GELU itself is under 1e-7 in size: the atol covers it.
  assertClose(h.get(p, x.length), refGelu(x), { atol: 1e-7, rtol: 3e-6 });
});

Deno.test("the kernels' exp is within 2 ulp of Math.exp, exactly 1 at 0 and exactly 0 when masked", () => {
  const x = new Float32Array(200003);
  // Every normal result: from ln(2^-126) to just below ln(FLT_MAX), plus the special values.
  for (let i = 0; i < x.length; i++) x[i] = -87.33 + (88.3 + 87.33) * (i / (x.length - 1));
  h.reset();
  const p = h.put(x);
  const out = h.put(x.length);
  k.exp(out, p, 0, x.length);
  // 2 ulp of a float32 in [1, 2) is 2 · 2⁻²³ relative at worst (measured: 7.8e-8).
  assertClose(h.get(out, x.length), x.map(Math.exp), { rtol: 2.4e-7 });
  const special = Float32Array.from([0, -1e10, -100, 1e10, 89, NaN, -Infinity, Infinity]);
  const ps = h.put(special);
  k.exp(ps, ps, 0, special.length);
  assertEquals(
    h.get(ps, special.length),
    Float32Array.from([1, 0, 0, Infinity, Infinity, NaN, 0, Infinity]),
  );
});

Deno.test("softmax() equals the reference", () => {
  const rng = new Rng(5);
  for (const [rows, cols] of [[1, 50257], [3, 7], [5, 1], [2, 64]]) {
    h.reset();
    const x = randn(rng, rows * cols, 5);
    const out = h.put(rows * cols);
    k.softmax(out, h.put(x), cols, 0, rows);
    // The sum of a row of n keeps 16 partial sums: relative error up to about n / 16 · 6e-8.
    assertClose(h.get(out, rows * cols), refSoftmax(x, rows, cols), {
      atol: 1e-8,
      rtol: 1e-5 + cols * 4e-9,
    });
  }
});
