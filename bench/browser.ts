/**
 * `deno task bench:browser`: GPT-2 124M's shape in headless Chromium (Debian's), through
 * the bundle a page imports, served from loopback with the cross-origin isolation headers.
 * Prints one JSON line: load_ms (loadModel over HTTP, no cache: fetched, checked, packed),
 * prefill_tok_s (a `--prompt`-token prompt in one pass, the median of three after a
 * warm-up), decode_tok_s (`--generate` greedy tokens after it, one pass each with the KV
 * cache, timed from the first token to the last), threads, dtype, backend.
 *
 *   deno task bench:browser [--model DIR] [--dtype f32] [--threads 2] [--prompt 128] [--generate 128]
 *     [--peers DIR] [--deno] [--rounds 1]
 *
 * reload_ms is a second load of the same model after a first that kept it in the browser's
 * cache (the origin-private file system): what a reload of the page costs.
 *
 * Without --model it writes a random model with 124M's shapes first (speed does not depend
 * on the values). With --peers (the folder /work/shared/peers/setup.sh installs: its
 * node/node_modules and models/), the same protocol also runs, in the same Chromium,
 * onnxruntime-web's wasm backend (transformers.js's engine in a browser) on the ONNX
 * decoder with a KV cache and wllama (llama.cpp compiled to wasm) on the GGUF file of the
 * same weight type, round after round, one JSON line per run (`engine` says whose). Their
 * code is served from that folder at run time; none of it is in this repository. With
 * --deno, each round also runs the same protocol in this Deno process (`engine` "ours-deno"),
 * so that the tab is measured against Deno at the same moment.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { GPT2_SIZES } from "../runtime/gpt2/hparams.ts";
import { fileResponse } from "../runtime/serve/file_response.ts";
import { ISOLATION_HEADERS } from "../runtime/serve/server.ts";
import { bundle } from "../cli/bundle.ts";
import { loadModel } from "../runtime/generate/model.ts";
import { randomWeights, writeModelFolder } from "../testing/random_model.ts";
import type { TabRun } from "../testing/tab_driver.ts";
import { type LoopbackServer, serveHandlerOnLoopback } from "../testing/loopback_server.ts";

interface Options {
  model?: string;
  dtype: string;
  threads: number;
  prompt: number;
  generate: number;
  peers?: string;
  deno: boolean;
  rounds: number;
}

function parseOptions(args: string[]): Options {
  const { values } = parseArgs({
    args,
    options: {
      model: { type: "string" },
      dtype: { type: "string", default: "f32" },
      threads: { type: "string", default: "2" },
      prompt: { type: "string", default: "128" },
      generate: { type: "string", default: "128" },
      peers: { type: "string" },
      deno: { type: "boolean", default: false },
      rounds: { type: "string", default: "1" },
    },
  });
  const int = (name: "threads" | "prompt" | "generate" | "rounds") => {
    const n = Number(values[name]);
    if (!Number.isInteger(n) || n < 1) throw new TypeError(`--${name} must be a positive integer`);
    return n;
  };
  if (!["f32", "f16", "q8"].includes(values.dtype!)) {
    throw new TypeError(`--dtype must be f32, f16 or q8, got ${values.dtype}`);
  }
  return {
    model: values.model,
    dtype: values.dtype!,
    threads: int("threads"),
    prompt: int("prompt"),
    generate: int("generate"),
    peers: values.peers,
    deno: values.deno!,
    rounds: int("rounds"),
  };
}

/** The peers' file of each weight type: the ONNX decoder and the GGUF file. */
const PEER_MODELS: Record<string, { ort?: string; wllama?: string }> = {
  f32: { ort: "gpt2-124M-f32.onnx", wllama: "gpt2-124M-f32.gguf" },
  f16: { wllama: "gpt2-124M-f16.gguf" },
  q8: { ort: "gpt2-124M-int8.onnx", wllama: "gpt2-124M-q8_0.gguf" },
};

