/**
 * The conformance suite, op by op: every backend of `BACKENDS` (backends.ts) runs each op
 * of the `Backend` interface with the same seeded inputs as the reference backend, and
 * each result must be within the backend's normalised mean squared error (NMSE) limit of
 * the reference's; then the invariants every backend keeps, whatever its arithmetic.
 *
 * Sizes are odd on purpose: no feature, output or vocabulary count is a multiple of 4 or
 * 16, n_ctx is no multiple of 4, and steps cover 1, 3 and 17 rows of activations that are
 * allocated larger, as the model allocates them for its largest step.
 */
import { assertNmse } from "../assert_close.ts";
import { assert, assertEquals } from "../asserts.ts";
import { BACKENDS, type BackendUnderTest } from "./backends.ts";
import { weight } from "../backend_weights.ts";
import type { Backend, KVCacheShape, Tensor } from "../../runtime/backend/backend.ts";
import { ReferenceBackend } from "../../runtime/backend/reference/reference_backend.ts";
import { Rng } from "../../runtime/generate/random.ts";

/** The random inputs of one comparison come from this seed, the same for both backends. */
const SEED = 20261201;

// ---------------------------------------------------------------------------------------
// Helpers: weights, activations and read-back through the interface only.

/** `n` normal samples times `scale`, plus `shift`. */
function randn(rng: Rng, n: number, scale = 1, shift = 0): Float32Array {
  return Float32Array.from({ length: n }, () => shift + scale * rng.normal());
}

/** `n` integers in [0, max). */
function randint(rng: Rng, n: number, max: number): Int32Array {
  return Int32Array.from({ length: n }, () => Math.floor(rng.next() * max));
}

