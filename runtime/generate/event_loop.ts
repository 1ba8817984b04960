/**
 * Giving the event loop a turn between two passes of the model, which keep the main
 * thread busy for tens of milliseconds each.
 *
 * @module
 */
import { setImmediate } from "node:timers";

/**
 * How many `setImmediate` turns make one yield. Deno serves sockets and signals on tokio,
 * which, while tasks stay ready, polls for I/O only every few dozen task polls (its
 * `event_interval`, 61 by default); one `setImmediate` is one of them. Measured with a
 * loop of 20 ms busy steps: with 1 turn a step, an HTTP request waited 1.05–1.1 s to reach
 * its handler; with 8, 30–56 ms; with 64, 0–20 ms. A timer (`setTimeout(0)`) lets I/O in
 * too but parks the thread for about 2.2 ms; 64 turns cost about 0.25 ms.
 */
const TURNS = 64;

/**
 * Resolves once the event loop has had its turn: promise callbacks, timers, and I/O
 * (requests arriving, responses written, signals) have run.
 */
export async function yieldToEventLoop(): Promise<void> {
  for (let i = 0; i < TURNS; i++) await new Promise((resolve) => setImmediate(resolve));
}
