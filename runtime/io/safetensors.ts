/**
 * Reader and writer for the safetensors format (https://github.com/huggingface/safetensors):
 *
 * - 8 bytes: N, the header length, a little-endian uint64;
 * - N bytes: a UTF-8 JSON object mapping each tensor name to
 *   `{"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}`, with offsets relative
 *   to the first byte after the header, plus an optional `"__metadata__"` object of string
 *   values; writers pad it with spaces;
 * - the tensors' raw little-endian bytes.
 *
 * The format has no checksum, so reads are only checked for length.
 *
 * @module
 */
import { writeAll, writeFileAtomically } from "./atomic_file.ts";
import { ModelFileError } from "../errors.ts";
import { openOrThrow, type SourceFile } from "./file_source.ts";
import { splitPath } from "./local_files.ts";
import {
  checkReadTarget,
  checkTensorToWrite,
  elementCount,
  itemSize,
  type StoredDType,
  type TensorInfo,
  type TensorSource,
  type TensorToWrite,
} from "./tensor_source.ts";

/** The safetensors dtype names and the dtypes they hold. */
export const SAFETENSORS_DTYPES: Readonly<Record<string, Exclude<StoredDType, "string">>> = {
  F64: "float64",
  F32: "float32",
  F16: "float16",
  BF16: "bfloat16",
  F8_E4M3: "float8_e4m3fn",
  F8_E5M2: "float8_e5m2",
  I64: "int64",
  I32: "int32",
  I16: "int16",
  I8: "int8",
  U64: "uint64",
  U32: "uint32",
  U16: "uint16",
  U8: "uint8",
  BOOL: "bool",
};

const NAMES_BY_DTYPE: ReadonlyMap<StoredDType, string> = new Map(
  Object.entries(SAFETENSORS_DTYPES).map(([name, dtype]) => [dtype, name]),
);

/** The largest header accepted; the reference implementation's limit too. */
const MAX_HEADER_BYTES = 100_000_000;

/** The key of the optional string-to-string metadata in the header. */
const METADATA_KEY = "__metadata__";

/** A tensor as the safetensors header describes it. */
export interface SafetensorsTensorInfo extends TensorInfo {
  readonly dtype: StoredDType;
  /** `[begin, end)` of the tensor's bytes, relative to the end of the header. */
  readonly dataOffsets: readonly [number, number];
}

/**
 * Opens a safetensors file and validates its header: length within the file, JSON that
 * parses, known dtypes, offsets within the file and sizes that match the shapes. Dispose the
 * result to close the file.
 *
 * @param file a path on disk, or a file of any `FileSource` already open (the result then
 *   owns it, and closes it on failure too)
 *
 * @example
 * ```ts ignore
 * import { openSafetensors } from "./safetensors.ts";
 * import { readAsFloat32 } from "./tensor_source.ts";
 * using file = await openSafetensors("models/124M/model.safetensors");
 * const wte = new Float32Array(50257 * 768);
 * await readAsFloat32(file, "wte.weight", wte);
 * ```
 */
export async function openSafetensors(file: string | SourceFile): Promise<SafetensorsFile> {
  if (typeof file === "string") {
    const { files, name } = splitPath(file);
    file = await openOrThrow(files, name, "a safetensors file");
  }
  const path = file.path;
  try {
    const fileSize = file.size;
    const fail = (detail: string) => new ModelFileError(`Cannot read "${path}": ${detail}`);
    if (fileSize < 8) {
      throw fail(
        `it has ${fileSize} bytes, fewer than the 8-byte header length (the file is not a ` +
          `safetensors file or is truncated)`,
      );
    }
    const lengthBytes = new Uint8Array(8);
    if (await file.read(0, lengthBytes) < 8) {
      throw fail(`the file ends inside its first 8 bytes`);
    }
    const headerLength = new DataView(lengthBytes.buffer).getBigUint64(0, true);
    if (headerLength > BigInt(Math.min(MAX_HEADER_BYTES, fileSize - 8))) {
      throw fail(
        `header length ${headerLength} is beyond the ${fileSize}-byte file or the ` +
          `${MAX_HEADER_BYTES}-byte limit (the file is not a safetensors file or is truncated)`,
      );
    }
    const headerBytes = new Uint8Array(Number(headerLength));
    if (await file.read(8, headerBytes) < headerBytes.length) {
      throw fail(`the file ends inside the ${headerBytes.length}-byte header (it is truncated)`);
    }
    const dataStart = 8 + headerBytes.length;
    const { tensors, metadata } = parseHeader(headerBytes, fileSize - dataStart, fail);
    return new SafetensorsFile(file, dataStart, tensors, metadata);
  } catch (e) {
    file[Symbol.dispose]();
    throw e;
  }
}

