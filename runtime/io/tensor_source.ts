/**
 * What every checkpoint format offers the loader: a list of named tensors with dtype and
 * shape, and a way to read one tensor's raw bytes into memory the caller owns. Format
 * modules (`tf_bundle.ts`, `safetensors.ts`) know nothing of GPT-2's names; the loader
 * maps names and shapes onto the model's memory plan.
 *
 * @module
 */
import { ModelFileError } from "../errors.ts";
import {
  type BlockType,
  isFloat32Convertible,
  TYPE_LAYOUTS,
  type TypeLayout,
} from "./tensor_types.ts";

export { float16BitsToFloat32Bits } from "./tensor_types.ts";

/** An element type a checkpoint format can hold. */
export type StoredDType =
  | "float64"
  | "float32"
  | "float16"
  | "bfloat16"
  | "float8_e4m3fn"
  | "float8_e5m2"
  | "int64"
  | "int32"
  | "int16"
  | "int8"
  | "uint64"
  | "uint32"
  | "uint16"
  | "uint8"
  | "bool"
  /** Variable-length strings, in the format's own encoding; no fixed item size. */
  | "string";

/** Bytes per element of each fixed-size dtype. */
const ITEM_SIZES: Readonly<Record<Exclude<StoredDType, "string">, number>> = {
  float64: 8,
  float32: 4,
  float16: 2,
  bfloat16: 2,
  float8_e4m3fn: 1,
  float8_e5m2: 1,
  int64: 8,
  int32: 4,
  int16: 2,
  int8: 1,
  uint64: 8,
  uint32: 4,
  uint16: 2,
  uint8: 1,
  bool: 1,
};

/**
 * Bytes per element of `dtype`, or `undefined` for `"string"`, whose elements vary in size.
 *
 * @example
 * ```ts
 * import { itemSize } from "./tensor_source.ts";
 * if (itemSize("float16") !== 2 || itemSize("string") !== undefined) throw new Error();
 * ```
 */
export function itemSize(dtype: StoredDType): number | undefined {
  return dtype === "string" ? undefined : ITEM_SIZES[dtype];
}

/** The number of elements of a tensor of this shape: 1 for a scalar (`[]`). */
export function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** One tensor as a checkpoint lists it. */
export interface TensorInfo {
  /** The name as stored in the file, e.g. `model/h0/attn/c_attn/w`. */
  readonly name: string;
  /** An element type, or one of ggml's quantized block types (GGUF files hold them). */
  readonly dtype: StoredDType | BlockType;
  /** Dimensions, outermost first; `[]` for a scalar. */
  readonly shape: readonly number[];
  /**
   * Size of the stored data in bytes: `elementCount(shape) * itemSize(dtype)` for an
   * element type, the blocks' bytes for a block type; strings vary.
   */
  readonly byteLength: number;
  /**
   * Where the bytes lie among the other tensors' (e.g. the file offset), if the format
   * knows: reading tensors in increasing position reads the files front to back.
   */
  readonly position?: number;
}

/** A tensor to write to a checkpoint: its raw little-endian bytes and what they hold. */
export interface TensorToWrite {
  readonly name: string;
  readonly dtype: StoredDType;
  readonly shape: readonly number[];
  /** `elementCount(shape) * itemSize(dtype)` bytes, little-endian. */
  readonly data: Uint8Array;
}

/**
 * Throws a TypeError or RangeError unless `t` is writable: a fixed-size dtype, a shape of
 * non-negative integers and exactly `elementCount(shape) * itemSize(dtype)` bytes of data.
 */
export function checkTensorToWrite(t: TensorToWrite): void {
  const width = itemSize(t.dtype);
  if (width === undefined) {
    throw new TypeError(`Cannot write tensor "${t.name}": dtype ${t.dtype} is not supported`);
  }
  if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
    throw new RangeError(
      `Cannot write tensor "${t.name}": shape [${t.shape.join(", ")}] has a dimension that is ` +
        `not a non-negative integer`,
    );
  }
  const expected = elementCount(t.shape) * width;
  if (t.data.byteLength !== expected) {
    throw new RangeError(
      `Cannot write tensor "${t.name}": got ${t.data.byteLength} bytes, expected ${expected} ` +
        `for ${t.dtype} of shape [${t.shape.join(", ")}]`,
    );
  }
}