/** What the protocol needs of a loaded model: the part of `Model` and `TabModel` it uses. */
interface TimedModel extends Disposable {
  readonly backend: string;
  readonly dtype: string;
  readonly threads: number;
  readonly cachedBytes?: number;
  logits(ids: number[]): Promise<Float32Array>;
  generate(ids: number[], options: { length: number; temperature: number }): AsyncIterable<number>;
}

/** What the protocol is told: the options, and whether to time a reload from the cache. */
type ProtocolOptions = Pick<Options, "threads" | "dtype" | "prompt" | "generate"> & {
  reload: boolean;
};

/**
 * Load, warm up, prefill three times (the median counts), decode; then, with `reload`, a
 * load that keeps the weights in the cache and one that reads them from there. It runs in
 * Deno and, as its source text, in the page, so it uses nothing but its arguments.
 */
async function protocol(
  loadModel: (url: string, options: Record<string, unknown>) => Promise<TimedModel>,
  forgetModel: (() => Promise<void>) | undefined,
  url: string,
  o: ProtocolOptions,
): Promise<Record<string, unknown>> {
  const options = { threads: o.threads, dtype: o.dtype, cache: false };
  const t0 = performance.now();
  const model = await loadModel(url, options);
  const load_ms = performance.now() - t0;
  const ids = Array.from({ length: o.prompt }, (_, i) => (i === 0 ? 0 : 1));
  for await (const _ of model.generate([0, 1, 1, 1], { length: 2, temperature: 0 })) {
    /* warm-up */
  }
  const passes: number[] = [];
  for (let i = 0; i < 3; i++) {
    const t = performance.now();
    await model.logits(ids);
    passes.push(performance.now() - t);
  }
  passes.sort((a, b) => a - b);
  const times: number[] = [];
  for await (const _ of model.generate(ids, { length: o.generate + 1, temperature: 0 })) {
    times.push(performance.now());
  }
  const result: Record<string, unknown> = {
    backend: model.backend,
    dtype: model.dtype,
    threads: model.threads,
    prefill_tok_s: o.prompt / (passes[1] / 1000),
    decode_tok_s: o.generate / ((times[o.generate] - times[0]) / 1000),
    load_ms,
  };
  model[Symbol.dispose]();
  if (o.reload) {
    (await loadModel(url, { ...options, cache: true }))[Symbol.dispose]();
    const t1 = performance.now();
    const again = await loadModel(url, { ...options, cache: true });
    result.reload_ms = performance.now() - t1;
    result.reload_cached_bytes = again.cachedBytes;
    again[Symbol.dispose]();
    await forgetModel?.();
  }
  return result;
}

/** Our engine in the tab, through the bundle. */
function oursScript(o: Options): string {
  const options: ProtocolOptions = { ...o, reload: true };
  return `
    const { loadModel, forgetModel } = await import("/dist/gpt2.js");
    const run = ${protocol.toString()};
    const result = await run(loadModel, forgetModel, "/models/ours/", ${JSON.stringify(options)});
    return { engine: "ours", ...result, isolated: crossOriginIsolated };`;
}

/** The same protocol in this Deno process, on the model folder on disk. */
async function oursInDeno(o: Options, model: string): Promise<Record<string, unknown>> {
  const result = await protocol(loadModel, undefined, model, { ...o, reload: false });
  return { engine: "ours-deno", ...result };
}

/**
 * onnxruntime-web's wasm backend on the ONNX decoder with a KV cache: the same protocol as
 * the peers' own Node script (a 4-token warm-up, one prompt pass, greedy single-token steps),
 * in the page.
 */
