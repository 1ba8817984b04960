/**
 * GPT-2's parameters as a tree of backend tensors, named as the checkpoint names them
 * (`model/h0/attn/c_attn/w` is `params.h[0].attn.c_attn.w`), so the forward pass reads
 * like the file layout.
 *
 * @module
 */
import type { Backend, Tensor } from "../backend/backend.ts";
import type { WeightPlan } from "./plan.ts";
import type { TensorSpec } from "./tensor_names.ts";

/** A Conv1D: out = inp · w + b, w (nx, nf), b (nf). */
export interface Conv1dParams {
  readonly w: Tensor;
  readonly b: Tensor;
}

/** A layer norm's gain g and shift b, (C) each. */
export interface NormParams {
  readonly g: Tensor;
  readonly b: Tensor;
}

/** One transformer block. */
export interface BlockParams {
  readonly ln_1: NormParams;
  readonly attn: { readonly c_attn: Conv1dParams; readonly c_proj: Conv1dParams };
  readonly ln_2: NormParams;
  readonly mlp: { readonly c_fc: Conv1dParams; readonly c_proj: Conv1dParams };
}

/** Every parameter of the model. */
export interface Params {
  /** (n_vocab, C) token embedding, also the output head unless `head` is there. */
  readonly wte: Tensor;
  /** (n_vocab, C) the output head of a model whose head is not tied (`untied_head`). */
  readonly head?: Tensor;
  /** (n_ctx, C) position embedding. */
  readonly wpe: Tensor;
  readonly h: readonly BlockParams[];
  readonly ln_f: NormParams;
}

/** One allocated parameter and the checkpoint tensor it comes from. */
export interface ParamBinding {
  readonly spec: TensorSpec;
  readonly tensor: Tensor;
}

/** Allocates every weight of a model's plan (plan.ts) on `backend`, each with its role. */
export function allocateParams(
  backend: Backend,
  weights: readonly WeightPlan[],
): { params: Params; bindings: ParamBinding[] } {
  const root: Record<string, unknown> = { h: [] };
  const bindings = weights.map(({ spec, role, shape }) => {
    const tensor = backend.weight(role, shape);
    // "model/h3/mlp/c_fc/w" -> root.h[3].mlp.c_fc.w
    const path = spec.name.replace(/^model\//, "").split("/").flatMap((part) => {
      const layer = /^h(\d+)$/.exec(part);
      return layer ? ["h", layer[1]] : [part];
    });
    let node = root as Record<string, unknown>;
    for (const key of path.slice(0, -1)) {
      node = (node[key] ??= {}) as Record<string, unknown>;
    }
    node[path[path.length - 1]] = tensor;
    return { spec, tensor };
  });
  return { params: root as unknown as Params, bindings };
}
