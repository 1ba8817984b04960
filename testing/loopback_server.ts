/**
 * An `ApiServer` on 127.0.0.1 at a free port, for the tests, the served mode's benchmark
 * and the page's screenshot: the one place they start and stop a server.
 *
 * @module
 */
import type { ApiServer } from "../runtime/serve/server.ts";

/** A running server; disposing it shuts `api` down and waits until the server closes. */
export interface LoopbackServer extends AsyncDisposable {
  /** `http://127.0.0.1:PORT/` */
  readonly url: string;
}

/** Serves `api` on 127.0.0.1 at a port the system picks, once it listens. */
export async function serveOnLoopback(api: ApiServer): Promise<LoopbackServer> {
  const stop = new AbortController();
  const { promise, resolve } = Promise.withResolvers<string>();
  const http = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    signal: stop.signal,
    onListen: ({ port }) => resolve(`http://127.0.0.1:${port}/`),
  }, api.fetch);
  return {
    url: await promise,
    async [Symbol.asyncDispose]() {
      api.shutdown();
      stop.abort();
      await http.finished;
    },
  };
}
