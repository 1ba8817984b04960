/**
 * Writer for TensorFlow's checkpoint format (TensorBundle V2), the counterpart of
 * `tf_bundle.ts`: an index table plus a single data shard, laid out as TensorFlow's own
 * `BundleWriter` lays them out, so that TensorFlow can restore from them.
 *
 * @module
 */
import {
  writeAll,
  writeFileAtomically,
  writeTextFileAtomically,
} from "../runtime/io/atomic_file.ts";
import { join } from "node:path";
import { crc32c, maskCrc32c } from "../runtime/io/crc32c.ts";
import { checkTensorToWrite, type TensorToWrite } from "../runtime/io/tensor_source.ts";
import {
  BUNDLE_VERSION,
  compareBytes,
  FOOTER_SIZE,
  shardPath,
  TABLE_MAGIC_HI,
  TABLE_MAGIC_LO,
  TF_DTYPE_CODES,
} from "../runtime/io/tf_bundle.ts";

/** Options for {@linkcode writeTfBundle}. */
export interface WriteTfBundleOptions {
  /**
   * A data block of the index is closed once it reaches this many bytes. LevelDB's default
   * is 4096; smaller values give more blocks (useful in tests).
   */
  blockSize?: number;
}

/** Keys between restart points in data blocks, as in LevelDB and TensorFlow. */
const RESTART_INTERVAL = 16;
/** The index block has a restart point at every key, as in LevelDB and TensorFlow. */
const INDEX_RESTART_INTERVAL = 1;

/**
 * Writes `<prefix>.index` and `<prefix>.data-00000-of-00001` holding `tensors`, in name order
 * like TensorFlow. Both files are written under temporary names and renamed at the end
 * (data first, then the index that refers to it), so a failure leaves neither half-written.
 * String tensors are not supported.
 *
 * @example
 * ```ts ignore
 * import { writeCheckpointFile, writeTfBundle } from "./tf_bundle_writer.ts";
 * const bias = new Float32Array([0.5, -1]);
 * await writeTfBundle("out/model.ckpt", [
 *   { name: "model/b", dtype: "float32", shape: [2], data: new Uint8Array(bias.buffer) },
 * ]);
 * await writeCheckpointFile("out", "model.ckpt");
 * ```
 */
export async function writeTfBundle(
  prefix: string,
  tensors: readonly TensorToWrite[],
  options: WriteTfBundleOptions = {},
): Promise<void> {
  const { blockSize = 4096 } = options;
  const encoder = new TextEncoder();
  const sorted = tensors.map((t) => ({ ...t, key: encoder.encode(t.name) }))
    .sort((a, b) => compareBytes(a.key, b.key));
  for (let i = 0; i < sorted.length; i++) {
    checkTensor(sorted[i]);
    if (i > 0 && compareBytes(sorted[i - 1].key, sorted[i].key) === 0) {
      throw new TypeError(`Cannot write tensor "${sorted[i].name}" twice`);
    }
  }

  // The data first, then the index that refers to it.
  const table = new TableBuilder(blockSize);
  table.add(new Uint8Array(0), encodeHeader());
  await writeFileAtomically(shardPath(prefix, 0, 1), async (file) => {
    let offset = 0;
    for (const t of sorted) {
      await writeAll(file, t.data);
      table.add(t.key, encodeEntry(t, offset, maskCrc32c(crc32c(t.data))));
      offset += t.data.byteLength;
    }
  });
  await writeFileAtomically(`${prefix}.index`, (file) => writeAll(file, table.finish()));
}

/**
 * Writes the `checkpoint` text file in `dir` that makes `tf.train.latest_checkpoint(dir)`
 * (and {@linkcode resolveCheckpointPrefix}) find `<dir>/<prefixName>`. Atomic like
 * {@linkcode writeTfBundle}.
 */
export async function writeCheckpointFile(dir: string, prefixName: string): Promise<void> {
  const quoted = `"${escapeTextProtoString(prefixName)}"`;
  const text = `model_checkpoint_path: ${quoted}\nall_model_checkpoint_paths: ${quoted}\n`;
  await writeTextFileAtomically(join(dir, "checkpoint"), text);
}

/** Protobuf text-format string escaping: quotes, backslash and non-printable bytes. */
function escapeTextProtoString(s: string): string {
  let out = "";
  for (const b of new TextEncoder().encode(s)) {
    if (b === 0x22) out += '\\"';
    else if (b === 0x5c) out += "\\\\";
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += "\\" + b.toString(8).padStart(3, "0");
  }
  return out;
}

