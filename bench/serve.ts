/**
 * Speed of the served mode as its clients see it: for 1, 2, 4 and 8 clients at once, each
 * streams a completion of `--generate` tokens after a `--prompt`-token prompt from a
 * server on loopback. Without --model the weights are random, with GPT-2 124M's shapes
 * (speed does not depend on their values). Prints one JSON line per level.
 *
 *   deno task bench:serve [--model DIR] [--threads N] [--slots 8] [--prompt 64] [--generate 128]
 *
 * Fields: clients; tok_s (tokens all clients received, per second of the level's wall
 * time); ttft_ms_median and ttft_ms_p99 (time from sending a request to its first token);
 * tok_s_per_client (median over clients of a client's tokens per second from its first
 * token to its last); slots; threads.
 *
 * @module
 */
import { parseFlags } from "../cli/flags.ts";
import { GPT2_SIZES } from "../runtime/gpt2/hparams.ts";
import { loadModel } from "../runtime/generate/model.ts";
import { randomWeights, writeModelFolder } from "../testing/random_model.ts";
import { ApiServer } from "../runtime/serve/server.ts";
import { serveOnLoopback } from "../testing/loopback_server.ts";

const flags = parseFlags(Deno.args, {
  model: { type: "string", help: "a model folder; none: random weights of 124M's shape" },
  threads: { type: "int", default: navigator.hardwareConcurrency, help: "kernel threads" },
  slots: { type: "int", default: 8, help: "sequences decoded together" },
  prompt: { type: "int", default: 64, help: "prompt tokens per request" },
  generate: { type: "int", default: 128, help: "tokens each request asks for" },
});
if (flags === "help") {
  console.log("usage: deno task bench:serve [--model DIR] [--threads N] [--slots 8]");
  Deno.exit(0);
}
const [threads, slots, prompt, generate] = [
  flags.threads!,
  flags.slots!,
  flags.prompt!,
  flags.generate!,
];

/** One client: streams a completion; returns its times in ms and its token count. */
async function client(url: string, n_vocab: number, seed: number) {
  // A prompt of distinct-looking token ids; the end-of-text id is left out.
  const ids = Array.from(
    { length: prompt },
    (_, i) => (seed * 7919 + i * 104729) % (n_vocab - 1),
  );
  const start = performance.now();
  const response = await fetch(url, {
    method: "POST",
    body: JSON.stringify({
      model: "bench",
      prompt: ids,
      max_tokens: generate,
      seed,
      top_k: 40,
      stream: true,
    }),
  });
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let first = 0;
  let last = 0;
  let tokens = 0;
  let buffer = "";
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += value;
    const events = buffer.split("\n\n");
    buffer = events.pop()!;
    for (const e of events) {
      if (e === "data: [DONE]" || !e.startsWith("data: ")) continue;
      tokens++;
      last = performance.now();
      if (tokens === 1) first = last;
    }
  }
  return { ttft: first - start, tokens, end: last, decodeMs: last - first };
}

let dir = flags.model;
let temp: string | undefined;
if (dir === undefined) {
  temp = await Deno.makeTempDir({ prefix: "gpt2-bench-serve-" });
  const hp = GPT2_SIZES["124M"];
  await writeModelFolder(temp, hp, randomWeights(hp, 1));
  dir = temp;
}

try {
  using model = await loadModel(dir, { threads, slots });
  const api = new ApiServer(model, { modelId: "bench", slots, queue: 64 });
  await using server = await serveOnLoopback(api);
  const url = `${server.url}v1/completions`;
  const { n_vocab } = model.hparams;

  const quantile = (xs: number[], q: number) => {
    const s = [...xs].sort((a, b) => a - b);
    return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
  };
  await client(url, n_vocab, 0); // warm-up: compiles, faults the weights in
  for (const clients of [1, 2, 4, 8]) {
    const t0 = performance.now();
    const runs = await Promise.all(
      Array.from({ length: clients }, (_, i) => client(url, n_vocab, i + 1)),
    );
    const wall = (Math.max(...runs.map((r) => r.end)) - t0) / 1000;
    const total = runs.reduce((n, r) => n + r.tokens, 0);
    const perClient = runs.map((r) => (r.tokens - 1) / (r.decodeMs / 1000));
    console.log(JSON.stringify({
      clients,
      tok_s: +(total / wall).toFixed(2),
      ttft_ms_median: +quantile(runs.map((r) => r.ttft), 0.5).toFixed(1),
      ttft_ms_p99: +quantile(runs.map((r) => r.ttft), 0.99).toFixed(1),
      tok_s_per_client: +quantile(perClient, 0.5).toFixed(2),
      slots,
      threads,
    }));
  }
} finally {
  if (temp) await Deno.remove(temp, { recursive: true });
}
