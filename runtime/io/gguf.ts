/**
 * Reader for GGUF, the single-file format of ggml and llama.cpp (ggml's `docs/gguf.md`),
 * versions 2 and 3, little-endian:
 *
 * - header: the magic `GGUF`, a uint32 version, uint64 tensor and metadata counts;
 * - metadata: that many key-value pairs, each a string key, a uint32 value type and the
 *   value (integers of 8 to 64 bits, float32, float64, bool, string, or an array of any of
 *   them, arrays included); a string is a uint64 byte length and UTF-8 bytes;
 * - tensor infos: a name, a uint32 dimension count, that many uint64 dimensions (ggml's
 *   `ne`, innermost first), a uint32 ggml type and a uint64 offset into the data;
 * - padding to `general.alignment` (default 32), then the data, each tensor at an offset
 *   that is a multiple of the alignment.
 *
 * Every count and length is checked against the file's size before anything is allocated
 * for it, so a corrupt or truncated file is one line saying what is wrong.
 *
 * @module
 */
import { ModelFileError } from "../errors.ts";
import { openOrThrow, type SourceFile } from "./file_source.ts";
import { splitPath } from "./local_files.ts";
import {
  checkReadTarget,
  elementCount,
  type TensorInfo,
  type TensorSource,
} from "./tensor_source.ts";
import { type Float32Convertible, storedBytes, TYPE_LAYOUTS } from "./tensor_types.ts";

/** A metadata value: 64-bit integers as `bigint`, every other number as `number`. */
export type GgufValue = number | bigint | boolean | string | readonly GgufValue[];

/** A tensor as a GGUF file describes it. */
export interface GgufTensorInfo extends TensorInfo {
  readonly dtype: Float32Convertible;
  /** ggml's name for its type (`F32`, `Q4_0`, …). */
  readonly ggmlType: string;
  /** ggml's `ne`: the dimensions innermost first, the reverse of `shape`. */
  readonly ne: readonly number[];
  /** Its first byte in the file (data start + the tensor's offset). */
  readonly position: number;
}

/** The versions this reader reads; 1 had 32-bit counts and lengths. */
const VERSIONS = [2, 3];
/** `general.alignment` when the file does not set it. */
const DEFAULT_ALIGNMENT = 32;
/** The most dimensions a tensor has in ggml (`GGML_MAX_DIMS`). */
const MAX_DIMS = 4;
/** Header and metadata larger than this are refused rather than read into memory. */
const MAX_HEADER_BYTES = 256 << 20;
/** Header bytes read at first; the read doubles until the header fits. */
const FIRST_READ = 4 << 20;
/** Arrays nest at most this deep. */
const MAX_ARRAY_DEPTH = 8;

/** ggml's tensor types by id (`enum ggml_type`), as ggml names them; removed ids are absent. */
const GGML_TYPE_NAMES: ReadonlyMap<number, string> = new Map([
  [0, "F32"],
  [1, "F16"],
  [2, "Q4_0"],
  [3, "Q4_1"],
  [6, "Q5_0"],
  [7, "Q5_1"],
  [8, "Q8_0"],
  [9, "Q8_1"],
  [10, "Q2_K"],
  [11, "Q3_K"],
  [12, "Q4_K"],
  [13, "Q5_K"],
  [14, "Q6_K"],
  [15, "Q8_K"],
  [16, "IQ2_XXS"],
  [17, "IQ2_XS"],
  [18, "IQ3_XXS"],
  [19, "IQ1_S"],
  [20, "IQ4_NL"],
  [21, "IQ3_S"],
  [22, "IQ2_S"],
  [23, "IQ4_XS"],
  [24, "I8"],
  [25, "I16"],
  [26, "I32"],
  [27, "I64"],
  [28, "F64"],
  [29, "IQ1_M"],
  [30, "BF16"],
  [34, "TQ1_0"],
  [35, "TQ2_0"],
  [39, "MXFP4"],
]);

