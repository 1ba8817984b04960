import fc from "fast-check";
import { assert, assertEquals, assertThrows } from "./asserts.ts";
import { Rng } from "../runtime/generate/random.ts";
import { argmax, Sampler, sampleToken } from "../runtime/generate/sampler.ts";
import { validateSampling } from "../runtime/generate/sampling_controls.ts";

const logitsArb = fc.array(fc.float({ min: -20, max: 20, noNaN: true }), {
  minLength: 1,
  maxLength: 80,
})
  .map((a) => Float32Array.from(a));

/** Indices sorted by logit, largest first (stable: lower index first on ties). */
function ranked(x: Float32Array): number[] {
  return [...x.keys()].sort((a, b) => x[b] - x[a] || a - b);
}

/** The top-k set, computed the plain way: the k largest, and everything tied with the k-th. */
function topKSet(x: Float32Array, k: number): Set<number> {
  if (k === 0 || k >= x.length) return new Set(x.keys());
  const kth = x[ranked(x)[k - 1]];
  return new Set([...x.keys()].filter((i) => x[i] >= kth));
}

/** The nucleus, computed the plain way from probabilities, among `allowed`. */
function nucleus(
  x: Float32Array,
  temperature: number,
  p: number,
  allowed: Set<number>,
): Set<number> {
  const order = ranked(x).filter((i) => allowed.has(i));
  const w = order.map((i) => Math.exp((x[i] - x[order[0]]) / temperature));
  const total = w.reduce((a, b) => a + b, 0);
  let sum = 0;
  const keep = new Set<number>();
  for (let n = 0; n < order.length; n++) {
    keep.add(order[n]);
    sum += w[n];
    if (sum >= p * total * (1 - 1e-12)) break;
  }
  // Ties with the last kept token are kept too.
  const last = x[order[keep.size - 1]];
  for (const i of order) if (x[i] === last) keep.add(i);
  return keep;
}

Deno.test("temperature 0, top_k 1 and a tiny top_p all pick the arg max", () => {
  fc.assert(fc.property(logitsArb, fc.integer(), (x, seed) => {
    const best = argmax(x);
    const pick = (o: { temperature?: number; topK?: number; topP?: number }) =>
      sampleToken(x, validateSampling(o), new Rng(seed));
    const tied = [...x.keys()].filter((i) => x[i] === x[best]);
    assertEquals(pick({ temperature: 0 }), best);
    assert(tied.includes(pick({ topK: 1 })));
    // Divided by 0.7 in float32, logits a hair apart may tie with the best.
    const scaled = Float32Array.from(x, (v) => v / 0.7);
    const top = scaled[argmax(scaled)];
    assertEquals(scaled[pick({ topP: 1e-9, temperature: 0.7 })], top);
  }));
});

Deno.test("a sampled token is always inside the top-k set and the nucleus", () => {
  fc.assert(fc.property(
    logitsArb,
    fc.integer({ min: 0, max: 90 }),
    fc.double({ min: 0.01, max: 1, noNaN: true }),
    fc.double({ min: 0.1, max: 3, noNaN: true }),
    fc.integer(),
    (x, topK, topP, temperature, seed) => {
      // As the original (and the sampler) do: divide in float32 first, so that logits a
      // hair apart may tie after it; then top-k and the nucleus over what it gives.
      const scaled = Float32Array.from(x, (v) => v / temperature);
      const k = topKSet(scaled, topK);
      const n = nucleus(scaled, 1, topP, k);
      const rng = new Rng(seed);
      const options = validateSampling({ topK, topP, temperature });
      for (let draw = 0; draw < 20; draw++) {
        const t = sampleToken(x, options, rng);
        assert(k.has(t), `token ${t} is outside the top-${topK} set`);
        assert(n.has(t), `token ${t} is outside the nucleus for p=${topP}`);
      }
    },
  ));
});

Deno.test("sampling follows the softmax distribution", () => {
  const x = Float32Array.from([Math.log(0.5), Math.log(0.3), Math.log(0.2)]);
  const rng = new Rng(7);
  const counts = [0, 0, 0];
  const N = 30000;
  for (let i = 0; i < N; i++) counts[sampleToken(x, validateSampling({}), rng)]++;
  // Binomial standard deviation is at most sqrt(N / 4) ≈ 87: allow five of them.
  [0.5, 0.3, 0.2].forEach((p, i) => assert(Math.abs(counts[i] - p * N) < 5 * 87, `${counts}`));
});

Deno.test("the same seed gives the same tokens; another seed others", () => {
  const x = Float32Array.from({ length: 500 }, (_, i) => Math.sin(i));
  const draw = (seed: number) =>
    new Sampler({ seed, topK: 40 }).sample(new Float32Array([...x, ...x]), 2);
  const run = (seed: number) => Array.from({ length: 10 }, () => draw(seed)).flat();
  assertEquals(run(1), run(1));
  const a = new Sampler({ seed: 1 });
  const b = new Sampler({ seed: 2 });
  const seqA = Array.from({ length: 20 }, () => a.sample(x, 1)[0]);
  const seqB = Array.from({ length: 20 }, () => b.sample(x, 1)[0]);
  assert(seqA.join() !== seqB.join());
});

Deno.test("Sampler without a seed picks a random one, which reproduces its draws", () => {
  const x = Float32Array.from({ length: 300 }, (_, i) => Math.cos(i));
  const draws = (s: Sampler) => Array.from({ length: 30 }, () => s.sample(x, 1)[0]);
  const seeds = new Set(Array.from({ length: 5 }, () => new Sampler().seed));
  assert(seeds.size > 1, "five unseeded samplers all got the same seed");
  const unseeded = new Sampler();
  assertEquals(draws(new Sampler({ seed: unseeded.seed })), draws(unseeded));
});

Deno.test("validateSampling() rejects bad values, naming them", () => {
  assertThrows(() => validateSampling({ temperature: -1 }), RangeError, "temperature");
  assertThrows(() => validateSampling({ temperature: NaN }), RangeError, "temperature");
  assertThrows(() => validateSampling({ topK: 1.5 }), RangeError, "topK");
  assertThrows(() => validateSampling({ topK: -1 }), RangeError, "topK");
  assertThrows(() => validateSampling({ topP: 0 }), RangeError, "topP");
  assertThrows(() => validateSampling({ topP: 1.5 }), RangeError, "topP");
});

Deno.test("Rng: the same seed gives the same numbers, all in [0, 1)", () => {
  const a = new Rng(42);
  const b = new Rng(42);
  for (let i = 0; i < 1000; i++) {
    const v = a.next();
    assertEquals(v, b.next());
    assert(v >= 0 && v < 1);
  }
  assert(new Rng(1).nextUint32() !== new Rng(2).nextUint32());
});
