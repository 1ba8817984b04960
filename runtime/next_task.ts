/**
 * A turn of the event loop: what a long loop of model passes awaits between two steps so
 * that timers, messages and abort handlers run meanwhile.
 *
 * @module
 */

const setImmediateHere = (globalThis as { setImmediate?: (run: () => void) => unknown })
  .setImmediate;

/** Resolvers waiting for the message `channel` sends itself, in order. */
const waiting: (() => void)[] = [];
let channel: MessageChannel | undefined;

/**
 * Resolves on a later turn of the event loop, after the tasks already queued (timers due,
 * messages, abort handlers) have run: through `setImmediate` where the runtime has it
 * (Deno), else through a message a channel sends itself (a browser, where a nested
 * `setTimeout(0)` waits at least 4 ms).
 */
export function nextTask(): Promise<void> {
  const { promise, resolve } = Promise.withResolvers<void>();
  if (setImmediateHere) {
    setImmediateHere(resolve);
    return promise;
  }
  if (!channel) {
    channel = new MessageChannel();
    channel.port1.onmessage = () => waiting.shift()?.();
  }
  waiting.push(resolve);
  channel.port2.postMessage(null);
  return promise;
}
