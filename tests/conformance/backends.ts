/**
 * The backends the conformance suite runs (ops_test.ts op by op, model_test.ts as a whole
 * model), each against the reference backend. Adding a backend is one line in `BACKENDS`.
 *
 * @module
 */
import type { Backend } from "../../runtime/backend/backend.ts";
import { WasmBackend } from "../../runtime/backend/wasm/wasm_backend.ts";
import { WebGpuBackend } from "../../runtime/backend/webgpu/webgpu_backend.ts";
import { ReferenceBackend } from "../../runtime/backend/reference/reference_backend.ts";

/** A backend under test: how to make one, and how close to the reference it must come. */
export interface BackendUnderTest {
  /** The name in test names. */
  readonly name: string;
  /** A new instance; the test disposes it. */
  readonly create: () => Backend | Promise<Backend>;
  /** The largest NMSE allowed against the reference, for each op's output and the logits. */
  readonly nmse: number;
}

/** Why WebGPU cannot run here, or null when an adapter and a device are available. */
const webGpuUnavailable = await WebGpuBackend.create().then(
  (b) => (b.dispose(), null),
  (e: Error) => e.message,
);

/** Every backend the suite runs. */
export const BACKENDS: readonly BackendUnderTest[] = [
  // The oracle itself: op by op it is compared with itself, so only the invariants test
  // it; as a whole model it runs the same functions in the same order as
  // `referenceForward`, so its logits must be those bit for bit.
  { name: "reference", create: () => new ReferenceBackend(), nmse: 0 },
  // float32 SIMD sums, in another order than the reference's float64 ones: 4e-13 at most
  // per op and 1e-12 on the logits of the whole model, as measured; 1e-10 leaves a
  // hundredfold margin and still fails one element in forty that is 0.1% off.
  { name: "wasm", create: () => WasmBackend.create({ threads: 2 }), nmse: 1e-10 },
  // Conv1D and embedding weights rounded to float16 (relative error ≤ 2⁻¹¹ each): 7e-8
  // measured per op and 1.3e-6 on the whole model's logits; 1e-5 leaves an eightfold margin.
  {
    name: "wasm f16",
    create: () => WasmBackend.create({ threads: 2, weightType: "f16" }),
    nmse: 1e-5,
  },
  // Weights quantised to 7 bits and activations to 8 in blocks of 32: 1.6e-4 measured per
  // op and 6.4e-3 on the logits of this small generated model (n_embd below one block, so
  // each row's largest value sets every other's step); 3e-2 leaves a fourfold margin.
  {
    name: "wasm q8",
    create: () => WasmBackend.create({ threads: 2, weightType: "q8" }),
    nmse: 3e-2,
  },
  // float32 on the GPU, with WGSL's exp and tanh (a few ulp): 5e-13 at most on the logits
  // on Mesa's llvmpipe; 1e-9 leaves room for GPUs' own exp and fused multiply-adds and
  // still fails one element in forty that is 0.1% off. Without an adapter it is skipped,
  // with the reason, except in CI (see webGpuUnavailable).
  ...webGpuUnlessUnavailable({
    name: "webgpu",
    create: () => WebGpuBackend.create(),
    nmse: 1e-9,
  }),
];

/**
 * `entry`, unless this machine has no WebGPU adapter: then, outside CI, an ignored test
 * named with the reason stands in for it (it never passes silently); in CI (`CI=true`,
 * where .ci/run installs Mesa's software driver) the entry stays, and its tests fail.
 */
function webGpuUnlessUnavailable(entry: BackendUnderTest): BackendUnderTest[] {
  if (webGpuUnavailable === null || Deno.env.get("CI") === "true") return [entry];
  Deno.test({
    name: `${entry.name}: the conformance suite (skipped: ${webGpuUnavailable})`,
    ignore: true,
    fn() {},
  });
  return [];
}
