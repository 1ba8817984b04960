/**
 * What a GPT-2 allocates on a backend, as data: every weight by role and shape, every
 * activation of a pass, and the KV cache. `Gpt2` allocates exactly this list, and a
 * backend's estimate of a model's memory reads the same list, so that the two cannot
 * drift apart.
 *
 * @module
 */
import type { ActivationType, KVCacheShape, ModelPlan, WeightRole } from "../backend/backend.ts";
import type { Activations } from "./forward.ts";
import type { HParams } from "./hparams.ts";
import { gpt2Tensors, type TensorSpec } from "./tensor_names.ts";

/** How many sequences a model runs at once, and how many new tokens per pass. */
export interface Gpt2Options {
  /** Sequences the KV cache holds, and the most one pass runs (default 1). */
  slots?: number;
  /** The most new tokens per sequence one pass takes; longer inputs go in chunks (default min(n_ctx, 256)). */
  chunk?: number;
}

/** One weight: the checkpoint tensor it comes from, and the role and shape it is allocated with. */
export interface WeightPlan {
  readonly spec: TensorSpec;
  readonly role: WeightRole;
  /** Conv1D weights are (nx, nf): the checkpoint's leading 1 is dropped. */
  readonly shape: readonly number[];
}

/** The activations of one pass, by name (forward.ts's `Activations`). */
export type ActivationName = keyof Activations;

/** One activation: its name, shape and element type. */
export interface ActivationPlan {
  readonly name: ActivationName;
  readonly shape: readonly number[];
  readonly type: ActivationType;
}

/** Everything a GPT-2 of some shape, slots and chunk allocates. */
export interface Gpt2Plan extends ModelPlan {
  readonly slots: number;
  readonly chunk: number;
  readonly weights: readonly WeightPlan[];
  readonly activations: readonly ActivationPlan[];
  readonly cache: KVCacheShape;
}

/**
 * The plan of a GPT-2 of shape `hp` with `options`' slots and chunk: the weights in model
 * order, the activations of the largest pass (rows = slots · chunk), the KV cache.
 * @throws {RangeError} when slots or chunk is not a positive integer
 */
export function gpt2Plan(hp: HParams, options: Gpt2Options = {}): Gpt2Plan {
  const { n_vocab: V, n_ctx, n_embd: C, n_head, n_layer } = hp;
  const slots = options.slots ?? 1;
  const chunk = Math.min(options.chunk ?? 256, n_ctx);
  for (const [name, value] of [["slots", slots], ["chunk", chunk]] as const) {
    if (!Number.isInteger(value) || value < 1) {
      throw new RangeError(`${name} must be a positive integer, got ${value}`);
    }
  }
  const weights = gpt2Tensors(hp).map((spec) => ({
    spec,
    role: spec.role,
    shape: spec.role === "conv1d" ? spec.shape.slice(1) : spec.shape,
  }));
  const rows = slots * chunk;
  const f32 = (name: ActivationName, ...shape: number[]) => ({ name, shape, type: "f32" as const });
  const i32 = (name: ActivationName, ...shape: number[]) => ({ name, shape, type: "i32" as const });
  const activations = [
    i32("tokens", rows),
    i32("positions", rows),
    i32("seqs", slots, 2),
    f32("x", rows, C),
    f32("h", rows, C),
    f32("qkv", rows, 3 * C),
    f32("attn", rows, C),
    f32("fc", rows, 4 * C),
    f32("xLast", slots, C),
    f32("last", slots, C),
    f32("logits", slots, V),
  ];
  const cache = { layers: n_layer, slots, positions: n_ctx, heads: n_head, headDim: C / n_head };
  return { slots, chunk, weights, activations, cache };
}
