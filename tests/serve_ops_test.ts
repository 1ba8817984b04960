/**
 * Operating the server: one access-log entry per request, whatever becomes of it (answered,
 * refused, streamed, or left by a client that disconnects, stops sending its body halfway
 * or sends a malformed one), and `GET /metrics` in Prometheus' text format, scraped while
 * requests run. The CLI's stderr under raw-socket clients is its log lines and nothing
 * else: no stack trace.
 */
import { setImmediate } from "node:timers";
import { assert, assertEquals } from "./asserts.ts";
import { loadModel } from "../runtime/generate/model.ts";
import type { AccessLogEntry } from "../runtime/serve/access_log.ts";
import {
  gatedModel,
  post,
  readEvents,
  slowModel,
  startServer,
  type TestServer,
  writeTestModel,
} from "./serve_harness.ts";

const dir = await writeTestModel();
const open = () => loadModel(dir, { threads: 1 });

/** Sends `text` on a raw connection to `url`'s port, then closes it (after `wait` ms). */
async function rawRequest(url: string, text: string, wait = 0): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: Number(new URL(url).port) });
  await conn.write(new TextEncoder().encode(text));
  if (wait > 0) await new Promise((resolve) => setTimeout(resolve, wait));
  conn.close();
}

/** A request that declares a body of `length` bytes and sends only `sent`. */
function partialBody(path: string, sent: string, length: number): string {
  return `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n` +
    `Content-Length: ${length}\r\n\r\n${sent}`;
}

