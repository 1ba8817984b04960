/**
 * A server on 127.0.0.1 at a free port, for the tests, the benchmarks and the page's
 * screenshot: the one place they start and stop one.
 *
 * @module
 */
import type { ApiServer } from "../runtime/serve/server.ts";

/** A running server; disposing it stops the server and waits until it closes. */
export interface LoopbackServer extends AsyncDisposable {
  /** `http://127.0.0.1:PORT/` */
  readonly url: string;
}

/**
 * Serves `handler` on 127.0.0.1 at a port the system picks, once it listens; `onClose`
 * runs first when the server is disposed.
 */
export async function serveHandlerOnLoopback(
  handler: (request: Request) => Response | Promise<Response>,
  onClose?: () => void,
): Promise<LoopbackServer> {
  const stop = new AbortController();
  const { promise, resolve } = Promise.withResolvers<string>();
  const http = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: stop.signal,
    onListen: ({ port }) => resolve(`http://127.0.0.1:${port}/`),
  }, handler);
  return {
    url: await promise,
    async [Symbol.asyncDispose]() {
      onClose?.();
      stop.abort();
      await http.finished;
    },
  };
}

/** Serves `api` on 127.0.0.1; disposing it shuts `api` down, then the server. */
export function serveOnLoopback(api: ApiServer): Promise<LoopbackServer> {
  return serveHandlerOnLoopback(api.fetch, () => api.shutdown());
}
