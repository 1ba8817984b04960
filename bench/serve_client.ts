/**
 * The clients of `bench/serve.ts`, in a process of their own as real clients are: reads
 * `{ url, requests }` as JSON from standard input, sends every request at once as a
 * streaming completion, and prints one JSON line: for each request, `ttft` (ms from
 * sending it to its first token event), `tokens` (events with a token), `decode_ms` (first
 * token to last), `text`, and `wall_ms` (first request sent to last event). Times are this
 * process's own, so its start-up is not counted (nor opening its connections), and nothing the server's process does
 * (its kernels share its main thread) delays reading an event that has arrived.
 *
 *     deno run --allow-net=127.0.0.1 bench/serve_client.ts < requests.json
 *
 * @module
 */

interface Input {
  url: string;
  requests: Record<string, unknown>[];
}

const input: Input = JSON.parse(await new Response(Deno.stdin.readable).text());

async function stream(body: Record<string, unknown>, start: number) {
  const response = await fetch(input.url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...body, stream: true }),
  });
  if (!response.ok) throw new Error(`${response.status}: ${await response.text()}`);
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let first = 0;
  let last = 0;
  let tokens = 0;
  let text = "";
  let buffer = "";
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    buffer += value;
    const events = buffer.split("\n\n");
    buffer = events.pop()!;
    for (const e of events) {
      if (e === "data: [DONE]" || !e.startsWith("data: ")) continue;
      const chunk = JSON.parse(e.slice(6));
      if (chunk.error) throw new Error(chunk.error.message);
      tokens++;
      text += chunk.choices[0].text;
      last = performance.now();
      if (tokens === 1) first = last;
    }
  }
  return { ttft: first - start, tokens, decode_ms: last - first, text, end: last };
}

// One connection per request, opened and used once before the clock starts, so that no
// request pays for a connection or the fetch machinery's first use.
const health = new URL("/health", input.url);
await Promise.all(input.requests.map(() => fetch(health).then((r) => r.body?.cancel())));

const start = performance.now();
const runs = await Promise.all(input.requests.map((body) => stream(body, start)));
const wall = Math.max(...runs.map((r) => r.end)) - start;
console.log(JSON.stringify({
  wall_ms: wall,
  runs: runs.map(({ ttft, tokens, decode_ms, text }) => ({ ttft, tokens, decode_ms, text })),
}));