/** Waits until `entries` holds `count` entries, then a moment more to see that no more come. */
async function expectEntries(entries: AccessLogEntry[], count: number): Promise<void> {
  for (let waited = 0; entries.length < count; waited += 10) {
    assert(waited < 10_000, `${entries.length} log entries, expected ${count}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
  await new Promise((resolve) => setTimeout(resolve, 50));
  assertEquals(entries.length, count, JSON.stringify(entries.slice(count)));
}

Deno.test("one access-log entry per request: status, tokens, time, and why it ended early", async () => {
  using model = await open();
  const entries: AccessLogEntry[] = [];
  let hold = false;
  await using server = await startServer(slowModel(model, 5, () => hold), {
    onRequest: (e) => entries.push(e),
  });
  const url = server.url;
  const started = Date.now();

  const ok = await (await post(url + "v1/completions", { model: "test", prompt: "ab" })).json();
  await expectEntries(entries, 1);
  const [first] = entries;
  assertEquals(first.method, "POST");
  assertEquals(first.path, "/v1/completions");
  assertEquals(first.status, 200);
  assertEquals(first.remote, "127.0.0.1");
  assertEquals(first.promptTokens, ok.usage.prompt_tokens);
  assertEquals(first.completionTokens, ok.usage.completion_tokens);
  assertEquals(first.cachedTokens, ok.usage.prompt_tokens_details.cached_tokens);
  assertEquals(first.error, null);
  assert(first.ms >= 0 && first.ms < 10_000, `ms ${first.ms}`);
  assert(Math.abs(Date.parse(first.time) - started) < 10_000, first.time);

  // A stream's entry comes at its end, with what it generated.
  const events = await readEvents(
    await post(url + "v1/chat/completions", {
      model: "test",
      messages: [{ role: "user", content: "Hi" }],
      max_tokens: 6,
      stream: true,
      stream_options: { include_usage: true },
    }),
  );
  const usage = JSON.parse(events.at(-2)!).usage;
  await expectEntries(entries, 2);
  assertEquals(
    [
      entries[1].path,
      entries[1].status,
      entries[1].promptTokens,
      entries[1].completionTokens,
      entries[1].cachedTokens,
    ],
    [
      "/v1/chat/completions",
      200,
      usage.prompt_tokens,
      usage.completion_tokens,
      usage.prompt_tokens_details.cached_tokens,
    ],
  );

  // Refused requests: the error's message, no tokens.
  const bad = await post(url + "v1/completions", { model: "test", prompt: "x", top_p: 7 });
  await bad.body?.cancel();
  const missing = await fetch(url + "nowhere");
  await missing.body?.cancel();
  await expectEntries(entries, 4);
  assertEquals(entries[2].status, 400);
  assert(entries[2].error?.includes("top_p"), entries[2].error ?? "");
  assertEquals([entries[2].promptTokens, entries[2].cachedTokens], [null, null]);
  assertEquals([entries[3].method, entries[3].path, entries[3].status], ["GET", "/nowhere", 404]);

  // A client that leaves a stream halfway.
  const response = await post(url + "v1/completions", {
    model: "test",
    prompt: "x",
    max_tokens: 40,
    stream: true,
  });
  const reader = response.body!.getReader();
  await reader.read();
  await reader.cancel();
  await expectEntries(entries, 5);
  assertEquals(entries[4].status, 200);
  assertEquals(entries[4].error, "client disconnected");
  assert(entries[4].completionTokens! < 40, `${entries[4].completionTokens} tokens`);

  // One that leaves before a whole answer: 499, as nginx logs it.
  const abort = new AbortController();
  const pending = fetch(url + "v1/completions", {
    method: "POST",
    body: JSON.stringify({ model: "test", prompt: "x", max_tokens: 40 }),
    signal: abort.signal,
  }).catch(() => null);
  // Gone once the generation runs, which only its going can end.
  hold = true;
  for (let waited = 0; server.api.inFlight === 0; waited += 5) {
    assert(waited < 10_000, "the request was not taken in");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  abort.abort();
  await pending;
  await expectEntries(entries, 6);
  hold = false;
  assertEquals([entries[5].status, entries[5].error], [499, "client disconnected"]);

  // Raw sockets: half a body, headers alone, then a malformed body.
  const body = '{"model": "test", "prompt": "hello", "max_tokens": 4}';
  await rawRequest(url, partialBody("/v1/completions", body.slice(0, 9), body.length), 30);
  await rawRequest(url, partialBody("/v1/chat/completions", "", body.length), 30);
  await rawRequest(url, partialBody("/v1/completions", '{"model": ', 10), 100);
  await expectEntries(entries, 9);
  const raw = entries.slice(6).sort((a, b) => a.status - b.status);
  assertEquals(raw.map((e) => e.status), [400, 499, 499]);
  assert(raw[0].error?.includes("not valid JSON"), raw[0].error ?? "");
  assert(raw[1].error?.includes("closed the connection"), raw[1].error ?? "");

  // Raw sockets that send a whole request and close at once (often before the server has
  // read the body, so the request's signal has fired before it is listened to).
  // Each entry is awaited before the next request: a stream ends at its generation's next
  // step, which may come after a plain request is refused at once.
  for (const [i, stream] of [true, false].entries()) {
    const whole = JSON.stringify({ model: "test", prompt: "hi", max_tokens: 40, stream });
    await rawRequest(url, partialBody("/v1/completions", whole, whole.length));
    await expectEntries(entries, 10 + i);
  }
  assertEquals(
    entries.slice(9).map((e) => [e.status, e.error]),
    [[200, "client disconnected"], [499, "client disconnected"]],
  );
  assertEquals(server.api.inFlight, 0);

  // The server is none the worse.
  const after = await post(url + "v1/completions", { model: "test", prompt: "ab", max_tokens: 2 });
  assertEquals(after.status, 200);
  await after.body?.cancel();
  await expectEntries(entries, 12);
});

Deno.test("a body that stalls gets a 408 after the body timeout, and the server goes on", async () => {
  using model = await open();
  const entries: AccessLogEntry[] = [];
  await using server = await startServer(model, {
    bodyTimeout: 200,
    onRequest: (e) => entries.push(e),
  });
  const conn = await Deno.connect({
    hostname: "127.0.0.1",
    port: Number(new URL(server.url).port),
  });
  const started = Date.now();
  await conn.write(new TextEncoder().encode(partialBody("/v1/completions", '{"model"', 40)));
  // The client sends nothing more and keeps the connection open: the server answers anyway.
  // Read until the whole answer is there (the connection may stay open), within 10 s.
  const deadline = setTimeout(() => conn.close(), 10_000);
  let text = "";
  const buffer = new Uint8Array(4096);
  const complete = () => {
    const end = text.indexOf("\r\n\r\n");
    const length = /content-length: (\d+)/i.exec(text);
    return end >= 0 && length !== null && text.length >= end + 4 + Number(length[1]);
  };
  try {
    for (let n; !complete() && (n = await conn.read(buffer)) !== null;) {
      text += new TextDecoder().decode(buffer.subarray(0, n));
    }
  } finally {
    clearTimeout(deadline);
    try {
      conn.close();
    } catch { /* closed at the deadline */ }
  }
  const waited = Date.now() - started;
  assert(text.startsWith("HTTP/1.1 408"), text);
  assert(text.includes('"request_timeout"'), text);
  assert(text.includes("within 0.2 s"), text);
  assert(waited >= 190, `answered after ${waited} ms`);
  await expectEntries(entries, 1);
  assertEquals(entries[0].status, 408);
  const after = await post(server.url + "v1/completions", { model: "test", prompt: "ab" });
  assertEquals(after.status, 200);
  await after.body?.cancel();
});

/** One sample of a scrape: its name, labels and value. */
interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

/**
 * Parses Prometheus' text format line by line, failing on anything out of it: every line
 * a HELP, a TYPE or a sample; each family's HELP and TYPE once, before its samples; each
 * sample of a declared family (a histogram's `_bucket`, `_sum`, `_count`); counters named
 * `_total`; no series twice; a histogram's buckets cumulative, its `+Inf` bucket its count.
 */
function parseMetrics(text: string): Sample[] {
  assert(text.endsWith("\n"), "the text ends with a newline");
  const types = new Map<string, string>();
  const helped = new Set<string>();
  const seen = new Set<string>();
  const samples: Sample[] = [];
  const name = "[a-zA-Z_:][a-zA-Z0-9_:]*";
  for (const line of text.slice(0, -1).split("\n")) {
    const comment = new RegExp(`^# (HELP|TYPE) (${name}) (.+)$`).exec(line);
    if (comment) {
      const [, kind, family, rest] = comment;
      if (kind === "HELP") {
        assert(!helped.has(family), `HELP of ${family} twice`);
        helped.add(family);
      } else {
        assert(!types.has(family), `TYPE of ${family} twice`);
        assert(["counter", "gauge", "histogram", "summary", "untyped"].includes(rest), line);
        if (rest === "counter") assert(family.endsWith("_total"), `counter ${family}`);
        types.set(family, rest);
      }
      continue;
    }
    const sample = new RegExp(`^(${name})(?:\\{(.*)\\})? (\\S+)$`).exec(line);
    assert(sample, `not a line of the text format: ${JSON.stringify(line)}`);
    const [, sampleName, labelText, valueText] = sample;
    const labels: Record<string, string> = {};
    if (labelText) {
      for (const pair of labelText.split(",")) {
        const m = /^([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"$/.exec(pair);
        assert(m, `a bad label in ${line}`);
        labels[m[1]] = m[2];
      }
    }
    const family = [
      sampleName,
      ...["_bucket", "_sum", "_count"].map((s) =>
        sampleName.endsWith(s) ? sampleName.slice(0, -s.length) : ""
      ),
    ].find((f) => types.has(f));
    assert(family, `${sampleName} has no TYPE before it`);
    if (family !== sampleName) assertEquals(types.get(family), "histogram", sampleName);
    const value = valueText === "+Inf" ? Infinity : Number(valueText);
    assert(!Number.isNaN(value) && valueText !== "", `a bad value in ${line}`);
    const key = `${sampleName}${JSON.stringify(labels)}`;
    assert(!seen.has(key), `${key} twice`);
    seen.add(key);
    samples.push({ name: sampleName, labels, value });
  }
  for (const [family, type] of types) {
    assert(helped.has(family), `${family} has no HELP`);
    if (type !== "histogram") continue;
    const buckets = samples.filter((s) => s.name === `${family}_bucket`);
    for (let i = 1; i < buckets.length; i++) {
      assert(buckets[i].value >= buckets[i - 1].value, `${family}'s buckets are cumulative`);
    }
    assertEquals(buckets.at(-1)?.labels.le, "+Inf");
    assertEquals(buckets.at(-1)?.value, value(samples, `${family}_count`));
  }
  return samples;
}

/** The value of the sample named `name` with `labels`, or 0 if it is absent. */
function value(samples: Sample[], name: string, labels: Record<string, string> = {}): number {
  const s = samples.find((s) =>
    s.name === name && JSON.stringify(s.labels) === JSON.stringify(labels)
  );
  return s?.value ?? 0;
}

async function scrape(server: TestServer): Promise<Sample[]> {
  const response = await fetch(server.url + "metrics");
  assertEquals(response.status, 200);
  assertEquals(response.headers.get("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  return parseMetrics(await response.text());
}

Deno.test("GET /metrics parses line by line, and its values move with the requests running", async () => {
  using model = await open();
  const gated = gatedModel(model, 2, 25);
  await using server = await startServer(gated, { slots: 2, queue: 8 });
  let scrapes = 0;
  const scrapeOnce = async () => {
    const samples = await scrape(server);
    scrapes++;
    return samples;
  };
  const before = await scrapeOnce();
  assertEquals(value(before, "gpt2_generated_tokens_total"), 0);
  assertEquals(value(before, "gpt2_slots"), 2);
  assertEquals(value(before, "gpt2_slots_busy"), 0);

  const requests = [0, 1, 2, 3, 4].map((i) =>
    post(server.url + "v1/completions", {
      model: "test",
      prompt: `Client ${i}`,
      max_tokens: 12,
      seed: i,
      stream: true,
      stream_options: { include_usage: true },
    })
  );
  // Five sequences for two slots: two decode, three wait.
  for (let waited = 0; gated.slotsBusy < 2 || gated.waiting < 3; waited += 5) {
    assert(waited < 10_000, "the five requests were not all taken in");
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const during = await scrapeOnce();
  assertEquals(value(during, "gpt2_slots_busy"), 2);
  assertEquals(value(during, "gpt2_queue_length"), 3);
  assertEquals(value(during, "gpt2_sequences_in_flight"), 5);
  // The five streams and the scrape itself.
  assertEquals(value(during, "gpt2_requests_in_flight"), 6);
  await new Promise((resolve) => setTimeout(resolve, 100));
  const later = await scrapeOnce();
  const generated = (s: Sample[]) => value(s, "gpt2_generated_tokens_total");
  assert(generated(later) > generated(during), `${generated(during)} → ${generated(later)}`);
  assert(value(later, "gpt2_generated_tokens_per_second") > 0, "tokens per second");

  const usages = await Promise.all(requests.map(async (r) => {
    const events = await readEvents(await r);
    return JSON.parse(events.at(-2)!).usage;
  }));
  const bad = await post(server.url + "v1/completions", { model: "test", prompt: "" });
  await bad.body?.cancel();
  // Entries land once the answers have ended; the last stream may end a moment after [DONE].
  let after = await scrapeOnce();
  for (let i = 0; i < 100 && value(after, "gpt2_requests_in_flight") > 1; i++) {
    await new Promise((resolve) => setTimeout(resolve, 10));
    after = await scrapeOnce();
  }
  const sum = (key: string) => usages.reduce((s, u) => s + u[key], 0);
  assertEquals(value(after, "gpt2_requests_total", { status: "200" }), 5 + scrapes - 1);
  assertEquals(value(after, "gpt2_requests_total", { status: "400" }), 1);
  assertEquals(value(after, "gpt2_prompt_tokens_total"), sum("prompt_tokens"));
  assertEquals(generated(after), sum("completion_tokens"));
  // Each prompt is "Client" and a number: one that takes a slot freed by another finds
  // "Client" there.
  const cached = usages.reduce((s, u) => s + u.prompt_tokens_details.cached_tokens, 0);
  assert(cached > 0, "prompts found their shared first token cached");
  assertEquals(value(after, "gpt2_cached_tokens_total"), cached);
  assertEquals(value(after, "gpt2_request_duration_seconds_count"), 5);
  assertEquals(value(after, "gpt2_time_to_first_token_seconds_count"), 5);
  assertEquals(value(after, "gpt2_slots_busy"), 0);
  assertEquals(value(after, "gpt2_queue_length"), 0);
  assertEquals(value(after, "gpt2_sequences_in_flight"), 0);
});

Deno.test("the library's model reports the slots busy and the generations waiting", async () => {
  using model = await loadModel(dir, { threads: 1, slots: 2 });
  const ids = model.tokenizer.encode("abc");
  const generations = [0, 1, 2, 3, 4].map(() => model.generate(ids, { length: 40 }));
  const done = Promise.all(generations.map(async (g) => {
    for await (const _ of g);
  }));
  // The scheduler takes in one sequence a step; the first two then hold their slots for
  // 40 steps, with the other three waiting.
  while (model.slotsBusy < 2) await new Promise((resolve) => setImmediate(resolve));
  assertEquals(model.waiting, 3);
  await done;
  assertEquals([model.slotsBusy, model.waiting], [0, 0]);
});

Deno.test("/metrics needs the API key when the server has one", async () => {
  using model = await open();
  await using server = await startServer(model, { apiKey: "k" });
  const refused = await fetch(server.url + "metrics");
  assertEquals(refused.status, 401);
  await refused.body?.cancel();
  const ok = await fetch(server.url + "metrics", { headers: { authorization: "Bearer k" } });
  assertEquals(ok.status, 200);
  parseMetrics(await ok.text());
});

/** Starts `deno task serve` on the test model with `flags`; returns its URL and the child. */
async function serveCli(flags: string[]) {
  const models = dir.slice(0, dir.lastIndexOf("/"));
  const name = dir.slice(dir.lastIndexOf("/") + 1);
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      "--allow-net=127.0.0.1",
      "--unstable-no-legacy-abort",
      new URL("../cli/serve.ts", import.meta.url).pathname,
      `--models_dir=${models}`,
      `--model_name=${name}`,
      "--port=0",
      "--threads=1",
      ...flags,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("\n")) out += (await lines.read()).value ?? "";
  const url = /http:\/\/[^ ]+\//.exec(out)?.[0];
  assert(url, `the server prints its URL: ${out}`);
  return { url, name, child, stdout: lines };
}

/** Stops the server with SIGTERM; returns its exit code and its stderr's lines. */
async function stopCli(
  { child, stdout }: Awaited<ReturnType<typeof serveCli>>,
): Promise<{ code: number; lines: string[] }> {
  child.kill("SIGTERM");
  const [status, stderr] = await Promise.all([
    child.status,
    new Response(child.stderr).text(),
    stdout.cancel(),
  ]);
  return { code: status.code, lines: stderr.split("\n").filter((l) => l !== "") };
}

Deno.test("deno task serve: 20 clients that stop sending their body are 20 log lines, no trace; --log_format json", async () => {
  const server = await serveCli(["--log_format=json"]);
  const { url, name } = server;
  const body = JSON.stringify({ model: name, prompt: "hello", max_tokens: 3 });
  await Promise.all(Array.from({ length: 20 }, (_, i) =>
    rawRequest(
      url,
      partialBody(
        i % 2 ? "/v1/completions" : "/v1/chat/completions",
        body.slice(0, i),
        body.length,
      ),
      50,
    )));
  await rawRequest(url, partialBody("/v1/completions", "{not json", 9), 100);
  const ok = await post(url + "v1/completions", body);
  assertEquals(ok.status, 200);
  const { usage } = await ok.json();
  const { code, lines } = await stopCli(server);
  assertEquals(code, 0);
  const log = lines.filter((l) => l.startsWith("{")).map((l) => JSON.parse(l));
  const other = lines.filter((l) => !l.startsWith("{"));
  assertEquals(other.filter((l) => !l.startsWith("Running on ")), [], "nothing but log lines");
  assertEquals(log.length, 22);
  assertEquals(log.filter((e) => e.status === 499).length, 20);
  const malformed = log.find((e) => e.status === 400);
  assert(malformed?.error.includes("not valid JSON"), JSON.stringify(malformed));
  const last = log.find((e) => e.status === 200);
  assertEquals(
    Object.keys(last).sort(),
    [
      "cached_tokens",
      "completion_tokens",
      "error",
      "method",
      "ms",
      "path",
      "prompt_tokens",
      "remote",
      "status",
      "time",
    ],
  );
  assertEquals(
    [last.method, last.path, last.prompt_tokens, last.completion_tokens, last.remote],
    ["POST", "/v1/completions", usage.prompt_tokens, usage.completion_tokens, "127.0.0.1"],
  );
});

Deno.test("deno task serve: text log lines; an unknown --log_format is one line and exit code 1", async () => {
  const server = await serveCli([]);
  const { url, name } = server;
  const ok = await post(url + "v1/completions", { model: name, prompt: "hi", max_tokens: 2 });
  const { usage } = await ok.json();
  const health = await fetch(url + "health");
  await health.body?.cancel();
  const { code, lines } = await stopCli(server);
  assertEquals(code, 0);
  const log = lines.filter((l) => !l.startsWith("Running on "));
  assertEquals(log.length, 2, log.join("\n"));
  const time = "\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z";
  assert(
    new RegExp(
      `^${time} 127\\.0\\.0\\.1 POST /v1/completions 200 \\d+ms prompt=${usage.prompt_tokens} completion=${usage.completion_tokens} cached=${usage.prompt_tokens_details.cached_tokens}$`,
    ).test(log[0]),
    log[0],
  );
  assert(new RegExp(`^${time} 127\\.0\\.0\\.1 GET /health 200 \\d+ms$`).test(log[1]), log[1]);

  const bad = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("../cli/serve.ts", import.meta.url).pathname, "--log_format=xml"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  assertEquals(bad.code, 1);
  const err = new TextDecoder().decode(bad.stderr).trim();
  assertEquals(err.split("\n").length, 1, err);
  assert(err.includes("--log_format") && err.includes("text, json"), err);
});

Deno.test("teardown: the operations test's model folder", async () => {
  await Deno.remove(dir, { recursive: true });
});
