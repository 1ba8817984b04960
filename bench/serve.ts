/**
 * Speed of the served mode as its clients see it. The server runs here; its clients run
 * in a process of their own (bench/serve_client.ts), as real clients do, so that a token
 * event counts as received when it reaches them, not when this process's main thread,
 * which also runs the kernels, gets round to reading it. Without --model the weights are
 * random, with GPT-2 124M's shapes (speed does not depend on their values).
 *
 *     deno task bench:serve [--model DIR] [--threads N] [--slots 8] [--prompt 64] [--generate 128]
 *
 * Prints one JSON line first: `prompt_pass_ms`, the median time of one prompt pass of
 * `--prompt` tokens (`model.logits`, one sequence alone), and `history_pass_ms`, the same
 * for the conversation level's 720 tokens. Then one line per level of 1, 2, 4 and 8
 * clients, each streaming `--generate` tokens after a `--prompt`-token prompt: clients;
 * tok_s (tokens all clients received, per second of the level's wall time);
 * ttft_ms_median and ttft_ms_p99 (time from sending a request to its first token);
 * ttft_over_prompt_pass (the median over `prompt_pass_ms`); tok_s_per_client (median over
 * clients of a client's tokens per second from its first token to its last); slots;
 * threads. Last, the conversation level: 4 clients each resend a growing conversation (a
 * 700-token history, then a new 20-token turn each round), every round once with prompt
 * reuse and once with `cache_prompt: false`: `ttft_ms_reuse`, `ttft_ms_no_reuse` (medians
 * over rounds and clients), their ratio `reuse_ratio`, and `same_text` (whether each
 * round's two answers, same seed, are the same text: reuse is exact).
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
/** The conversation level: history, turn, rounds, clients, tokens per answer. */
const HISTORY = 700;
const TURN = 20;
const ROUNDS = 4;
const TALKERS = 4;
const ANSWER = 8;

interface ClientRun {
  ttft: number;
  tokens: number;
  decode_ms: number;
  text: string;
}

/** Sends `requests` at once from a client process; returns what it measured. */
async function clients(
  url: string,
  requests: Record<string, unknown>[],
): Promise<{ wall_ms: number; runs: ClientRun[] }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-net=127.0.0.1", new URL("serve_client.ts", import.meta.url).pathname],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const writer = child.stdin.getWriter();
  await writer.write(new TextEncoder().encode(JSON.stringify({ url, requests })));
  await writer.close();
  const out = await child.output();
  if (!out.success) throw new Error(`the client process failed (exit ${out.code})`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

/** Distinct-looking token ids, the end-of-text id left out. */
function tokens(n_vocab: number, seed: number, length: number, from = 0): number[] {
  return Array.from(
    { length },
    (_, i) => (seed * 7919 + (from + i) * 104729) % (n_vocab - 1),
  );
}

const median = (xs: number[]) => quantile(xs, 0.5);
function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.ceil(q * s.length) - 1)];
}
const round1 = (x: number) => +x.toFixed(1);

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

  /** The median time of one prompt pass of `length` tokens, alone. */
  const promptPass = async (length: number) => {
    const ids = tokens(n_vocab, 999, length);
    await model.logits(ids); // warm-up
    const times: number[] = [];
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now();
      await model.logits(ids);
      times.push(performance.now() - t0);
    }
    return median(times);
  };
  const request = (seed: number, ids: number[], max_tokens: number, extra = {}) => ({
    model: "bench",
    prompt: ids,
    max_tokens,
    seed,
    top_k: 40,
    ...extra,
  });

  // Warm-up: compiles, faults the weights in.
  await clients(url, [request(0, tokens(n_vocab, 0, prompt), 8)]);
  const promptPassMs = await promptPass(prompt);
  const historyPassMs = await promptPass(HISTORY + TURN);
  console.log(JSON.stringify({
    prompt_pass_ms: round1(promptPassMs),
    prompt_tokens: prompt,
    history_pass_ms: round1(historyPassMs),
    history_tokens: HISTORY + TURN,
    threads,
  }));

  for (const level of [1, 2, 4, 8]) {
    // Each level's prompts are new: none is in a slot's cache.
    const { wall_ms, runs } = await clients(
      url,
      Array.from(
        { length: level },
        (_, i) => request(level * 100 + i, tokens(n_vocab, level * 100 + i, prompt), generate),
      ),
    );
    const ttfts = runs.map((r) => r.ttft);
    const total = runs.reduce((n, r) => n + r.tokens, 0);
    console.log(JSON.stringify({
      clients: level,
      tok_s: +(total / (wall_ms / 1000)).toFixed(2),
      ttft_ms_median: round1(median(ttfts)),
      ttft_ms_p99: round1(quantile(ttfts, 0.99)),
      ttft_over_prompt_pass: +(median(ttfts) / promptPassMs).toFixed(2),
      tok_s_per_client: +median(runs.map((r) => (r.tokens - 1) / (r.decode_ms / 1000))).toFixed(2),
      slots,
      threads,
    }));
  }

  // The conversation level: round 0 sends each history; each later round adds a turn and
  // sends the conversation twice, with reuse and without.
  const conversations = Array.from(
    { length: TALKERS },
    (_, c) => tokens(n_vocab, 7000 + c, HISTORY),
  );
  await clients(url, conversations.map((ids, c) => request(c, ids, ANSWER)));
  const reuse: number[] = [];
  const noReuse: number[] = [];
  let sameText = true;
  for (let round = 1; round <= ROUNDS; round++) {
    conversations.forEach((ids, c) => ids.push(...tokens(n_vocab, 8000 + c, TURN, round * TURN)));
    const asks = (cache_prompt: boolean) =>
      conversations.map((ids, c) => request(round * 10 + c, ids, ANSWER, { cache_prompt }));
    const warm = await clients(url, asks(true));
    const cold = await clients(url, asks(false));
    reuse.push(...warm.runs.map((r) => r.ttft));
    noReuse.push(...cold.runs.map((r) => r.ttft));
    sameText &&= warm.runs.every((r, i) => r.text === cold.runs[i].text);
  }
  console.log(JSON.stringify({
    level: "conversation",
    clients: TALKERS,
    history_tokens: HISTORY,
    turn_tokens: TURN,
    rounds: ROUNDS,
    ttft_ms_reuse: round1(median(reuse)),
    ttft_ms_no_reuse: round1(median(noReuse)),
    reuse_ratio: +(median(reuse) / median(noReuse)).toFixed(3),
    same_text: sameText,
  }));
} finally {
  if (temp) await Deno.remove(temp, { recursive: true });
}
