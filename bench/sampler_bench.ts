/**
 * Time to draw one token from 50,257 logits (GPT-2's vocabulary) with each kind of
 * sampling control: the defaults, top-k, top-p, min-p, and every penalty on at once over
 * a full 1024-token context (the penalties touch only the tokens of the context, so they
 * add a copy of the row and a pass over the context's distinct tokens).
 *
 *     deno bench bench/sampler_bench.ts
 *
 * The logits are random with a spread like a trained model's (a few tokens well ahead of
 * a long flat tail), so top-p sorts what it does on real rows.
 */
import { Rng } from "../runtime/generate/random.ts";
import { Sampler, type SamplerOptions } from "../runtime/generate/sampler.ts";

const V = 50257;
const rng = new Rng(1);
/** A few rows, cycled, so that no branch predictor learns one row. */
const rows = Array.from({ length: 8 }, () => {
  const row = new Float32Array(V);
  for (let i = 0; i < V; i++) row[i] = -4 * Math.log(1 / (rng.next() + 1e-9));
  for (let k = 0; k < 20; k++) row[Math.floor(rng.next() * V)] += 8 + 4 * rng.next();
  return row;
});
const context = Array.from({ length: 1024 }, () => Math.floor(rng.next() * V));

const cases: [string, SamplerOptions][] = [
  ["defaults (temperature 1, all tokens)", {}],
  ["top_k 40", { topK: 40 }],
  ["top_p 0.9, temperature 0.8", { topP: 0.9, temperature: 0.8 }],
  ["min_p 0.05", { minP: 0.05 }],
  ["greedy", { temperature: 0 }],
  ["every penalty, top_k 40, 1024 tokens of context", {
    topK: 40,
    repetitionPenalty: 1.1,
    repeatLastN: 1024,
    presencePenalty: 0.5,
    frequencyPenalty: 0.5,
    logitBias: { 50256: -100, 198: 2 },
    noRepeatNgramSize: 3,
  }],
];

for (const [name, options] of cases) {
  // Half the context as prompt, half drawn, so presence and frequency have tokens too.
  const sampler = new Sampler({ ...options, seed: 1 }, {
    prompt: context.slice(0, 512),
    vocabSize: V,
  });
  let r = 0;
  for (let i = 0; i < 512; i++) sampler.sample(rows[i % rows.length], 1);
  const baseline = options === cases[0][1];
  Deno.bench({ name, group: "sample one token", baseline }, () => {
    sampler.sample(rows[r++ % rows.length], 1);
  });
}
