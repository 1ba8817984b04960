import fc from "fast-check";
import { fileURLToPath } from "node:url";
import { assert, assertEquals, assertRejects } from "./asserts.ts";
import { assertClose } from "./assert_close.ts";
import { ModelFileError } from "../runtime/errors.ts";
import { crc32c, maskCrc32c } from "../runtime/io/crc32c.ts";
import {
  elementCount,
  itemSize,
  readAsFloat32,
  type StoredDType,
  type TensorToWrite,
} from "../runtime/io/tensor_source.ts";
import { openTfBundle, resolveCheckpointPrefix } from "../runtime/io/tf_bundle.ts";
import { writeCheckpointFile, writeTfBundle } from "../testing/tf_bundle_writer.ts";
import { listTemporaryFiles, withTempDir } from "./temp_dir.ts";

// ---------------------------------------------------------------------------------------
// Checkpoints written by TensorFlow itself (outside the project, in ../shared)

const FIXTURES = fileURLToPath(new URL("../../shared/fixtures/tf-checkpoints/", import.meta.url));

interface ExpectedTensor {
  dtype: StoredDType;
  shape: number[];
  offset: number;
  size: number;
  sum?: number;
  first?: number[];
  value?: number[];
}
interface ExpectedCheckpoint {
  header: {
    num_shards: number;
    endianness: number;
    version: { producer: number; min_consumer: number; bad_consumers: number[] };
  };
  tensors: Record<string, ExpectedTensor>;
}

function loadExpected(): Record<string, ExpectedCheckpoint> | undefined {
  try {
    return JSON.parse(Deno.readTextFileSync(`${FIXTURES}expected.json`));
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    console.warn(
      `Skipping the TensorFlow fixture tests: ${FIXTURES}expected.json not found (the shared ` +
        `fixtures live next to the project checkout, in ../shared)`,
    );
    return undefined;
  }
}

const expected = loadExpected();

for (const [prefix, want] of Object.entries(expected ?? { "(fixtures absent)": undefined })) {
  Deno.test({
    name: `openTfBundle() reads TensorFlow's "${prefix}" as expected.json describes it`,
    ignore: want === undefined,
    async fn() {
      using bundle = await openTfBundle(FIXTURES + prefix);
      assertEquals(bundle.header, {
        numShards: want!.header.num_shards,
        endianness: want!.header.endianness,
        version: {
          producer: want!.header.version.producer,
          minConsumer: want!.header.version.min_consumer,
          badConsumers: want!.header.version.bad_consumers,
        },
      });
      assertEquals([...bundle.tensors.keys()].sort(), Object.keys(want!.tensors).sort());
      for (const [name, t] of Object.entries(want!.tensors)) {
        const info = bundle.tensors.get(name)!;
        assertEquals(
          [info.dtype, info.shape, info.offset, info.byteLength, info.shardId],
          [t.dtype, t.shape, t.offset, t.size, 0],
          name,
        );
        const bytes = new Uint8Array(info.byteLength);
        await bundle.read(name, bytes); // verifies the CRC-32C of every tensor
        if (t.dtype === "float32") {
          const values = new Float32Array(elementCount(t.shape));
          await readAsFloat32(bundle, name, values);
          assertEquals(values, new Float32Array(bytes.buffer), name);
          let sum = 0;
          let sumAbs = 0;
          for (const v of values) {
            sum += v;
            sumAbs += Math.abs(v);
          }
          // expected.json summed in float64 too, possibly in another order: the difference
          // is bounded by a few ulps of sum(|x|), far below 1e-9 of it.
          assertClose([sum], [t.sum!], { atol: 1e-9 * sumAbs, rtol: 1e-6, msg: name });
          assertClose(values.subarray(0, t.first!.length), t.first!, { msg: name });
        } else if (t.dtype === "int64") {
          const values = [...new BigInt64Array(bytes.buffer)].map(Number);
          assertEquals(values, t.value, name);
        }
      }
    },
  });
}