/** A checkpoint file (or set of files) open for reading. Dispose it to close its files. */
export interface TensorSource extends Disposable {
  /** The path the source was opened with, for messages. */
  readonly path: string;
  /** Every tensor in the checkpoint, by name. */
  readonly tensors: ReadonlyMap<string, TensorInfo>;
  /**
   * Reads the tensor's raw little-endian bytes straight into `dest`, verifying any checksum
   * the format has. `dest.byteLength` must equal the tensor's `byteLength`; `dest` may be a
   * view on a SharedArrayBuffer, e.g. WebAssembly memory.
   */
  read(name: string, dest: Uint8Array): Promise<void>;
  /**
   * Reads `dest.byteLength` bytes of the tensor's data from byte `offset` of it, for a
   * conversion that streams a tensor through a small buffer. Only formats without a
   * checksum over the whole tensor offer it (GGUF, safetensors).
   */
  readPart?(name: string, offset: number, dest: Uint8Array): Promise<void>;
}

/**
 * Returns the tensor `name` of `source` after checking that `dest` has its size: the
 * checks every `read` starts with.
 * @throws {ModelFileError} if the source holds no such tensor
 * @throws {RangeError} if `dest` is not `byteLength` bytes long
 */
export function checkReadTarget<T extends TensorInfo>(
  source: { readonly path: string; readonly tensors: ReadonlyMap<string, T> },
  name: string,
  dest: Uint8Array,
): T {
  const info = source.tensors.get(name);
  if (info === undefined) {
    throw new ModelFileError(`Cannot read "${source.path}": it holds no tensor named "${name}"`);
  }
  if (dest.byteLength !== info.byteLength) {
    throw new RangeError(
      `Cannot read tensor "${name}" of "${source.path}" into ${dest.byteLength} bytes: it ` +
        `has ${info.byteLength}`,
    );
  }
  return info;
}

/** Options of {@linkcode readAsFloat32}. */
export interface ReadAsFloat32Options {
  /**
   * The tensor is a matrix (R, C); write its transpose (C, R) into `dest`. It is read a
   * few rows at a time (the source must offer `readPart`), so no second copy is made.
   */
  transpose?: boolean;
}

/** Bytes of a tensor read at once when it streams through a buffer. */
const CHUNK_BYTES = 1 << 20;

/**
 * Reads a tensor of any type in `TYPE_LAYOUTS` (float32, float16, bfloat16, ggml's block
 * types) into `dest` as float32, in the row-major order of its shape or transposed.
 *
 * float32 is read straight into `dest`. Any other type is read into the top of `dest`'s own
 * bytes and converted in place, front to back, in runs of blocks whose values end before
 * the bytes still to convert begin (each block's values are written after its bytes are
 * read). So no conversion needs memory beyond `dest`. Transposed, the tensor streams
 * through two buffers of about a MiB, one being read while the other is converted.
 *
 * @param dest (elementCount(shape)) f32, aligned as any Float32Array is
 * @throws {ModelFileError} if the tensor is missing or of a type that does not convert
 * @throws {RangeError} if `dest` is not the tensor's size
 */
export async function readAsFloat32(
  source: TensorSource,
  name: string,
  dest: Float32Array,
  options: ReadAsFloat32Options = {},
): Promise<void> {
  const info = source.tensors.get(name);
  if (info === undefined) {
    throw new ModelFileError(`Cannot read "${source.path}": it holds no tensor named "${name}"`);
  }
  const count = elementCount(info.shape);
  if (dest.length !== count) {
    throw new RangeError(
      `Cannot read tensor "${name}" of "${source.path}" into a Float32Array of length ` +
        `${dest.length}: it has shape [${info.shape.join(", ")}], ${count} elements`,
    );
  }
  if (!isFloat32Convertible(info.dtype)) {
    throw new ModelFileError(
      `Cannot read tensor "${name}" of "${source.path}" as float32: its dtype is ` +
        `${info.dtype}, expected one of ${Object.keys(TYPE_LAYOUTS).join(", ")}`,
    );
  }
  const layout = TYPE_LAYOUTS[info.dtype];
  if (options.transpose) {
    await readTransposed(source, info, layout, dest);
    return;
  }
  const bytes = new Uint8Array(dest.buffer, dest.byteOffset, dest.byteLength);
  if (info.dtype === "float32") {
    await source.read(name, bytes);
    return;
  }
  // The stored bytes go to the top of `dest`, then convert in place.
  const raw = bytes.subarray(bytes.byteLength - info.byteLength);
  await source.read(name, raw);
  convertInPlace(layout, raw, dest);
}

