/**
 * The sampling controls against plain reference implementations: repetition, presence and
 * frequency penalties, logit bias and n-gram bans on the raw logits (TokenHistory), min-p
 * on the sampled set, greedy honouring them all, and neutral values changing no token.
 */
import fc from "fast-check";
import { assert, assertEquals, assertThrows } from "./asserts.ts";
import { assertClose } from "./assert_close.ts";
import { Rng } from "../runtime/generate/random.ts";
import { TokenHistory } from "../runtime/generate/penalties.ts";
import { argmax, Sampler, sampleToken } from "../runtime/generate/sampler.ts";
import {
  checkControl,
  SAMPLING_CONTROLS,
  type SamplingOptions,
  validateSampling,
} from "../runtime/generate/sampling_controls.ts";

const V = 24;

/**
 * The controls of steps 1 to 4 written plainly: each over the whole context, recomputed
 * from scratch, in float64.
 */
function referencePenalised(
  logits: Float32Array,
  prompt: number[],
  generated: number[],
  o: Required<SamplingOptions>,
): number[] {
  const x = Array.from(logits);
  const context = [...prompt, ...generated];
  // Repetition penalty: each distinct token of the window, once.
  const window = o.repeatLastN === 0
    ? []
    : o.repeatLastN < 0
    ? context
    : context.slice(Math.max(0, context.length - o.repeatLastN));
  for (const t of new Set(window)) {
    x[t] = x[t] < 0 ? x[t] * o.repetitionPenalty : x[t] / o.repetitionPenalty;
  }
  // Presence and frequency: minus presence · [count > 0] + frequency · count.
  for (let t = 0; t < x.length; t++) {
    const count = generated.filter((g) => g === t).length;
    x[t] -= o.presencePenalty * (count > 0 ? 1 : 0) + o.frequencyPenalty * count;
  }
  for (const [t, bias] of Object.entries(o.logitBias)) x[Number(t)] += bias;
  // n-gram bans: every earlier n-gram whose first n − 1 tokens are the context's last.
  const n = o.noRepeatNgramSize;
  if (n > 0 && context.length >= n - 1) {
    const tail = context.slice(context.length - (n - 1));
    const banned = new Set<number>();
    for (let i = 0; i + n <= context.length; i++) {
      if (tail.every((t, j) => context[i + j] === t)) banned.add(context[i + n - 1]);
    }
    if (banned.size < x.length) { for (const t of banned) x[t] = -Infinity; }
  }
  return x;
}

const tokenArb = fc.integer({ min: 0, max: V - 1 });
/** Tokens from a small alphabet, so that they repeat and n-grams recur. */
const contextArb = fc.array(fc.integer({ min: 0, max: 5 }), { maxLength: 30 });
const rowArb = fc.array(fc.float({ min: -10, max: 10, noNaN: true }), {
  minLength: V,
  maxLength: V,
}).map((a) => Float32Array.from(a));
const optionsArb: fc.Arbitrary<SamplingOptions> = fc.record({
  repetitionPenalty: fc.oneof(fc.constant(1), fc.double({ min: 0.5, max: 2, noNaN: true })),
  repeatLastN: fc.integer({ min: -1, max: 12 }),
  presencePenalty: fc.double({ min: -2, max: 2, noNaN: true }),
  frequencyPenalty: fc.double({ min: -2, max: 2, noNaN: true }),
  logitBias: fc.dictionary(tokenArb.map(String), fc.integer({ min: -100, max: 100 }), {
    maxKeys: 3,
  }),
  noRepeatNgramSize: fc.integer({ min: 0, max: 4 }),
}, { requiredKeys: [] });

Deno.test("penalties, bias and n-gram bans equal the plain reference, kept up to date token by token", () => {
  fc.assert(fc.property(
    optionsArb,
    contextArb,
    contextArb,
    rowArb,
    (options, prompt, generated, row) => {
      const o = validateSampling(options, V);
      const history = new TokenHistory(prompt, o);
      for (const t of generated) history.push(t);
      const got = new Float32Array(V);
      history.apply(got, row);
      const want = referencePenalised(row, prompt, generated, o);
      for (let t = 0; t < V; t++) {
        assertEquals(got[t] === -Infinity, want[t] === -Infinity, `token ${t} banned`);
      }
      // float32 after each step against float64 throughout.
      const finite = (a: ArrayLike<number>) => Array.from(a, (v) => v === -Infinity ? 0 : v);
      assertClose(finite(got), finite(want), { atol: 1e-5, rtol: 1e-6 });
    },
  ));
});

Deno.test("greedy decoding honours every penalty: each token is the arg max of the reference's logits", () => {
  fc.assert(fc.property(
    optionsArb,
    contextArb,
    fc.array(rowArb, { minLength: 1, maxLength: 12 }),
    (options, prompt, rows) => {
      const o = validateSampling({ ...options, temperature: 0 }, V);
      const sampler = new Sampler({ ...options, temperature: 0 }, { prompt, vocabSize: V });
      const generated: number[] = [];
      for (const row of rows) {
        const token = sampler.sample(row, 1)[0];
        const want = referencePenalised(row, prompt, generated, o);
        const best = Math.max(...want);
        assert(
          want[token] >= best - 1e-4,
          `token ${token} (${want[token]}) is not the best ${best}`,
        );
        generated.push(token);
      }
    },
  ));
});