/** The types this reader converts, by ggml's name. */
const DTYPES_BY_GGML_NAME: ReadonlyMap<string, Float32Convertible> = new Map(
  Object.entries(TYPE_LAYOUTS).map(([dtype, t]) => [t.ggmlName, dtype as Float32Convertible]),
);

/** The metadata value types, by id, with their fixed sizes (strings and arrays vary). */
const VALUE_TYPES: readonly { name: string; size: number }[] = [
  { name: "uint8", size: 1 },
  { name: "int8", size: 1 },
  { name: "uint16", size: 2 },
  { name: "int16", size: 2 },
  { name: "uint32", size: 4 },
  { name: "int32", size: 4 },
  { name: "float32", size: 4 },
  { name: "bool", size: 1 },
  { name: "string", size: 8 }, // at least its length
  { name: "array", size: 12 }, // at least its item type and count
  { name: "uint64", size: 8 },
  { name: "int64", size: 8 },
  { name: "float64", size: 8 },
];

/** The ggml types this reader converts, as ggml names them, for messages. */
const SUPPORTED = Object.values(TYPE_LAYOUTS).map((t) => t.ggmlName).join(", ");

/**
 * Opens a GGUF file and validates its header, metadata and tensor infos: version, counts
 * and lengths within the file, known value types, tensors of a supported type whose
 * rows are whole blocks, aligned and within the file and not overlapping. Dispose the
 * result to close the file.
 *
 * @param file a path on disk, or a file of any `FileSource` already open (the result then
 *   owns it, and closes it on failure too)
 *
 * @example
 * ```ts ignore
 * import { openGguf } from "./gguf.ts";
 * import { readAsFloat32 } from "./tensor_source.ts";
 * using file = await openGguf("models/gpt2-Q8_0.gguf");
 * file.metadata.get("general.architecture"); // "gpt2"
 * const wte = new Float32Array(50257 * 768);
 * await readAsFloat32(file, "token_embd.weight", wte);
 * ```
 */
export async function openGguf(file: string | SourceFile): Promise<GgufFile> {
  if (typeof file === "string") {
    const { files, name } = splitPath(file);
    file = await openOrThrow(files, name, "a GGUF file");
  }
  const path = file.path;
  try {
    const fileSize = file.size;
    // The header is read from the start, more at a time until it is all in; each read
    // asks only for the bytes after those already in (over HTTP, one ranged GET each).
    let bytes = new Uint8Array(0);
    let want = Math.min(fileSize, FIRST_READ);
    for (;;) {
      const more = new Uint8Array(want);
      more.set(bytes);
      const got = bytes.length + await file.read(bytes.length, more.subarray(bytes.length));
      if (got < want) {
        throw new ModelFileError(
          `Cannot read "${path}": it ends at byte ${got}, inside its header (it is truncated)`,
        );
      }
      bytes = more;
      const header = parseHeader(bytes, fileSize, path);
      if (header !== "more") return new GgufFile(file, header);
      if (want >= Math.min(fileSize, MAX_HEADER_BYTES)) {
        throw new ModelFileError(
          `Cannot read "${path}": its header and metadata exceed the ${
            MAX_HEADER_BYTES >> 20
          } MiB this reader accepts (the file is corrupt or not a GGUF model)`,
        );
      }
      want = Math.min(fileSize, MAX_HEADER_BYTES, 2 * want);
    }
  } catch (e) {
    file[Symbol.dispose]();
    throw e;
  }
}

interface ParsedHeader {
  version: number;
  alignment: number;
  metadata: Map<string, GgufValue>;
  tensors: Map<string, GgufTensorInfo>;
  dataStart: number;
}

/** Thrown inside the parser when the bytes read so far end before the header does. */
class NeedMore {}

/**
 * Parses the header in `bytes`, the first bytes of a file of `fileSize` bytes; `"more"`
 * if the header runs past them but not past the file.
 */