/**
 * Converts `raw`, the top bytes of `dest`, into all of `dest`. Blocks [b, b + k) convert
 * in one call when their values, which end at byte 4·blockSize·(b + k) of `dest`, end at
 * or before block b's first raw byte; a block that fits no such run converts alone
 * through a scratch buffer. The slack shrinks geometrically, so there are few runs.
 */
function convertInPlace(layout: TypeLayout, raw: Uint8Array, dest: Float32Array): void {
  const { blockSize, blockBytes, toFloat32 } = layout;
  const blocks = raw.byteLength / blockBytes;
  const rawStart = dest.byteLength - raw.byteLength; // raw's offset within dest's bytes
  const valueBytes = 4 * blockSize;
  let scratch: Float32Array | undefined;
  for (let b = 0; b < blocks;) {
    const fits = Math.floor((rawStart + b * blockBytes) / valueBytes) - b;
    if (fits >= 1) {
      const k = Math.min(fits, blocks - b);
      toFloat32(raw, b * blockBytes, dest, b * blockSize, k);
      b += k;
    } else {
      scratch ??= new Float32Array(blockSize);
      toFloat32(raw, b * blockBytes, scratch, 0, 1);
      dest.set(scratch, b * blockSize);
      b++;
    }
  }
}

/**
 * Reads the matrix `info` (R, C) a chunk of whole rows at a time and writes its transpose
 * (C, R) into `dest`: dest[c·R + r] = m[r][c]. The next chunk is read while one converts.
 */
async function readTransposed(
  source: TensorSource,
  info: TensorInfo,
  layout: TypeLayout,
  dest: Float32Array,
): Promise<void> {
  const where = `tensor "${info.name}" of "${source.path}"`;
  if (info.shape.length !== 2) {
    throw new RangeError(
      `Cannot transpose ${where}: it has shape [${info.shape.join(", ")}], not a matrix`,
    );
  }
  const readPart = source.readPart?.bind(source);
  if (readPart === undefined) {
    throw new TypeError(`Cannot transpose ${where}: its format cannot read part of a tensor`);
  }
  const [R, C] = info.shape;
  const { blockSize, blockBytes, toFloat32 } = layout;
  if (C % blockSize !== 0) {
    throw new ModelFileError(
      `Cannot read ${where}: its rows of ${C} values are not whole ${layout.ggmlName} blocks ` +
        `of ${blockSize}`,
    );
  }
  const rowBytes = (C / blockSize) * blockBytes;
  const rowsPerChunk = Math.max(1, Math.min(R, Math.floor(CHUNK_BYTES / rowBytes)));
  const buffers = [
    new Uint8Array(rowsPerChunk * rowBytes),
    new Uint8Array(rowsPerChunk * rowBytes),
  ];
  const rows = new Float32Array(rowsPerChunk * C);
  const readChunk = (r0: number, buffer: Uint8Array) => {
    const n = Math.min(rowsPerChunk, R - r0);
    return readPart(info.name, r0 * rowBytes, buffer.subarray(0, n * rowBytes));
  };
  let pending = R > 0 ? readChunk(0, buffers[0]) : undefined;
  for (let r0 = 0, turn = 0; r0 < R; r0 += rowsPerChunk, turn ^= 1) {
    await pending;
    const n = Math.min(rowsPerChunk, R - r0);
    pending = r0 + n < R ? readChunk(r0 + n, buffers[turn ^ 1]) : undefined;
    pending?.catch(() => {}); // awaited on the next turn; a failure is thrown from there
    toFloat32(buffers[turn], 0, rows, 0, (n * C) / blockSize);
    // Row r of the chunk becomes column r0 + r of dest; the inner loop writes n
    // neighbouring floats of one row of dest.
    for (let c = 0; c < C; c++) {
      const out = c * R + r0;
      for (let r = 0; r < n; r++) dest[out + r] = rows[r * C + c];
    }
  }
}
