/**
 * The GGUF reader on files written by the test writer (testing/gguf_writer.ts): every
 * metadata value type, both versions, alignments, every tensor type; and every kind of
 * damaged file, each refused in one line that names the file and what is wrong.
 */
import fc from "fast-check";
import { assert, assertEquals, assertRejects } from "./asserts.ts";
import { withTempDir } from "./temp_dir.ts";
import { ModelFileError } from "../runtime/errors.ts";
import { openGguf } from "../runtime/io/gguf.ts";
import { readAsFloat32 } from "../runtime/io/tensor_source.ts";
import { type Float32Convertible, TYPE_LAYOUTS } from "../runtime/io/tensor_types.ts";
import {
  ggufBytes,
  type GgufEntry,
  type GgufTensorToWrite,
  type GgufToWrite,
  storeAs,
  writeGguf,
} from "../testing/gguf_writer.ts";
import { Rng } from "../runtime/generate/random.ts";

const u32 = (value: number): GgufEntry => ({ type: "uint32", value });
const str = (value: string): GgufEntry => ({ type: "string", value });

/** One of each value type, an empty array and nested arrays. */
const EVERY_TYPE: [string, GgufEntry][] = [
  ["t.uint8", { type: "uint8", value: 255 }],
  ["t.int8", { type: "int8", value: -128 }],
  ["t.uint16", { type: "uint16", value: 65535 }],
  ["t.int16", { type: "int16", value: -32768 }],
  ["t.uint32", u32(4294967295)],
  ["t.int32", { type: "int32", value: -2147483648 }],
  ["t.float32", { type: "float32", value: 0.1 }],
  ["t.float64", { type: "float64", value: 0.1 }],
  ["t.uint64", { type: "uint64", value: 2n ** 64n - 1n }],
  ["t.int64", { type: "int64", value: -(2n ** 63n) }],
  ["t.true", { type: "bool", value: true }],
  ["t.false", { type: "bool", value: false }],
  ["t.string", str("héllo, Ġworld ✓")],
  ["t.empty", { type: "array", items: "int32", value: [] }],
  ["t.strings", { type: "array", items: "string", value: [str("a b"), str(""), str("Ċ")] }],
  [
    "t.nested",
    {
      type: "array",
      items: "array",
      value: [
        { type: "array", items: "uint8", value: [{ type: "uint8", value: 1 }] },
        { type: "array", items: "float64", value: [] },
      ],
    },
  ],
];

const EXPECTED_VALUES: Record<string, unknown> = {
  "t.uint8": 255,
  "t.int8": -128,
  "t.uint16": 65535,
  "t.int16": -32768,
  "t.uint32": 4294967295,
  "t.int32": -2147483648,
  "t.float32": Math.fround(0.1),
  "t.float64": 0.1,
  "t.uint64": 2n ** 64n - 1n,
  "t.int64": -(2n ** 63n),
  "t.true": true,
  "t.false": false,
  "t.string": "héllo, Ġworld ✓",
  "t.empty": [],
  "t.strings": ["a b", "", "Ċ"],
  "t.nested": [[1], []],
};

function randomValues(n: number, seed: number, scale = 1): Float32Array {
  const rng = new Rng(seed);
  return Float32Array.from({ length: n }, () => scale * rng.normal());
}

/** A tensor of `type` holding `rows` × `cols` random values, with its values as stored. */
function tensorOf(name: string, type: Float32Convertible, rows: number, cols: number, seed = 1) {
  const values = randomValues(rows * cols, seed);
  return { name, ne: [cols, rows], type, data: storeAs(type, values) } satisfies GgufTensorToWrite;
}

async function open(dir: string, file: GgufToWrite | Uint8Array) {
  const path = `${dir}/t.gguf`;
  await Deno.writeFile(path, file instanceof Uint8Array ? file : ggufBytes(file));
  return await openGguf(path);
}

Deno.test("openGguf() reads every metadata value type, arrays and nested arrays, in versions 2 and 3", async () => {
  await withTempDir(async (dir) => {
    for (const version of [2, 3]) {
      using file = await open(dir, { version, metadata: EVERY_TYPE });
      assertEquals(file.version, version);
      assertEquals(Object.fromEntries(file.metadata), EXPECTED_VALUES);
      assertEquals([...file.metadata.keys()], EVERY_TYPE.map(([k]) => k)); // file order
      assertEquals(file.tensors.size, 0);
    }
  });
});

Deno.test("openGguf() places the data at general.alignment (default 32), each tensor at a multiple of it", async () => {
  await withTempDir(async (dir) => {
    const tensors = [
      tensorOf("a", "float32", 3, 5),
      tensorOf("b", "q4_0", 2, 32, 2),
      tensorOf("c", "float16", 1, 7, 3),
    ];
    for (const alignment of [undefined, 8, 64, 256]) {
      const metadata: [string, GgufEntry][] = alignment === undefined
        ? [["x", str("y")]]
        : [["general.alignment", u32(alignment)]];
      using file = await open(dir, { metadata, tensors });
      const align = alignment ?? 32;
      assertEquals(file.alignment, align);
      assertEquals(file.dataStart % align, 0);
      for (const t of tensors) {
        const info = file.tensors.get(t.name)!;
        assertEquals((info.position - file.dataStart) % align, 0, t.name);
        assertEquals([info.shape, info.ne, info.byteLength], [
          [...t.ne].reverse(),
          t.ne,
          t.data.length,
        ]);
        const bytes = new Uint8Array(info.byteLength);
        await file.read(t.name, bytes);
        assertEquals(bytes, t.data, `${t.name} at alignment ${align}`);
      }
    }
  });
});

