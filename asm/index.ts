// The kernels the runtime calls: plain functions over byte offsets into one shared,
// imported memory. They allocate nothing, keep no state and never throw; the runtime
// validates every size and offset before a call. Each takes a range of its work (rows,
// columns, heads) so that workers can share one call. `gelu`, `softmax` and `exp` are
// exported so that tests can hold the math the fused kernels use to its reference.
export { gelu, softmax } from "./activations";
export { attention, KEY_BLOCK } from "./attention";
export { embed } from "./embedding";
export { conv1d, conv1d_gelu, conv1d_residual, logits, pack_panels, PANEL } from "./matmul";
export { layer_norm } from "./norm";
export { read_sum, READ_BLOCK, static_data_end } from "./memory";
export { exp } from "./math";
