/**
 * How a kernel reads a weight: float32 values; float16 values read as `f16` (where the
 * device has `shader-f16`); or float16 pairs packed in `u32` words and widened with
 * `unpack2x16float` (where it has not, as on Mesa's software driver). Each gives the
 * WGSL declaration of the weight binding and a function `wload(i)` that returns element
 * i as f32, so one kernel source serves all three.
 *
 * @module
 */

/** The element type a weight is stored in, and how shaders read it. */
export type WeightStorage = "f32" | "f16" | "f16-packed";

/** Bytes per element of a weight stored as `storage`. */
export function bytesPerElement(storage: WeightStorage): number {
  return storage === "f32" ? 4 : 2;
}

/**
 * WGSL for a read-only weight binding named `name` at `binding` and its loader
 * `${name}_load(i: u32) -> f32`; `enable f16;` is hoisted by `weightHeader`.
 */
export function weightBinding(storage: WeightStorage, name: string, binding: number): string {
  const decl = `@group(0) @binding(${binding}) var<storage, read> ${name}`;
  switch (storage) {
    case "f32":
      return `${decl}: array<f32>;
fn ${name}_load(i: u32) -> f32 { return ${name}[i]; }`;
    case "f16":
      return `${decl}: array<f16>;
fn ${name}_load(i: u32) -> f32 { return f32(${name}[i]); }`;
    case "f16-packed":
      return `${decl}: array<u32>;
fn ${name}_load(i: u32) -> f32 { return unpack2x16float(${name}[i >> 1u])[i & 1u]; }`;
  }
}

/** What a shader reading a weight of `storage` must begin with. */
export function weightHeader(storage: WeightStorage): string {
  return storage === "f16" ? "enable f16;\n" : "";
}
