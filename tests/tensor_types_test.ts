/**
 * The float32 conversions of every stored type (runtime/io/tensor_types.ts) and
 * readAsFloat32's in-place and transposed paths:
 * - against the trained fixture's GGUF files, written by llama.cpp's own `gguf` package:
 *   the test quantizers reproduce their bytes exactly, and each dequantized tensor lies
 *   within its type's error bound of the TensorFlow checkpoint's weights (a bound a layout
 *   mistake breaks, shown by making one);
 * - K-quants, which the fixture cannot hold (rows of 128): round trips through the test
 *   quantizers within the bound `kQuantBound` states from the data alone, on sub-blocks of
 *   very different ranges, so that reading any sub-block's scale or values from the wrong
 *   place breaks it.
 */
import fc from "fast-check";
import { fileURLToPath } from "node:url";
import { assert, assertEquals } from "./asserts.ts";
import { withTempDir } from "./temp_dir.ts";
import { openGguf } from "../runtime/io/gguf.ts";
import { openModelFiles } from "../runtime/gpt2/model_files.ts";
import { ggufNames, gpt2Tensors } from "../runtime/gpt2/tensor_names.ts";
import { readAsFloat32 } from "../runtime/io/tensor_source.ts";
import {
  type BlockType,
  type Float32Convertible,
  TYPE_LAYOUTS,
} from "../runtime/io/tensor_types.ts";
import { kQuantBound } from "../testing/ggml_quants.ts";
import { ggufBytes, storeAs, transpose } from "../testing/gguf_writer.ts";
import { Rng } from "../runtime/generate/random.ts";

const FIXTURES = fileURLToPath(new URL("../../shared/fixtures/", import.meta.url));
const TF_DIR = `${FIXTURES}trained-tiny`;
const GGUF_DIR = `${FIXTURES}trained-tiny-gguf`;
const hasFixture = (() => {
  try {
    Deno.statSync(`${GGUF_DIR}/trained-tiny-Q4_0.gguf`);
    Deno.statSync(`${TF_DIR}/model.ckpt.index`);
    return true;
  } catch {
    console.warn(
      `Skipping the trained-fixture tests of the GGUF types: ${GGUF_DIR} not found (the ` +
        `shared fixtures live next to the project checkout, in ../shared)`,
    );
    return false;
  }
})();

/** The fixture's quantized files, by type. */
const FIXTURE_TYPES: readonly BlockType[] = ["q8_0", "q4_0", "q4_1", "q5_0", "q5_1"];

/** The fixture's matrices and embedding as the GGUF files order them ((out, in) for Conv1D). */
async function fixtureMatrices(): Promise<{ name: string; values: Float32Array }[]> {
  using tf = await openModelFiles(TF_DIR);
  const out: { name: string; values: Float32Array }[] = [];
  for (const spec of gpt2Tensors(tf.hparams)) {
    if (spec.role === "plain") continue;
    const values = new Float32Array(spec.shape.reduce((a, b) => a * b));
    await readAsFloat32(tf.source, spec.name, values);
    const { name, shape, transposed } = ggufNames(spec.name, spec.shape);
    out.push({ name, values: transposed ? transpose(values, shape[1], shape[0]) : values });
  }
  return out;
}

/**
 * The most a value of each 32-block may move in `type`, from the original values alone:
 * half a step for the rounding types; a whole step for Q4_0 and Q5_0, whose levels
 * [−8, 7] and [−16, 15] reach the block's largest magnitude on one side only; plus
 * float16's rounding of the scale (and of the min) times the largest level.
 */
function blockBound(type: BlockType, x: Float32Array, b: number): number {
  let min = Infinity, max = -Infinity;
  for (let j = 32 * b; j < 32 * b + 32; j++) {
    min = Math.min(min, x[j]);
    max = Math.max(max, x[j]);
  }
  const amax = Math.max(-min, max);
  const f16 = 2 ** -10 * (amax + Math.abs(min)) + 1e-7;
  switch (type) {
    case "q8_0":
      return (0.5 * amax) / 127 + f16;
    case "q4_0":
      return amax / 8 + f16;
    case "q5_0":
      return amax / 16 + f16;
    case "q4_1":
      return (0.5 * (max - min)) / 15 + f16;
    default: // q5_1
      return (0.5 * (max - min)) / 31 + f16;
  }
}

