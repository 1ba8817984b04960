import fc from "fast-check";
import { assert, assertEquals, assertRejects } from "./asserts.ts";
import { assertClose } from "./assert_close.ts";
import { ModelFileError } from "../runtime/errors.ts";
import { openSafetensors, writeSafetensors } from "../runtime/io/safetensors.ts";
import {
  elementCount,
  float16BitsToFloat32Bits,
  itemSize,
  readAsFloat32,
  type StoredDType,
  type TensorToWrite,
} from "../runtime/io/tensor_source.ts";
import { listTemporaryFiles, withTempDir } from "./temp_dir.ts";

/** IEEE 754 binary16 to a number, straight from the definition: the scalar reference. */
function float16Reference(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exponent = (h >> 10) & 0x1f;
  const fraction = h & 0x3ff;
  if (exponent === 0) return sign * fraction * Math.pow(2, -24);
  if (exponent === 31) return fraction === 0 ? sign * Infinity : NaN;
  return sign * (1 + fraction / 1024) * Math.pow(2, exponent - 15);
}

Deno.test("writeSafetensors() and openSafetensors() round-trip tensors of every dtype", async () => {
  await withTempDir(async (dir) => {
    const dtypes: StoredDType[] = [
      "float64",
      "float32",
      "float16",
      "bfloat16",
      "int64",
      "int32",
      "int16",
      "int8",
      "uint8",
      "bool",
    ];
    const tensors = dtypes.map((dtype, i) => randomTensor(`t${i}.${dtype}`, dtype, [3, i], i));
    tensors.push(randomTensor("scalar", "float32", [], 99), randomTensor("empty", "int8", [0], 7));
    const path = `${dir}/model.safetensors`;
    await writeSafetensors(path, tensors, { format: "pt", note: "ünïcode" });
    using file = await openSafetensors(path);
    assertEquals(file.metadata, { format: "pt", note: "ünïcode" });
    assertEquals(file.tensors.size, tensors.length);
    for (const t of tensors) {
      const info = file.tensors.get(t.name)!;
      assertEquals([info.dtype, info.shape, info.byteLength], [t.dtype, t.shape, t.data.length]);
      // Laid out largest item size first, so every tensor is aligned to its item size.
      assertEquals(info.dataOffsets[0] % itemSize(t.dtype)!, 0, t.name);
      const back = new Uint8Array(info.byteLength);
      await file.read(t.name, back);
      assertEquals(back, t.data, t.name);
    }
    assertEquals(await listTemporaryFiles(dir), []);
  });
});

Deno.test("writeSafetensors() pads the JSON header with spaces to a multiple of 8 bytes", async () => {
  await withTempDir(async (dir) => {
    for (let n = 1; n <= 8; n++) {
      const path = `${dir}/${n}.safetensors`;
      await writeSafetensors(path, [randomTensor("x".repeat(n), "uint8", [n], n)]);
      const bytes = await Deno.readFile(path);
      const headerLength = Number(new DataView(bytes.buffer).getBigUint64(0, true));
      assertEquals(headerLength % 8, 0);
      const header = new TextDecoder().decode(bytes.subarray(8, 8 + headerLength));
      assert(header.startsWith("{"), header);
      assert(/^ *$/.test(header.slice(header.lastIndexOf("}") + 1)), `padding of ${header}`);
      assertEquals(Object.keys(JSON.parse(header)), ["x".repeat(n)]);
      assertEquals(bytes.length, 8 + headerLength + n);
    }
  });
});

Deno.test("openSafetensors() reads a file laid out by hand from the format description", async () => {
  await withTempDir(async (dir) => {
    const header = JSON.stringify({
      b: { dtype: "I32", shape: [2], data_offsets: [8, 16] },
      __metadata__: { source: "hand" },
      a: { dtype: "F32", shape: [1, 2], data_offsets: [0, 8] },
    });
    const data = new Uint8Array(new Float32Array([1.5, -2]).buffer);
    const ints = new Uint8Array(new Int32Array([7, -7]).buffer);
    const path = `${dir}/hand.safetensors`;
    await Deno.writeFile(path, rawFile(header, concat(data, ints)));
    using file = await openSafetensors(path);
    assertEquals(file.metadata, { source: "hand" });
    assertEquals([...file.tensors.keys()].sort(), ["a", "b"]);
    const a = new Float32Array(2);
    await readAsFloat32(file, "a", a);
    assertEquals(Array.from(a), [1.5, -2]);
    const b = new Uint8Array(8);
    await file.read("b", b);
    assertEquals(Array.from(new Int32Array(b.buffer)), [7, -7]);
  });
});

