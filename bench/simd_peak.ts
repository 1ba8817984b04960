/**
 * The instruction-level ceilings the Conv1D kernels are held to: how many operations per
 * second one thread of this engine gets from each product sequence alone, with every
 * operand in registers (no loads, no bounds checks, eight independent accumulators), so
 * that a kernel's GFLOP/s can be read as a fraction of what its instructions allow.
 * Prints one JSON line, in giga-operations per second (a multiply-add counts two):
 *
 * - `q8_dot`: the q8 kernels' int8 product, `i16x8.relaxed_dot_i8x16_i7x16_s` then
 *   `i32x4.dot_i16x8_s` with a vector of ones and `i32x4.add` (16 multiply-adds; pmaddubsw,
 *   pmaddwd and paddd on x86 without AVX-VNNI);
 * - `q8_dot_paired`: two relaxed dots added in 16 bits before one widening, which is exact
 *   only if one operand has 7 bits each side (activations in [−63, 63] instead of
 *   [−127, 127]): what that quantisation would allow;
 * - `i16_dot`: `i32x4.dot_i16x8_s` and `i32x4.add` (8 multiply-adds; pmaddwd, paddd), the
 *   q8 kernels' product since they keep 8 bits: weights widened to i16 (outside this
 *   loop: `v128.load8x8_s` as they load), activations stored as i16;
 * - `q8_split`: 8-bit activations split as a = a⁺ − a⁻ (both in [0, 127]), two relaxed
 *   dots of the signed weights with a⁺ and a⁻, their difference in 16 bits (exact: the
 *   true pair sum fits, and i16x8.sub wraps), then one widening (16 multiply-adds);
 * - `q8_sign`: the issue's sign trick, ggml's AVX2 route: |w| as the relaxed dot's unsigned
 *   operand and w's sign moved onto the activation, (a ⊕ m) − m with m the sign mask
 *   (16 multiply-adds);
 * - `q8_dot_add`: `i32x4.relaxed_dot_i8x16_i7x16_add_s` (16 multiply-adds; `vpdpbusd` with
 *   AVX-VNNI), the q8 kernels' product since 2026-12-08, twice per weight vector (w · a⁺ and
 *   (−w) · a⁻);
 * - `f32_madd`: `f32x4.relaxed_madd` (4 multiply-adds), the float32 kernels' product.
 *
 * The median of five runs of each, in turn.
 *
 *   deno run --allow-read --allow-env bench/simd_peak.ts
 */
import binaryen from "binaryen";

/** Loop iterations per run; each does eight products of `MACS[kind]` multiply-adds. */
const ITERATIONS = 2e7;

const MACS = {
  q8_dot: 16,
  q8_dot_paired: 16,
  i16_dot: 8,
  q8_split: 16,
  q8_sign: 16,
  q8_dot_add: 16,
  f32_madd: 4,
} as const;
type Kind = keyof typeof MACS;

/**
 * A module exporting `run(n, x)`: n iterations of eight products into eight accumulators,
 * from two activation vectors (changed every iteration, so nothing is loop-invariant) and
 * four weight vectors (distinct, so no product is computed twice).
 */