/** The blocks of `decoded` farther from `x` than `blockBound` allows. */
function blocksOutOfBound(type: BlockType, x: Float32Array, decoded: Float32Array): number {
  let bad = 0;
  for (let b = 0; b < x.length / 32; b++) {
    const bound = blockBound(type, x, b);
    for (let j = 32 * b; j < 32 * b + 32; j++) {
      if (Math.abs(decoded[j] - x[j]) > bound) {
        bad++;
        break;
      }
    }
  }
  return bad;
}

Deno.test({
  name:
    "the test quantizers write the fixture's Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 and F16 bytes exactly",
  ignore: !hasFixture,
  async fn() {
    const matrices = await fixtureMatrices();
    for (const type of ["float16", ...FIXTURE_TYPES] as Float32Convertible[]) {
      using file = await openGguf(`${GGUF_DIR}/trained-tiny-${TYPE_LAYOUTS[type].ggmlName}.gguf`);
      for (const { name, values } of matrices) {
        const info = file.tensors.get(name)!;
        assertEquals(info.dtype, type, name);
        const theirs = new Uint8Array(info.byteLength);
        await file.read(name, theirs);
        assertEquals(storeAs(type, values), theirs, `${type} ${name}`);
      }
    }
  },
});

Deno.test({
  name:
    "each quantized fixture tensor dequantizes within its type's bound of the TensorFlow weights",
  ignore: !hasFixture,
  async fn() {
    const matrices = await fixtureMatrices();
    for (const type of FIXTURE_TYPES) {
      using file = await openGguf(`${GGUF_DIR}/trained-tiny-${TYPE_LAYOUTS[type].ggmlName}.gguf`);
      for (const { name, values } of matrices) {
        const decoded = new Float32Array(values.length);
        await readAsFloat32(file, name, decoded);
        assertEquals(blocksOutOfBound(type, values, decoded), 0, `${type} ${name}`);
        // The bound is tight enough to see a layout mistake: the two halves of each block
        // swapped (low and high nibbles read the wrong way round) break it nearly everywhere.
        const swapped = decoded.slice();
        for (let b = 0; b < swapped.length; b += 32) {
          swapped.set(decoded.subarray(b + 16, b + 32), b);
          swapped.set(decoded.subarray(b, b + 16), b + 16);
        }
        const blocks = values.length / 32;
        assert(
          blocksOutOfBound(type, values, swapped) > 0.9 * blocks,
          `${type} ${name}: a swapped layout stays within the bound`,
        );
      }
    }
  },
});

/**
 * Values whose 32-value sub-blocks differ by orders of magnitude and in offset, as a
 * trained matrix's rows may: sub-block k of each 256 is N(μ_k, σ_k²) with σ_k from 2^−6 to
 * 2^1 and μ_k from −σ_k to 3σ_k, so that a scale or min read for the wrong sub-block, or a
 * value read from the wrong one, lands far outside the bound.
 */
function structuredValues(n: number, seed: number): Float32Array {
  const rng = new Rng(seed);
  const sigmas = Array.from({ length: 16 }, () => 2 ** (-6 + 7 * rng.next()));
  const means = sigmas.map((s) => s * (4 * rng.next() - 1));
  return Float32Array.from({ length: n }, (_, i) => {
    const k = ((i >> 4) + 5 * (i >> 8)) % 16; // a different pattern in each super-block
    return means[k] + sigmas[k] * rng.normal();
  });
}

function decode(type: Float32Convertible, bytes: Uint8Array, n: number): Float32Array {
  const out = new Float32Array(n);
  TYPE_LAYOUTS[type].toFloat32(bytes, 0, out, 0, n / TYPE_LAYOUTS[type].blockSize);
  return out;
}