Deno.test("readAsFloat32() converts every float16 value exactly, subnormals, infinities and NaN included", async () => {
  await withTempDir(async (dir) => {
    const bits = Uint16Array.from({ length: 65536 }, (_, i) => i);
    const path = `${dir}/all.safetensors`;
    await writeSafetensors(path, [
      { name: "h", dtype: "float16", shape: [65536], data: new Uint8Array(bits.buffer) },
    ]);
    using file = await openSafetensors(path);
    const values = new Float32Array(65536);
    await readAsFloat32(file, "h", values);
    assertClose(values, Array.from(bits, float16Reference));
    // Signed zeros and NaN payloads survive: compare bit patterns too.
    const out = new Uint32Array(values.buffer);
    assertEquals(out[0x8000], 0x80000000);
    assertEquals(out[0x7e01], 0x7fc02000);
    assertEquals(out[0xfc00], 0xff800000);
    for (const h of [0x0001, 0x03ff, 0x0400, 0x3c00, 0x7bff, 0x8001]) {
      assertEquals(out[h], float16BitsToFloat32Bits(h));
    }
  });
});

Deno.test("readAsFloat32() widens in place without touching memory around the destination", async () => {
  await withTempDir(async (dir) => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.integer({ min: 0, max: 0xffff }), { maxLength: 50 }),
        fc.constantFrom<StoredDType>("float16", "bfloat16"),
        fc.nat(8),
        async (halves, dtype, start) => {
          const path = `${dir}/h.safetensors`;
          const bits = Uint16Array.from(halves);
          const data = new Uint8Array(bits.buffer);
          await writeSafetensors(path, [{ name: "h", dtype, shape: [bits.length], data }]);
          using file = await openSafetensors(path);
          const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
          const all = new Float32Array(memory.buffer, 0, 64).fill(-7);
          await readAsFloat32(file, "h", all.subarray(start, start + bits.length));
          const want = Array.from(
            bits,
            (h) =>
              dtype === "float16"
                ? float16Reference(h)
                : new Float32Array(new Uint32Array([h << 16]).buffer)[0],
          );
          assertClose(all.subarray(start, start + bits.length), want);
          assert(all.subarray(0, start).every((v) => v === -7));
          assert(all.subarray(start + bits.length).every((v) => v === -7));
        },
      ),
      { numRuns: 60 },
    );
  });
});

