/**
 * Properties of the causal mask inside the attention kernel, for every
 * 1 <= nd <= ns <= n_ctx fast-check tries. With the values set to one-hot rows (value j is
 * the unit vector e_j), the attention output of a new position is its row of attention
 * weights, so the test reads the mask off the kernel's own output.
 */
import fc from "fast-check";
import { assert, assertEquals } from "./asserts.ts";
import { Harness } from "./kernel_harness.ts";
import { keyIndex } from "../runtime/kv_cache.ts";
import { attentionMask } from "../runtime/backend/reference/ops.ts";

const N_CTX = 32; // also d_head, so that every key has its own one-hot value; a multiple of 4
const h = await Harness.create(16 << 20);

/**
 * Runs one head of attention: `nd` new positions after `ns - nd` cached ones, with
 * queries and keys from `qk` and one-hot values. Returns the output (nd, d_head).
 */
function attend(
  nd: number,
  ns: number,
  qk: (pos: number, d: number) => number,
  value: (pos: number) => number = () => 1,
): Float32Array {
  const d = N_CTX;
  const past = ns - nd;
  h.reset();
  const cache = new Float32Array(2 * N_CTX * d);
  for (let j = 0; j < past; j++) {
    for (let i = 0; i < d; i++) cache[keyIndex(j, i, d)] = qk(j, i);
    cache[(N_CTX + j) * d + j] = value(j);
  }
  const qkv = new Float32Array(nd * 3 * d);
  for (let t = 0; t < nd; t++) {
    for (let i = 0; i < d; i++) {
      qkv[t * 3 * d + i] = qk(1000 + t, i); // query
      qkv[t * 3 * d + d + i] = qk(past + t, i); // key
    }
    qkv[t * 3 * d + 2 * d + past + t] = value(past + t); // value ∝ e_(past + t)
  }
  const out = h.put(nd * d);
  h.kernels.attention(
    out,
    h.put(qkv),
    h.put(cache),
    h.put(N_CTX),
    1,
    nd,
    past,
    1,
    d,
    N_CTX,
    2 * N_CTX * d,
  );
  return h.get(out, nd * d);
}

const shape = fc.integer({ min: 1, max: N_CTX }).chain((ns) =>
  fc.tuple(fc.integer({ min: 1, max: ns }), fc.constant(ns), fc.integer())
);

/** Small pseudo-random queries and keys, so that no weight underflows to 0. */
const smallQK = (seed: number) => (pos: number, d: number) =>
  (((Math.imul(seed ^ (pos * 7919 + d * 104729), 2654435761) >>> 0) / 2 ** 32) - 0.5) * 0.5;

Deno.test("attention: new position i attends to exactly the keys j <= i + ns - nd, the original mask", () => {
  fc.assert(fc.property(shape, ([nd, ns, seed]) => {
    const w = attend(nd, ns, smallQK(seed));
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

Deno.test("attention: changing a later key or value never changes an earlier output", () => {
  const cut = shape.chain(([nd, ns, seed]) =>
    fc.tuple(
      fc.constant(nd),
      fc.constant(ns),
      fc.constant(seed),
      fc.integer({ min: ns - nd, max: ns }),
      fc.integer(),
    )
  );
  fc.assert(fc.property(cut, ([nd, ns, seed, from, seed2]) => {
    const base = smallQK(seed);
    const other = smallQK(seed2);
    const later = (pos: number) => pos >= from && pos < 1000; // 1000+ are queries
    const a = attend(nd, ns, base);
    const b = attend(
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
