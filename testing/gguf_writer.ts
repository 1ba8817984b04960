/**
 * A GGUF writer for tests, from the format's description (ggml's `docs/gguf.md`): any
 * metadata value type, versions 2 and 3, any alignment, tensors of every type
 * `runtime/io/gguf.ts` reads; and a GPT-2 written the way llama.cpp's
 * `convert_hf_to_gguf.py` writes one.
 *
 * @module
 */
import { writeAll, writeFileAtomically } from "../runtime/io/atomic_file.ts";
import type { HParams } from "../runtime/gpt2/hparams.ts";
import { ggufNames, gpt2Tensors } from "../runtime/gpt2/tensor_names.ts";
import {
  type BlockType,
  type Float32Convertible,
  TYPE_LAYOUTS,
} from "../runtime/io/tensor_types.ts";
import { quantize } from "./ggml_quants.ts";
import type { Weights } from "./random_model.ts";

/** A metadata value with its GGUF type. */
export type GgufEntry =
  | {
    type: "uint8" | "int8" | "uint16" | "int16" | "uint32" | "int32" | "float32" | "float64";
    value: number;
  }
  | { type: "uint64" | "int64"; value: bigint }
  | { type: "bool"; value: boolean }
  | { type: "string"; value: string }
  | { type: "array"; items: GgufEntry["type"]; value: readonly GgufEntry[] };

/** GGUF's value type ids. */
const TYPE_IDS: Readonly<Record<GgufEntry["type"], number>> = {
  uint8: 0,
  int8: 1,
  uint16: 2,
  int16: 3,
  uint32: 4,
  int32: 5,
  float32: 6,
  bool: 7,
  string: 8,
  array: 9,
  uint64: 10,
  int64: 11,
  float64: 12,
};

/** ggml's type ids of the types written here. */
export const GGML_TYPE_IDS: Readonly<Record<Float32Convertible, number>> = {
  float32: 0,
  float16: 1,
  q4_0: 2,
  q4_1: 3,
  q5_0: 6,
  q5_1: 7,
  q8_0: 8,
  q4_k: 12,
  q5_k: 13,
  q6_k: 14,
  bfloat16: 30,
};

/** One tensor to write: ggml's `ne` (innermost first), its type and its stored bytes. */
export interface GgufTensorToWrite {
  readonly name: string;
  readonly ne: readonly number[];
  /** A type of `TYPE_LAYOUTS`, or a raw ggml type id (for files that must fail). */
  readonly type: Float32Convertible | number;
  readonly data: Uint8Array;
}

/** What `writeGguf` writes. */
export interface GgufToWrite {
  /** 2 or 3 (default 3); another number writes a file a reader must refuse. */
  readonly version?: number;
  /** Metadata in file order. `general.alignment` here sets the alignment. */
  readonly metadata?: readonly [string, GgufEntry][];
  readonly tensors?: readonly GgufTensorToWrite[];
}

/** Little-endian bytes, appended. */
class ByteWriter {
  #chunks: Uint8Array[] = [];
  length = 0;

