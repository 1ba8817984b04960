/**
 * Shared set-up for the WebGPU tests: one backend per file, a test wrapper that fails in
 * CI and is skipped with its reason elsewhere when the machine has no WebGPU adapter, and
 * the limit of the normalised mean squared error the WebGPU tests hold it to.
 */
import { assertNmse as assertNmseWithin } from "./assert_close.ts";
import { WebGpuBackend, type WebGpuOptions } from "../runtime/backend/webgpu/webgpu_backend.ts";

/** The ggml backend tests' limit on the normalised mean squared error. */
export const NMSE_LIMIT = 1e-6;

/** `assertNmse` of assert_close.ts at `limit` (default `NMSE_LIMIT`). */
export function assertNmse(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  what: string,
  limit = NMSE_LIMIT,
): void {
  assertNmseWithin(actual, expected, limit, what);
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
