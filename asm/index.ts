// The kernels the runtime calls: plain functions over byte offsets into one shared,
// imported memory. They allocate nothing, keep no state and never throw; the runtime
// validates every size and offset before a call. Each takes a range of its work (rows,
// columns, heads) so that workers can share one call. `gelu`, `softmax` and `exp` are
// exported so that tests can hold the math the fused kernels use to its reference.
export { gelu, softmax } from "./activations";
export { attention, KEY_BLOCK } from "./attention";
export { embed } from "./embedding";
export { conv1d, GELU, logits, pack_panels, PANEL, RESIDUAL, STORE } from "./matmul";
export {
  conv1d_q8,
  embed_q8,
  logits_q8,
  pack_q8,
  pack_q8_blocks,
  QBLOCK,
  QPANEL,
  quantize_q8,
} from "./matmul_q8";
export {
  conv1d_q4,
  embed_q4,
  logits_q4,
  pack_q4,
  pack_q4_blocks,
  quantize_q4,
} from "./matmul_q4";
export {
  conv1d_f16,
  convert_f16,
  embed_f16,
  logits_f16,
  pack_f16,
} from "./matmul_f16";
export { layer_norm } from "./norm";
export { read_sum, READ_BLOCK, static_data_end } from "./memory";
export { exp } from "./math";
