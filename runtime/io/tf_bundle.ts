/**
 * Reader for TensorFlow's checkpoint format, "TensorBundle" V2: OpenAI's GPT-2
 * `model.ckpt.index` + `model.ckpt.data-00000-of-00001`.
 *
 * The index is a LevelDB-style sorted table. From the end of the file:
 *
 * - a 48-byte footer: the metaindex and index block handles (each a varint64 offset and
 *   varint64 size), zero padding to 40 bytes, then the 8-byte magic 0xdb4775248b80fb57
 *   stored little-endian;
 * - blocks, each followed by a 5-byte trailer: a compression byte (0 = none) and the masked
 *   CRC-32C of the block contents plus that byte. A block holds entries
 *   `varint32 shared, varint32 non_shared, varint32 value_length, key bytes, value bytes`,
 *   where a key repeats `shared` bytes of the previous key, then an array of uint32 restart
 *   offsets (entries with `shared == 0`) and its uint32 count;
 * - the index block maps a key at or after each data block's last key to that block's
 *   handle.
 *
 * In the data blocks, key "" holds a `BundleHeaderProto`; every other key is a tensor name
 * whose value is a `BundleEntryProto` saying where the tensor's bytes sit in which data shard
 * `<prefix>.data-<shard>-of-<count>` (both five digits), with their masked CRC-32C.
 *
 * @module
 */
import { ModelFileError } from "../errors.ts";
import { crc32c, unmaskCrc32c } from "./crc32c.ts";
import { Crc32cThread } from "./crc32c_thread.ts";
import { type FileSource, openOrThrow, type SourceFile } from "./file_source.ts";
import { localFiles, splitPath } from "./local_files.ts";
import {
  checkReadTarget,
  elementCount,
  itemSize,
  type StoredDType,
  type TensorInfo,
  type TensorSource,
} from "./tensor_source.ts";

/** The table magic number, low and high 32-bit halves (stored little-endian, low first). */
export const TABLE_MAGIC_LO = 0x8b80fb57;
export const TABLE_MAGIC_HI = 0xdb477524;
/** Size of a table footer: two block handles padded to 40 bytes, then the magic. */
export const FOOTER_SIZE = 48;
/** Size of the trailer after every block: compression type byte and masked CRC-32C. */
export const BLOCK_TRAILER_SIZE = 5;
/** The tensor bundle format version this code reads and writes (TensorFlow's too). */
export const BUNDLE_VERSION = 1;

/**
 * TensorFlow `DataType` enum values (tensorflow/core/framework/types.proto) of the dtypes
 * this module reads.
 */
export const TF_DTYPE_CODES: Readonly<Record<StoredDType, number>> = {
  float32: 1,
  float64: 2,
  int32: 3,
  uint8: 4,
  int16: 5,
  int8: 6,
  string: 7,
  int64: 9,
  bool: 10,
  bfloat16: 14,
  uint16: 17,
  float16: 19,
  uint32: 22,
  uint64: 23,
  float8_e5m2: 24,
  float8_e4m3fn: 25,
};

const DTYPES_BY_CODE: ReadonlyMap<number, StoredDType> = new Map(
  Object.entries(TF_DTYPE_CODES).map(([dtype, code]) => [code, dtype as StoredDType]),
);

/** Names of the TensorFlow dtypes this module does not read, for messages. */
const UNSUPPORTED_DTYPE_NAMES: Readonly<Record<number, string>> = {
  0: "DT_INVALID",
  8: "DT_COMPLEX64",
  11: "DT_QINT8",
  12: "DT_QUINT8",
  13: "DT_QINT32",
  15: "DT_QINT16",
  16: "DT_QUINT16",
  18: "DT_COMPLEX128",
  20: "DT_RESOURCE",
  21: "DT_VARIANT",
};

/** The path of data shard `shard` of `numShards`, as TensorFlow names it. */
export function shardPath(prefix: string, shard: number, numShards: number): string {
  const pad = (n: number) => String(n).padStart(5, "0");
  return `${prefix}.data-${pad(shard)}-of-${pad(numShards)}`;
}

