/**
 * Weights for the backend tests and benchmarks, loaded through the `Backend` interface as
 * the model loader loads them: the one place a test puts numbers into a weight.
 *
 * @module
 */
import { assertEquals } from "./asserts.ts";
import type { Backend, Tensor, WeightRole } from "../runtime/backend/backend.ts";

/**
 * Fills the weight `t` (made by `backend.weight`) with `data`, from its first element, and
 * returns it. The values arrive a macrotask later, as from a file, so that loads started
 * together are really in flight together; the array `loadWeight` hands over must hold the
 * whole weight, one float per element of its shape.
 */
export async function fillWeight<T extends Tensor>(
  backend: Backend,
  t: T,
  data: Float32Array,
): Promise<T> {
  await backend.loadWeight(t, async (dest) => {
    const elements = t.shape.reduce((a, b) => a * b, 1);
    assertEquals(dest.length, elements, `weight [${t.shape}]: loadWeight's array`);
    await new Promise((resolve) => setTimeout(resolve, 0));
    dest.set(data);
  });
  return t;
}

/** A new weight of `role` and `shape` on `backend`, holding `data`. */
export function weight(
  backend: Backend,
  role: WeightRole,
  shape: readonly number[],
  data: Float32Array,
): Promise<Tensor> {
  return fillWeight(backend, backend.weight(role, shape), data);
}