function ortScript(o: Options, file: string, dtype: string): string {
  return `
    const ort = await import("/peers/ort/ort.wasm.min.mjs");
    ort.env.wasm.wasmPaths = "/peers/ort/";
    ort.env.wasm.numThreads = ${o.threads};
    ort.env.wasm.proxy = false;
    const H = 12, D = 64, L = 12, V = 50257;
    const feeds = (ids, pos0, past, P) => {
      const S = ids.length, T = P + S;
      const f = {
        input_ids: new ort.Tensor("int64", BigInt64Array.from(ids.map(BigInt)), [1, S]),
        position_ids: new ort.Tensor("int64", BigInt64Array.from(ids.map((_, i) => BigInt(pos0 + i))), [1, S]),
      };
      const bias = new Float32Array(S * T);
      for (let i = 0; i < S; i++) for (let j = 0; j < T; j++) bias[i * T + j] = j > P + i ? -1e9 : 0;
      f.attn_bias = new ort.Tensor("float32", bias, [1, 1, S, T]);
      for (let l = 0; l < L; l++) {
        f["past_key_" + l] = past ? past["present_key_" + l] : new ort.Tensor("float32", new Float32Array(0), [1, H, 0, D]);
        f["past_value_" + l] = past ? past["present_value_" + l] : new ort.Tensor("float32", new Float32Array(0), [1, H, 0, D]);
      }
      return f;
    };
    const argmaxLast = (t) => {
      const d = t.data, S = t.dims[1], off = (S - 1) * V;
      let b = 0;
      for (let i = 1; i < V; i++) if (d[off + i] > d[off + b]) b = i;
      return b;
    };
    const t0 = performance.now();
    const session = await ort.InferenceSession.create("/peers/models/${file}", {
      executionProviders: ["wasm"], intraOpNumThreads: ${o.threads}, interOpNumThreads: 1,
      graphOptimizationLevel: "all", executionMode: "sequential",
    });
    const load_ms = performance.now() - t0;
    await session.run(feeds([0, 1, 1, 1], 0, null, 0));
    const ids = Array.from({ length: ${o.prompt} }, (_, i) => (i === 0 ? 0 : 1));
    let t = performance.now();
    let out = await session.run(feeds(ids, 0, null, 0));
    const prefill_ms = performance.now() - t;
    let token = argmaxLast(out.logits), P = ${o.prompt};
    t = performance.now();
    for (let g = 0; g < ${o.generate}; g++) {
      out = await session.run(feeds([token], P, out, P));
      token = argmaxLast(out.logits);
      P += 1;
    }
    const decode_ms = performance.now() - t;
    await session.release();
    return {
      engine: "onnxruntime-web", backend: "wasm", dtype: ${JSON.stringify(dtype)},
      threads: ort.env.wasm.numThreads, prefill_tok_s: ${o.prompt} / (prefill_ms / 1000),
      decode_tok_s: ${o.generate} / (decode_ms / 1000), load_ms, isolated: crossOriginIsolated,
    };`;
}

/** wllama on the GGUF file: a warm-up completion, then one greedy completion, timed by llama.cpp. */
function wllamaScript(o: Options, file: string, dtype: string): string {
  return `
    const { Wllama } = await import("/peers/wllama/esm/index.js");
    const t0 = performance.now();
    const blob = await (await fetch("/peers/models/${file}")).blob();
    const w = new Wllama({ default: "/peers/wllama/esm/wasm/wllama.wasm" }, {
      allowOffline: true, logger: { debug() {}, log() {}, info() {}, warn() {}, error: console.error },
    });
    await w.loadModel([blob], {
      n_ctx: 1024, n_batch: 512, n_threads: ${o.threads}, n_gpu_layers: 0, n_parallel: 1,
    });
    const load_ms = performance.now() - t0;
    const options = {
      max_tokens: ${o.generate}, temperature: 0, top_k: 1, ignore_eos: true, cache_prompt: false,
      stream: false,
    };
    await w.createCompletion({ ...options, prompt: "a a a a", max_tokens: 2 });
    const prompt = "the" + " the".repeat(${o.prompt - 1});
    const res = await w.createCompletion({ ...options, prompt });
    const tm = res.timings;
    const threads = w.getNumThreads?.() ?? null;
    await w.exit().catch(() => {});
    return {
      engine: "wllama", backend: "wasm", dtype: ${JSON.stringify(dtype)}, threads,
      prefill_tok_s: tm.prompt_n / (tm.prompt_ms / 1000),
      decode_tok_s: tm.predicted_n / (tm.predicted_ms / 1000), load_ms,
      prompt_tokens: tm.prompt_n, generated_tokens: tm.predicted_n, isolated: crossOriginIsolated,
    };`;
}

