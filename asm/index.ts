// The kernels the runtime calls: plain functions over byte offsets into one shared,
// imported memory. They allocate nothing, keep no state and never throw; the runtime
// validates every size and offset before a call. Each takes a range of its work (rows,
// columns, heads) so that workers can share one call.
export { add, gelu, softmax } from "./activations";
export { attention } from "./attention";
export { embed } from "./embedding";
export { conv1d, logits, pack_panels } from "./matmul";
export { layer_norm } from "./norm";
