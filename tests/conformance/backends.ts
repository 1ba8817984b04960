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
