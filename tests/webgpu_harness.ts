/**
 * Shared set-up for the WebGPU tests: one backend per file, a test wrapper that fails in
 * CI and is skipped with its reason elsewhere when the machine has no WebGPU adapter, and
 * the normalised mean squared error the backends are held to.
 */
import { WebGpuBackend, type WebGpuOptions } from "../runtime/backend/webgpu/webgpu_backend.ts";

/** The ggml backend tests' limit on the normalised mean squared error. */
export const NMSE_LIMIT = 1e-6;

/** Σ(a − b)² / Σb²: ggml's measure of how far a backend's result is from the reference. */
export function nmse(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  if (actual.length !== expected.length) {
    throw new RangeError(`length ${actual.length} differs from expected ${expected.length}`);
  }
  let err = 0;
  let norm = 0;
  for (let i = 0; i < actual.length; i++) {
    err += (actual[i] - expected[i]) ** 2;
    norm += expected[i] ** 2;
  }
  return norm === 0 ? err : err / norm;
}

/** Throws unless nmse(actual, expected) ≤ `limit` (NaN fails too). */
export function assertNmse(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  msg: string,
  limit = NMSE_LIMIT,
): void {
  const e = nmse(actual, expected);
  if (!(e <= limit)) throw new RangeError(`${msg}: NMSE ${e} > ${limit}`);
}

/**
 * A WebGPU backend with `options`, or the error that kept it from being made. Made at
 * module load, before the tests, so the resource sanitizer sees it as already open.
 */
export async function openWebGpu(options?: WebGpuOptions): Promise<WebGpuBackend | Error> {
  try {
    return await WebGpuBackend.create(options);
  } catch (e) {
    return e as Error;
  }
}

/**
 * Registers a test that needs `backend`. Without an adapter it fails when `CI=true` (CI
 * installs Mesa's software driver, so a missing adapter there is a broken machine) and is
 * ignored with the reason in its name elsewhere: it never passes silently.
 */
export function gpuTest(
  name: string,
  backend: WebGpuBackend | Error,
  fn: (backend: WebGpuBackend) => void | Promise<void>,
): void {
  if (backend instanceof Error) {
    if (Deno.env.get("CI") === "true") {
      Deno.test(name, () => {
        throw new Error(`no WebGPU in CI: ${backend.message}`);
      });
    } else {
      Deno.test({ name: `${name} (skipped: ${backend.message})`, ignore: true, fn() {} });
    }
    return;
  }
  Deno.test(name, () => fn(backend));
}
