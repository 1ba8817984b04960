/**
 * What a GGUF file's matrix types become when the caller asks for no weight type (dtype
 * `"auto"` or none): the file's own type, where a backend stores it as it is, else the
 * nearest type that loses nothing visible. One entry per stored type, and the order of
 * weight types that placement then tries.
 *
 * @module
 */
import { WEIGHT_TYPES, type WeightType } from "../backend/backend.ts";
import type { Float32Convertible } from "../io/tensor_types.ts";

/**
 * The weight type each stored type of a GGUF matrix loads into by default: float types
 * their own width (bfloat16 as float16, which holds GPT-2's weights), Q8_0 and Q4_0 the
 * kept q8 and q4, and the types without kernels (Q4_1, Q5_0, Q5_1, the K-quants) q8,
 * converted while they stream in: 8 bits hold their 4 to 6 with room to spare.
 */
export const GGUF_DEFAULT_TYPES: Readonly<Record<Float32Convertible, WeightType>> = {
  float32: "f32",
  float16: "f16",
  bfloat16: "f16",
  q8_0: "q8",
  q4_0: "q4",
  q4_1: "q8",
  q5_0: "q8",
  q5_1: "q8",
  q4_k: "q8",
  q5_k: "q8",
  q6_k: "q8",
};

/**
 * The weight types to try, in order, for a GGUF file whose matrices (the Conv1D weights
 * and the token embedding) are stored as `dtypes`: first the most faithful of their
 * default types (so a file that mixes Q4_0 and Q6_K loads as q8), then the less faithful
 * ones (for a model that does not fit), then the more faithful ones (for a backend that
 * has none of those, as WebGPU has no q8 or q4).
 *
 * @example
 * ```ts
 * import { ggufWeightTypes } from "./gguf_types.ts";
 * const order = ggufWeightTypes(["q4_0", "q4_0"]);
 * if (order.join() !== "q4,q8,f16,f32") throw new Error(order.join());
 * ```
 */
export function ggufWeightTypes(dtypes: Iterable<Float32Convertible>): WeightType[] {
  let best = WEIGHT_TYPES.length - 1;
  let any = false;
  for (const dtype of dtypes) {
    best = Math.min(best, WEIGHT_TYPES.indexOf(GGUF_DEFAULT_TYPES[dtype]));
    any = true;
  }
  if (!any) best = 0;
  return [...WEIGHT_TYPES.slice(best), ...WEIGHT_TYPES.slice(0, best).reverse()];
}
