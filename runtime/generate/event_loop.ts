/**
 * Giving the event loop a turn between two passes of the model, which keep the thread
 * busy for tens of milliseconds each: in Deno, and in a browser's worker, which has no
 * `setImmediate`.
 *
 * @module
 */

/** `setImmediate` where the runtime has it (Deno and Node, as a global); a browser has none. */
const setImmediateHere = (globalThis as { setImmediate?: (run: () => void) => unknown })
  .setImmediate;

/**
 * How many `setImmediate` turns make one yield. Deno serves sockets and signals on tokio,
 * which, while tasks stay ready, polls for I/O only every few dozen task polls (its
 * `event_interval`, 61 by default); one `setImmediate` is one of them. Measured with a
 * loop of 20 ms busy steps: with 1 turn a step, an HTTP request waited 1.05–1.1 s to reach
 * its handler; with 8, 30–56 ms; with 64, 0–20 ms. A timer (`setTimeout(0)`) lets I/O in
 * too but parks the thread for about 2.2 ms; 64 turns cost about 0.25 ms.
 */
const TURNS = 64;

/** Resolvers waiting for the message `channel` sends itself, in order. */
const waiting: (() => void)[] = [];
let channel: MessageChannel | undefined;

/**
 * A browser's turn: a message a channel sends itself is a task queued behind those already
 * waiting (the page's messages, timers due), so they run first. A nested `setTimeout(0)`
 * would wait at least 4 ms.
 */
function nextMessage(): Promise<void> {
  const { promise, resolve } = Promise.withResolvers<void>();
  if (!channel) {
    channel = new MessageChannel();
    channel.port1.onmessage = () => waiting.shift()?.();
  }
  waiting.push(resolve);
  channel.port2.postMessage(null);
  return promise;
}

/**
 * Resolves once the event loop has had its turn: promise callbacks, timers, and I/O
 * (requests arriving, responses written, signals, a page's messages) have run. In Deno,
 * {@linkcode TURNS} `setImmediate` turns; where there is no `setImmediate` (a browser),
 * one message a channel sends itself.
 */
export async function yieldToEventLoop(): Promise<void> {
  if (setImmediateHere === undefined) return await nextMessage();
  for (let i = 0; i < TURNS; i++) {
    await new Promise<void>((resolve) => setImmediateHere(resolve));
  }
}