/** `BundleHeaderProto`: the entry under key "". */
export interface TfBundleHeader {
  /** Number of data shards. */
  readonly numShards: number;
  /** Byte order of the data: 0 = little-endian (the only one read), 1 = big-endian. */
  readonly endianness: number;
  /** `VersionDef` of the writer. */
  readonly version: {
    readonly producer: number;
    readonly minConsumer: number;
    readonly badConsumers: readonly number[];
  };
}

/** A tensor as a `BundleEntryProto` describes it. */
export interface TfTensorInfo extends TensorInfo {
  readonly dtype: StoredDType;
  /** Which data shard holds the bytes. */
  readonly shardId: number;
  /** Byte offset in the shard. */
  readonly offset: number;
  /** Masked CRC-32C of the bytes, as stored. */
  readonly maskedCrc32c: number;
  /**
   * Number of slices, nonzero for a partitioned variable, whose data lives in separate slice
   * entries that this reader does not assemble.
   */
  readonly slices: number;
}

/**
 * Reads the `checkpoint` file in `dir` the way `tf.train.latest_checkpoint` does and returns
 * the prefix of the latest checkpoint: `model_checkpoint_path` joined to `dir` when relative.
 * Throws a {@linkcode ModelFileError} when the file is missing or names no checkpoint, or
 * when `<prefix>.index` does not exist.
 */
export async function resolveCheckpointPrefix(dir: string): Promise<string> {
  const files = localFiles(dir);
  return files.pathOf(await checkpointPrefix(files));
}

/**
 * {@linkcode resolveCheckpointPrefix} for a folder of any source: the prefix as a name in
 * `files` (`model.ckpt`, or an absolute path if the `checkpoint` file holds one).
 */