function parseHeader(bytes: Uint8Array, fileSize: number, path: string): ParsedHeader | "more" {
  const fail = (detail: string) => new ModelFileError(`Cannot read "${path}": ${detail}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const utf8 = new TextDecoder("utf-8", { fatal: true });
  let pos = 0;
  /** Ensures `n` more bytes are in `bytes`; the file's own end is a truncation. */
  const need = (n: number, what: string | (() => string)) => {
    if (pos + n <= bytes.length) return;
    if (pos + n > fileSize) {
      throw fail(
        `${
          typeof what === "string" ? what : what()
        } at byte ${pos} needs ${n} bytes, past the end of the ${fileSize}-byte file ` +
          `(it is truncated or corrupt)`,
      );
    }
    throw new NeedMore();
  };
  const u32 = (what: string) => {
    need(4, what);
    pos += 4;
    return view.getUint32(pos - 4, true);
  };
  const u64 = (what: string) => {
    need(8, what);
    pos += 8;
    return view.getBigUint64(pos - 8, true);
  };
  /**
   * A uint64 count or size, refused above `limit`: by default what the rest of the
   * file can hold.
   */
  const size = (
    what: string,
    limit: number,
    why = `more than the ${fileSize}-byte file can hold (it is truncated or corrupt)`,
  ) => {
    const n = u64(what);
    if (n > BigInt(limit)) throw fail(`${what} at byte ${pos - 8} is ${n}, ${why}`);
    return Number(n);
  };
  const string = (what: string | (() => string)) => {
    const name = () => typeof what === "string" ? what : what();
    need(8, what);
    const length = view.getBigUint64(pos, true);
    if (length > BigInt(fileSize - pos - 8)) {
      throw fail(
        `the length of ${name()} at byte ${pos} is ${length}, more than the ${fileSize}-byte ` +
          `file can hold (it is truncated or corrupt)`,
      );
    }
    pos += 8;
    const n = Number(length);
    need(n, what);
    pos += n;
    try {
      return utf8.decode(bytes.subarray(pos - n, pos));
    } catch {
      throw fail(`${name()} at byte ${pos - n} is not valid UTF-8`);
    }
  };
  /** Reads one value of `type`; `what` names it for messages, built only for one. */
  const value = (type: number, what: () => string, depth: number): GgufValue => {
    const spec = VALUE_TYPES[type];
    if (spec === undefined) {
      throw fail(`${what()} has value type ${type}, expected 0 to ${VALUE_TYPES.length - 1}`);
    }
    switch (spec.name) {
      case "string":
        return string(what);
      case "array": {
        if (depth >= MAX_ARRAY_DEPTH) {
          throw fail(`${what()} nests arrays more than ${MAX_ARRAY_DEPTH} deep`);
        }
        const itemType = u32(`the item type of ${what()}`);
        const item = VALUE_TYPES[itemType];
        if (item === undefined) {
          throw fail(
            `${what()} has items of type ${itemType}, expected 0 to ${VALUE_TYPES.length - 1}`,
          );
        }
        const n = size(`the length of ${what()}`, Math.floor((fileSize - pos) / item.size));
        const out = new Array<GgufValue>(n);
        for (let i = 0; i < n; i++) out[i] = value(itemType, () => `${what()}[${i}]`, depth + 1);
        return out;
      }
    }
    need(spec.size, what);
    const at = pos;
    pos += spec.size;
    switch (spec.name) {
      case "uint8":
        return view.getUint8(at);
      case "int8":
        return view.getInt8(at);
      case "uint16":
        return view.getUint16(at, true);
      case "int16":
        return view.getInt16(at, true);
      case "uint32":
        return view.getUint32(at, true);
      case "int32":
        return view.getInt32(at, true);
      case "float32":
        return view.getFloat32(at, true);
      case "bool": {
        const b = view.getUint8(at);
        if (b > 1) throw fail(`${what()} is a bool of value ${b}, expected 0 or 1`);
        return b === 1;
      }
      case "uint64":
        return view.getBigUint64(at, true);
      case "int64":
        return view.getBigInt64(at, true);
      default: // float64
        return view.getFloat64(at, true);
    }
  };

  try {
    need(4, "the magic");
    if (String.fromCharCode(...bytes.subarray(0, 4)) !== "GGUF") {
      const magic = [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, "0"));
      throw fail(
        `it starts with bytes ${magic.join(" ")}, not the GGUF magic "GGUF" (it is not a GGUF ` +
          `file)`,
      );
    }
    pos = 4;
    const version = u32("the version");
    if (!VERSIONS.includes(version)) {
      // The version's bytes swapped: a file written for big-endian machines.
      const swapped = ((version & 0xff) << 24 | (version & 0xff00) << 8 |
        (version >>> 8) & 0xff00 | version >>> 24) >>> 0;
      if (VERSIONS.includes(swapped)) {
        throw fail(
          `it is a big-endian GGUF file (version ${swapped}); only little-endian files are ` +
            `read, convert it again without --bigendian`,
        );
      }
      throw fail(
        `it is GGUF version ${version}, expected ${VERSIONS.join(" or ")}` +
          (version === 1 ? " (convert it again with a current llama.cpp)" : ""),
      );
    }
    // Each tensor info takes at least 24 bytes and each key-value pair at least 13.
    const tensorCount = size("the tensor count", Math.floor(fileSize / 24));
    const kvCount = size("the metadata count", Math.floor(fileSize / 13));
    const metadata = new Map<string, GgufValue>();
    for (let i = 0; i < kvCount; i++) {
      const key = string(`metadata key ${i}`);
      if (metadata.has(key)) throw fail(`metadata key "${key}" appears twice`);
      const type = u32(`the type of metadata "${key}"`);
      metadata.set(key, value(type, () => `metadata "${key}"`, 0));
    }
    const alignment = metadata.get("general.alignment") ?? DEFAULT_ALIGNMENT;
    if (
      typeof alignment !== "number" || !Number.isInteger(alignment) || alignment <= 0 ||
      (alignment & (alignment - 1)) !== 0
    ) {
      throw fail(`general.alignment is ${String(alignment)}, expected a power of two`);
    }

    const infos: Omit<GgufTensorInfo, "position">[] = [];
    const names = new Set<string>();
    const offsets: number[] = [];
    for (let i = 0; i < tensorCount; i++) {
      const name = string(`the name of tensor ${i}`);
      const what = `tensor "${name}"`;
      const nDims = u32(`the dimension count of ${what}`);
      if (nDims > MAX_DIMS) {
        throw fail(`${what} has ${nDims} dimensions, at most ${MAX_DIMS} expected`);
      }
      const ne: number[] = [];
      for (let d = 0; d < nDims; d++) {
        ne.push(
          size(`dimension ${d} of ${what}`, Number.MAX_SAFE_INTEGER, "absurd (it is corrupt)"),
        );
      }
      const typeId = u32(`the type of ${what}`);
      const offset = size(`the data offset of ${what}`, fileSize);
      const typeName = GGML_TYPE_NAMES.get(typeId);
      const dtype = typeName === undefined ? undefined : DTYPES_BY_GGML_NAME.get(typeName);
      if (dtype === undefined) {
        throw fail(
          `${what} has ggml type ${typeName ?? `id ${typeId}`}, which this reader does not ` +
            `convert (supported: ${SUPPORTED})`,
        );
      }
      const layout = TYPE_LAYOUTS[dtype];
      const count = elementCount(ne);
      if (!Number.isSafeInteger(count) || count > fileSize * layout.blockSize) {
        throw fail(`${what} has dimensions [${ne.join(", ")}], more values than the file holds`);
      }
      if ((ne[0] ?? 1) % layout.blockSize !== 0) {
        throw fail(
          `${what} has rows of ${ne[0]} values, not whole ${layout.ggmlName} blocks of ` +
            `${layout.blockSize}`,
        );
      }
      if (offset % alignment !== 0) {
        throw fail(
          `${what} has data offset ${offset}, not a multiple of the alignment ${alignment}`,
        );
      }
      if (names.has(name)) throw fail(`tensor "${name}" appears twice`);
      names.add(name);
      infos.push({
        name,
        dtype,
        ggmlType: layout.ggmlName,
        ne,
        shape: [...ne].reverse(),
        byteLength: storedBytes(dtype, count)!,
      });
      offsets.push(offset);
    }
    const dataStart = Math.ceil(pos / alignment) * alignment;
    const tensors = new Map<string, GgufTensorInfo>();
    infos.forEach((t, i) => tensors.set(t.name, { ...t, position: dataStart + offsets[i] }));
    checkExtents([...tensors.values()], fileSize, fail);
    return { version, alignment, metadata, tensors, dataStart };
  } catch (e) {
    if (e instanceof NeedMore) return "more";
    throw e;
  }
}

/** Refuses tensors past the end of the file or overlapping one another. */
function checkExtents(
  tensors: GgufTensorInfo[],
  fileSize: number,
  fail: (detail: string) => ModelFileError,
): void {
  const sorted = [...tensors].sort((a, b) => a.position - b.position);
  for (const [i, t] of sorted.entries()) {
    const end = t.position + t.byteLength;
    if (end > fileSize) {
      throw fail(
        `tensor "${t.name}" needs bytes up to ${end}, the file ends at ${fileSize} (it is ` +
          `truncated)`,
      );
    }
    const next = sorted[i + 1];
    if (next !== undefined && next.position < end) {
      throw fail(`tensors "${t.name}" and "${next.name}" overlap (the file is corrupt)`);
    }
  }
}

/** An open GGUF file. */
export class GgufFile implements TensorSource {
  /** The format version, 2 or 3. */
  readonly version: number;
  /** The alignment of the tensor data: `general.alignment`, or 32. */
  readonly alignment: number;
  /** Every metadata value by key, in file order. */
  readonly metadata: ReadonlyMap<string, GgufValue>;
  readonly tensors: ReadonlyMap<string, GgufTensorInfo>;
  /** File offset of the first data byte. */
  readonly dataStart: number;
  /** The file's path or URL, for messages. */
  readonly path: string;
  readonly #file: SourceFile;

  /** `file`, which this object closes, and its parsed `header`. */
  constructor(file: SourceFile, header: ParsedHeader) {
    this.path = file.path;
    this.version = header.version;
    this.alignment = header.alignment;
    this.metadata = header.metadata;
    this.tensors = header.tensors;
    this.dataStart = header.dataStart;
    this.#file = file;
  }

  read(name: string, dest: Uint8Array): Promise<void> {
    checkReadTarget(this, name, dest);
    return this.readPart(name, 0, dest);
  }

  async readPart(name: string, offset: number, dest: Uint8Array): Promise<void> {
    const info = this.tensors.get(name);
    if (info === undefined) {
      throw new ModelFileError(`Cannot read "${this.path}": it holds no tensor named "${name}"`);
    }
    if (!(offset >= 0 && offset + dest.byteLength <= info.byteLength)) {
      throw new RangeError(
        `Cannot read bytes ${offset} to ${offset + dest.byteLength} of tensor "${name}" of ` +
          `"${this.path}": it has ${info.byteLength}`,
      );
    }
    const begin = info.position + offset;
    const got = await this.#file.read(begin, dest);
    if (got < dest.byteLength) {
      throw new ModelFileError(
        `Cannot read "${this.path}": tensor "${name}" needs bytes up to ` +
          `${begin + dest.byteLength}, the file ends at ${begin + got} (the file is truncated)`,
      );
    }
  }

  [Symbol.dispose](): void {
    this.#file[Symbol.dispose]();
  }
}
