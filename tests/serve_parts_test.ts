/**
 * The served mode's pure parts: stop strings over streamed text, step logprobs, a chat
 * reply's trimming, usage, access-log lines and metrics.
 */
import fc from "fast-check";
import { assertEquals, assertThrows } from "./asserts.ts";
import { assertClose } from "./assert_close.ts";
import { StopText } from "../runtime/serve/stop_text.ts";
import { stepLogprobs } from "../runtime/generate/logprobs.ts";
import { ReplyText } from "../runtime/serve/chat_template.ts";
import { Usage } from "../runtime/serve/answer.ts";
import type { CompletionRequest } from "../runtime/serve/completion_request.ts";
import { type AccessLogEntry, formatAccessLog } from "../runtime/serve/access_log.ts";
import { Metrics } from "../runtime/serve/metrics.ts";

/**
 * What a stream ends as: generation stops at the first piece after which a stop string
 * appears, and the text ends before the earliest stop string in what came so far.
 */
function cutStream(pieces: string[], stops: string[]): { text: string; stopped: boolean } {
  let text = "";
  for (const p of pieces) {
    text += p;
    const r = cutWhole(text, stops);
    if (r.stopped) return r;
  }
  return { text, stopped: false };
}

/** The text cut before the first stop string, all at once. */
function cutWhole(text: string, stops: string[]): { text: string; stopped: boolean } {
  let cut = -1;
  for (const s of stops) {
    const at = text.indexOf(s);
    if (at >= 0 && (cut < 0 || at < cut)) cut = at;
  }
  return cut < 0 ? { text, stopped: false } : { text: text.slice(0, cut), stopped: true };
}