export async function checkpointPrefix(files: FileSource): Promise<string> {
  const path = files.pathOf("checkpoint");
  const text = await files.readText("checkpoint");
  if (text === undefined) {
    throw new ModelFileError(
      `Cannot read "${path}": file not found, expected a TensorFlow "checkpoint" file`,
    );
  }
  const match = /^\s*model_checkpoint_path\s*:\s*("(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')/m
    .exec(text);
  if (match === null) {
    throw new ModelFileError(
      `Cannot read "${path}": found no model_checkpoint_path line, expected one like ` +
        `model_checkpoint_path: "model.ckpt"`,
    );
  }
  const named = unescapeTextProtoString(match[1].slice(1, -1));
  const index = await files.open(`${named}.index`);
  if (index === undefined) {
    throw new ModelFileError(
      `Cannot read "${path}": it names the checkpoint "${named}", but ` +
        `"${files.pathOf(named)}.index" does not exist`,
    );
  }
  index[Symbol.dispose]();
  return named;
}

/** Undoes the C-style escapes protobuf's text format uses in strings. */
function unescapeTextProtoString(s: string): string {
  const simple: Record<string, string> = {
    n: "\n",
    t: "\t",
    r: "\r",
    '"': '"',
    "'": "'",
    "\\": "\\",
    a: "\x07",
    b: "\b",
    f: "\f",
    v: "\v",
    "?": "?",
  };
  const bytes: number[] = [];
  const encoder = new TextEncoder();
  for (let i = 0; i < s.length; i++) {
    if (s[i] !== "\\") {
      // Copy a run of plain characters at once so that non-ASCII text stays intact.
      let j = i;
      while (j < s.length && s[j] !== "\\") j++;
      bytes.push(...encoder.encode(s.slice(i, j)));
      i = j - 1;
      continue;
    }
    const c = s[++i];
    const octal = /^[0-7]{1,3}/.exec(s.slice(i));
    const hex = /^x([0-9a-fA-F]{1,2})/.exec(s.slice(i));
    if (octal) {
      bytes.push(parseInt(octal[0], 8) & 0xff);
      i += octal[0].length - 1;
    } else if (hex) {
      bytes.push(parseInt(hex[1], 16));
      i += hex[0].length - 1;
    } else {
      bytes.push(...encoder.encode(simple[c] ?? c));
    }
  }
  return new TextDecoder().decode(new Uint8Array(bytes));
}

/**
 * Opens the checkpoint with this prefix (e.g. `models/124M/model.ckpt`): reads and verifies
 * the whole index, and checks that every tensor fits in its data shard. Data is read on
 * demand by `read()`, which verifies each tensor's CRC-32C. Dispose the result to close the
 * shards.
 *
 * @param prefix the checkpoint's prefix: a path on disk, or with `files` a name in it
 * @param files where the checkpoint's files are (default: the prefix's folder on disk)
 *
 * @example
 * ```ts ignore
 * import { openTfBundle, resolveCheckpointPrefix } from "./tf_bundle.ts";
 * using bundle = await openTfBundle(await resolveCheckpointPrefix("models/124M"));
 * const info = bundle.tensors.get("model/wte")!;
 * const bytes = new Uint8Array(info.byteLength);
 * await bundle.read("model/wte", bytes);
 * ```
 */
export async function openTfBundle(prefix: string, files?: FileSource): Promise<TfBundle> {
  if (files === undefined) ({ files, name: prefix } = splitPath(prefix));
  const indexPath = files.pathOf(`${prefix}.index`);
  const file = await readWhole(files, `${prefix}.index`, "a TensorFlow checkpoint index");
  const { header, tensors } = parseIndex(file, indexPath);
  const shards = new Map<number, SourceFile>();
  try {
    const used = new Set([...tensors.values()].map((t) => t.shardId));
    for (let shard = 0; shard < header.numShards; shard++) {
      if (!used.has(shard)) continue;
      const name = shardPath(prefix, shard, header.numShards);
      const data = await files.open(name);
      if (data === undefined) {
        throw new ModelFileError(
          `Cannot open "${files.pathOf(name)}": file not found (the index "${indexPath}" ` +
            `lists tensors stored in it)`,
        );
      }
      shards.set(shard, data);
    }
    for (const t of tensors.values()) {
      const end = t.offset + t.byteLength;
      const size = shards.get(t.shardId)!.size;
      if (end > size) {
        throw new ModelFileError(
          `Cannot read "${shards.get(t.shardId)!.path}": tensor "${t.name}" needs bytes up to ` +
            `${end}, the file has ${size} (the file is truncated)`,
        );
      }
    }
  } catch (e) {
    for (const data of shards.values()) data[Symbol.dispose]();
    throw e;
  }
  return new TfBundle(files.pathOf(prefix), header, tensors, shards);
}

/** Bytes per read: each chunk is checksummed while the next is read. */
const READ_CHUNK = 4 << 20;

/** An open TensorFlow checkpoint: its header, tensors and data shards. */
export class TfBundle implements TensorSource {
  readonly #shards: Map<number, SourceFile>;
  #disposed = false;
  readonly #crc = new Crc32cThread();

  constructor(
    /** The checkpoint prefix, e.g. `models/124M/model.ckpt`. */
    readonly path: string,
    readonly header: TfBundleHeader,
    readonly tensors: ReadonlyMap<string, TfTensorInfo>,
    /** The open data shards by id (those that hold tensors); the bundle closes them. */
    shards: Map<number, SourceFile>,
  ) {
    this.#shards = shards;
  }

  async read(name: string, dest: Uint8Array): Promise<void> {
    const info = checkReadTarget(this, name, dest);
    if (info.slices > 0) {
      throw new ModelFileError(
        `Cannot read "${this.path}.index": tensor "${name}" is saved as ${info.slices} ` +
          `slices of a partitioned variable, which this reader does not assemble`,
      );
    }
    if (this.#disposed) throw new TypeError(`Cannot read "${this.path}": it has been closed`);
    const file = this.#shards.get(info.shardId)!;
    const isString = info.dtype === "string";
    const crc = await this.#readAt(file, info, dest, !isString);
    const actual = isString ? stringTensorCrc32c(dest, elementCount(info.shape)) : crc;
    const expected = unmaskCrc32c(info.maskedCrc32c);
    if (actual === undefined) {
      throw new ModelFileError(
        `Cannot read "${file.path}": string tensor "${name}" does not hold the lengths and ` +
          `bytes of ${elementCount(info.shape)} strings (the data file is corrupt)`,
      );
    }
    if (actual !== expected) {
      throw new ModelFileError(
        `Cannot read "${file.path}": tensor "${name}" has CRC-32C ${hex32(actual)}, the index ` +
          `says ${hex32(expected)} (the data file is corrupt)`,
      );
    }
  }

  /**
   * Reads the tensor's bytes into `dest` in chunks and with `checksum` returns their
   * CRC-32C (else 0): each chunk is checksummed while the next is read, on the CRC thread
   * when `dest` is shared memory.
   */
  async #readAt(
    file: SourceFile,
    info: TfTensorInfo,
    dest: Uint8Array,
    checksum: boolean,
  ): Promise<number> {
    const crc = checksum ? this.#crc.job(dest.buffer) : undefined;
    const got = await file.read(info.offset, dest, {
      chunk: READ_CHUNK,
      each: (part) => crc?.update(part),
    });
    if (got < dest.byteLength) {
      throw new ModelFileError(
        `Cannot read "${file.path}": tensor "${info.name}" needs bytes up to ` +
          `${info.offset + info.byteLength}, the file ends at ${info.offset + got} (the ` +
          `file is truncated)`,
      );
    }
    return crc ? await crc.digest() : 0;
  }

  [Symbol.dispose](): void {
    this.#disposed = true;
    this.#crc[Symbol.dispose]();
    for (const file of this.#shards.values()) file[Symbol.dispose]();
    this.#shards.clear();
  }
}

/**
 * The CRC-32C TensorFlow stores for a string tensor, or `undefined` if `data` is not laid
 * out as one. A string tensor of n elements is stored as n varint64 lengths, a 4-byte
 * masked CRC-32C of the lengths, then the n strings' bytes. Its checksum is not the CRC of
 * those bytes: each length enters it as a little-endian uint32 rather than as its varint,
 * followed by the stored length checksum and the string bytes. (Worked out from a
 * checkpoint TensorFlow wrote, `boston/variables` in the test fixtures.)
 */
function stringTensorCrc32c(data: Uint8Array, count: number): number | undefined {
  const lengths = new ByteReader(data, "string tensor");
  const length32 = new Uint8Array(4);
  const view = new DataView(length32.buffer);
  let crc = 0;
  let total = 0;
  try {
    for (let i = 0; i < count; i++) {
      const n = lengths.varint();
      if (n > 0xffffffff) return undefined;
      view.setUint32(0, n, true);
      crc = crc32c(length32, crc);
      total += n;
    }
  } catch (e) {
    if (e instanceof CorruptIndex) return undefined;
    throw e;
  }
  if (lengths.pos + 4 + total !== data.length) return undefined;
  return crc32c(data.subarray(lengths.pos), crc);
}

// ---------------------------------------------------------------------------------------
// Index parsing

/** A located problem in the index; `parseIndex` turns it into a one-line ModelFileError. */
class CorruptIndex extends Error {}

interface BlockHandle {
  offset: number;
  size: number;
}

/** Parses and verifies a whole index file. */
function parseIndex(
  file: Uint8Array,
  path: string,
): { header: TfBundleHeader; tensors: Map<string, TfTensorInfo> } {
  try {
    return parseIndexOrThrow(file);
  } catch (e) {
    if (e instanceof CorruptIndex) throw new ModelFileError(`Cannot read "${path}": ${e.message}`);
    throw e;
  }
}

function parseIndexOrThrow(
  file: Uint8Array,
): { header: TfBundleHeader; tensors: Map<string, TfTensorInfo> } {
  if (file.length < FOOTER_SIZE) {
    throw new CorruptIndex(
      `it has ${file.length} bytes, fewer than the ${FOOTER_SIZE}-byte table footer (the file ` +
        `is not a TensorFlow checkpoint index or is truncated)`,
    );
  }
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const magicLo = view.getUint32(file.length - 8, true);
  const magicHi = view.getUint32(file.length - 4, true);
  if (magicLo !== TABLE_MAGIC_LO || magicHi !== TABLE_MAGIC_HI) {
    throw new CorruptIndex(
      `bad magic 0x${hex(magicHi)}${hex(magicLo)}, expected ` +
        `0x${hex(TABLE_MAGIC_HI)}${hex(TABLE_MAGIC_LO)} (the file is not a TensorFlow ` +
        `checkpoint index or is truncated)`,
    );
  }
  const footer = new ByteReader(file.subarray(file.length - FOOTER_SIZE), "the footer");
  const metaindex = { offset: footer.varint(), size: footer.varint() };
  const index = { offset: footer.varint(), size: footer.varint() };
  readBlock(file, metaindex, "metaindex");
  const indexBlock = readBlock(file, index, "index");

  let header: TfBundleHeader | undefined;
  const tensors = new Map<string, TfTensorInfo>();
  let previousKey: Uint8Array | undefined;
  for (const [, handleBytes] of blockEntries(indexBlock, "index")) {
    const r = new ByteReader(handleBytes, "an index block entry");
    const handle = { offset: r.varint(), size: r.varint() };
    const block = readBlock(file, handle, "data");
    for (const [key, value] of blockEntries(block, `data block at offset ${handle.offset}`)) {
      if (previousKey !== undefined && compareBytes(previousKey, key) >= 0) {
        throw new CorruptIndex(
          `key "${latin1(key)}" does not sort after "${latin1(previousKey)}" (the file is ` +
            `corrupt)`,
        );
      }
      previousKey = key;
      if (key.length === 0) {
        header = decodeHeader(value);
      } else if (key[0] === 0) {
        // A slice of a partitioned variable, keyed by an encoded (name, slice) pair; the
        // variable's own entry lists its slices.
        continue;
      } else {
        const name = decodeName(key);
        tensors.set(name, decodeEntry(name, value));
      }
    }
  }
  if (header === undefined) {
    throw new CorruptIndex(`it has no header entry (key ""), expected a BundleHeaderProto`);
  }
  checkHeader(header, tensors);
  return { header, tensors };
}

/** The contents of the block at `handle`, after checking bounds, checksum and compression. */
function readBlock(file: Uint8Array, handle: BlockHandle, what: string): Uint8Array {
  const { offset, size } = handle;
  const dataEnd = file.length - FOOTER_SIZE;
  if (offset + size + BLOCK_TRAILER_SIZE > dataEnd) {
    throw new CorruptIndex(
      `the ${what} block at offset ${offset} with size ${size} runs past the end of the ` +
        `blocks at byte ${dataEnd} (the file is truncated or corrupt)`,
    );
  }
  const contentsAndType = file.subarray(offset, offset + size + 1);
  const view = new DataView(file.buffer, file.byteOffset, file.byteLength);
  const stored = unmaskCrc32c(view.getUint32(offset + size + 1, true));
  const actual = crc32c(contentsAndType);
  if (actual !== stored) {
    throw new CorruptIndex(
      `the ${what} block at offset ${offset} has CRC-32C ${hex32(actual)}, its trailer says ` +
        `${hex32(stored)} (the file is corrupt)`,
    );
  }
  const compression = file[offset + size];
  if (compression !== 0) {
    const kind = compression === 1 ? "Snappy" : `unknown type ${compression}`;
    throw new CorruptIndex(
      `the ${what} block at offset ${offset} is compressed (${kind}), expected uncompressed ` +
        `(compression byte 0) as TensorFlow writes checkpoint indexes`,
    );
  }
  return file.subarray(offset, offset + size);
}

/** The (key, value) pairs of a block, keys with their shared prefixes restored. */
function* blockEntries(block: Uint8Array, what: string): Generator<[Uint8Array, Uint8Array]> {
  if (block.length < 4) {
    throw new CorruptIndex(`the ${what} block has ${block.length} bytes, too few for a block`);
  }
  const view = new DataView(block.buffer, block.byteOffset, block.byteLength);
  const numRestarts = view.getUint32(block.length - 4, true);
  const entriesEnd = block.length - 4 - 4 * numRestarts;
  if (numRestarts === 0 || entriesEnd < 0) {
    throw new CorruptIndex(
      `the ${what} block of ${block.length} bytes claims ${numRestarts} restart points (the ` +
        `file is corrupt)`,
    );
  }
  const r = new ByteReader(block.subarray(0, entriesEnd), `the ${what} block`);
  let key = new Uint8Array(0);
  while (!r.done()) {
    const shared = r.varint();
    const nonShared = r.varint();
    const valueLength = r.varint();
    if (shared > key.length) {
      throw new CorruptIndex(
        `an entry in the ${what} block shares ${shared} bytes with a ${key.length}-byte key ` +
          `(the file is corrupt)`,
      );
    }
    const next = new Uint8Array(shared + nonShared);
    next.set(key.subarray(0, shared));
    next.set(r.bytes(nonShared), shared);
    key = next;
    yield [key, r.bytes(valueLength)];
  }
}

function decodeName(key: Uint8Array): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(key);
  } catch {
    throw new CorruptIndex(`tensor name "${latin1(key)}" is not valid UTF-8`);
  }
}

