/**
 * One GPT-2 model in one shared WebAssembly memory: the plan, the kernels that run over
 * it, the KV cache, and the forward pass.
 */
import { forward, type ForwardOptions } from "./forward.ts";
import type { HParams } from "./gpt2/hparams.ts";
import type { Kernels } from "./backend/wasm/kernels.ts";
import { KVCache } from "./kv_cache.ts";
import { type MemoryPlan, planMemory } from "./backend/wasm/memory_plan.ts";
import { createMemory, kernelModule } from "./backend/wasm/wasm_kernels.ts";
import { createKernels } from "./backend/wasm/worker_pool.ts";
import type { TensorSource } from "./checkpoint/tensor_source.ts";
import type { NameMap } from "./gpt2/tensor_names.ts";
import { loadWeights } from "./weights.ts";

export interface EngineOptions {
  /** Sequences decoded side by side (default 1). */
  batch?: number;
  /** The most new tokens per sequence one pass takes; longer inputs go in chunks. */
  chunk?: number;
  /** Threads that run the kernels (default: one per logical CPU). */
  threads?: number;
}

export class Engine implements Disposable {
  readonly cache: KVCache;

  private constructor(readonly plan: MemoryPlan, readonly kernels: Kernels) {
    this.cache = new KVCache(plan);
  }

  /** Lays out memory for a model of shape `hparams` and instantiates the kernels on it. */
  static async create(hparams: HParams, options: EngineOptions = {}): Promise<Engine> {
    const plan = planMemory(hparams, options);
    const module = await kernelModule();
    const memory = createMemory(plan.bytes);
    const threads = options.threads ?? navigator.hardwareConcurrency;
    if (!Number.isInteger(threads) || threads < 1) {
      throw new RangeError(`threads must be a positive integer, got ${threads}`);
    }
    return new Engine(plan, await createKernels(module, memory, threads));
  }

  get hparams(): HParams {
    return this.plan.hparams;
  }

  /** Reads the weights from `source`, named as `names` says (default: the TF checkpoint's). */
  load(source: TensorSource, names?: NameMap): Promise<void> {
    return loadWeights(this.kernels, this.plan, source, names);
  }

  /** Runs new tokens through the model, appending them to the cache; see `forward`. */
  forward(tokens: readonly ArrayLike<number>[], options?: ForwardOptions): Float32Array {
    return forward(this.kernels, this.cache, tokens, options);
  }

  [Symbol.dispose](): void {
    this.kernels[Symbol.dispose]();
  }
}
