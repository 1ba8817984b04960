/**
 * Sizes of the int8 (q8) and float16 weight formats of asm/matmul_q8.ts and
 * asm/matmul_f16.ts, which document the layouts; the runtime only needs their sizes.
 *
 * @module
 */

/** Features per q8 block; must equal `QBLOCK` in asm/matmul_q8.ts. */
export const Q8_BLOCK = 32;

/** Columns per q8 and f16 weight panel; must equal `QPANEL` / `PANEL` in the asm files. */
export const QUANT_PANEL = 16;

/** Panels of `QUANT_PANEL` columns that cover `OC` columns: the units of a q8/f16 op. */
export function quantPanels(OC: number): number {
  return Math.ceil(OC / QUANT_PANEL);
}

/**
 * Bytes of a (C, OC) weight packed by `pack_q8`: per panel and block, 16 f32 scales and
 * 16 × 32 int8 weights (576 bytes, 1.125 bytes a weight).
 */
export function q8PackedBytes(C: number, OC: number): number {
  return quantPanels(OC) * Math.ceil(C / Q8_BLOCK) * 576;
}

/** Bytes of one row of C activations quantised by `quantize_q8`: 40 per block of 32. */
export function q8RowBytes(C: number): number {
  return Math.ceil(C / Q8_BLOCK) * 40;
}

/** Bytes of a (C, OC) weight packed by `pack_f16`: C rows of 16 halves per panel. */
export function f16PackedBytes(C: number, OC: number): number {
  return quantPanels(OC) * QUANT_PANEL * C * 2;
}