for (const type of ["q4_k", "q5_k", "q6_k"] as const) {
  Deno.test(`${type}: values round-trip within the bound the data implies, and a misplaced sub-block breaks it`, () => {
    for (let seed = 1; seed <= 4; seed++) {
      const x = structuredValues(256 * 24, seed);
      const bytes = storeAs(type, x);
      assertEquals(bytes.length, (x.length / 256) * TYPE_LAYOUTS[type].blockBytes);
      const y = decode(type, bytes, x.length);
      const bound = kQuantBound(type, x);
      let worst = 0;
      for (let i = 0; i < x.length; i++) {
        worst = Math.max(worst, Math.abs(y[i] - x[i]) / bound[i]);
      }
      assert(worst <= 1, `${type} seed ${seed}: an error of ${worst.toFixed(3)} × its bound`);
      // Not slack either: the worst value uses a good part of its bound.
      assert(worst > 0.3, `${type} seed ${seed}: the bound is loose (${worst.toFixed(3)})`);
      // Two neighbouring sub-blocks' values exchanged, as a wrong index would read them.
      const sub = type === "q6_k" ? 16 : 32;
      for (let s = 0; s + 2 * sub <= x.length; s += 2 * sub) {
        const a = y.slice(s, s + sub);
        y.copyWithin(s, s + sub, s + 2 * sub);
        y.set(a, s + sub);
      }
      let outside = 0;
      for (let i = 0; i < x.length; i++) if (Math.abs(y[i] - x[i]) > bound[i]) outside++;
      assert(outside > 0.5 * x.length, `${type}: swapped sub-blocks stay within the bound`);
    }
  });
}

Deno.test("q4_k and q5_k: sub-blocks 4–7 take their scales' and mins' top bits from bytes 0–7", () => {
  // One super-block whose sub-block j spans [−(j + 1), 40 (j + 1)]: the large scales and
  // mins need all six bits. Every value of sub-block j decodes to within its step.
  const x = Float32Array.from({ length: 256 }, (_, i) => {
    const j = i >> 5, l = i & 31;
    return (j + 1) * (-1 + (41 * l) / 31);
  });
  for (const type of ["q4_k", "q5_k"] as const) {
    const bytes = storeAs(type, x);
    const scales = bytes.subarray(4, 16);
    assert(scales.subarray(0, 8).some((b) => b >= 64), "the test needs high bits set");
    const y = decode(type, bytes, 256);
    const bound = kQuantBound(type, x);
    for (let i = 0; i < 256; i++) {
      assert(Math.abs(y[i] - x[i]) <= bound[i], `${type} value ${i}: ${y[i]} for ${x[i]}`);
    }
  }
});

Deno.test("readAsFloat32() converts every type in place without touching memory around the destination", async () => {
  await withTempDir(async (dir) => {
    const types = Object.keys(TYPE_LAYOUTS) as Float32Convertible[];
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...types),
        fc.integer({ min: 0, max: 6 }),
        fc.nat(8),
        fc.integer({ min: 1, max: 1 << 30 }),
        async (type, blocks, start, seed) => {
          const n = blocks * TYPE_LAYOUTS[type].blockSize;
          const x = structuredValues(Math.max(n, 1), seed).subarray(0, n);
          const stored = storeAs(type, x);
          const path = `${dir}/t.gguf`;
          await Deno.writeFile(
            path,
            ggufBytes({
              tensors: [{ name: "t", ne: [n], type, data: stored }],
            }),
          );
          using file = await openGguf(path);
          const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
          const all = new Float32Array(memory.buffer, 0, 2048).fill(-7);
          await readAsFloat32(file, "t", all.subarray(start, start + n));
          assertEquals(
            Array.from(all.subarray(start, start + n)),
            Array.from(decode(type, stored, n)),
          );
          assert(all.subarray(0, start).every((v) => v === -7));
          assert(all.subarray(start + n).every((v) => v === -7));
        },
      ),
      { numRuns: 80 },
    );
  });
});

Deno.test("readAsFloat32({ transpose }) equals the transpose of the plain read, across chunk boundaries", async () => {
  await withTempDir(async (dir) => {
    // Rows of 512 values: a 1 MiB chunk holds 512 float32 rows, so R = 1100 takes three
    // chunks, the last partial; the quantized types take fewer, larger chunks.
    const R = 1100, C = 512;
    for (const type of ["float32", "float16", "q8_0", "q4_k", "q6_k"] as Float32Convertible[]) {
      const x = structuredValues(R * C, 3);
      const path = `${dir}/m.gguf`;
      await Deno.writeFile(
        path,
        ggufBytes({
          tensors: [{ name: "m", ne: [C, R], type, data: storeAs(type, x) }],
        }),
      );
      using file = await openGguf(path);
      const plain = new Float32Array(R * C), transposed = new Float32Array(R * C);
      await readAsFloat32(file, "m", plain);
      await readAsFloat32(file, "m", transposed, { transpose: true });
      assertEquals(transposed, transpose(plain, R, C), type);
    }
  });
});
