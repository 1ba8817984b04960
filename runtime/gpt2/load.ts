/**
 * Reads a checkpoint's tensors into a model's parameters: every tensor's name, dtype and
 * shape is checked before any is read, then they are read in the order they lie in the
 * files, so the disk streams, each handed to the backend to store in its own format: as
 * float32, or, for a GGUF matrix in the ggml block type the backend stores as it is
 * (`Backend.blockType`), as the file's bytes.
 *
 * @module
 */
import { type Backend, UnstorableWeightError } from "../backend/backend.ts";
import { readAsFloat32, type TensorSource } from "../io/tensor_source.ts";
import { isFloat32Convertible, TYPE_LAYOUTS } from "../io/tensor_types.ts";
import { ModelFileError } from "../errors.ts";
import type { ParamBinding } from "./params.ts";
import { type NameMap, tfNames } from "./tensor_names.ts";

/** The dtypes the loader converts to float32, for messages: "float32, float16, … or q6_k". */
const CONVERTIBLE = Object.keys(TYPE_LAYOUTS).join(", ").replace(/, ([^,]*)$/, " or $1");

/**
 * Loads held in flight at once: enough that one tensor is read while others are
 * checksummed and stored; the backend bounds the memory each holds.
 */
const IN_FLIGHT = 4;

/**
 * Reads every parameter in `bindings` from `source`, whose tensors `names` maps from the TF
 * checkpoint's names (default: unchanged).
 * @throws {ModelFileError} naming the first tensor that is missing or of the wrong dtype
 *   or shape, before anything is read; or naming a tensor with values the backend's weight
 *   type cannot store (the backend's `UnstorableWeightError`, with the fix)
 */
export async function loadParams(
  backend: Backend,
  bindings: readonly ParamBinding[],
  source: TensorSource,
  names: NameMap = tfNames,
): Promise<void> {
  const plans = bindings.map(({ spec, tensor }) => {
    const { name, shape, transposed = false } = names(spec.name, spec.shape);
    const info = source.tensors.get(name);
    if (!info) {
      throw new ModelFileError(`Cannot load tensor "${name}": not found in ${source.path}`);
    }
    if (!isFloat32Convertible(info.dtype)) {
      throw new ModelFileError(
        `Cannot load tensor "${name}": got dtype ${info.dtype}, expected ${CONVERTIBLE}`,
      );
    }
    if (info.shape.length !== shape.length || info.shape.some((d, i) => d !== shape[i])) {
      throw new ModelFileError(
        `Cannot load tensor "${name}": got shape [${info.shape.join(", ")}], expected [${
          shape.join(", ")
        }]`,
      );
    }
    // A matrix in the block type the backend stores as it is goes in as its bytes, as
    // ggml lays it out: rows along the input features, which GGUF's Conv1D weights
    // (transposed here) and embedding (not) are.
    const asStored = spec.role === "conv1d" ? transposed : spec.role === "embedding" && !transposed;
    const blocks = backend.loadBlocks !== undefined && asStored &&
      info.dtype === backend.blockType;
    return { name, tensor, transposed, blocks, dtype: info.dtype, position: info.position ?? 0 };
  });

  plans.sort((a, b) => a.position - b.position);
  const inFlight: Promise<void>[] = [];
  try {
    for (const { name, tensor, transposed, blocks, dtype } of plans) {
      if (inFlight.length === IN_FLIGHT) await inFlight.shift();
      const stored = blocks
        ? backend.loadBlocks!(tensor, dtype, (dest) => source.read(name, dest))
        : backend.loadWeight(
          tensor,
          (dest) => readAsFloat32(source, name, dest, { transpose: transposed }),
        );
      const loading = stored.catch((e) => {
        if (!(e instanceof UnstorableWeightError)) throw e;
        throw new ModelFileError(`Cannot load tensor "${name}": ${e.message}`, { cause: e });
      });
      loading.catch(() => {}); // awaited in order below; a failure is thrown from there
      inFlight.push(loading);
    }
    while (inFlight.length > 0) await inFlight.shift();
  } finally {
    // Let every read that started finish before the caller frees the memory it targets.
    await Promise.allSettled(inFlight);
  }
}
