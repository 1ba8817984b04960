/**
 * What the tests of the engine in a browser tab share: the bundle built into web/dist, a
 * loopback server for the page and model folders (cross-origin isolated or not) that logs
 * every request, and the tab driver run as a subprocess.
 */
import type { TabPlan, TabRun } from "../testing/tab_driver.ts";
import { bundle, checkBundles } from "../cli/bundle.ts";
import { loadStaticFiles } from "../runtime/serve/static_files.ts";
import { fileResponse } from "../runtime/serve/file_response.ts";
import { ISOLATION_HEADERS } from "../runtime/serve/server.ts";
import { hasChromium } from "../cli/chromium.ts";
import { serveHandlerOnLoopback } from "../testing/loopback_server.ts";

/** Whether the browser tests run: Chromium is there, or CI (which installs it) says so. */
export const BROWSER: boolean = hasChromium() || Deno.env.get("CI") === "true";

/** Builds the tab's engine into web/dist, as `deno task bundle` does; throws if it is wrong. */
export async function buildBundle(): Promise<void> {
  const out = new URL("../web/dist", import.meta.url).pathname;
  await bundle(out);
  const problems = await checkBundles(out);
  if (problems.length > 0) throw new Error(`The bundle is wrong: ${problems.join("; ")}`);
}

/** One request the server answered. */
export interface Logged {
  readonly method: string;
  readonly path: string;
  readonly range: string | null;
}

/** The page and model folders on loopback. */
export interface TabServer extends AsyncDisposable {
  /** `http://127.0.0.1:PORT/` */
  readonly url: string;
  /** Every request, in order. */
  readonly requests: Logged[];
  /** GETs of `path`'s file in the folder served as `name`. */
  gets(name: string, file: string): number;
}

/**
 * Serves the page at `/` and each of `folders` at `/models/<name>/`, with the headers that
 * make the page cross-origin isolated unless `isolated` is false.
 */
export async function serveTab(
  folders: Record<string, string>,
  isolated = true,
): Promise<TabServer> {
  const files = await loadStaticFiles();
  // The README's example page, served as a static host would.
  const example = await Deno.readFile(new URL("../web/example.html", import.meta.url));
  files.set("/example.html", { body: example, type: "text/html; charset=utf-8" });
  const headers: Record<string, string> = isolated ? { ...ISOLATION_HEADERS } : {};
  const requests: Logged[] = [];
  const server = await serveHandlerOnLoopback(async (request) => {
    const path = decodeURIComponent(new URL(request.url).pathname);
    requests.push({ method: request.method, path, range: request.headers.get("range") });
    const file = files.get(path);
    if (file) {
      return new Response(file.body, { headers: { "content-type": file.type, ...headers } });
    }
    const m = /^\/models\/([^/]+)\/([^/]+)$/.exec(path);
    const dir = m ? folders[m[1]] : undefined;
    const response = dir ? await fileResponse(request, `${dir}/${m![2]}`, headers) : undefined;
    return response ?? new Response("not found", { status: 404, headers });
  });
  return {
    url: server.url,
    requests,
    gets: (name, file) =>
      requests.filter((r) => r.method === "GET" && r.path === `/models/${name}/${file}`).length,
    [Symbol.asyncDispose]: () => server[Symbol.asyncDispose](),
  };
}

/** Runs `plan` in headless Chromium (testing/tab_driver.ts, in a subprocess). */
export async function driveTab(plan: TabPlan): Promise<TabRun> {
  const driver = new URL("../testing/tab_driver.ts", import.meta.url).pathname;
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", driver, JSON.stringify(plan)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (code !== 0) throw new Error(`The tab driver failed:\n${new TextDecoder().decode(stderr)}`);
  const run: TabRun = JSON.parse(new TextDecoder().decode(stdout));
  if (run.failed) throw new Error(`In the tab: ${run.failed}`);
  return run;
}

/** Where a page script loads its model from: a URL, or the files of an `<input>` (a selector). */
export type ScriptLocation = string | { readonly picked: string };

/** `location` as an expression in a page script. */
function locationExpression(location: ScriptLocation): string {
  return typeof location === "string"
    ? JSON.stringify(location)
    : `document.querySelector(${JSON.stringify(location.picked)}).files`;
}

/**
 * The body of a page script that loads the model at `location` with `options` through the
 * bundle's `loadModel`, generates `length` greedy tokens after `prompt`, and returns what
 * it saw; the model is disposed at the end.
 */
export function greedyScript(
  location: ScriptLocation,
  prompt: string,
  length: number,
  options = {},
): string {
  return `
    const gpt2 = await import("/dist/gpt2.js");
    const model = await gpt2.loadModel(${locationExpression(location)}, ${JSON.stringify(options)});
    try {
      const ids = model.tokenizer.encode(${JSON.stringify(prompt)});
      const tokens = [];
      for await (const id of model.generate(ids, { length: ${length}, temperature: 0 })) {
        tokens.push(id);
      }
      const logits = Array.from(await model.logits(ids));
      return {
        tokens, logits, threads: model.threads, backend: model.backend, dtype: model.dtype,
        cachedBytes: model.cachedBytes, isolated: crossOriginIsolated,
        conversion: model.conversion ?? null,
      };
    } finally {
      model[Symbol.dispose]();
    }`;
}

/** A page script body that loads `url` with `options` and returns the error's name and message. */
export function failingLoadScript(url: string, options = {}): string {
  return `
    const gpt2 = await import("/dist/gpt2.js");
    try {
      const model = await gpt2.loadModel(${JSON.stringify(url)}, ${JSON.stringify(options)});
      model[Symbol.dispose]();
      return "loaded";
    } catch (e) {
      return { name: e.name, message: e.message };
    }`;
}