Deno.test({
  name: "readAsFloat32() refuses a TensorFlow string tensor, naming it",
  ignore: expected === undefined,
  async fn() {
    using bundle = await openTfBundle(`${FIXTURES}boston/variables`);
    const name = "_CHECKPOINTABLE_OBJECT_GRAPH";
    const e = await assertRejects(
      () => readAsFloat32(bundle, name, new Float32Array(1)),
      ModelFileError,
      `tensor "${name}"`,
    );
    assert(e.message.includes("dtype is string"), e.message);
  },
});

Deno.test({
  name: "TfBundle.read() verifies the CRC-32C of a TensorFlow string tensor",
  ignore: expected === undefined,
  async fn() {
    await withTempDir(async (dir) => {
      const name = "_CHECKPOINTABLE_OBJECT_GRAPH";
      const data = await Deno.readFile(`${FIXTURES}boston/variables.data-00000-of-00001`);
      await Deno.copyFile(`${FIXTURES}boston/variables.index`, `${dir}/variables.index`);
      const { offset, size } = expected!["boston/variables"].tensors[name];
      data[offset + 100] ^= 0x20; // a byte of the serialized object graph
      await Deno.writeFile(`${dir}/variables.data-00000-of-00001`, data);
      using bundle = await openTfBundle(`${dir}/variables`);
      await assertModelFileError(
        () => bundle.read(name, new Uint8Array(size)),
        `"${name}"`,
        "CRC-32C",
      );
    });
  },
});

Deno.test({
  name: "resolveCheckpointPrefix() follows the checkpoint files TensorFlow wrote",
  ignore: expected === undefined,
  async fn() {
    for (const dir of ["mlp", "houseprices"]) {
      assertEquals(
        await resolveCheckpointPrefix(FIXTURES + dir),
        `${FIXTURES}${dir}/model.ckpt`,
      );
    }
  },
});

Deno.test({
  name: "writeTfBundle() reproduces TensorFlow's own index and data files byte for byte",
  ignore: expected === undefined,
  async fn() {
    await withTempDir(async (dir) => {
      for (const prefix of ["mlp/model.ckpt", "houseprices/model.ckpt"]) {
        const tensors: TensorToWrite[] = [];
        {
          using bundle = await openTfBundle(FIXTURES + prefix);
          for (const t of bundle.tensors.values()) {
            const data = new Uint8Array(t.byteLength);
            await bundle.read(t.name, data);
            tensors.push({ name: t.name, dtype: t.dtype, shape: t.shape, data });
          }
        }
        const ours = `${dir}/${prefix.replace("/", "_")}`;
        await writeTfBundle(ours, tensors.reverse());
        for (const suffix of [".index", ".data-00000-of-00001"]) {
          assertEquals(
            await Deno.readFile(ours + suffix),
            await Deno.readFile(FIXTURES + prefix + suffix),
            prefix + suffix,
          );
        }
      }
    });
  },
});

// ---------------------------------------------------------------------------------------
// Round trips through our writer

/** GPT-2-like names: many keys sharing long prefixes, as in OpenAI's checkpoints. */
function gpt2LikeTensors(layers: number, seed: number): TensorToWrite[] {
  const random = mulberry32(seed);
  const tensors: TensorToWrite[] = [];
  const add = (name: string, dtype: StoredDType, shape: number[]) => {
    const data = new Uint8Array(elementCount(shape) * itemSize(dtype)!);
    for (let i = 0; i < data.length; i++) data[i] = Math.floor(random() * 256);
    tensors.push({ name, dtype, shape, data });
  };
  add("model/wte", "float32", [50, 16]);
  add("model/wpe", "float32", [32, 16]);
  add("model/ln_f/g", "float32", [16]);
  add("model/ln_f/b", "float32", [16]);
  for (let l = 0; l < layers; l++) {
    const h = `model/h${l}`;
    add(`${h}/attn/c_attn/w`, "float32", [1, 16, 48]);
    add(`${h}/attn/c_attn/b`, "float32", [48]);
    add(`${h}/attn/c_proj/w`, "float32", [1, 16, 16]);
    add(`${h}/attn/c_proj/b`, "float32", [16]);
    add(`${h}/ln_1/g`, "float32", [16]);
    add(`${h}/ln_1/b`, "float32", [16]);
    add(`${h}/ln_2/g`, "float16", [16]);
    add(`${h}/ln_2/b`, "bfloat16", [16]);
    add(`${h}/mlp/c_fc/w`, "float64", [1, 4, 8]);
    add(`${h}/mlp/c_fc/b`, "int32", [8]);
    add(`${h}/mlp/c_proj/w`, "int64", [2, 3]);
    add(`${h}/mlp/c_proj/b`, "uint8", []);
    add(`${h}/step`, "bool", [0]);
  }
  return tensors;
}