Deno.test("openGguf() reads a tensor of every supported type, and readAsFloat32 converts it", async () => {
  await withTempDir(async (dir) => {
    const types = Object.keys(TYPE_LAYOUTS) as Float32Convertible[];
    const tensors = types.map((type, i) => tensorOf(`w.${type}`, type, 3, 512, i));
    using file = await open(dir, { tensors });
    for (const [i, type] of types.entries()) {
      const info = file.tensors.get(`w.${type}`)!;
      assertEquals([info.dtype, info.ggmlType], [type, TYPE_LAYOUTS[type].ggmlName]);
      const values = new Float32Array(3 * 512);
      await readAsFloat32(file, info.name, values);
      // Each type's own error bound is tested in tensor_types_test.ts; here, that the
      // values come back near the originals, in order.
      const original = randomValues(3 * 512, i);
      let err = 0, norm = 0;
      for (let j = 0; j < values.length; j++) {
        err += (values[j] - original[j]) ** 2;
        norm += original[j] ** 2;
      }
      assert(Math.sqrt(err / norm) < 0.2, `${type}: relative RMS error ${Math.sqrt(err / norm)}`);
    }
  });
});

// ---------------------------------------------------------------------------------------
// Damaged files

async function assertRefused(dir: string, bytes: Uint8Array, ...includes: string[]) {
  const path = `${dir}/bad.gguf`;
  await Deno.writeFile(path, bytes);
  const e = await assertRejects(() => openGguf(path), ModelFileError, `"${path}"`);
  for (const s of includes) assert(e.message.includes(s), `"${s}" not in: ${e.message}`);
  assert(!e.message.includes("\n"), `not one line: ${e.message}`);
  return e.message;
}

const SMALL: GgufToWrite = {
  metadata: [["general.architecture", str("gpt2")], ["k", {
    type: "array",
    items: "string",
    value: [str("ab"), str("cd")],
  }]],
  tensors: [tensorOf("a", "float32", 2, 4), tensorOf("b", "q8_0", 2, 32)],
};

/** `bytes` with a little-endian value written at `offset`. */
function patched(bytes: Uint8Array, offset: number, value: number | bigint, width: 4 | 8) {
  const out = bytes.slice();
  const view = new DataView(out.buffer);
  if (width === 4) view.setUint32(offset, Number(value), true);
  else view.setBigUint64(offset, BigInt(value), true);
  return out;
}

Deno.test("openGguf() refuses a file that is not GGUF, a big-endian file and other versions", async () => {
  await withTempDir(async (dir) => {
    const good = ggufBytes(SMALL);
    await assertRefused(dir, new Uint8Array(0), "the magic", "truncated");
    await assertRefused(
      dir,
      new TextEncoder().encode("PK\x03\x04 not gguf"),
      "50 4b 03 04",
      "not a GGUF file",
    );
    // A big-endian writer stores the version 3 as bytes 00 00 00 03.
    await assertRefused(dir, patched(good, 4, 0x03000000, 4), "big-endian", "little-endian");
    await assertRefused(dir, patched(good, 4, 1, 4), "version 1", "current llama.cpp");
    await assertRefused(dir, patched(good, 4, 4, 4), "version 4", "expected 2 or 3");
  });
});

Deno.test("openGguf() refuses a file cut short anywhere, naming what ends where", async () => {
  await withTempDir(async (dir) => {
    const good = ggufBytes(SMALL);
    // The last byte that matters: the end of the last tensor (padding may follow).
    let end = 0;
    {
      using file = await open(dir, good);
      for (const t of file.tensors.values()) end = Math.max(end, t.position + t.byteLength);
    }
    const cuts = new Set([1, 7, 15, 23, 30, end - 1]);
    const rng = new Rng(9);
    while (cuts.size < 40) cuts.add(1 + Math.floor(rng.next() * (end - 1)));
    for (const cut of cuts) {
      const message = await assertRefused(dir, good.subarray(0, cut));
      assert(/truncated/.test(message), `cut at ${cut}: ${message}`);
    }
  });
});

