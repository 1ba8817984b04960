/**
 * Properties of the causal mask inside the wasm backend's attention, for every
 * 1 <= nd <= ns <= n_ctx fast-check tries. With the values set to one-hot rows (value j is
 * the unit vector e_j), the attention output of a new position is its row of attention
 * weights, so the test reads the mask off the kernel's own output.
 */
import fc from "fast-check";
import { assert, assertEquals } from "./asserts.ts";
import { attentionMask } from "../runtime/backend/reference/ops.ts";
import { WasmBackend } from "../runtime/backend/wasm/wasm_backend.ts";

const N_CTX = 32; // also d_head, so that every key has its own one-hot value
const be = await WasmBackend.create({ threads: 1 });
globalThis.addEventListener("unload", () => be[Symbol.dispose]());
const cache = be.kvCache({ layers: 1, slots: 1, positions: N_CTX, heads: 1, headDim: N_CTX });
const seqs = be.tensor([1, 2], "i32");
const qkvIn = be.weight("plain", [N_CTX, 3 * N_CTX]);
const out = be.tensor([N_CTX, N_CTX]);

/** Attention of one head over `qkv` (T rows of q, k, v) after `past` cached positions. */
async function run(qkv: Float32Array, T: number, past: number): Promise<Float32Array> {
  await be.loadWeight(qkvIn, (dest) => Promise.resolve(dest.set(qkv)));
  be.write(seqs, Int32Array.from([0, past]));
  be.attention(out, qkvIn, cache, 0, seqs, 1, T);
  const got = new Float32Array(T * N_CTX);
  await be.read(out, got);
  return got;
}

/**
 * Runs one head of attention: `nd` new positions after `ns - nd` cached ones (cached by an
 * attention call of their own first), with queries and keys from `qk` and one-hot values.
 * Returns the output (nd, d_head).
 */
async function attend(
  nd: number,
  ns: number,
  qk: (pos: number, d: number) => number,
  value: (pos: number) => number = () => 1,
): Promise<Float32Array> {
  const d = N_CTX;
  const past = ns - nd;
  /** Rows for positions from..from + n - 1: query, key, and value ∝ e_pos. */
  const rows = (from: number, n: number) => {
    const qkv = new Float32Array(n * 3 * d);
    for (let t = 0; t < n; t++) {
      for (let i = 0; i < d; i++) {
        qkv[t * 3 * d + i] = qk(1000 + from + t, i); // query
        qkv[t * 3 * d + d + i] = qk(from + t, i); // key
      }
      qkv[t * 3 * d + 2 * d + from + t] = value(from + t);
    }
    return qkv;
  };
  if (past > 0) await run(rows(0, past), past, 0);
  return await run(rows(past, nd), nd, past);
}

const shape = fc.integer({ min: 1, max: N_CTX }).chain((ns) =>
  fc.tuple(fc.integer({ min: 1, max: ns }), fc.constant(ns), fc.integer())
);

/** Small pseudo-random queries and keys, so that no weight underflows to 0. */
const smallQK = (seed: number) => (pos: number, d: number) =>
  (((Math.imul(seed ^ (pos * 7919 + d * 104729), 2654435761) >>> 0) / 2 ** 32) - 0.5) * 0.5;

Deno.test("attention: new position i attends to exactly the keys j <= i + ns - nd, the original mask", async () => {
  await fc.assert(fc.asyncProperty(shape, async ([nd, ns, seed]) => {
    const w = await attend(nd, ns, smallQK(seed));
    const mask = attentionMask(nd, ns);
    for (let i = 0; i < nd; i++) {
      for (let j = 0; j < ns; j++) {
        const visible = w[i * N_CTX + j] > 0;
        assertEquals(
          visible,
          j <= i + ns - nd,
          `nd=${nd} ns=${ns}: weight of key ${j} for position ${i}`,
        );
        assertEquals(visible, mask[i * ns + j] === 1);
      }
    }
  }));
});

Deno.test("attention: changing a later key or value never changes an earlier output", async () => {
  const cut = shape.chain(([nd, ns, seed]) =>
    fc.tuple(
      fc.constant(nd),
      fc.constant(ns),
      fc.constant(seed),
      fc.integer({ min: ns - nd, max: ns }),
      fc.integer(),
    )
  );
  await fc.assert(fc.asyncProperty(cut, async ([nd, ns, seed, from, seed2]) => {
    const base = smallQK(seed);
    const other = smallQK(seed2);
    const later = (pos: number) => pos >= from && pos < 1000; // 1000+ are queries
    const a = await attend(nd, ns, base);
    const b = await attend(
      nd,
      ns,
      (pos, d) => later(pos) ? other(pos, d) : base(pos, d),
      (pos) => later(pos) ? -3 : 1,
    );
    // New position t sees keys up to past + t: those before `from` see nothing changed.
    const past = ns - nd;
    for (let t = 0; past + t < from && t < nd; t++) {
      assertEquals(
        b.subarray(t * N_CTX, (t + 1) * N_CTX),
        a.subarray(t * N_CTX, (t + 1) * N_CTX),
        `row ${t}`,
      );
    }
    // And the change is visible to the positions that see it (the test can fail).
    if (from < ns) {
      const t = from - past;
      assert(b.subarray(t * N_CTX, (t + 1) * N_CTX).some((v, i) => v !== a[t * N_CTX + i]));
    }
  }));
});