Deno.test("writeTfBundle() round-trips many tensors through several index blocks", async () => {
  await withTempDir(async (dir) => {
    const tensors = gpt2LikeTensors(48, 1);
    const prefix = `${dir}/model.ckpt`;
    await writeTfBundle(prefix, tensors);

    const layout = await tableLayout(`${prefix}.index`);
    assert(layout.dataBlocks >= 4, `expected several data blocks, got ${layout.dataBlocks}`);
    assert(layout.firstBlockRestarts > 1, "expected several restart points in a data block");

    using bundle = await openTfBundle(prefix);
    assertEquals(bundle.header, {
      numShards: 1,
      endianness: 0,
      version: { producer: 1, minConsumer: 0, badConsumers: [] },
    });
    assertEquals(bundle.tensors.size, tensors.length);
    // Data is laid out in name order, without gaps, like TensorFlow's writer.
    const byName = [...tensors].sort((a, b) => (a.name < b.name ? -1 : 1));
    let offset = 0;
    for (const t of byName) {
      const info = bundle.tensors.get(t.name)!;
      assertEquals([info.dtype, info.shape, info.offset], [t.dtype, t.shape, offset], t.name);
      offset += t.data.byteLength;
      const back = new Uint8Array(info.byteLength);
      await bundle.read(t.name, back);
      assertEquals(back, t.data, t.name);
    }
  });
});

Deno.test("openTfBundle() reads what writeTfBundle() wrote, for any names and shapes", async () => {
  const dtypes: StoredDType[] = [
    "float32",
    "float16",
    "bfloat16",
    "float64",
    "int8",
    "int64",
    "bool",
  ];
  const tensor = fc.record({
    name: fc.string({ unit: fc.constantFrom("a", "b", "/", "_", "0", "9", "é"), minLength: 1 }),
    dtype: fc.constantFrom(...dtypes),
    shape: fc.array(fc.nat(5), { maxLength: 3 }),
    seed: fc.nat(),
  });
  await withTempDir(async (dir) => {
    let run = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.uniqueArray(tensor, { selector: (t) => t.name, maxLength: 60 }),
        fc.constantFrom(64, 256, 4096),
        async (specs, blockSize) => {
          const tensors = specs.map(({ name, dtype, shape, seed }) => {
            const data = new Uint8Array(elementCount(shape) * itemSize(dtype)!);
            const random = mulberry32(seed);
            for (let i = 0; i < data.length; i++) data[i] = Math.floor(random() * 256);
            return { name, dtype, shape, data };
          });
          const prefix = `${dir}/run${run++}`;
          await writeTfBundle(prefix, tensors, { blockSize });
          using bundle = await openTfBundle(prefix);
          assertEquals(bundle.tensors.size, tensors.length);
          for (const t of tensors) {
            const info = bundle.tensors.get(t.name)!;
            assertEquals([info.dtype, info.shape], [t.dtype, t.shape]);
            const back = new Uint8Array(info.byteLength);
            await bundle.read(t.name, back);
            assertEquals(back, t.data);
          }
        },
      ),
      { numRuns: 40 },
    );
  });
});

Deno.test("TfBundle.read() fills a view on shared WebAssembly memory", async () => {
  await withTempDir(async (dir) => {
    const values = Float32Array.from({ length: 1000 }, (_, i) => Math.sin(i));
    await writeTfBundle(`${dir}/m`, [float32Tensor("w", values)]);
    using bundle = await openTfBundle(`${dir}/m`);
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    const dest = new Float32Array(memory.buffer, 64, values.length);
    await readAsFloat32(bundle, "w", dest);
    assertEquals(Array.from(dest), Array.from(values));
  });
});