Deno.test("openGguf() refuses absurd counts and lengths before allocating for them", async () => {
  await withTempDir(async (dir) => {
    const good = ggufBytes(SMALL);
    // Header: magic 0–4, version 4–8, tensor count 8–16, metadata count 16–24, first key's
    // length 24–32.
    await assertRefused(dir, patched(good, 8, 2n ** 60n, 8), "the tensor count", "corrupt");
    await assertRefused(dir, patched(good, 16, 2n ** 62n, 8), "the metadata count", "corrupt");
    await assertRefused(dir, patched(good, 24, 2n ** 63n, 8), "the length of metadata key 0");
    // The array "k": its count follows its key, the value type and the item type.
    const key = "general.architecture";
    const kAt = 24 + 8 + key.length + 4 + 8 + 4; // past the first pair
    const countAt = kAt + 8 + 1 + 4 + 4;
    assertEquals(new DataView(good.buffer).getBigUint64(countAt, true), 2n);
    await assertRefused(dir, patched(good, countAt, 2n ** 40n, 8), 'the length of metadata "k"');
    await assertRefused(dir, patched(good, countAt + 8, 2n ** 50n, 8), 'metadata "k"[0]');
  });
});

Deno.test("openGguf() refuses bad values, tensors and layouts, each in a line that says which", async () => {
  await withTempDir(async (dir) => {
    const refuse = (file: GgufToWrite, ...includes: string[]) =>
      assertRefused(dir, ggufBytes(file), ...includes);
    await refuse({ metadata: [["k", str("a")], ["k", str("b")]] }, 'key "k" appears twice');
    await refuse(
      { metadata: [["general.alignment", u32(24)]] },
      "general.alignment is 24",
      "power of two",
    );
    await refuse({
      metadata: [["general.alignment", { type: "string", value: "32" }]],
    }, "general.alignment is 32");
    const bad = ggufBytes({ metadata: [["k", str("ab")]] });
    bad[24 + 8 + 1 + 4 + 8] = 0xff; // the string's first byte, after key, type and length
    await assertRefused(dir, bad, 'metadata "k"', "not valid UTF-8");
    const boolAt = ggufBytes({ metadata: [["k", { type: "bool", value: true }]] });
    boolAt[24 + 8 + 1 + 4] = 2; // the value, after the key and its type
    await assertRefused(dir, boolAt, "bool of value 2");
    const typeAt = ggufBytes({ metadata: [["k", u32(1)]] });
    typeAt[24 + 8 + 1] = 13; // the value type
    await assertRefused(dir, typeAt, "value type 13");

    await refuse(
      { tensors: [{ name: "q", ne: [256, 2], type: 10, data: new Uint8Array(168) }] },
      'tensor "q"',
      "Q2_K",
      "Q4_K",
    );
    await refuse(
      { tensors: [{ name: "q", ne: [4], type: 99, data: new Uint8Array(4) }] },
      'tensor "q"',
      "id 99",
    );
    await refuse(
      { tensors: [{ name: "q", ne: [48, 2], type: "q8_0", data: new Uint8Array(102) }] },
      'tensor "q"',
      "rows of 48",
      "Q8_0 blocks of 32",
    );
    await refuse(
      { tensors: [{ name: "q", ne: [1, 1, 1, 1, 1], type: "float32", data: new Uint8Array(4) }] },
      "5 dimensions",
    );
    await refuse(
      { tensors: [tensorOf("a", "float32", 1, 4), tensorOf("a", "float32", 1, 4)] },
      'tensor "a" appears twice',
    );
    // Offsets: the first tensor's offset field is the last 8 bytes of its info.
    const one = { tensors: [tensorOf("a", "float32", 2, 4), tensorOf("b", "float32", 2, 4)] };
    const bytes = ggufBytes(one);
    const offsetAt = 24 + (8 + 1 + 4 + 16 + 4); // the "a" info's offset field
    assertEquals(new DataView(bytes.buffer).getBigUint64(offsetAt, true), 0n);
    await assertRefused(
      dir,
      patched(bytes, offsetAt, 8, 8),
      'tensor "a"',
      "not a multiple of the alignment 32",
    );
    await assertRefused(dir, patched(bytes, offsetAt, 32, 8), "overlap");
    await assertRefused(
      dir,
      patched(bytes, offsetAt, 128, 8),
      'tensor "a" needs bytes up to',
      "truncated",
    );
  });
});

Deno.test("GgufFile.readPart() reads any range of a tensor and refuses one outside it", async () => {
  await withTempDir(async (dir) => {
    const t = tensorOf("w", "q4_1", 4, 64);
    using file = await open(dir, { tensors: [t] });
    await fc.assert(
      fc.asyncProperty(fc.nat(t.data.length), fc.nat(t.data.length), async (a, b) => {
        const [from, to] = a <= b ? [a, b] : [b, a];
        const part = new Uint8Array(to - from);
        await file.readPart("w", from, part);
        assertEquals(part, t.data.subarray(from, to));
      }),
      { numRuns: 50 },
    );
    await assertRejects(
      () => file.readPart("w", 1, new Uint8Array(t.data.length)),
      RangeError,
      "bytes 1 to",
    );
    await assertRejects(() => file.read("nope", new Uint8Array(1)), ModelFileError, '"nope"');
  });
});

Deno.test("openGguf() says the file is missing, and writeGguf leaves no partial file", async () => {
  await withTempDir(async (dir) => {
    await assertRejects(() => openGguf(`${dir}/none.gguf`), ModelFileError, "file not found");
    await writeGguf(`${dir}/ok.gguf`, SMALL);
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["ok.gguf"]);
  });
});
