/**
 * Backends by name: what `loadModel(dir, { backend })` and every command line tool's
 * `--backend` select from. A name gives targets, backends not yet created that say which
 * weight types they store and how a model would fit them, so that a model's weight type
 * and slots are decided before one backend is made. Each backend's module loads only when
 * it is named.
 *
 * @module
 */
import { BackendError } from "../errors.ts";
import type { Backend, Fit, ModelPlan, WeightType } from "./backend.ts";

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

/** A backend before it is created: what it can store and how a model would fit it. */
export interface BackendTarget {
  /** The backend's name. */
  readonly name: "wasm" | "webgpu";
  /** The weight types it stores, most faithful first. */
  readonly weightTypes: readonly WeightType[];
  /**
   * How a model that allocates `plan` would fit it with `weightType` weights, run on
   * `threads` threads (where the backend's memory depends on them; default as `create`'s).
   */
  fit(plan: ModelPlan, weightType: WeightType, threads?: number): Fit;
  /**
   * Creates the backend.
   * @throws {BackendError} for a weight type it does not store, or a device it cannot get
   */
  create(options?: BackendOptions): Promise<Backend>;
}

/** The wasm backend as a target: its estimate needs no probe. */
export async function wasmTarget(): Promise<BackendTarget> {
  const { WasmBackend } = await import("./wasm/wasm_backend.ts");
  return {
    name: "wasm",
    weightTypes: WasmBackend.weightTypes,
    fit: (plan, weightType, threads) => WasmBackend.fit(plan, weightType, threads),
    create: (options = {}) =>
      WasmBackend.create({ threads: options.threads, weightType: options.weightType }),
  };
}

/**
 * The targets `name` selects, the preferred first: `"wasm"` and `"webgpu"` one each;
 * `"auto"` WebGPU then wasm where the adapter is a hardware GPU (a software one, such as
 * Mesa's llvmpipe, is far slower than the wasm kernels), else wasm alone. WebGPU's target
 * comes from one adapter probe: its limits decide the fit, and its device is requested
 * from the same adapter.
 * @throws {BackendError} for `"webgpu"` without WebGPU or an adapter
 */
export async function backendTargets(name: BackendName): Promise<BackendTarget[]> {
  switch (name) {
    case "wasm":
      return [await wasmTarget()];
    case "webgpu":
      return [await webGpuTarget(false)];
    case "auto": {
      const gpu = await webGpuTarget(true);
      return gpu ? [gpu, await wasmTarget()] : [await wasmTarget()];
    }
  }
}

/**
 * Creates the backend called `name` (its first target) with `options`, whatever a model
 * needs: for tests and benchmarks that size their own models.
 */
export async function createBackend(
  name: BackendName,
  options: BackendOptions = {},
): Promise<Backend> {
  return await (await backendTargets(name))[0].create(options);
}

/**
 * WebGPU's target from one adapter probe; with `gpuOnly`, undefined unless the adapter is
 * a hardware GPU (and when there is none).
 */
async function webGpuTarget(gpuOnly: true): Promise<BackendTarget | undefined>;
async function webGpuTarget(gpuOnly: false): Promise<BackendTarget>;
async function webGpuTarget(gpuOnly: boolean): Promise<BackendTarget | undefined> {
  const { WebGpuBackend } = await import("./webgpu/webgpu_backend.ts");
  let probe;
  try {
    probe = await WebGpuBackend.probe(gpuOnly ? 5000 : undefined);
  } catch (e) {
    if (gpuOnly) return undefined;
    throw e;
  }
  if (gpuOnly && probe.kind !== "gpu") return undefined;
  const { weightTypes } = WebGpuBackend;
  return {
    name: "webgpu",
    weightTypes,
    fit: (plan, weightType) => WebGpuBackend.fit(plan, weightType, probe.limits),
    create: (options = {}) => {
      const weightType = options.weightType ?? "f32";
      if (weightType !== "f32" && weightType !== "f16") {
        return Promise.reject(
          new BackendError(
            `The webgpu backend has no ${weightType} weights: use dtype ${
              weightTypes.map((t) => `"${t}"`).join(" or ")
            }, or backend "wasm"`,
          ),
        );
      }
      return WebGpuBackend.create({ weightType, adapter: probe.adapter });
    },
  };
}