function decodeHeader(value: Uint8Array): TfBundleHeader {
  const r = new ProtoReader(value, "the header (BundleHeaderProto)");
  let numShards = 0;
  let endianness = 0;
  let version = { producer: 0, minConsumer: 0, badConsumers: [] as number[] };
  while (!r.done()) {
    const [field, wire] = r.tag();
    if (field === 1 && wire === 0) numShards = r.varint();
    else if (field === 2 && wire === 0) endianness = r.varint();
    else if (field === 3 && wire === 2) version = decodeVersion(r.message());
    else r.skip(wire);
  }
  return { numShards, endianness, version };
}

function decodeVersion(r: ProtoReader) {
  const version = { producer: 0, minConsumer: 0, badConsumers: [] as number[] };
  while (!r.done()) {
    const [field, wire] = r.tag();
    if (field === 1 && wire === 0) version.producer = r.int32();
    else if (field === 2 && wire === 0) version.minConsumer = r.int32();
    else if (field === 3 && wire === 0) version.badConsumers.push(r.int32());
    else if (field === 3 && wire === 2) {
      // proto3 packs repeated scalars by default.
      const packed = r.message();
      while (!packed.done()) version.badConsumers.push(packed.int32());
    } else r.skip(wire);
  }
  return version;
}

function checkHeader(header: TfBundleHeader, tensors: Map<string, TfTensorInfo>): void {
  if (header.endianness !== 0) {
    throw new CorruptIndex(
      `the header says the data is ${header.endianness === 1 ? "big" : "unknown"}-endian ` +
        `(${header.endianness}), expected little-endian (0)`,
    );
  }
  const { minConsumer, badConsumers } = header.version;
  if (minConsumer > BUNDLE_VERSION || badConsumers.includes(BUNDLE_VERSION)) {
    throw new CorruptIndex(
      `the header asks for a reader of version >= ${minConsumer} not in ` +
        `[${badConsumers.join(", ")}], this reader is version ${BUNDLE_VERSION}`,
    );
  }
  for (const t of tensors.values()) {
    if (t.shardId >= header.numShards) {
      throw new CorruptIndex(
        `tensor "${t.name}" is in shard ${t.shardId}, the header says there are ` +
          `${header.numShards} shards (the file is corrupt)`,
      );
    }
  }
}