function size(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

/** The whole f32 tensor `t`, read back. */
async function readAll(b: Backend, t: Tensor): Promise<Float32Array> {
  const into = new Float32Array(size(t.shape));
  await b.read(t, into);
  return into;
}

/**
 * An f32 activation of `shape` (rows, C) holding `data`. The interface writes only i32
 * tensors, so the values go in through `embed`: a zero token embedding plus `data` as the
 * position embedding, one position per row. x + 0 is x in float32, so the copy is exact;
 * it is read back to check.
 */
async function activation(
  b: Backend,
  shape: readonly [number, number],
  data: Float32Array,
): Promise<Tensor> {
  const [R, C] = shape;
  const out = b.tensor(shape);
  const wte = await weight(b, "embedding", [1, C], new Float32Array(C));
  const wpe = await weight(b, "plain", shape, data);
  const tokens = b.tensor([R], "i32");
  const positions = b.tensor([R], "i32");
  b.write(tokens, new Int32Array(R));
  b.write(positions, Int32Array.from({ length: R }, (_, r) => r));
  b.embed(out, tokens, positions, wte, wpe, R);
  assertEquals(await readAll(b, out), data, `${b.name}: an activation filled through embed`);
  return out;
}

/** Named results of one program, compared name by name across backends. */
type Results = [label: string, values: Float32Array][];

/**
 * Runs `program` on the backend under test and on the reference backend, and holds every
 * result to the entry's NMSE limit. The program draws its inputs from `new Rng(SEED)`,
 * so both backends get the same.
 */
async function conforms(
  entry: BackendUnderTest,
  program: (b: Backend, rng: Rng) => Promise<Results>,
): Promise<void> {
  using reference = new ReferenceBackend();
  using b = await entry.create();
  const expected = await program(reference, new Rng(SEED));
  const actual = await program(b, new Rng(SEED));
  assertEquals(actual.map(([label]) => label), expected.map(([label]) => label));
  for (let i = 0; i < actual.length; i++) {
    assertNmse(actual[i][1], expected[i][1], entry.nmse, `${entry.name}: ${actual[i][0]}`);
  }
}

/**
 * An output tensor of `rows` rows plus `spare` more, filled with random values, for an op
 * that covers `rows`; `untouched` checks that the spare rows still hold them afterwards.
 */
async function outputWithSpareRows(
  b: Backend,
  rng: Rng,
  rows: number,
  cols: number,
  spare = 2,
): Promise<{ out: Tensor; untouched: (what: string) => Promise<Float32Array> }> {
  const before = randn(rng, (rows + spare) * cols);
  const out = await activation(b, [rows + spare, cols], before);
  return {
    out,
    untouched: async (what) => {
      const after = await readAll(b, out);
      assertEquals(
        after.subarray(rows * cols),
        before.subarray(rows * cols),
        `${b.name}: ${what} wrote past its ${rows} rows`,
      );
      return after.slice(0, rows * cols);
    },
  };
}

const ROWS = [1, 3, 17];

// ---------------------------------------------------------------------------------------
// Op by op.

for (const entry of BACKENDS) {
  Deno.test(`${entry.name}: embed() adds each row's token and position embedding`, async () => {
    const V = 23, C = 13, nCtx = 11;
    await conforms(entry, async (b, rng) => {
      const [wte, wpe] = await Promise.all([
        weight(b, "embedding", [V, C], randn(rng, V * C)),
        weight(b, "plain", [nCtx, C], randn(rng, nCtx * C, 0.5)),
      ]);
      const results: Results = [];
      for (const rows of ROWS) {
        const tokens = b.tensor([rows + 2], "i32");
        const positions = b.tensor([rows + 2], "i32");
        // Positions per row, in no order: rows are sequences at different places.
        b.write(tokens, randint(rng, rows, V));
        b.write(positions, randint(rng, rows, nCtx));
        const { out, untouched } = await outputWithSpareRows(b, rng, rows, C);
        b.embed(out, tokens, positions, wte, wpe, rows);
        results.push([`embed, rows ${rows}`, await untouched("embed")]);
      }
      return results;
    });
  });

  Deno.test(`${entry.name}: layerNorm() normalises each row`, async () => {
    await conforms(entry, async (b, rng) => {
      const results: Results = [];
      for (const C of [13, 50]) {
        const [gain, bias] = await Promise.all([
          weight(b, "plain", [C], randn(rng, C, 0.1, 1)),
          weight(b, "plain", [C], randn(rng, C, 0.05)),
        ]);
        for (const rows of ROWS) {
          // Rows with their own mean and spread, as the residual stream has.
          const data = new Float32Array((rows + 1) * C);
          for (let r = 0; r <= rows; r++) {
            data.set(randn(rng, C, 0.1 + 3 * rng.next(), 4 * rng.normal()), r * C);
          }
          const inp = await activation(b, [rows + 1, C], data);
          const { out, untouched } = await outputWithSpareRows(b, rng, rows, C);
          b.layerNorm(out, inp, gain, bias, rows);
          results.push([`layerNorm C ${C}, rows ${rows}`, await untouched("layerNorm")]);
          // The model reads the residual stream again after normalising it.
          assertEquals(await readAll(b, inp), data, `${b.name}: layerNorm changed its input`);
        }
      }
      return results;
    });
  });

  for (const form of ["conv1d", "conv1dGelu", "conv1dResidual"] as const) {
    Deno.test(`${entry.name}: ${form}() multiplies by a Conv1D weight`, async () => {
      await conforms(entry, async (b, rng) => {
        const results: Results = [];
        for (const [C, OC] of [[13, 39], [37, 13], [6, 5]]) {
          const [w, bias] = await Promise.all([
            weight(b, "conv1d", [C, OC], randn(rng, C * OC, 1 / Math.sqrt(C))),
            weight(b, "plain", [OC], randn(rng, OC, 0.2)),
          ]);
          for (const rows of ROWS) {
            const inp = await activation(b, [rows + 1, C], randn(rng, (rows + 1) * C));
            // conv1dResidual adds onto what out holds: its random rows are the residual.
            const { out, untouched } = await outputWithSpareRows(b, rng, rows, OC);
            b[form](out, inp, w, bias, rows);
            results.push([`${form} ${C}→${OC}, rows ${rows}`, await untouched(form)]);
          }
        }
        return results;
      });
    });
  }

  Deno.test(`${entry.name}: attention() appends to the KV cache and reads it back, slot by slot`, async () => {
    // headDim 5 and n_ctx 13: no multiple of 4. Slots are used out of order.
    const shape: KVCacheShape = { layers: 2, slots: 4, positions: 13, heads: 3, headDim: 5 };
    const C = shape.heads * shape.headDim;
    // [slot, past] per sequence; each step runs both layers. Pasts differ within a step,
    // and slot 3 goes back to position 3, as after `truncate`, then forward over what
    // it held before; slots 0 and 2 end full.
    const steps: { seqs: [number, number][]; T: number }[] = [
      // A new cache is all zeros: slot 1 may start at past 4, over four zero keys and values.
      { seqs: [[1, 4]], T: 2 },
      { seqs: [[3, 0]], T: 5 },
      { seqs: [[3, 5], [0, 0], [2, 0]], T: 1 },
      { seqs: [[0, 1], [3, 6], [2, 1]], T: 5 },
      { seqs: [[2, 6]], T: 1 },
      { seqs: [[3, 11], [2, 7], [0, 6]], T: 1 },
      { seqs: [[3, 3], [0, 7]], T: 1 },
      { seqs: [[3, 4], [2, 8], [0, 8]], T: 5 },
    ];
    // The schedule itself: every past is at most what the slot holds, and fits.
    const held = new Map<number, number>([[1, shape.positions]]);
    for (const { seqs, T } of steps) {
      for (const [slot, past] of seqs) {
        assert(past <= (held.get(slot) ?? 0) && past + T <= shape.positions);
        held.set(slot, past + T);
      }
    }
    await conforms(entry, async (b, rng) => {
      const cache = b.kvCache(shape);
      const seqs = b.tensor([3, 2], "i32");
      const results: Results = [];
      for (const [i, { seqs: list, T }] of steps.entries()) {
        const B = list.length;
        b.write(seqs, Int32Array.from(list.flat()));
        for (let layer = 0; layer < shape.layers; layer++) {
          // Queries and keys scaled up, so that attention is sharp and a key read from
          // the wrong place shows.
          const qkv = await activation(b, [B * T, 3 * C], randn(rng, B * T * 3 * C, 2));
          const { out, untouched } = await outputWithSpareRows(b, rng, B * T, C, 1);
          b.attention(out, qkv, cache, layer, seqs, B, T);
          const what = `attention step ${i} (B ${B}, T ${T}, [slot, past] ${
            JSON.stringify(list)
          }), layer ${layer}`;
          results.push([what, await untouched("attention")]);
        }
      }
      return results;
    });
  });

  Deno.test(`${entry.name}: logits() multiplies by the token embedding transposed`, async () => {
    const V = 37, C = 13;
    await conforms(entry, async (b, rng) => {
      const wte = await weight(b, "embedding", [V, C], randn(rng, V * C, 0.5));
      const results: Results = [];
      for (const rows of ROWS) {
        const h = await activation(b, [rows + 1, C], randn(rng, (rows + 1) * C));
        const { out, untouched } = await outputWithSpareRows(b, rng, rows, V);
        b.logits(out, h, wte, rows);
        results.push([`logits V ${V}, rows ${rows}`, await untouched("logits")]);
      }
      // The same weight is also the token embedding.
      const tokens = b.tensor([2], "i32");
      const positions = b.tensor([2], "i32");
      b.write(tokens, Int32Array.of(V - 1, 4));
      const wpe = await weight(b, "plain", [1, C], new Float32Array(C));
      const x = b.tensor([2, C]);
      b.embed(x, tokens, positions, wte, wpe, 2);
      results.push(["embed with the output head's weight", await readAll(b, x)]);
      return results;
    });
  });

  Deno.test(`${entry.name}: gatherRows() copies the rows asked for, in their order`, async () => {
    const C = 13;
    await conforms(entry, async (b, rng) => {
      const data = randn(rng, 9 * C);
      const inp = await activation(b, [9, C], data);
      const rows = [8, 0, 3, 3];
      const { out, untouched } = await outputWithSpareRows(b, rng, rows.length, C, 1);
      b.gatherRows(out, inp, rows);
      const got = await untouched("gatherRows");
      // A copy: exact on every backend, whatever its arithmetic.
      for (const [i, r] of rows.entries()) {
        assertEquals(got.subarray(i * C, (i + 1) * C), data.subarray(r * C, (r + 1) * C));
      }
      return [["gatherRows", got]];
    });
  });

  // -------------------------------------------------------------------------------------
  // What every backend keeps, whatever its arithmetic.

  Deno.test(`${entry.name}: tensor() is zero-filled and read() copies a prefix`, async () => {
    using b = await entry.create();
    const rng = new Rng(SEED);
    const data = randn(rng, 5 * 13);
    const filled = await activation(b, [5, 13], data);
    for (const shape of [[1], [7, 13], [3, 50]]) {
      assertEquals(await readAll(b, b.tensor(shape)), new Float32Array(size(shape)), `[${shape}]`);
    }
    for (const n of [0, 1, 7, 13, 40, 65]) {
      const into = new Float32Array(n);
      await b.read(filled, into);
      assertEquals(into, data.slice(0, n), `read of ${n} elements`);
    }
  });

  Deno.test(`${entry.name}: tensors of another backend are rejected with a TypeError`, async () => {
    using b = await entry.create();
    using sameKind = await entry.create();
    using reference = new ReferenceBackend();
    const C = 6, V = 5;
    const own = {
      x: b.tensor([2, C]),
      y: b.tensor([2, C]),
      ids: b.tensor([2], "i32"),
      seqs: b.tensor([1, 2], "i32"),
      cache: b.kvCache({ layers: 1, slots: 1, positions: 4, heads: 2, headDim: 3 }),
      qkv: b.tensor([2, 3 * C]),
      logits: b.tensor([2, V]),
      wte: await weight(b, "embedding", [V, C], new Float32Array(V * C)),
      wpe: await weight(b, "plain", [4, C], new Float32Array(4 * C)),
      g: await weight(b, "plain", [C], new Float32Array(C)),
      w: await weight(b, "conv1d", [C, C], new Float32Array(C * C)),
    };
    const strangers: [string, (t: Tensor) => Tensor][] = [
      ["another instance", (t) => sameKind.tensor(t.shape)],
      ["the reference backend", (t) => reference.tensor(t.shape)],
      [
        "a handle not made by a backend",
        (t) => ({ shape: t.shape, type: t.type, bytes: t.bytes }),
      ],
    ];
    for (const [whose, foreign] of strangers) {
      const msg = `a tensor of ${whose}`;
      const { x, y, ids, seqs, cache, qkv, logits, wte, wpe, g, w } = own;
      const calls: [string, () => unknown][] = [
        ["read", () => b.read(foreign(x), new Float32Array(1))],
        ["loadWeight", () => b.loadWeight(foreign(g), () => Promise.resolve())],
        ["write", () => b.write(foreign(ids), Int32Array.of(1))],
        ["embed", () => b.embed(x, ids, ids, foreign(wte), wpe, 1)],
        ["layerNorm", () => b.layerNorm(foreign(y), x, g, g, 1)],
        ["conv1d", () => b.conv1d(y, foreign(x), w, g, 1)],
        ["conv1dGelu", () => b.conv1dGelu(y, x, foreign(w), g, 1)],
        ["conv1dResidual", () => b.conv1dResidual(y, x, w, foreign(g), 1)],
        ["attention", () => b.attention(x, qkv, foreign(cache), 0, seqs, 1, 1)],
        ["logits", () => b.logits(logits, foreign(x), wte, 1)],
        ["gatherRows", () => b.gatherRows(y, foreign(x), [0])],
      ];
      for (const [op, call] of calls) {
        // read and loadWeight reject; the others throw when called.
        const e = await (async () => await call())().then(() => undefined, (e) => e);
        assert(
          e instanceof TypeError,
          `${b.name}: ${op} with ${msg}: expected a TypeError, got ${e}`,
        );
      }
    }
  });
}
