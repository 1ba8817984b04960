/**
 * The layout constants of the kernels (asm/) that the runtime sizes memory by, kept here
 * so that sizes can be computed before any module is instantiated (an estimate of a model's
 * memory). `WasmBackend.create` checks that the module it runs exports the same values.
 *
 * @module
 */

/**
 * Columns per packed weight panel of every format, and vocabulary rows per panel of a
 * packed embedding: `PANEL` in asm/matmul.ts and asm/matmul_f16.ts, `QPANEL` in
 * asm/matmul_q8.ts. A panel is the unit a product's work is split by.
 */
export const PANEL = 16;

/** Input features per q8 block (`QBLOCK` in asm/matmul_q8.ts). */
export const Q8_BLOCK = 32;

/** Input features per q4 block (`Q4BLOCK` in asm/matmul_q4.ts, ggml's QK4_0). */
export const Q4_BLOCK = 32;

/** Positions per block of a head's cached keys (`KEY_BLOCK` in asm/attention.ts). */
export const KEY_BLOCK = 4;

/** Panels of `PANEL` columns that cover `OC` columns. */
export function panels(OC: number): number {
  return Math.ceil(OC / PANEL);
}

/**
 * Bytes of one panel widened to f32 over C input features, the scratch each thread of a
 * float16 product of many rows widens its panels into (asm/matmul_f16.ts).
 */
export function widenedPanelBytes(C: number): number {
  return 4 * PANEL * C;
}