function decodeEntry(name: string, value: Uint8Array): TfTensorInfo {
  const r = new ProtoReader(value, `the entry for tensor "${name}" (BundleEntryProto)`);
  let dtypeCode = 0;
  let shape: number[] = [];
  let shardId = 0;
  let offset = 0;
  let size = 0;
  let maskedCrc32c = 0;
  let slices = 0;
  while (!r.done()) {
    const [field, wire] = r.tag();
    if (field === 1 && wire === 0) dtypeCode = r.varint();
    else if (field === 2 && wire === 2) shape = decodeShape(name, r.message());
    else if (field === 3 && wire === 0) shardId = r.varint();
    else if (field === 4 && wire === 0) offset = r.varint();
    else if (field === 5 && wire === 0) size = r.varint();
    else if (field === 6 && wire === 5) maskedCrc32c = r.fixed32();
    else if (field === 7 && wire === 2) {
      r.message();
      slices++;
    } else r.skip(wire);
  }
  const dtype = DTYPES_BY_CODE.get(dtypeCode);
  if (dtype === undefined) {
    const dtypeName = UNSUPPORTED_DTYPE_NAMES[dtypeCode] ?? "an unknown DataType";
    throw new CorruptIndex(
      `tensor "${name}" has dtype ${dtypeName} (${dtypeCode}), which this reader does not ` +
        `support`,
    );
  }
  const width = itemSize(dtype);
  if (width !== undefined && slices === 0 && size !== elementCount(shape) * width) {
    throw new CorruptIndex(
      `tensor "${name}" has ${size} bytes, expected ${elementCount(shape) * width} for ` +
        `${dtype} of shape [${shape.join(", ")}] (the file is corrupt)`,
    );
  }
  // Shards hold far less than 2^40 bytes each, so this orders by shard, then offset.
  const position = shardId * 2 ** 40 + offset;
  return { name, dtype, shape, byteLength: size, shardId, offset, position, maskedCrc32c, slices };
}