  bytes(b: Uint8Array): void {
    this.#chunks.push(b);
    this.length += b.length;
  }
  #fixed(n: number, set: (v: DataView) => void): void {
    const b = new Uint8Array(n);
    set(new DataView(b.buffer));
    this.bytes(b);
  }
  u32(v: number): void {
    this.#fixed(4, (d) => d.setUint32(0, v, true));
  }
  u64(v: number | bigint): void {
    this.#fixed(8, (d) => d.setBigUint64(0, BigInt(v), true));
  }
  string(s: string): void {
    const b = new TextEncoder().encode(s);
    this.u64(b.length);
    this.bytes(b);
  }
  value(e: GgufEntry): void {
    switch (e.type) {
      case "uint8":
        return this.#fixed(1, (d) => d.setUint8(0, e.value));
      case "int8":
        return this.#fixed(1, (d) => d.setInt8(0, e.value));
      case "uint16":
        return this.#fixed(2, (d) => d.setUint16(0, e.value, true));
      case "int16":
        return this.#fixed(2, (d) => d.setInt16(0, e.value, true));
      case "uint32":
        return this.u32(e.value);
      case "int32":
        return this.#fixed(4, (d) => d.setInt32(0, e.value, true));
      case "float32":
        return this.#fixed(4, (d) => d.setFloat32(0, e.value, true));
      case "float64":
        return this.#fixed(8, (d) => d.setFloat64(0, e.value, true));
      case "uint64":
        return this.u64(e.value);
      case "int64":
        return this.#fixed(8, (d) => d.setBigInt64(0, e.value, true));
      case "bool":
        return this.#fixed(1, (d) => d.setUint8(0, e.value ? 1 : 0));
      case "string":
        return this.string(e.value);
      case "array":
        this.u32(TYPE_IDS[e.items]);
        this.u64(e.value.length);
        for (const item of e.value) {
          if (item.type !== e.items) {
            throw new TypeError(`An array of ${e.items} holds a ${item.type}`);
          }
          this.value(item);
        }
    }
  }
  pad(alignment: number): void {
    const n = (alignment - (this.length % alignment)) % alignment;
    this.bytes(new Uint8Array(n));
  }
  concat(): Uint8Array {
    const out = new Uint8Array(this.length);
    let o = 0;
    for (const c of this.#chunks) {
      out.set(c, o);
      o += c.length;
    }
    return out;
  }
}

/**
 * The bytes of a GGUF file: header, metadata, tensor infos, padding, then each tensor's
 * data at the next multiple of the alignment, in the order given.
 */
export function ggufBytes(file: GgufToWrite): Uint8Array {
  const metadata = file.metadata ?? [];
  const tensors = file.tensors ?? [];
  const alignmentEntry = metadata.find(([k]) => k === "general.alignment")?.[1];
  const alignment = alignmentEntry?.type === "uint32" ? alignmentEntry.value : 32;
  const w = new ByteWriter();
  w.bytes(new TextEncoder().encode("GGUF"));
  w.u32(file.version ?? 3);
  w.u64(tensors.length);
  w.u64(metadata.length);
  for (const [key, value] of metadata) {
    w.string(key);
    w.u32(TYPE_IDS[value.type]);
    w.value(value);
  }
  let offset = 0;
  for (const t of tensors) {
    w.string(t.name);
    w.u32(t.ne.length);
    for (const d of t.ne) w.u64(d);
    w.u32(typeof t.type === "number" ? t.type : GGML_TYPE_IDS[t.type]);
    w.u64(offset);
    offset += Math.ceil(t.data.length / alignment) * alignment;
  }
  w.pad(alignment);
  for (const t of tensors) {
    w.bytes(t.data);
    w.pad(alignment);
  }
  return w.concat();
}

/** Writes `file` to `path`, under a temporary name renamed at the end. */
export async function writeGguf(path: string, file: GgufToWrite): Promise<void> {
  const bytes = ggufBytes(file);
  await writeFileAtomically(path, (out) => writeAll(out, bytes));
}

/** `values` stored as `type`: float32 as it is, float16/bfloat16 rounded, blocks quantized. */
export function storeAs(type: Float32Convertible, values: Float32Array): Uint8Array {
  switch (type) {
    case "float32":
      return new Uint8Array(
        values.buffer.slice(values.byteOffset, values.byteOffset + values.byteLength),
      );
    case "float16":
      return new Uint8Array(new Float16Array(values).buffer);
    case "bfloat16": {
      // Round to nearest even on the top 16 bits (NaN does not occur in test weights).
      const bits = new Uint32Array(Float32Array.from(values).buffer);
      return new Uint8Array(
        Uint16Array.from(bits, (b) => (b + 0x7fff + ((b >>> 16) & 1)) >>> 16).buffer,
      );
    }
    default:
      return quantize(type as BlockType, values);
  }
}

