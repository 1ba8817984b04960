/**
 * The engine worker of a page: loads the model with the same `loadModel` as Deno (over
 * HTTP with the OPFS cache, or from files the user picked), then runs the calls the page's
 * `TabModel` sends it. Generation runs here, and the kernels on this worker and its own
 * kernel workers, so the page's thread never waits; `Atomics.wait`, which a page's main
 * thread may not call, is allowed here.
 *
 * @module
 */
/// <reference lib="deno.worker" />
import { loadModel, type Model } from "../generate/model.ts";
import { type FileSource, withProgress } from "../io/file_source.ts";
import type { ByteCache, CacheEntry } from "../io/http_files.ts";
import { modelFileSource } from "../gpt2/model_files.ts";
import { blobFiles } from "../io/blob_files.ts";
import { fileCache } from "../io/byte_cache.ts";
import { opfsFolder } from "./opfs.ts";
import { type EngineReply, type EngineRequest, toWire } from "./protocol.ts";

/** The least time between two progress messages, in ms. */
const PROGRESS_EVERY = 50;

let model: Model | undefined;
/** The generations running, by request id, to stop on "cancel". */
const running = new Map<number, AbortController>();

function post(reply: EngineReply): void {
  const load = model && { slotsBusy: model.slotsBusy, waiting: model.waiting };
  self.postMessage({ ...reply, load });
}

/** `cache`, counting the bytes it serves into `counter.bytes`. */
function counting(cache: ByteCache, counter: { bytes: number }): ByteCache {
  return {
    async open(url, size, version) {
      const entry = await cache.open(url, size, version);
      if (entry === undefined) return undefined;
      return {
        async read(offset, dest) {
          const hit = await entry.read(offset, dest);
          if (hit) counter.bytes += dest.byteLength;
          return hit;
        },
        write: (offset, bytes) => entry.write(offset, bytes),
        complete: (begin, end) => entry.complete(begin, end),
        [Symbol.dispose]: () => entry[Symbol.dispose](),
      } satisfies CacheEntry;
    },
  };
}

async function load(request: Extract<EngineRequest, { type: "load" }>): Promise<void> {
  const counter = { bytes: 0 };
  let cache: ByteCache | undefined;
  if (request.cache && "url" in request.location) {
    const folder = await opfsFolder();
    if (folder) cache = counting(fileCache(folder), counter);
  }
  const source: FileSource = "url" in request.location
    ? modelFileSource(request.location.url, { headers: request.headers, cache })
    : blobFiles(request.location.files);
  let last = 0;
  const files = withProgress(source, (p) => {
    const now = performance.now();
    if (now - last < PROGRESS_EVERY && p.loaded < p.total) return;
    last = now;
    post({ type: "progress", ...p });
  });
  model = await loadModel(files, request.options);
  post({
    type: "loaded",
    info: {
      hparams: model.hparams,
      backend: model.backend,
      dtype: model.dtype,
      batch: model.batch,
      slots: model.slots,
      threads: model.threads,
      conversion: model.conversion,
      vocabulary: model.tokenizer.vocabulary(),
      cachedBytes: counter.bytes,
      cache: cache !== undefined,
    },
  });
}

/** Streams a generation's tokens to the page until it ends or is cancelled. */
async function generate(
  request: Extract<EngineRequest, { type: "generateSteps" | "generateBatch" }>,
) {
  const { id } = request;
  const abort = new AbortController();
  running.set(id, abort);
  try {
    const options = { ...request.options, signal: abort.signal };
    const tokens = request.type === "generateSteps"
      ? model!.generateSteps(request.ids, options)
      : model!.generateBatch(request.ids, options);
    for await (const value of tokens) post({ type: "token", id, value });
    post({ type: "done", id });
  } catch (e) {
    if (abort.signal.aborted) post({ type: "done", id });
    else post({ type: "error", id, error: toWire(e) });
  } finally {
    running.delete(id);
  }
}

/** Answers a call that returns once. */
async function answer(id: number, run: () => Promise<unknown>): Promise<void> {
  try {
    post({ type: "result", id, value: await run() });
  } catch (e) {
    post({ type: "error", id, error: toWire(e) });
  }
}

async function cacheOf(): Promise<ReturnType<typeof fileCache> | undefined> {
  const folder = await opfsFolder();
  return folder && fileCache(folder);
}

self.onmessage = (e: MessageEvent<EngineRequest>) => {
  const request = e.data;
  switch (request.type) {
    case "load":
      load(request).catch((error) => post({ type: "failed", error: toWire(error) }));
      return;
    case "forget":
      answer(request.id, async () => await (await cacheOf())?.forget(request.prefix));
      return;
    case "kept":
      answer(request.id, async () => await (await cacheOf())?.keptBytes(request.prefix) ?? 0);
      return;
    case "logits":
      answer(request.id, () => model!.logits(request.ids));
      return;
    case "promptLogprobs":
      answer(request.id, () => model!.promptLogprobs(request.ids, request.top));
      return;
    case "generateSteps":
    case "generateBatch":
      generate(request);
      return;
    case "cancel":
      running.get(request.id)?.abort(new DOMException("Generation stopped", "AbortError"));
      return;
  }
};