function parseHeader(
  bytes: Uint8Array,
  dataSize: number,
  fail: (detail: string) => ModelFileError,
): { tensors: Map<string, SafetensorsTensorInfo>; metadata: Record<string, string> } {
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(bytes));
  } catch (e) {
    throw fail(`the header is not valid UTF-8 JSON (${(e as Error).message})`);
  }
  if (!isObject(header)) {
    throw fail(`the header is JSON ${describe(header)}, expected an object`);
  }
  const tensors = new Map<string, SafetensorsTensorInfo>();
  const metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === METADATA_KEY) {
      if (!isObject(entry) || !Object.values(entry).every((v) => typeof v === "string")) {
        throw fail(`"${METADATA_KEY}" is ${describe(entry)}, expected an object of strings`);
      }
      Object.assign(metadata, entry);
      continue;
    }
    const what = `tensor "${name}"`;
    if (!isObject(entry)) {
      throw fail(`${what} is ${describe(entry)}, expected {dtype, shape, data_offsets}`);
    }
    const { dtype: dtypeName, shape, data_offsets: offsets } = entry;
    const dtype = typeof dtypeName === "string" ? SAFETENSORS_DTYPES[dtypeName] : undefined;
    if (dtype === undefined) {
      throw fail(
        `${what} has dtype ${JSON.stringify(dtypeName)}, expected one of ` +
          `${Object.keys(SAFETENSORS_DTYPES).join(", ")}`,
      );
    }
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      throw fail(`${what} has shape ${JSON.stringify(shape)}, expected an array of sizes`);
    }
    if (
      !Array.isArray(offsets) || offsets.length !== 2 ||
      !offsets.every((o) => Number.isSafeInteger(o) && o >= 0) || offsets[0] > offsets[1]
    ) {
      throw fail(`${what} has data_offsets ${JSON.stringify(offsets)}, expected [begin, end]`);
    }
    const [begin, end] = offsets as [number, number];
    if (end > dataSize) {
      throw fail(
        `${what} has data_offsets [${begin}, ${end}], beyond the ${dataSize} bytes of data ` +
          `after the header (the file is truncated or corrupt)`,
      );
    }
    const expected = elementCount(shape) * itemSize(dtype)!;
    if (end - begin !== expected) {
      throw fail(
        `${what} has ${end - begin} bytes, expected ${expected} for ${dtypeName} of shape ` +
          `[${shape.join(", ")}]`,
      );
    }
    tensors.set(name, {
      name,
      dtype,
      shape,
      byteLength: expected,
      dataOffsets: [begin, end],
      position: begin,
    });
  }
  return { tensors, metadata };
}

/** An open safetensors file. */
export class SafetensorsFile implements TensorSource {
  readonly #file: SourceFile;
  /** File offset of the first data byte: 8 + header length. */
  readonly #dataStart: number;
  /** The file's path or URL, for messages. */
  readonly path: string;

  constructor(
    /** The open file, which this object closes. */
    file: SourceFile,
    dataStart: number,
    readonly tensors: ReadonlyMap<string, SafetensorsTensorInfo>,
    /** The header's `__metadata__`, or `{}`. */
    readonly metadata: Record<string, string>,
  ) {
    this.#file = file;
    this.path = file.path;
    this.#dataStart = dataStart;
  }

  async read(name: string, dest: Uint8Array): Promise<void> {
    const info = checkReadTarget(this, name, dest);
    const begin = this.#dataStart + info.dataOffsets[0];
    const got = await this.#file.read(begin, dest);
    if (got < dest.byteLength) {
      throw new ModelFileError(
        `Cannot read "${this.path}": tensor "${name}" needs bytes up to ` +
          `${this.#dataStart + info.dataOffsets[1]}, the file ends at ${begin + got} (the ` +
          `file is truncated)`,
      );
    }
  }

  [Symbol.dispose](): void {
    this.#file[Symbol.dispose]();
  }
}

/**
 * Writes a safetensors file holding `tensors` and `metadata`. Tensors are laid out by item
 * size, largest first, then by name, so that each starts at a multiple of its item size; the
 * header is padded with spaces to a multiple of 8 bytes. The file is written under a
 * temporary name and renamed at the end, so a failure leaves no half-written file.
 *
 * @example
 * ```ts ignore
 * import { writeSafetensors } from "./safetensors.ts";
 * const bias = new Float32Array([0.5, -1]);
 * await writeSafetensors("out/model.safetensors", [
 *   { name: "b", dtype: "float32", shape: [2], data: new Uint8Array(bias.buffer) },
 * ], { format: "pt" });
 * ```
 */
export async function writeSafetensors(
  path: string,
  tensors: readonly TensorToWrite[],
  metadata?: Readonly<Record<string, string>>,
): Promise<void> {
  const names = new Set<string>();
  for (const t of tensors) {
    checkTensorToWrite(t);
    if (t.name === METADATA_KEY || names.has(t.name)) {
      throw new TypeError(`Cannot write tensor "${t.name}": the name is reserved or repeated`);
    }
    names.add(t.name);
  }
  if (metadata !== undefined && !Object.values(metadata).every((v) => typeof v === "string")) {
    throw new TypeError(`Cannot write safetensors metadata: every value must be a string`);
  }
  const ordered = [...tensors].sort((a, b) =>
    itemSize(b.dtype)! - itemSize(a.dtype)! || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)
  );
  const header: Record<string, unknown> = {};
  if (metadata !== undefined) header[METADATA_KEY] = metadata;
  let offset = 0;
  for (const t of ordered) {
    const end = offset + t.data.byteLength;
    header[t.name] = {
      dtype: NAMES_BY_DTYPE.get(t.dtype),
      shape: t.shape,
      data_offsets: [offset, end],
    };
    offset = end;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const headerLength = Math.ceil(json.length / 8) * 8;
  const prologue = new Uint8Array(8 + headerLength).fill(0x20);
  new DataView(prologue.buffer).setBigUint64(0, BigInt(headerLength), true);
  prologue.set(json, 8);

  await writeFileAtomically(path, async (file) => {
    await writeAll(file, prologue);
    for (const t of ordered) await writeAll(file, t.data);
  });
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/** A short description of a JSON value for messages. */
function describe(v: unknown): string {
  const text = JSON.stringify(v) ?? String(v);
  return text.length > 40 ? `${text.slice(0, 40)}...` : text;
}