/** How `writeGpt2Gguf` writes a model. */
export interface Gpt2GgufOptions {
  /** The type of the matrices and the token embedding (norms, biases, wpe stay float32). */
  readonly type?: Float32Convertible;
  /** The token strings by id, as `encoder.json` holds them (GPT-2's byte characters). */
  readonly tokens: readonly string[];
  /** The merges, "left right", best first. */
  readonly merges: readonly string[];
  /** Metadata to add or to override (same key), e.g. a wrong epsilon. */
  readonly metadata?: readonly [string, GgufEntry][];
  /**
   * Write an output head `output.weight` beside `token_embd` (older converters wrote a
   * copy; an untied model has its own): these bytes, of the embedding's type and shape
   * unless `type` and `ne` say otherwise.
   */
  readonly output?: {
    readonly type?: Float32Convertible;
    readonly ne?: readonly number[];
    readonly data: Uint8Array;
  };
  readonly version?: number;
}

const u32 = (value: number): GgufEntry => ({ type: "uint32", value });
const str = (value: string): GgufEntry => ({ type: "string", value });

/**
 * A GPT-2 of shape `hp` with weights `weights` (named as OpenAI's checkpoint) as
 * llama.cpp's converter writes it: its metadata keys and tokenizer, `token_embd`,
 * `position_embd`, `blk.N.*`, `output_norm`, matrices transposed to (out, in).
 */
export function gpt2GgufFile(hp: HParams, weights: Weights, options: Gpt2GgufOptions): GgufToWrite {
  const type = options.type ?? "float32";
  const metadata = new Map<string, GgufEntry>([
    ["general.architecture", str("gpt2")],
    ["general.name", str("test-gpt2")],
    ["gpt2.block_count", u32(hp.n_layer)],
    ["gpt2.context_length", u32(hp.n_ctx)],
    ["gpt2.embedding_length", u32(hp.n_embd)],
    ["gpt2.feed_forward_length", u32(4 * hp.n_embd)],
    ["gpt2.attention.head_count", u32(hp.n_head)],
    ["gpt2.attention.layer_norm_epsilon", { type: "float32", value: 1e-5 }],
    ["general.file_type", u32(0)],
    ["tokenizer.ggml.model", str("gpt2")],
    ["tokenizer.ggml.pre", str("gpt-2")],
    ["tokenizer.ggml.tokens", { type: "array", items: "string", value: options.tokens.map(str) }],
    ["tokenizer.ggml.merges", { type: "array", items: "string", value: options.merges.map(str) }],
    ["tokenizer.ggml.eos_token_id", u32(options.tokens.indexOf("<|endoftext|>"))],
  ]);
  for (const [k, v] of options.metadata ?? []) metadata.set(k, v);
  const tensors: GgufTensorToWrite[] = [];
  for (const spec of gpt2Tensors(hp)) {
    const { name, shape, transposed } = ggufNames(spec.name, spec.shape);
    const data = weights.get(spec.name)!.data;
    const values = transposed ? transpose(data, shape[1], shape[0]) : data;
    const stored = spec.role === "plain" ? "float32" : type;
    tensors.push({ name, ne: [...shape].reverse(), type: stored, data: storeAs(stored, values) });
    if (spec.name === "model/wte" && options.output !== undefined) {
      const { type: headType = stored, ne = [...shape].reverse(), data: head } = options.output;
      tensors.push({ name: "output.weight", ne: [...ne], type: headType, data: head });
    }
  }
  return { version: options.version, metadata: [...metadata], tensors };
}

/** Writes {@linkcode gpt2GgufFile} to `path`. */
export async function writeGpt2Gguf(
  path: string,
  hp: HParams,
  weights: Weights,
  options: Gpt2GgufOptions,
): Promise<void> {
  await writeGguf(path, gpt2GgufFile(hp, weights, options));
}

/** `m` (rows, cols) transposed to (cols, rows). */
export function transpose(m: Float32Array, rows: number, cols: number): Float32Array {
  const out = new Float32Array(m.length);
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) out[c * rows + r] = m[r * cols + c];
  }
  return out;
}

/** The bytes each element of `type` takes on average, for tables. */
export function bytesPerWeight(type: Float32Convertible): number {
  const { blockSize, blockBytes } = TYPE_LAYOUTS[type];
  return blockBytes / blockSize;
}
