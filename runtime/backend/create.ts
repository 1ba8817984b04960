/**
 * Backends by name: what `loadModel(dir, { backend })` and every command line tool's
 * `--backend` select from. Each backend's module loads only when it is chosen.
 *
 * @module
 */
import { BackendError } from "../errors.ts";
import type { Backend, WeightType } from "./backend.ts";

/**
 * The backends a user can choose; `"auto"` is WebGPU on a hardware GPU adapter and wasm
 * otherwise. The reference backend is for tests and is not among them.
 */
export const BACKEND_NAMES = ["wasm", "webgpu", "auto"] as const;

/** A backend a user can choose. */
export type BackendName = typeof BACKEND_NAMES[number];

/** Options every backend takes; each uses those that apply to it. */
export interface BackendOptions {
  /** Threads that run the kernels (wasm; default one per logical CPU). */
  threads?: number;
  /** How the backend stores the model's matrices (default `"f32"`). */
  weightType?: WeightType;
}

/**
 * Creates the backend called `name`.
 * @throws {RangeError} for a name that is not one of `BACKEND_NAMES`
 */
export async function createBackend(
  name: string,
  options: BackendOptions = {},
): Promise<Backend> {
  switch (name) {
    case "wasm": {
      const { WasmBackend } = await import("./wasm/wasm_backend.ts");
      return await WasmBackend.create({ threads: options.threads, weightType: options.weightType });
    }
    case "webgpu": {
      const { WebGpuBackend } = await import("./webgpu/webgpu_backend.ts");
      const weightType = options.weightType ?? "f32";
      if (weightType === "q8") {
        throw new BackendError(
          "The webgpu backend has no q8 weights: use --dtype f16 or f32, or --backend wasm",
        );
      }
      return await WebGpuBackend.create({ weightType });
    }
    case "auto": {
      // A software adapter (Mesa's llvmpipe) is far slower than the wasm kernels.
      const { WebGpuBackend } = await import("./webgpu/webgpu_backend.ts");
      const gpu = await WebGpuBackend.adapterKind() === "gpu";
      return await createBackend(gpu ? "webgpu" : "wasm", options);
    }
    default:
      throw new RangeError(
        `Unknown backend "${name}": choose one of ${BACKEND_NAMES.join(", ")}`,
      );
  }
}
