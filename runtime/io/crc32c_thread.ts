/**
 * CRC-32C computed on a thread of its own, so that checksumming a checkpoint overlaps
 * reading it and whatever the caller does with the bytes. Only bytes in a
 * SharedArrayBuffer (such as WebAssembly memory) can be seen by the thread; for any other
 * bytes a job computes on the calling thread.
 *
 * @module
 */
import { assetUrl } from "../assets.ts";
import { crc32c } from "./crc32c.ts";

/** A message to the worker: bytes to add to a job's CRC, or (no bytes) a request for it. */
export interface Crc32cRequest {
  readonly job: number;
  readonly bytes?: Uint8Array;
}

/** The running CRC-32C of bytes given in order. */
export interface Crc32cJob {
  /** Adds `bytes` after those given before. They must not change until `digest` settles. */
  update(bytes: Uint8Array): void;
  /** The CRC-32C of every byte given; call once, after the last `update`. */
  digest(): Promise<number>;
}

/** One worker that checksums shared bytes, started on the first job that needs it. */
export class Crc32cThread implements Disposable {
  #worker: Worker | undefined;
  #closed = false;
  #nextJob = 1;
  readonly #waiting = new Map<number, PromiseWithResolvers<number>>();

  /** Starts a job for bytes of `buffer`: on the worker if it is shared, else here. */
  job(buffer: ArrayBufferLike): Crc32cJob {
    if (typeof SharedArrayBuffer !== "function" || !(buffer instanceof SharedArrayBuffer)) {
      return inlineJob();
    }
    if (this.#closed) throw new TypeError("The CRC-32C thread was closed");
    const worker = this.#worker ??= this.#start();
    const job = this.#nextJob++;
    return {
      update: (bytes) => worker.postMessage({ job, bytes } satisfies Crc32cRequest),
      digest: () => {
        if (this.#closed) return Promise.reject(new TypeError("The CRC-32C thread was closed"));
        if (this.#worker !== worker) {
          return Promise.reject(new Error("The CRC-32C worker stopped before the job's digest"));
        }
        const result = Promise.withResolvers<number>();
        this.#waiting.set(job, result);
        worker.postMessage({ job } satisfies Crc32cRequest);
        return result.promise;
      },
    };
  }

  #start(): Worker {
    const worker = new Worker(assetUrl("crc32cWorker"), { type: "module" });
    worker.onmessage = (e: MessageEvent<{ job: number; crc: number }>) => {
      this.#waiting.get(e.data.job)?.resolve(e.data.crc);
      this.#waiting.delete(e.data.job);
    };
    worker.onerror = (e) => {
      e.preventDefault();
      this.#fail(new Error(`The CRC-32C worker failed: ${e.message}`));
    };
    return worker;
  }

  #fail(error: Error): void {
    for (const result of this.#waiting.values()) result.reject(error);
    this.#waiting.clear();
    this.#worker?.terminate();
    this.#worker = undefined;
  }

  /** Stops the worker; digests awaited or asked for later reject. */
  [Symbol.dispose](): void {
    this.#closed = true;
    this.#fail(new TypeError("The CRC-32C thread was closed"));
  }
}

function inlineJob(): Crc32cJob {
  let crc = 0;
  return {
    update: (bytes) => void (crc = crc32c(bytes, crc)),
    digest: () => Promise.resolve(crc),
  };
}