function decodeShape(name: string, r: ProtoReader): number[] {
  const shape: number[] = [];
  while (!r.done()) {
    const [field, wire] = r.tag();
    if (field === 2 && wire === 2) {
      const dim = r.message();
      let size = 0;
      while (!dim.done()) {
        const [f, w] = dim.tag();
        if (f === 1 && w === 0) size = dim.varint();
        else dim.skip(w);
      }
      shape.push(size);
    } else if (field === 3 && wire === 0) {
      if (r.varint() !== 0) {
        throw new CorruptIndex(
          `tensor "${name}" has a shape of unknown rank (the file is corrupt)`,
        );
      }
    } else r.skip(wire);
  }
  return shape;
}

// ---------------------------------------------------------------------------------------
// Byte-level decoding

/** Sequential reads from a byte range, with bounds checks that name the range. */
class ByteReader {
  pos = 0;
  constructor(readonly buf: Uint8Array, readonly what: string) {}

  done(): boolean {
    return this.pos >= this.buf.length;
  }

  /**
   * An unsigned LEB128 varint of up to 64 bits, which must fit a safe integer (offsets and
   * sizes do; a negative int64 takes ten bytes and is rejected).
   */
  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.buf.length) throw this.corrupt("a varint runs past its end");
      const b = this.buf[this.pos++];
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) {
        if (result > Number.MAX_SAFE_INTEGER) throw this.corrupt("a varint is too large");
        return result;
      }
      scale *= 128;
    }
    throw this.corrupt("a varint is longer than ten bytes");
  }

  bytes(n: number): Uint8Array {
    if (n > this.buf.length - this.pos) {
      throw this.corrupt(
        `a ${n}-byte field at byte ${this.pos} runs past its end at ${this.buf.length}`,
      );
    }
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  fixed32(): number {
    const b = this.bytes(4);
    return (b[0] | (b[1] << 8) | (b[2] << 16) | (b[3] << 24)) >>> 0;
  }

  protected corrupt(detail: string): CorruptIndex {
    return new CorruptIndex(`${this.what} is corrupt: ${detail}`);
  }
}

