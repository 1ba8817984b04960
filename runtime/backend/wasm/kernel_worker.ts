/**
 * One worker of a `WorkerPool` (runtime/worker_pool.ts): instantiates the kernel module
 * it is sent on the shared memory, says it is ready, then serves kernel calls through the
 * control block until the pool stops it.
 */
/// <reference lib="deno.worker" />
import { instantiate, type KernelExports } from "./wasm_kernels.ts";
import { serveCalls, type WorkerInit } from "./worker_pool.ts";

self.onmessage = (e: MessageEvent<WorkerInit>) => {
  self.onmessage = null;
  let k: KernelExports;
  try {
    k = instantiate(e.data.module, e.data.memory);
  } catch (error) {
    self.postMessage({ error: String(error) });
    self.close();
    return;
  }
  serveCalls(k, e.data, () => self.postMessage({ ready: true }));
  self.close();
};
