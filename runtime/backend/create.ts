/**
 * Backends by name: what `loadModel(dir, { backend })` and every command line tool's
 * `--backend` select from. Each backend's module loads only when it is chosen.
 *
 * @module
 */
import type { Backend } from "./backend.ts";

/** The backends a user can choose. The reference backend is for tests and is not among them. */
export const BACKEND_NAMES = ["wasm"] as const;

/** A backend a user can choose. */
export type BackendName = typeof BACKEND_NAMES[number];

/** Options every backend takes; each uses those that apply to it. */
export interface BackendOptions {
  /** Threads that run the kernels (wasm; default one per logical CPU). */
  threads?: number;
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
      return await WasmBackend.create({ threads: options.threads });
    }
    default:
      throw new RangeError(
        `Unknown backend "${name}": choose one of ${BACKEND_NAMES.join(", ")}`,
      );
  }
}
