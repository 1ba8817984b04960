/**
 * `yieldToEventLoop` between busy steps lets sockets make progress at every step: a
 * request to a server in this process is answered within a few steps of a busy loop, not
 * after the dozens that one `setImmediate` a step leaves it waiting (counted in steps,
 * not timed).
 */
import { setImmediate } from "node:timers";
import { assert } from "./asserts.ts";
import { yieldToEventLoop } from "../runtime/generate/event_loop.ts";
import { serveHandlerOnLoopback } from "../testing/loopback_server.ts";

/** Busy steps of 2 ms, each followed by `pause`, while one request goes out and back. */
async function stepsToAnswer(pause: () => Promise<unknown>): Promise<number> {
  await using http = await serveHandlerOnLoopback(() => new Response("ok"));
  const port = new URL(http.url).port;
  // A first request, so that the connection and fetch's machinery exist.
  await (await fetch(`http://127.0.0.1:${port}/`)).text();
  let answered = false;
  const request = fetch(`http://127.0.0.1:${port}/`).then((r) => r.text()).then(() => {
    answered = true;
  });
  let steps = 0;
  while (!answered && steps < 1000) {
    const end = performance.now() + 2;
    while (performance.now() < end) { /* a pass of the model */ }
    steps++;
    await pause();
  }
  await request;
  return steps;
}

Deno.test("a request is answered within a few busy steps when each ends with yieldToEventLoop()", async () => {
  const single = await stepsToAnswer(() => new Promise((r) => setImmediate(r)));
  const yielded = await stepsToAnswer(yieldToEventLoop);
  assert(yielded <= 4, `${yielded} steps (one setImmediate a step: ${single})`);
});