function moduleText(kind: Kind): string {
  const product = (k: number): string => {
    const [a, w] = [`(local.get $a${k >> 2})`, `(local.get $w${k % 4})`];
    const s = `(local.get $s${k})`;
    if (kind === "q8_dot_add") return `(i32x4.relaxed_dot_i8x16_i7x16_add_s ${w} ${a} ${s})`;
    if (kind === "f32_madd") return `(f32x4.relaxed_madd ${a} ${w} ${s})`;
    if (kind === "i16_dot") return `(i32x4.add ${s} (i32x4.dot_i16x8_s ${a} ${w}))`;
    const wide = (x: string) => `(i32x4.add ${s} (i32x4.dot_i16x8_s ${x} (local.get $one)))`;
    if (kind === "q8_split") {
      // Weights w signed (first operand); a⁺ and a⁻ two activation vectors of their own.
      const split = (b: string) => `(i16x8.relaxed_dot_i8x16_i7x16_s ${w} ${b})`;
      return wide(`(i16x8.sub ${split(a)} ${split(`(local.get $a${2 + (k >> 2)})`)})`);
    }
    if (kind === "q8_sign") {
      // m: the sign mask of w (here the next weight vector stands in for it).
      const m = `(local.get $w${(k + 1) % 4})`;
      const signed = `(i8x16.sub (v128.xor ${a} ${m}) ${m})`;
      return wide(`(i16x8.relaxed_dot_i8x16_i7x16_s ${signed} ${w})`);
    }
    const dot = (b: string) => `(i16x8.relaxed_dot_i8x16_i7x16_s ${a} ${b})`;
    // The paired form does two dots per accumulator and four accumulators' worth of
    // iterations, so that each form does eight dots per iteration.
    const pairs = kind === "q8_dot_paired"
      ? `(i16x8.add ${dot(w)} ${dot(`(local.get $w${(k + 1) % 4})`)})`
      : dot(w);
    return `(i32x4.add ${s} (i32x4.dot_i16x8_s ${pairs} (local.get $one)))`;
  };
  const accumulators = kind === "q8_dot_paired" ? [0, 2, 4, 6] : [0, 1, 2, 3, 4, 5, 6, 7];
  const splat = (add: number) => `(i32x4.splat (i32.add (local.get $x) (i32.const ${add})))`;
  const locals = ["a0", "a1", "a2", "a3", "w0", "w1", "w2", "w3", "one"]
    .concat(accumulators.map((k) => `s${k}`))
    .map((name) => `(local $${name} v128)`)
    .join(" ");
  const sum = accumulators.map((k) => `(local.get $s${k})`)
    .reduce((x, y) => `(i32x4.add ${x} ${y})`);
  return `(module (func (export "run") (param $n i32) (param $x i32) (result i32) ${locals}
    (local.set $a0 ${splat(0)}) (local.set $a1 ${splat(7)})
    (local.set $a2 ${splat(13)}) (local.set $a3 ${splat(17)})
    (local.set $w0 ${splat(3)}) (local.set $w1 ${splat(5)})
    (local.set $w2 ${splat(9)}) (local.set $w3 ${splat(11)})
    (local.set $one (i16x8.splat (i32.sub (local.get $x) (i32.const 1))))
    (loop $next
      ${accumulators.map((k) => `(local.set $s${k} ${product(k)})`).join("\n      ")}
      (local.set $a0 (i32x4.add (local.get $a0) (local.get $w1)))
      (local.set $a1 (i32x4.add (local.get $a1) (local.get $w2)))
      (local.set $a2 (i32x4.add (local.get $a2) (local.get $w3)))
      (local.set $a3 (i32x4.add (local.get $a3) (local.get $w0)))
      (local.set $n (i32.sub (local.get $n) (i32.const 1)))
      (br_if $next (local.get $n)))
    (i32x4.extract_lane 0 ${sum})))`;
}

function compile(kind: Kind): (n: number, x: number) => number {
  const module = binaryen.parseText(moduleText(kind));
  module.setFeatures(binaryen.Features.SIMD128 | binaryen.Features.RelaxedSIMD);
  if (!module.validate()) throw new Error(`the ${kind} module does not validate`);
  // A copy on a plain ArrayBuffer, the type WebAssembly.Module takes.
  const bytes = new Uint8Array(module.emitBinary());
  module.dispose();
  const instance = new WebAssembly.Instance(new WebAssembly.Module(bytes));
  return instance.exports.run as (n: number, x: number) => number;
}

const kinds = Object.keys(MACS) as Kind[];
const runs = new Map(kinds.map((kind) => [kind, compile(kind)]));
// Warm-up: enough calls and iterations for V8 to reach its optimising tier.
for (const run of runs.values()) for (let i = 0; i < 3; i++) run(ITERATIONS / 10, 2);
const rates = new Map<Kind, number[]>(kinds.map((kind) => [kind, []]));
for (let round = 0; round < 5; round++) {
  for (const kind of kinds) {
    const t0 = performance.now();
    runs.get(kind)!(ITERATIONS, 2);
    const seconds = (performance.now() - t0) / 1000;
    rates.get(kind)!.push((2 * ITERATIONS * 8 * MACS[kind]) / seconds / 1e9);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
console.log(JSON.stringify(Object.fromEntries(
  kinds.map((kind) => [`${kind}_gop_s`, Number(median(rates.get(kind)!).toFixed(1))]),
)));
