/**
 * One worker of a `WorkerPool` (worker_pool.ts): instantiates the kernel module it is
 * sent on the shared memory, says it is ready, then serves kernel calls through the
 * control block until the pool stops it.
 */
/// <reference lib="deno.worker" />
import { instantiate, type KernelInstance } from "./kernel_module.ts";
import { serveCalls, type WorkerInit } from "./worker_pool.ts";

self.onmessage = (e: MessageEvent<WorkerInit>) => {
  self.onmessage = null;
  let k: KernelInstance;
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