function checkTensor(t: TensorToWrite & { key: Uint8Array }): void {
  if (t.name === "" || t.key[0] === 0) {
    throw new TypeError(
      `Cannot write a tensor named "${t.name}": names must be non-empty and not start with NUL`,
    );
  }
  checkTensorToWrite(t);
}

// ---------------------------------------------------------------------------------------
// Protobuf encoding

/** A growable byte buffer with the varint and fixed-width writes both encodings need. */
class ByteWriter {
  #buf = new Uint8Array(256);
  length = 0;

  #reserve(n: number): void {
    if (this.length + n <= this.#buf.length) return;
    const bigger = new Uint8Array(Math.max(2 * this.#buf.length, this.length + n));
    bigger.set(this.#buf.subarray(0, this.length));
    this.#buf = bigger;
  }

  byte(b: number): void {
    this.#reserve(1);
    this.#buf[this.length++] = b;
  }

  bytes(b: Uint8Array): void {
    this.#reserve(b.length);
    this.#buf.set(b, this.length);
    this.length += b.length;
  }

  /** An unsigned LEB128 varint of a non-negative safe integer. */
  varint(n: number): void {
    while (n >= 0x80) {
      this.byte((n % 0x80) | 0x80);
      n = Math.floor(n / 0x80);
    }
    this.byte(n);
  }

  fixed32(n: number): void {
    for (let i = 0; i < 4; i++) this.byte((n >>> (8 * i)) & 0xff);
  }

  /** The bytes written so far (a view, valid until the next write). */
  view(): Uint8Array {
    return this.#buf.subarray(0, this.length);
  }

  /** A copy of the bytes written so far. */
  toBytes(): Uint8Array {
    return this.#buf.slice(0, this.length);
  }
}

/** Protobuf field writes; fields holding proto3 defaults are left out, as protobuf does. */
class ProtoWriter extends ByteWriter {
  varintField(field: number, value: number): void {
    if (value === 0) return;
    this.varint(field * 8);
    this.varint(value);
  }

  fixed32Field(field: number, value: number): void {
    if (value === 0) return;
    this.varint(field * 8 + 5);
    this.fixed32(value);
  }

  /** A length-delimited field; a present but empty message is still written. */
  messageField(field: number, message: Uint8Array): void {
    this.varint(field * 8 + 2);
    this.varint(message.length);
    this.bytes(message);
  }
}

/** `BundleHeaderProto{num_shards: 1, endianness: LITTLE, version{producer: 1}}`. */
function encodeHeader(): Uint8Array {
  const version = new ProtoWriter();
  version.varintField(1, BUNDLE_VERSION);
  const header = new ProtoWriter();
  header.varintField(1, 1); // num_shards; endianness LITTLE is 0, the default, so absent
  header.messageField(3, version.view());
  return header.toBytes();
}

/** `BundleEntryProto` for a tensor in shard 0. */
function encodeEntry(t: TensorToWrite, offset: number, maskedCrc: number): Uint8Array {
  const shape = new ProtoWriter();
  for (const size of t.shape) {
    const dim = new ProtoWriter();
    dim.varintField(1, size);
    shape.messageField(2, dim.view());
  }
  const entry = new ProtoWriter();
  entry.varintField(1, TF_DTYPE_CODES[t.dtype]);
  entry.messageField(2, shape.view());
  entry.varintField(4, offset);
  entry.varintField(5, t.data.byteLength);
  entry.fixed32Field(6, maskedCrc);
  return entry.toBytes();
}

// ---------------------------------------------------------------------------------------
// Table building

/** One block: prefix-compressed entries, then the restart offsets and their count. */
class BlockBuilder {
  #out = new ByteWriter();
  /** Keys between restart points. */
  readonly #restartInterval: number;
  #restarts = [0];
  #sinceRestart = 0;
  #lastKey: Uint8Array = new Uint8Array(0);

  constructor(restartInterval = RESTART_INTERVAL) {
    this.#restartInterval = restartInterval;
  }

  get empty(): boolean {
    return this.#out.length === 0;
  }

  /** The size of the finished block if it were finished now. */
  get estimatedSize(): number {
    return this.#out.length + 4 * this.#restarts.length + 4;
  }

  add(key: Uint8Array, value: Uint8Array): void {
    let shared = 0;
    if (this.#sinceRestart < this.#restartInterval) {
      const n = Math.min(key.length, this.#lastKey.length);
      while (shared < n && key[shared] === this.#lastKey[shared]) shared++;
    } else {
      this.#restarts.push(this.#out.length);
      this.#sinceRestart = 0;
    }
    this.#out.varint(shared);
    this.#out.varint(key.length - shared);
    this.#out.varint(value.length);
    this.#out.bytes(key.subarray(shared));
    this.#out.bytes(value);
    this.#lastKey = key;
    this.#sinceRestart++;
  }

  finish(): Uint8Array {
    for (const r of this.#restarts) this.#out.fixed32(r);
    this.#out.fixed32(this.#restarts.length);
    return this.#out.toBytes();
  }
}

/**
 * A LevelDB-style sorted table, built in memory: data blocks of about `blockSize` bytes,
 * an empty metaindex block, an index block and the footer. Keys must be added in
 * increasing bytewise order.
 */
class TableBuilder {
  #out = new ByteWriter();
  #data = new BlockBuilder();
  #index = new BlockBuilder(INDEX_RESTART_INTERVAL);
  #lastKey: Uint8Array = new Uint8Array(0);
  /** The handle of the last data block written, whose index entry waits for the next key. */
  #pendingHandle: Uint8Array | undefined;

  constructor(readonly blockSize: number) {}

  add(key: Uint8Array, value: Uint8Array): void {
    if (this.#pendingHandle !== undefined) {
      this.#index.add(shortestSeparator(this.#lastKey, key), this.#pendingHandle);
      this.#pendingHandle = undefined;
    }
    this.#data.add(key, value);
    this.#lastKey = key;
    if (this.#data.estimatedSize >= this.blockSize) this.#flush();
  }

  finish(): Uint8Array {
    this.#flush();
    const metaindex = this.#writeBlock(new BlockBuilder());
    if (this.#pendingHandle !== undefined) {
      this.#index.add(shortSuccessor(this.#lastKey), this.#pendingHandle);
      this.#pendingHandle = undefined;
    }
    const index = this.#writeBlock(this.#index);
    const footer = new ByteWriter();
    footer.bytes(metaindex);
    footer.bytes(index);
    while (footer.length < FOOTER_SIZE - 8) footer.byte(0);
    footer.fixed32(TABLE_MAGIC_LO);
    footer.fixed32(TABLE_MAGIC_HI);
    this.#out.bytes(footer.view());
    return this.#out.toBytes();
  }

  #flush(): void {
    if (this.#data.empty) return;
    this.#pendingHandle = this.#writeBlock(this.#data);
    this.#data = new BlockBuilder();
  }

  /** Appends a finished block and its trailer; returns its encoded handle. */
  #writeBlock(block: BlockBuilder): Uint8Array {
    const contents = block.finish();
    const handle = new ByteWriter();
    handle.varint(this.#out.length);
    handle.varint(contents.length);
    this.#out.bytes(contents);
    const type = new Uint8Array([0]); // no compression
    // The trailer: compression type, then the masked CRC of contents and type.
    this.#out.bytes(type);
    this.#out.fixed32(maskCrc32c(crc32c(type, crc32c(contents))));
    return handle.toBytes();
  }
}

/**
 * A short key `k` with `start <= k < limit`, for an index entry between two data blocks
 * (LevelDB's bytewise `FindShortestSeparator`): `start` cut after its first byte that
 * differs from `limit`, that byte incremented, when this stays below `limit`.
 */
function shortestSeparator(start: Uint8Array, limit: Uint8Array): Uint8Array {
  const n = Math.min(start.length, limit.length);
  let diff = 0;
  while (diff < n && start[diff] === limit[diff]) diff++;
  if (diff < n) {
    const b = start[diff];
    if (b < 0xff && b + 1 < limit[diff]) {
      const k = start.slice(0, diff + 1);
      k[diff]++;
      return k;
    }
  }
  return start;
}

/** A short key `k >= key`, for the last index entry (LevelDB's `FindShortSuccessor`). */
function shortSuccessor(key: Uint8Array): Uint8Array {
  for (let i = 0; i < key.length; i++) {
    if (key[i] !== 0xff) {
      const k = key.slice(0, i + 1);
      k[i]++;
      return k;
    }
  }
  return key;
}