Deno.test("readAsFloat32() refuses an integer tensor and a destination of the wrong length", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/m.safetensors`;
    await writeSafetensors(path, [
      randomTensor("ids", "int64", [4], 1),
      randomTensor("w", "float32", [4], 2),
    ]);
    using file = await openSafetensors(path);
    await assertRejects(
      () => readAsFloat32(file, "ids", new Float32Array(4)),
      ModelFileError,
      'tensor "ids"',
    );
    await assertRejects(
      () => readAsFloat32(file, "w", new Float32Array(3)),
      RangeError,
      "4 elements",
    );
    await assertRejects(() => file.read("nope", new Uint8Array(0)), ModelFileError, '"nope"');
  });
});

// ---------------------------------------------------------------------------------------
// Damaged files

async function assertOpenFails(
  dir: string,
  bytes: Uint8Array,
  ...includes: string[]
): Promise<void> {
  const path = `${dir}/bad.safetensors`;
  await Deno.writeFile(path, bytes);
  const e = await assertRejects(() => openSafetensors(path), ModelFileError, path);
  for (const s of includes) assert(e.message.includes(s), `"${s}" not in: ${e.message}`);
  assert(!e.message.includes("\n"), `message is not one line: ${e.message}`);
}

const GOOD_HEADER = JSON.stringify({ w: { dtype: "F32", shape: [2], data_offsets: [0, 8] } });

Deno.test("openSafetensors() rejects a header length beyond the file or too short a file", async () => {
  await withTempDir(async (dir) => {
    await assertOpenFails(dir, new Uint8Array(5), "5 bytes");
    const tooLong = rawFile(GOOD_HEADER, new Uint8Array(8));
    new DataView(tooLong.buffer).setBigUint64(0, BigInt(tooLong.length), true);
    await assertOpenFails(dir, tooLong, "header length");
    const huge = rawFile(GOOD_HEADER, new Uint8Array(8));
    new DataView(huge.buffer).setBigUint64(0, 2n ** 63n, true);
    await assertOpenFails(dir, huge, `header length ${2n ** 63n}`);
  });
});

Deno.test("openSafetensors() rejects a header that is not a JSON object", async () => {
  await withTempDir(async (dir) => {
    await assertOpenFails(dir, rawFile('{"w": {"dtype": "F32",', new Uint8Array(8)), "JSON");
    await assertOpenFails(dir, rawFile("[1, 2]", new Uint8Array(8)), "expected an object");
    const badUtf8 = rawFile("{}", new Uint8Array(0));
    badUtf8[9] = 0xff;
    await assertOpenFails(dir, badUtf8, "UTF-8");
  });
});

Deno.test("openSafetensors() rejects offsets beyond the file and sizes that do not fit the shape", async () => {
  await withTempDir(async (dir) => {
    await assertOpenFails(dir, rawFile(GOOD_HEADER, new Uint8Array(7)), 'tensor "w"', "beyond");
    const wrongSize = JSON.stringify({ w: { dtype: "F32", shape: [3], data_offsets: [0, 8] } });
    await assertOpenFails(dir, rawFile(wrongSize, new Uint8Array(8)), 'tensor "w"', "expected 12");
    const reversed = JSON.stringify({ w: { dtype: "F32", shape: [0], data_offsets: [8, 0] } });
    await assertOpenFails(dir, rawFile(reversed, new Uint8Array(8)), "data_offsets");
    const unknown = JSON.stringify({ w: { dtype: "C64", shape: [1], data_offsets: [0, 8] } });
    await assertOpenFails(dir, rawFile(unknown, new Uint8Array(8)), '"C64"');
    const badShape = JSON.stringify({ w: { dtype: "F32", shape: [-2], data_offsets: [0, 8] } });
    await assertOpenFails(dir, rawFile(badShape, new Uint8Array(8)), "shape");
    const badMeta = JSON.stringify({ __metadata__: { n: 1 } });
    await assertOpenFails(dir, rawFile(badMeta, new Uint8Array(0)), "__metadata__");
  });
});

Deno.test("openSafetensors() names a missing file, and read() a file truncated after opening", async () => {
  await withTempDir(async (dir) => {
    await assertRejects(() => openSafetensors(`${dir}/nope`), ModelFileError, `${dir}/nope`);
    const path = `${dir}/m.safetensors`;
    await writeSafetensors(path, [randomTensor("w", "float32", [100], 1)]);
    using file = await openSafetensors(path);
    await Deno.truncate(path, (await Deno.stat(path)).size - 10);
    await assertRejects(() => file.read("w", new Uint8Array(400)), ModelFileError, "truncated");
  });
});

Deno.test("writeSafetensors() rejects bad tensors and leaves no file behind", async () => {
  await withTempDir(async (dir) => {
    const path = `${dir}/m.safetensors`;
    const ok = randomTensor("w", "float32", [2], 1);
    await assertRejects(() => writeSafetensors(path, [{ ...ok, shape: [3] }]), RangeError);
    await assertRejects(() => writeSafetensors(path, [ok, ok]), TypeError, "repeated");
    await assertRejects(() => writeSafetensors(path, [{ ...ok, name: "__metadata__" }]), TypeError);
    await assertRejects(() => writeSafetensors(path, [{ ...ok, dtype: "string" }]), TypeError);
    await assertRejects(
      () => writeSafetensors(path, [ok], { n: 1 } as unknown as Record<string, string>),
      TypeError,
    );
    assertEquals([...Deno.readDirSync(dir)], []);
    // A failure at the rename (the name is taken by a directory) leaves no temporary file.
    await Deno.mkdir(path);
    await assertRejects(() => writeSafetensors(path, [ok]));
    assertEquals(await listTemporaryFiles(dir), []);
  });
});

// ---------------------------------------------------------------------------------------
// Helpers

function randomTensor(
  name: string,
  dtype: StoredDType,
  shape: number[],
  seed: number,
): TensorToWrite {
  const data = new Uint8Array(elementCount(shape) * itemSize(dtype)!);
  let x = seed * 2654435761 + 1;
  for (let i = 0; i < data.length; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    data[i] = dtype === "bool" ? (x >>> 16) & 1 : x >>> 24;
  }
  return { name, dtype, shape, data };
}

/** A safetensors file: header length, header text as given (unpadded), then data. */
function rawFile(header: string, data: Uint8Array): Uint8Array {
  const json = new TextEncoder().encode(header);
  const out = new Uint8Array(8 + json.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  out.set(data, 8 + json.length);
  return out;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}