/** Serves the bundle, our model and the peers' files with the isolation headers. */
function serve(model: string, dist: string, peers: string | undefined): Promise<LoopbackServer> {
  const mounts: [string, string][] = [["/dist/", dist], ["/models/ours/", model]];
  if (peers) {
    mounts.push(["/peers/ort/", `${peers}/node/node_modules/onnxruntime-web/dist/`]);
    mounts.push(["/peers/wllama/", `${peers}/node/node_modules/@wllama/wllama/`]);
    mounts.push(["/peers/models/", `${peers}/models/`]);
  }
  const types: Record<string, string> = {
    js: "text/javascript",
    mjs: "text/javascript",
    wasm: "application/wasm",
    json: "application/json",
  };
  return serveHandlerOnLoopback(async (request) => {
    const path = decodeURIComponent(new URL(request.url).pathname);
    if (path === "/") {
      return new Response("<!doctype html><title>bench</title>", {
        headers: { "content-type": "text/html", ...ISOLATION_HEADERS },
      });
    }
    for (const [prefix, dir] of mounts) {
      if (!path.startsWith(prefix) || path.includes("..")) continue;
      const type = types[path.split(".").pop()!] ?? "application/octet-stream";
      const file = `${dir.replace(/\/+$/, "")}/${path.slice(prefix.length)}`;
      const response = await fileResponse(request, file, {
        "content-type": type,
        ...ISOLATION_HEADERS,
      });
      if (response) return response;
    }
    return new Response("not found", { status: 404 });
  });
}

/** Runs one page script in a fresh Chromium; its result. */
async function runInChromium(url: string, script: string): Promise<Record<string, unknown>> {
  const driver = new URL("../testing/tab_driver.ts", import.meta.url).pathname;
  const plan = { steps: [{ goto: url }, { eval: script }] };
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", driver, JSON.stringify(plan)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (code !== 0) throw new Error(`The tab driver failed:\n${new TextDecoder().decode(stderr)}`);
  const run: TabRun = JSON.parse(new TextDecoder().decode(stdout));
  if (run.failed) throw new Error(run.failed);
  return run.results[0] as Record<string, unknown>;
}

/** Numbers rounded for the JSON line. */
function rounded(result: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(
    Object.entries(result).map((
      [k, v],
    ) => [
      k,
      typeof v === "number" && !Number.isInteger(v) ? +v.toFixed(k.endsWith("_ms") ? 0 : 1) : v,
    ]),
  );
}

if (import.meta.main) {
  const o = parseOptions(Deno.args);
  let model = o.model;
  let written: string | undefined;
  if (model === undefined) {
    written = model = await Deno.makeTempDir({ prefix: "gpt2-bench-browser-" });
    const hp = GPT2_SIZES["124M"];
    await writeModelFolder(model, hp, randomWeights(hp, 0));
  }
  const dist = await Deno.makeTempDir({ prefix: "gpt2-bench-dist-" });
  await bundle(dist);
  const server = await serve(model, dist, o.peers);
  const url = server.url;
  try {
    const peers = PEER_MODELS[o.dtype];
    for (let round = 0; round < o.rounds; round++) {
      const runs: [string, () => Promise<Record<string, unknown>>][] = [
        ["ours", () => runInChromium(url, oursScript(o))],
      ];
      if (o.deno) runs.push(["ours-deno", () => oursInDeno(o, model!)]);
      if (o.peers && peers.ort) {
        runs.push(["onnxruntime-web", () => runInChromium(url, ortScript(o, peers.ort!, o.dtype))]);
      }
      if (o.peers && peers.wllama) {
        runs.push(["wllama", () => runInChromium(url, wllamaScript(o, peers.wllama!, o.dtype))]);
      }
      for (const [engine, run] of runs) {
        try {
          console.log(JSON.stringify(rounded(await run())));
        } catch (e) {
          console.error(`${engine} failed: ${(e as Error).message}`);
        }
      }
    }
  } finally {
    await server[Symbol.asyncDispose]();
    await Deno.remove(dist, { recursive: true });
    if (written) await Deno.remove(written, { recursive: true });
  }
}