Deno.test("TfBundle.read() rejects an unknown name and a destination of the wrong size", async () => {
  await withTempDir(async (dir) => {
    await writeTfBundle(`${dir}/m`, [float32Tensor("w", new Float32Array(3))]);
    using bundle = await openTfBundle(`${dir}/m`);
    await assertRejects(() => bundle.read("v", new Uint8Array(12)), ModelFileError, '"v"');
    await assertRejects(() => bundle.read("w", new Uint8Array(8)), RangeError, "has 12");
    await assertRejects(
      () => readAsFloat32(bundle, "w", new Float32Array(4)),
      RangeError,
      "3 elements",
    );
  });
});

Deno.test("writeCheckpointFile() writes what resolveCheckpointPrefix() and TensorFlow read", async () => {
  await withTempDir(async (dir) => {
    await writeTfBundle(`${dir}/model.ckpt`, [float32Tensor("w", new Float32Array(1))]);
    await writeCheckpointFile(dir, "model.ckpt");
    assertEquals(
      await Deno.readTextFile(`${dir}/checkpoint`),
      'model_checkpoint_path: "model.ckpt"\nall_model_checkpoint_paths: "model.ckpt"\n',
    );
    assertEquals(await resolveCheckpointPrefix(dir), `${dir}/model.ckpt`);

    const odd = 'my "best" model\\1';
    await writeTfBundle(`${dir}/${odd}`, [float32Tensor("w", new Float32Array(1))]);
    await writeCheckpointFile(dir, odd);
    assertEquals(await resolveCheckpointPrefix(dir), `${dir}/${odd}`);

    // An absolute path is taken as it is, as TensorFlow does.
    await Deno.mkdir(`${dir}/other`);
    await Deno.writeTextFile(
      `${dir}/other/checkpoint`,
      `model_checkpoint_path: "${dir}/model.ckpt"\n`,
    );
    assertEquals(await resolveCheckpointPrefix(`${dir}/other`), `${dir}/model.ckpt`);
    assertEquals(await listTemporaryFiles(dir), []);
  });
});

Deno.test("writeTfBundle() rejects bad tensors before writing and leaves no file behind", async () => {
  await withTempDir(async (dir) => {
    const prefix = `${dir}/m`;
    const ok = float32Tensor("w", new Float32Array(2));
    await assertRejects(
      () => writeTfBundle(prefix, [{ ...ok, shape: [3] }]),
      RangeError,
      "expected 12",
    );
    await assertRejects(() => writeTfBundle(prefix, [ok, ok]), TypeError, "twice");
    await assertRejects(() => writeTfBundle(prefix, [{ ...ok, name: "" }]), TypeError);
    await assertRejects(
      () => writeTfBundle(prefix, [{ ...ok, dtype: "string" }]),
      TypeError,
      "string",
    );
    // A failure after the data is written (here: the index name is taken by a directory)
    // leaves no temporary files.
    await Deno.mkdir(`${prefix}.index`);
    await assertRejects(() => writeTfBundle(prefix, [ok]));
    assertEquals(await listTemporaryFiles(dir), []);
  });
});

// ---------------------------------------------------------------------------------------
// Damaged files: each is a one-line ModelFileError naming the file and, where there is one,
// the tensor.

/** Writes a small valid bundle at `<dir>/m` and returns its prefix. */
async function smallBundle(dir: string): Promise<string> {
  const prefix = `${dir}/m`;
  await writeTfBundle(prefix, [
    float32Tensor("model/a", Float32Array.from({ length: 100 }, (_, i) => i)),
    float32Tensor("model/b", Float32Array.from({ length: 50 }, (_, i) => -i)),
  ]);
  return prefix;
}

async function assertModelFileError(
  fn: () => Promise<unknown>,
  ...includes: string[]
): Promise<void> {
  const e = await assertRejects(fn, ModelFileError);
  for (const s of includes) assert(e.message.includes(s), `"${s}" not in: ${e.message}`);
  assert(!e.message.includes("\n"), `message is not one line: ${e.message}`);
}

Deno.test("openTfBundle() reports a truncated data shard, naming the file and tensor", async () => {
  await withTempDir(async (dir) => {
    const prefix = await smallBundle(dir);
    const shard = `${prefix}.data-00000-of-00001`;
    await Deno.truncate(shard, 500);
    await assertModelFileError(() => openTfBundle(prefix), shard, '"model/b"', "truncated");
  });
});

