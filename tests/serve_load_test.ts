/**
 * A bounded load test of `deno task serve` on loopback: 16 clients at once, streaming and
 * not, some going away early. Every answer that is read to the end is complete and equal
 * to the same request's answer alone; no request is lost; the server's memory comes back
 * to its size before the load; SIGTERM stops it cleanly; its stderr is one access-log line
 * per request.
 */
import { assert, assertEquals } from "./asserts.ts";
import { parseEvents, writeTestModel } from "./serve_harness.ts";

const CLIENTS = 16;

/** Client i's request: varied length, sampling, streaming and logprobs. */
function request(i: number, model: string) {
  return {
    model,
    prompt: `Client ${i} says`,
    max_tokens: 10 + (i * 7) % 35,
    seed: 100 + i,
    temperature: [1, 0.7, 0, 1.2][i % 4],
    top_k: i % 3 === 0 ? 20 : 0,
    top_p: i % 5 === 0 ? 0.9 : 1,
    logprobs: i % 4 === 1 ? 2 : null,
    stop: i % 6 === 2 ? ["e"] : null,
    stream: i % 2 === 0,
  };
}

/** Clients that go away early: after a few events, or after a moment without streaming. */
const leaves = (i: number) => i % 5 === 3;

/** What must match between two answers: each choice's text, end and logprobs. */
interface Answer {
  text: string;
  finish: string | null;
  logprobs: unknown[];
  /** For a streamed answer: whether it ended with [DONE]. */
  done: boolean;
}

async function ask(
  url: string,
  model: string,
  i: number,
  leaveEarly: boolean,
): Promise<Answer | "left"> {
  const body = request(i, model);
  const abort = new AbortController();
  const response = await fetch(url + "v1/completions", {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal: abort.signal,
  });
  assertEquals(response.status, 200, `client ${i}`);
  if (!body.stream) {
    if (leaveEarly) {
      abort.abort();
      return "left";
    }
    const json = await response.json();
    const c = json.choices[0];
    return { text: c.text, finish: c.finish_reason, logprobs: [c.logprobs], done: true };
  }
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  for (let events = 0;;) {
    const { done, value } = await reader.read();
    if (done) break;
    text += value;
    events += value.split("\n\n").length - 1;
    if (leaveEarly && events >= 3) {
      await reader.cancel();
      return "left";
    }
  }
  const events = parseEvents(text);
  const chunks = events.filter((e) => e !== "[DONE]").map((e) => JSON.parse(e).choices[0]);
  return {
    text: chunks.map((c) => c.text).join(""),
    finish: chunks.at(-1)?.finish_reason ?? null,
    logprobs: chunks.map((c) => c.logprobs?.token_logprobs ?? null),
    done: events.at(-1) === "[DONE]",
  };
}

async function rssKiB(pid: number): Promise<number> {
  const { stdout } = await new Deno.Command("ps", { args: ["-o", "rss=", "-p", String(pid)] })
    .output();
  return Number(new TextDecoder().decode(stdout).trim());
}

async function inFlight(url: string): Promise<number> {
  return (await (await fetch(url + "health")).json()).sequences_in_flight;
}

Deno.test("16 clients at once get the answers they get alone; nothing is lost or kept", async () => {
  const dir = await writeTestModel();
  const models = dir.slice(0, dir.lastIndexOf("/"));
  const name = dir.slice(dir.lastIndexOf("/") + 1);
  const serve = new URL("../cli/serve.ts", import.meta.url).pathname;
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-env",
      "--allow-net=127.0.0.1",
      "--unstable-no-legacy-abort",
      serve,
      `--models_dir=${models}`,
      `--model_name=${name}`,
      "--port=0",
      "--slots=4",
      "--queue=16",
      "--threads=1",
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let terminated = false;
  const lines = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!out.includes("\n")) out += (await lines.read()).value ?? "";
  const url = /http:\/\/[^ ]+\//.exec(out)?.[0];
  assert(url, `the server prints its URL: ${out}`);
  const healthy = async () => {
    for (let i = 0; i < 200 && await inFlight(url) > 0; i++) {
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
    assertEquals(await inFlight(url), 0, "every request freed its place");
  };
  try {
    // Requests use the model's served name.
    const id = (await (await fetch(url + "v1/models")).json()).data[0].id;
    assertEquals(id, name);
    // Each request alone, one after another.
    const alone: Answer[] = [];
    for (let i = 0; i < CLIENTS; i++) {
      alone.push(await ask(url, name, i, false) as Answer);
    }
    await healthy();
    const idle = await rssKiB(child.pid);
    assert(idle > 10_000, `ps reads the server's RSS: ${idle} KiB`);
    const rss: number[] = [];
    for (let round = 0; round < 3; round++) {
      const answers = await Promise.all(
        Array.from({ length: CLIENTS }, (_, i) => ask(url, name, i, leaves(i))),
      );
      answers.forEach((a, i) => {
        if (leaves(i)) return assertEquals(a, "left");
        assertEquals(a, alone[i], `client ${i}, round ${round}`);
        assert((a as Answer).done && (a as Answer).finish !== null, `client ${i} complete`);
      });
      await healthy();
      rss.push(await rssKiB(child.pid));
    }
    // The first round may grow the heap to its working size; later rounds must not grow it.
    const grown = rss[2] - Math.max(idle, rss[0]);
    assert(grown < 16 * 1024, `RSS idle ${idle} KiB, after rounds ${rss.join(", ")} KiB`);

    // SIGTERM with a stream in flight: the stream ends whole, with [DONE] if it was
    // quicker than the signal, else with the shutdown error event; nothing hangs.
    const response = await fetch(url + "v1/completions", {
      method: "POST",
      body: JSON.stringify({ model: name, prompt: "x", max_tokens: 60, stream: true }),
    });
    const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
    let text = (await reader.read()).value ?? "";
    child.kill("SIGTERM");
    terminated = true;
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      text += value;
    }
    const last = parseEvents(text).at(-1)!;
    assert(
      last === "[DONE]" || JSON.parse(last).error?.code === "server_shutdown",
      `the stream ends with [DONE] or the shutdown error: ${last}`,
    );
  } finally {
    // A second signal would end it at once, without the clean stop.
    if (!terminated) child.kill("SIGTERM");
    const status = await child.status;
    while (true) {
      const { done, value } = await lines.read();
      if (done) break;
      out += value;
    }
    const stderr = await new Response(child.stderr).text();
    await Deno.remove(dir, { recursive: true });
    assertEquals(status.code, 0, "SIGTERM stops the server cleanly");
    assert(out.includes("Stopping"), out);
    // stderr is the access log, one line per request: every completion (16 alone, three
    // rounds of 16, the one SIGTERM cut), and no stack trace.
    const log = stderr.split("\n").filter((l) => l !== "" && !l.startsWith("Running on "));
    const line = /^\S+ 127\.0\.0\.1 (GET|POST) (\S+) (\d{3}) \d+ms( .*)?$/;
    const bad = log.filter((l) => !line.test(l));
    assertEquals(bad, [], "nothing but access-log lines");
    const completions = log.filter((l) => l.includes(" POST /v1/completions "));
    assertEquals(completions.length, CLIENTS * 4 + 1);
    assert(completions.every((l) => / 200 /.test(l)), "every completion was answered");
  }
});