/** Protocol buffer wire-format reads on top of {@linkcode ByteReader}. */
class ProtoReader extends ByteReader {
  /** The next field number and wire type. */
  tag(): [number, number] {
    const key = this.varint();
    return [Math.floor(key / 8), key % 8];
  }

  /** An int32 field; a negative one is sign-extended to ten bytes on the wire. */
  int32(): number {
    let result = 0;
    for (let shift = 0; shift < 70; shift += 7) {
      const b = this.bytes(1)[0];
      if (shift < 32) result |= (b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result | 0;
    }
    throw this.corrupt("a varint is longer than ten bytes");
  }

  /** A length-delimited field, as a reader of its own. */
  message(): ProtoReader {
    return new ProtoReader(this.bytes(this.varint()), this.what);
  }

  /** Skips a field of an unknown number. */
  skip(wire: number): void {
    if (wire === 0) this.varint();
    else if (wire === 1) this.bytes(8);
    else if (wire === 2) this.bytes(this.varint());
    else if (wire === 5) this.bytes(4);
    else throw this.corrupt(`unexpected wire type ${wire}`);
  }
}

/** Bytewise comparison, the order of keys in the table. */
export function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] - b[i];
  return a.length - b.length;
}

/** Reads the whole file `name` of `files`; a missing one is a ModelFileError saying what was expected. */
async function readWhole(files: FileSource, name: string, expected: string): Promise<Uint8Array> {
  using file = await openOrThrow(files, name, expected);
  const bytes = new Uint8Array(file.size);
  const got = await file.read(0, bytes);
  return bytes.subarray(0, got);
}

function hex(n: number): string {
  return n.toString(16).padStart(8, "0");
}

function hex32(n: number): string {
  return `0x${hex(n)}`;
}

/** A key for a message, bytes as Latin-1 so that nothing is lost. */
function latin1(bytes: Uint8Array): string {
  return String.fromCharCode(...bytes.subarray(0, 200));
}