Deno.test("TfBundle.read() reports a shard truncated after opening", async () => {
  await withTempDir(async (dir) => {
    const prefix = await smallBundle(dir);
    const shard = `${prefix}.data-00000-of-00001`;
    using bundle = await openTfBundle(prefix);
    await Deno.truncate(shard, 500);
    await assertModelFileError(
      () => bundle.read("model/b", new Uint8Array(200)),
      shard,
      '"model/b"',
      "truncated",
    );
  });
});

Deno.test("TfBundle.read() reports a flipped byte in tensor data as a CRC error", async () => {
  await withTempDir(async (dir) => {
    const prefix = await smallBundle(dir);
    const shard = `${prefix}.data-00000-of-00001`;
    const data = await Deno.readFile(shard);
    data[450] ^= 0x10; // inside model/b, which starts at byte 400
    await Deno.writeFile(shard, data);
    using bundle = await openTfBundle(prefix);
    await bundle.read("model/a", new Uint8Array(400));
    await assertModelFileError(
      () => bundle.read("model/b", new Uint8Array(200)),
      shard,
      '"model/b"',
      "CRC-32C",
    );
  });
});

Deno.test("openTfBundle() reports a truncated index and a wrong magic number", async () => {
  await withTempDir(async (dir) => {
    const prefix = await smallBundle(dir);
    const index = `${prefix}.index`;
    const bytes = await Deno.readFile(index);
    await Deno.writeFile(index, bytes.subarray(0, bytes.length - 3));
    await assertModelFileError(() => openTfBundle(prefix), index, "bad magic");
    await Deno.writeFile(index, bytes.subarray(0, 20));
    await assertModelFileError(() => openTfBundle(prefix), index, "20 bytes");
    const wrong = bytes.slice();
    wrong[wrong.length - 1] ^= 1;
    await Deno.writeFile(index, wrong);
    await assertModelFileError(
      () => openTfBundle(prefix),
      index,
      "expected 0xdb4775248b80fb57",
    );
  });
});

Deno.test("openTfBundle() reports a flipped byte in an index data block as a CRC error", async () => {
  await withTempDir(async (dir) => {
    const prefix = await smallBundle(dir);
    const index = `${prefix}.index`;
    const bytes = await Deno.readFile(index);
    bytes[12] ^= 0x01; // the first data block starts at offset 0
    await Deno.writeFile(index, bytes);
    await assertModelFileError(() => openTfBundle(prefix), index, "data block", "CRC-32C");
  });
});

Deno.test("openTfBundle() rejects a Snappy-compressed block with a clear message", async () => {
  await withTempDir(async (dir) => {
    const prefix = await smallBundle(dir);
    await patchFirstDataBlock(`${prefix}.index`, () => {}, 1);
    await assertModelFileError(() => openTfBundle(prefix), `${prefix}.index`, "Snappy");
  });
});

Deno.test("openTfBundle() names an unsupported dtype and a size that does not fit the shape", async () => {
  await withTempDir(async (dir) => {
    const prefix = await smallBundle(dir);
    const index = `${prefix}.index`;
    const original = await Deno.readFile(index);
    // The entry of "model/a" begins dtype=1 (0x08 0x01) then the shape (0x12).
    await patchFirstDataBlock(index, (block) => {
      const at = findBytes(block, [0x08, 0x01, 0x12]);
      block[at + 1] = 8; // DT_COMPLEX64
    });
    await assertModelFileError(() => openTfBundle(prefix), '"model/a"', "DT_COMPLEX64 (8)");
    await Deno.writeFile(index, original);
    await patchFirstDataBlock(index, (block) => {
      const at = findBytes(block, [0x08, 0x01, 0x12]);
      block[at + 1] = 3; // DT_INT32: same size, fine
      const sizeAt = findBytes(block, [0x28, 0x90, 0x03]); // size = 400
      block[sizeAt + 1] = 0x91;
    });
    await assertModelFileError(() => openTfBundle(prefix), '"model/a"', "401 bytes");
  });
});