Deno.test("StopText: text streamed in any pieces ends before the first stop string, and never shows part of one", () => {
  const alphabet = fc.constantFrom("a", "b", "c", "\n", "é");
  const word = fc.array(alphabet, { minLength: 1, maxLength: 4 }).map((a) => a.join(""));
  fc.assert(
    fc.property(
      fc.array(fc.array(alphabet, { maxLength: 5 }).map((a) => a.join("")), { maxLength: 12 }),
      fc.array(word, { maxLength: 4 }),
      (pieces, stops) => {
        const s = new StopText(stops);
        let shown = "";
        let stopped = false;
        for (const p of pieces) {
          const r = s.push(p);
          shown += r.text;
          stopped ||= r.stopped;
          // What is shown is always a prefix of the final answer.
          const whole = cutStream(pieces, stops).text;
          if (!whole.startsWith(shown)) return false;
        }
        if (!stopped) shown += s.flush();
        const want = cutStream(pieces, stops);
        return shown === want.text && stopped === want.stopped;
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("StopText holds back a possible start of a stop string until it is decided", () => {
  const s = new StopText(["END"]);
  assertEquals(s.push("abcE"), { text: "abc", stopped: false });
  assertEquals(s.push("N"), { text: "", stopped: false });
  assertEquals(s.push("x"), { text: "ENx", stopped: false });
  assertEquals(s.push("yEND and more"), { text: "y", stopped: true });
  assertEquals(s.push("more"), { text: "", stopped: true });
});

Deno.test("stepLogprobs is the log-softmax at the chosen token and at the largest logits", () => {
  fc.assert(
    fc.property(
      fc.array(fc.float({ min: -20, max: 20, noNaN: true }), { minLength: 1, maxLength: 40 }),
      fc.nat(),
      fc.integer({ min: 0, max: 5 }),
      (values, pick, top) => {
        const logits = new Float32Array(values);
        const token = pick % logits.length;
        const { chosen, top: best } = stepLogprobs(logits, token, top);
        const max = Math.max(...logits);
        const logZ = max + Math.log(logits.reduce((s, v) => s + Math.exp(v - max), 0));
        assertClose([chosen.logprob], [logits[token] - logZ], { atol: 1e-9, rtol: 0 });
        assertEquals(chosen.token, token);
        // The reference: indices sorted by logit descending, lower index first on ties.
        const order = [...logits.keys()].sort((a, b) => logits[b] - logits[a] || a - b);
        assertEquals(best.map((t) => t.token), order.slice(0, top));
        assertClose(best.map((t) => t.logprob), order.slice(0, top).map((i) => logits[i] - logZ), {
          atol: 1e-9,
          rtol: 0,
        });
      },
    ),
  );
  assertThrows(() => stepLogprobs(new Float32Array(3), 0, 6), RangeError, "logprobs");
  assertThrows(() => stepLogprobs(new Float32Array(3), 3, 1), RangeError, "Token 3");
});

Deno.test("ReplyText: a reply streamed in any pieces adds up to the whole reply trimmed, and never shows white space it may drop", () => {
  const piece = fc.array(fc.constantFrom("a", " ", "\n", "b", "\t"), { maxLength: 4 }).map((a) =>
    a.join("")
  );
  fc.assert(
    fc.property(fc.array(piece, { maxLength: 10 }), (pieces) => {
      const reply = new ReplyText();
      let shown = "";
      for (const p of pieces) {
        shown += reply.push(p);
        if (shown !== shown.trim()) return false;
      }
      return shown === pieces.join("").trim();
    }),
    { numRuns: 500 },
  );
});

Deno.test("Usage counts each prompt once; cached tokens per prompt are the fewest its n choices report, counted once all have", () => {
  const prompts = [{ ids: [1, 2, 3], text: "" }, { ids: [4, 5], text: "" }];
  const request = { prompts, n: 2 } as unknown as CompletionRequest;
  const counted = { generated: 0, cached: 0 };
  const usage = new Usage(request, {
    generated: (n) => counted.generated += n,
    cached: (n) => counted.cached += n,
  });
  const step = (index: number, cachedTokens?: number) => ({
    index,
    text: "x",
    logprobs: null,
    finishReason: null,
    tokens: 1,
    cachedTokens,
  });
  const details = (cached: number) => ({ prompt_tokens_details: { cached_tokens: cached } });
  usage.add(step(0));
  assertEquals(usage.toJSON(), {
    prompt_tokens: 5,
    completion_tokens: 1,
    total_tokens: 6,
    ...details(0),
  });
  usage.add(step(1, 2)); // prompt 0's second choice found 2 of its tokens cached
  assertEquals(usage.cachedTokens, 0, "prompt 0's first choice has not said yet");
  usage.add(step(0, 1)); // its first found 1: the prompt's is 1
  usage.add(step(3, 2)); // prompt 1's second choice: its first has not said
  assertEquals(usage.toJSON(), {
    prompt_tokens: 5,
    completion_tokens: 4,
    total_tokens: 9,
    ...details(1),
  });
  assertEquals(counted, { generated: 4, cached: 1 });
  usage.add(step(2, 2));
  usage.add(step(2)); // later steps say nothing of the cache
  assertEquals(usage.cachedTokens, 3);
  assertEquals(counted, { generated: 6, cached: 3 });
});

Deno.test("formatAccessLog: a text line with the tokens and error only where they apply, or one JSON object", () => {
  const entry: AccessLogEntry = {
    time: "2025-01-01T00:00:00.000Z",
    remote: null,
    method: "GET",
    path: "/health",
    status: 200,
    ms: 0,
    promptTokens: null,
    completionTokens: null,
    cachedTokens: null,
    error: null,
  };
  assertEquals(formatAccessLog(entry, "text"), "2025-01-01T00:00:00.000Z - GET /health 200 0ms");
  const failed = { ...entry, status: 499, promptTokens: 3, completionTokens: 0, cachedTokens: 2 };
  assertEquals(
    formatAccessLog({ ...failed, error: 'gone "away"' }, "text"),
    '2025-01-01T00:00:00.000Z - GET /health 499 0ms prompt=3 completion=0 cached=2 error="gone \\"away\\""',
  );
  assertEquals(JSON.parse(formatAccessLog(failed, "json")), {
    time: entry.time,
    remote: null,
    method: "GET",
    path: "/health",
    status: 499,
    ms: 0,
    prompt_tokens: 3,
    completion_tokens: 0,
    cached_tokens: 2,
    error: null,
  });
});

Deno.test("Metrics: tokens per second over the last ten seconds; histograms cumulative", () => {
  let now = 0;
  const metrics = new Metrics(() => now);
  now = 2000;
  metrics.generated(30);
  assertEquals(metrics.tokensPerSecond(), 15, "30 tokens in the first 2 s");
  now = 11_500;
  metrics.generated(10);
  assertEquals(metrics.tokensPerSecond(), 4, "40 tokens in the last 10 s");
  now = 15_000;
  assertEquals(metrics.tokensPerSecond(), 1, "the 30 of second 2 have left the window");
  now = 30_000;
  assertEquals(metrics.tokensPerSecond(), 0);
  metrics.generation(0.07, 0.02);
  metrics.generation(3, undefined);
  const text = metrics.render({ requestsInFlight: 0, sequencesInFlight: 0, slots: 4 });
  assertEquals(text.includes('gpt2_request_duration_seconds_bucket{le="0.05"} 0'), true);
  assertEquals(text.includes('gpt2_request_duration_seconds_bucket{le="0.1"} 1'), true);
  assertEquals(text.includes('gpt2_request_duration_seconds_bucket{le="5"} 2'), true);
  assertEquals(text.includes('gpt2_request_duration_seconds_bucket{le="+Inf"} 2'), true);
  assertEquals(text.includes("gpt2_request_duration_seconds_sum 3.07"), true);
  assertEquals(text.includes("gpt2_time_to_first_token_seconds_count 1"), true);
  // Gauges the model does not report are left out rather than guessed.
  assertEquals(text.includes("gpt2_slots_busy"), false);
});
