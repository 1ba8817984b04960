/**
 * Puts a checkpoint's tensors where the memory plan wants them, checking each one's name,
 * dtype and shape first. Conv1D weights are read into a staging slot and packed into
 * panels; everything else is read straight into place. Tensors are read in the order they
 * lie in the files, and a Conv1D weight is packed while the next ones are read.
 */
import { ModelFileError } from "./errors.ts";
import type { Kernels } from "./backend/wasm/kernels.ts";
import type { MemoryPlan } from "./backend/wasm/memory_plan.ts";
import { readAsFloat32, type TensorSource } from "./checkpoint/tensor_source.ts";
import { gpt2Tensors, type NameMap, tfNames } from "./gpt2/tensor_names.ts";

/** Reads every tensor of the model from `source` into the memory laid out by `plan`. */
export async function loadWeights(
  kernels: Kernels,
  plan: MemoryPlan,
  source: TensorSource,
  names: NameMap = tfNames,
): Promise<void> {
  const hp = plan.hparams;
  const C = hp.n_embd;
  const targets = new Map<string, { offset: number; packed?: [number, number] }>([
    ["model/wte", { offset: plan.wte }],
    ["model/wpe", { offset: plan.wpe }],
    ["model/ln_f/g", { offset: plan.ln_f_g }],
    ["model/ln_f/b", { offset: plan.ln_f_b }],
  ]);
  plan.layers.forEach((w, l) => {
    const p = `model/h${l}/`;
    targets.set(p + "ln_1/g", { offset: w.ln_1_g });
    targets.set(p + "ln_1/b", { offset: w.ln_1_b });
    targets.set(p + "attn/c_attn/w", { offset: w.c_attn_w, packed: [C, 3 * C] });
    targets.set(p + "attn/c_attn/b", { offset: w.c_attn_b });
    targets.set(p + "attn/c_proj/w", { offset: w.attn_proj_w, packed: [C, C] });
    targets.set(p + "attn/c_proj/b", { offset: w.attn_proj_b });
    targets.set(p + "ln_2/g", { offset: w.ln_2_g });
    targets.set(p + "ln_2/b", { offset: w.ln_2_b });
    targets.set(p + "mlp/c_fc/w", { offset: w.c_fc_w, packed: [C, 4 * C] });
    targets.set(p + "mlp/c_fc/b", { offset: w.c_fc_b });
    targets.set(p + "mlp/c_proj/w", { offset: w.mlp_proj_w, packed: [4 * C, C] });
    targets.set(p + "mlp/c_proj/b", { offset: w.mlp_proj_b });
  });

  // Check every tensor before reading any, so a bad file fails fast.
  const plans = gpt2Tensors(hp).map(({ name: tfName, shape: tfShape }) => {
    const { name, shape } = names(tfName, tfShape);
    const info = source.tensors.get(name);
    if (!info) {
      throw new ModelFileError(`Cannot load tensor "${name}": not found in ${source.path}`);
    }
    if (!FLOAT_DTYPES.has(info.dtype)) {
      throw new ModelFileError(
        `Cannot load tensor "${name}": got dtype ${info.dtype}, expected float32, float16 or bfloat16`,
      );
    }
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new ModelFileError(
        `Cannot load tensor "${name}": got shape [${info.shape.join(", ")}], expected [${
          shape.join(", ")
        }]`,
      );
    }
    const size = shape.reduce((a, b) => a * b, 1);
    return { name, size, target: targets.get(tfName)!, position: info.position ?? 0 };
  });

  // Read in file order, so the disk streams, with several tensors in flight: while one
  // Conv1D weight is packed, the next is checksummed and the one after it read, each in a
  // staging slot of its own.
  plans.sort((a, b) => a.position - b.position);
  // When the plan stages in the token embedding's memory, the embedding is read last, after
  // every weight staged there is packed.
  const staging = plan.staging;
  const host = staging[0] === plan.wte
    ? plans.find((p) => p.target.offset === plan.wte)
    : undefined;
  if (host) plans.push(...plans.splice(plans.indexOf(host), 1));
  const f32 = new Float32Array(kernels.memory.buffer);
  const inFlight: { reading: Promise<void>; slot?: number; pack?: () => void }[] = [];
  const finishOldest = async () => {
    const { reading, pack } = inFlight.shift()!;
    await reading;
    pack?.();
  };
  let packed = 0;
  for (const p of plans) {
    const { name, size, target } = p;
    if (p === host) {
      while (inFlight.length > 0) await finishOldest();
    }
    let at = target.offset;
    let slot: number | undefined;
    let pack: (() => void) | undefined;
    if (target.packed) {
      slot = packed++ % staging.length;
      const from = at = staging[slot];
      const [C, OC] = target.packed;
      pack = () => kernels.packPanels(target.offset, from, C, OC);
      while (inFlight.some((t) => t.slot === slot)) await finishOldest();
    }
    const reading = readAsFloat32(source, name, f32.subarray(at >> 2, (at >> 2) + size));
    reading.catch(() => {}); // awaited by finishOldest, in order
    inFlight.push({ reading, slot, pack });
  }
  while (inFlight.length > 0) await finishOldest();
}

const FLOAT_DTYPES = new Set(["float32", "float16", "bfloat16"]);