Deno.test("openTfBundle() names a missing index and a missing data file", async () => {
  await withTempDir(async (dir) => {
    const prefix = await smallBundle(dir);
    await assertModelFileError(() => openTfBundle(`${dir}/nope`), `${dir}/nope.index`, "not found");
    await Deno.remove(`${prefix}.data-00000-of-00001`);
    await assertModelFileError(
      () => openTfBundle(prefix),
      `${prefix}.data-00000-of-00001`,
      "not found",
    );
  });
});

Deno.test("resolveCheckpointPrefix() names a missing or empty checkpoint file", async () => {
  await withTempDir(async (dir) => {
    await assertModelFileError(
      () => resolveCheckpointPrefix(dir),
      `${dir}/checkpoint`,
      "not found",
    );
    await Deno.writeTextFile(`${dir}/checkpoint`, "nothing here\n");
    await assertModelFileError(
      () => resolveCheckpointPrefix(dir),
      `${dir}/checkpoint`,
      "model_checkpoint_path",
    );
    await Deno.writeTextFile(`${dir}/checkpoint`, 'model_checkpoint_path: "gone.ckpt"\n');
    await assertModelFileError(() => resolveCheckpointPrefix(dir), `${dir}/gone.ckpt.index`);
  });
});

// ---------------------------------------------------------------------------------------
// Helpers

function float32Tensor(name: string, values: Float32Array): TensorToWrite {
  return { name, dtype: "float32", shape: [values.length], data: new Uint8Array(values.buffer) };
}

/** A small seeded PRNG, so that failures reproduce. */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function findBytes(haystack: Uint8Array, needle: number[]): number {
  for (let i = 0; i + needle.length <= haystack.length; i++) {
    if (needle.every((b, j) => haystack[i + j] === b)) return i;
  }
  throw new Error(`bytes ${needle} not found`);
}

/** Reads an unsigned varint at `pos`; returns [value, next position]. */
function varintAt(bytes: Uint8Array, pos: number): [number, number] {
  let value = 0;
  for (let scale = 1;; scale *= 128) {
    const b = bytes[pos++];
    value += (b & 0x7f) * scale;
    if (b < 0x80) return [value, pos];
  }
}

/** Block handles from the footer, read independently of the code under test. */
function footerHandles(index: Uint8Array): { indexOffset: number; indexSize: number } {
  let pos = index.length - 48;
  [, pos] = varintAt(index, pos); // metaindex offset
  [, pos] = varintAt(index, pos); // metaindex size
  const [indexOffset, next] = varintAt(index, pos);
  const [indexSize] = varintAt(index, next);
  return { indexOffset, indexSize };
}

function restartCount(block: Uint8Array): number {
  return new DataView(block.buffer, block.byteOffset).getUint32(block.length - 4, true);
}

/** The first data block's [offset, size], from the first entry of the index block. */
function firstDataBlock(index: Uint8Array): [number, number] {
  const { indexOffset } = footerHandles(index);
  let pos = indexOffset;
  [, pos] = varintAt(index, pos); // shared (0)
  const [keyLength, afterKey] = varintAt(index, pos);
  [, pos] = varintAt(index, afterKey); // value length
  pos += keyLength;
  const [offset, afterOffset] = varintAt(index, pos);
  const [size] = varintAt(index, afterOffset);
  return [offset, size];
}

/**
 * Counts the data blocks (the index block has a restart point per entry) and the restart
 * points of the first data block.
 */
async function tableLayout(path: string) {
  const index = await Deno.readFile(path);
  const { indexOffset, indexSize } = footerHandles(index);
  const [offset, size] = firstDataBlock(index);
  return {
    dataBlocks: restartCount(index.subarray(indexOffset, indexOffset + indexSize)),
    firstBlockRestarts: restartCount(index.subarray(offset, offset + size)),
  };
}

/** Edits the first data block of an index in place, then rewrites its trailer's CRC. */
async function patchFirstDataBlock(
  path: string,
  edit: (block: Uint8Array) => void,
  compression = 0,
): Promise<void> {
  const index = await Deno.readFile(path);
  const [offset, size] = firstDataBlock(index);
  edit(index.subarray(offset, offset + size));
  index[offset + size] = compression;
  const crc = maskCrc32c(crc32c(index.subarray(offset, offset + size + 1)));
  new DataView(index.buffer).setUint32(offset + size + 1, crc, true);
  await Deno.writeFile(path, index);
}
