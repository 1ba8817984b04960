/**
 * Reads a checkpoint's tensors into a model's parameters: every tensor's name, dtype and
 * shape is checked before any is read, then they are read in the order they lie in the
 * files, so the disk streams, each handed to the backend to store in its own format.
 *
 * @module
 */
import type { Backend } from "../backend/backend.ts";
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
 *   or shape, before anything is read
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
    return { name, tensor, transposed, position: info.position ?? 0 };
  });

  plans.sort((a, b) => a.position - b.position);
  const inFlight: Promise<void>[] = [];
  try {
    for (const { name, tensor, transposed } of plans) {
      if (inFlight.length === IN_FLIGHT) await inFlight.shift();
      const loading = backend.loadWeight(
        tensor,
        (dest) => readAsFloat32(source, name, dest, { transpose: transposed }),
      );
      loading.catch(() => {}); // awaited in order below; a failure is thrown from there
      inFlight.push(loading);
    }
    while (inFlight.length > 0) await inFlight.shift();
  } finally {
    // Let every read that started finish before the caller frees the memory it targets.
    await Promise.allSettled(inFlight);
  }
}
