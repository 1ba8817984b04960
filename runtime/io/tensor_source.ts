/**
 * What every checkpoint format offers the loader: a list of named tensors with dtype and
 * shape, and a way to read one tensor's raw bytes into memory the caller owns. Format
 * modules (`tf_bundle.ts`, `safetensors.ts`) know nothing of GPT-2's names; the loader
 * maps names and shapes onto the model's memory plan.
 *
 * @module
 */
import { ModelFileError } from "../errors.ts";

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
  readonly dtype: StoredDType;
  /** Dimensions, outermost first; `[]` for a scalar. */
  readonly shape: readonly number[];
  /** Size of the stored data in bytes: `elementCount(shape) * itemSize(dtype)` except for strings. */
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

/**
 * Reads a float32, float16 or bfloat16 tensor into `dest` as float32.
 *
 * float32 is read straight into `dest`. Half-width data is read into the upper half of
 * `dest`'s own bytes and widened in place, front to back: element `i` is written to bytes
 * `[4i, 4i+4)` and only overwrites half-width elements at or before `i`, which have been
 * converted already. So no conversion needs memory beyond `dest`.
 *
 * @param dest (elementCount(shape)) f32, aligned as any Float32Array is
 */
export async function readAsFloat32(
  source: TensorSource,
  name: string,
  dest: Float32Array,
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
  const bytes = new Uint8Array(dest.buffer, dest.byteOffset, dest.byteLength);
  switch (info.dtype) {
    case "float32":
      await source.read(name, bytes);
      return;
    case "float16":
    case "bfloat16": {
      await source.read(name, bytes.subarray(2 * count));
      const half = new Uint16Array(dest.buffer, dest.byteOffset + 2 * count, count);
      const out = new Uint32Array(dest.buffer, dest.byteOffset, count);
      if (info.dtype === "bfloat16") {
        // bfloat16 is the upper half of a float32.
        for (let i = 0; i < count; i++) out[i] = half[i] << 16;
      } else {
        const table = float16Table();
        for (let i = 0; i < count; i++) out[i] = table[half[i]];
      }
      return;
    }
    default:
      throw new ModelFileError(
        `Cannot read tensor "${name}" of "${source.path}" as float32: its dtype is ` +
          `${info.dtype}, expected float32, float16 or bfloat16`,
      );
  }
}

/**
 * The float32 bit pattern equal to an IEEE 754 binary16 bit pattern. Exact for every input:
 * subnormals become normal float32s, infinities stay infinite, and NaNs keep sign and
 * payload (shifted into the top of the float32 mantissa).
 *
 * @example
 * ```ts
 * import { float16BitsToFloat32Bits } from "./tensor_source.ts";
 * // 0x3c00 is 1.0 in binary16; 0x3f800000 is 1.0 in binary32.
 * if (float16BitsToFloat32Bits(0x3c00) !== 0x3f800000) throw new Error();
 * ```
 */
export function float16BitsToFloat32Bits(h: number): number {
  const sign = (h & 0x8000) << 16;
  const exponent = (h >>> 10) & 0x1f;
  const mantissa = h & 0x3ff;
  if (exponent === 0x1f) return (sign | 0x7f800000 | (mantissa << 13)) >>> 0;
  if (exponent !== 0) return (sign | ((exponent + 127 - 15) << 23) | (mantissa << 13)) >>> 0;
  if (mantissa === 0) return sign >>> 0;
  // Subnormal: mantissa * 2^-24. Shift the leading 1 up to bit 10 and lower the exponent.
  let m = mantissa;
  let e = 127 - 15 + 1;
  while ((m & 0x400) === 0) {
    m <<= 1;
    e--;
  }
  return (sign | (e << 23) | ((m & 0x3ff) << 13)) >>> 0;
}

let float16TableCache: Uint32Array | undefined;

/** float32 bits for all 65536 float16 bit patterns (256 KiB), built on first use. */
function float16Table(): Uint32Array {
  if (float16TableCache === undefined) {
    const table = new Uint32Array(65536);
    for (let h = 0; h < 65536; h++) table[h] = float16BitsToFloat32Bits(h);
    float16TableCache = table;
  }
  return float16TableCache;
}