Deno.test("a token sampled with min-p is at least min-p times as likely as the best, after top-k and top-p", () => {
  fc.assert(fc.property(
    rowArb,
    fc.double({ min: 0.001, max: 1, noNaN: true }),
    fc.double({ min: 0.2, max: 3, noNaN: true }),
    fc.integer({ min: 0, max: 30 }),
    fc.oneof(fc.constant(1), fc.double({ min: 0.05, max: 1, noNaN: true })),
    fc.integer(),
    (row, minP, temperature, topK, topP, seed) => {
      const options = validateSampling({ minP, temperature, topK, topP });
      // Probabilities as the plain definition has them: the softmax of the scaled logits.
      const scaled = Array.from(row, (v) => Math.fround(v / temperature));
      const max = Math.max(...scaled);
      const p = scaled.map((v) => Math.exp(v - max));
      const rng = new Rng(seed);
      for (let draw = 0; draw < 20; draw++) {
        const t = sampleToken(row, options, rng);
        assert(p[t] >= minP * (1 - 1e-9), `token ${t}: p ${p[t]} < minP ${minP} × the best's`);
      }
      // With min-p alone, every token at least min-p as likely can be drawn, and only those.
      const alone = validateSampling({ minP, temperature });
      const seen = new Set(Array.from({ length: 400 }, () => sampleToken(row, alone, rng)));
      for (const t of seen) assert(p[t] >= minP * (1 - 1e-9));
    },
  ));
});

Deno.test("neutral values of every control give the tokens of no controls, bit for bit", () => {
  const neutral = Object.fromEntries(SAMPLING_CONTROLS.map((c) => [c.option, c.default]));
  fc.assert(fc.property(
    fc.array(rowArb, { minLength: 1, maxLength: 10 }),
    contextArb,
    fc.record({
      temperature: fc.oneof(fc.constant(0), fc.double({ min: 0.1, max: 2, noNaN: true })),
      topK: fc.integer({ min: 0, max: 30 }),
      topP: fc.double({ min: 0.05, max: 1, noNaN: true }),
    }),
    fc.integer(),
    (rows, prompt, options, seed) => {
      const plain = new Sampler({ ...options, seed });
      const explicit = new Sampler({ ...neutral, ...options, seed }, { prompt, vocabSize: V });
      // Penalties on but acting on nothing yet: a bias of 0 takes the penalised path.
      const zeroBias = new Sampler({ ...options, seed, logitBias: { 0: 0 } }, { prompt });
      for (const row of rows) {
        const want = plain.sample(row, 1)[0];
        assertEquals(explicit.sample(row, 1)[0], want);
        assertEquals(zeroBias.sample(row, 1)[0], want);
      }
    },
  ));
});

Deno.test("a ban by no_repeat_ngram_size is never drawn, at any temperature", () => {
  // The prompt holds "1 2 3" and ends in "1 2": 3 would repeat a trigram.
  const row = new Float32Array(V).fill(0);
  row[3] = 8; // by far the most likely, but banned
  for (const temperature of [0, 0.5, 1, 2]) {
    const sampler = new Sampler({ noRepeatNgramSize: 3, temperature, seed: 1 }, {
      prompt: [1, 2, 3, 4, 1, 2],
    });
    assert(sampler.sample(row, 1)[0] !== 3, `temperature ${temperature}`);
  }
  // Each row of a batch has its own context: each draws 3 once, then neither can.
  const batch = new Sampler({ noRepeatNgramSize: 1, temperature: 0 });
  const two = Float32Array.from([...row, ...row]);
  assertEquals(batch.sample(two, 2), [3, 3]);
  assertEquals(batch.sample(two, 2).includes(3), false);
  assertEquals(argmax(row), 3);
});

Deno.test("the table's check names the control as the caller speaks and says what it takes", () => {
  const control = (option: string) => SAMPLING_CONTROLS.find((c) => c.option === option)!;
  const fails = (option: string, value: unknown, name: string, includes: string) =>
    assertThrows(
      () => checkControl(control(option), value, { name, vocabSize: V }),
      RangeError,
      includes,
    );
  fails(
    "repetitionPenalty",
    0,
    "--repetition_penalty",
    "--repetition_penalty must be a number > 0, got 0",
  );
  fails(
    "presencePenalty",
    3,
    "presence_penalty",
    "presence_penalty must be a number in [-2, 2], got 3",
  );
  fails("topP", 0, "topP", "topP must be a number in (0, 1], got 0");
  fails("repeatLastN", -2, "repeat_last_n", "an integer >= -1, got -2");
  fails("noRepeatNgramSize", 1.5, "noRepeatNgramSize", "an integer >= 0, got 1.5");
  fails("minP", "0.1", "min_p", 'min_p must be a number in [0, 1], got "0.1"');
  fails("logitBias", [1], "logit_bias", "logit_bias must be an object of token ids");
  fails(
    "logitBias",
    { "24": 1 },
    "logit_bias",
    'the key "24", not a token id: ids are integers in [0, 24)',
  );
  fails("logitBias", { "-1": 1 }, "logit_bias", 'the key "-1"');
  fails("logitBias", { "01": 1 }, "logit_bias", 'the key "01"');
  fails(
    "logitBias",
    { "5": 101 },
    "logitBias",
    'logitBias["5"] must be a number in [-100, 100], got 101',
  );
  assertEquals(checkControl(control("temperature"), 2.5, { name: "t" }), 2.5);
  assertThrows(
    () => checkControl(control("temperature"), 2.5, { name: "t", max: 2 }),
    RangeError,
    "[0, 2]",
  );
  assertEquals(validateSampling({}).repeatLastN, -1);
  assertThrows(
    () => new Sampler({ logitBias: { 300: 1 } }, { vocabSize: 300 }),
    RangeError,
    "logitBias",
  );
  // Every control's default passes its own check: neutral is in range.
  for (const c of SAMPLING_CONTROLS) checkControl(c, c.default, { name: c.option, vocabSize: V });
});
