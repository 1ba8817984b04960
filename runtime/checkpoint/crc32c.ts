/**
 * CRC-32C (Castagnoli), the checksum TensorFlow's checkpoints and LevelDB tables use, and
 * the "mask" both apply to a stored checksum.
 *
 * The polynomial is 0x1EDC6F41, processed bit-reflected (0x82F63B78), with initial value and
 * final xor 0xFFFFFFFF (RFC 3720, section B.4). The loop is "slicing-by-8" (Kounavis and
 * Berry, "A Systematic Approach to Building High Performance Software-Based CRC
 * Generators", 2005): eight 256-entry tables let one step consume eight bytes with eight
 * independent lookups instead of eight dependent ones.
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

function buildTables(): Uint32Array {
  const t = new Uint32Array(8 * 256);
  for (let b = 0; b < 256; b++) {
    let c = b;
    for (let bit = 0; bit < 8; bit++) c = c & 1 ? (c >>> 1) ^ POLY : c >>> 1;
    t[b] = c;
  }
  for (let k = 1; k < 8; k++) {
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
  const end8 = n - (n & 7);
  while (i < end8) {
    // The first four bytes are folded into the register, the next four are looked up as-is.
    const lo = c ^ (data[i] | (data[i + 1] << 8) | (data[i + 2] << 16) | (data[i + 3] << 24));
    c = t[1792 + (lo & 0xff)] ^
      t[1536 + ((lo >>> 8) & 0xff)] ^
      t[1280 + ((lo >>> 16) & 0xff)] ^
      t[1024 + (lo >>> 24)] ^
      t[768 + data[i + 4]] ^
      t[512 + data[i + 5]] ^
      t[256 + data[i + 6]] ^
      t[data[i + 7]];
    i += 8;
  }
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
