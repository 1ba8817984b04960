/**
 * The worker behind `Crc32cThread` (crc32c_thread.ts): checksums byte ranges of shared
 * buffers, in the order they are posted, keeping one running CRC-32C per job.
 */
/// <reference lib="deno.worker" />
import { crc32c } from "./crc32c.ts";
import type { Crc32cRequest } from "./crc32c_thread.ts";

const running = new Map<number, number>();

self.onmessage = (e: MessageEvent<Crc32cRequest>) => {
  const r = e.data;
  if (r.bytes) {
    running.set(r.job, crc32c(r.bytes, running.get(r.job) ?? 0));
  } else {
    self.postMessage({ job: r.job, crc: running.get(r.job) ?? 0 });
    running.delete(r.job);
  }
};
