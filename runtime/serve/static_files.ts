/**
 * The page `GET /` serves: the static files in the project's `web/` folder, read once
 * when the server starts, and the tab's engine that `deno task bundle` writes into
 * `web/dist/` (served when it has been built; `deno task serve` builds it first).
 *
 * @module
 */

const JS = "text/javascript; charset=utf-8";

/** The files the page is made of, by URL path, with their media types. */
const FILES: Record<string, { file: string; type: string; optional?: true }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/app.js": { file: "app.js", type: JS },
  "/tab.js": { file: "tab.js", type: JS },
  "/style.css": { file: "style.css", type: "text/css; charset=utf-8" },
  "/dist/gpt2.js": { file: "dist/gpt2.js", type: JS, optional: true },
  "/dist/engine_worker.js": { file: "dist/engine_worker.js", type: JS, optional: true },
  "/dist/kernel_worker.js": { file: "dist/kernel_worker.js", type: JS, optional: true },
  "/dist/crc32c_worker.js": { file: "dist/crc32c_worker.js", type: JS, optional: true },
  "/dist/gpt2.wasm": { file: "dist/gpt2.wasm", type: "application/wasm", optional: true },
};

/** A static file ready to send. */
export interface StaticFile {
  /** The file's bytes. */
  readonly body: Uint8Array<ArrayBuffer>;
  /** Its `Content-Type`. */
  readonly type: string;
}

/**
 * Reads the page's files from `web/` (fetched, so that a package served over HTTP works
 * as a local folder does); a map from URL path to file.
 */
export async function loadStaticFiles(
  dir: URL = new URL("../../web/", import.meta.url),
): Promise<Map<string, StaticFile>> {
  const out = new Map<string, StaticFile>();
  for (const [path, { file, type, optional }] of Object.entries(FILES)) {
    const url = new URL(file, dir);
    let response: Response;
    try {
      response = await fetch(url);
    } catch (e) {
      if (optional) continue; // the tab's engine has not been bundled
      throw e;
    }
    if (!response.ok) {
      await response.body?.cancel();
      if (optional) continue;
      throw new Error(`Cannot fetch the page's file ${url}: HTTP ${response.status}`);
    }
    out.set(path, { body: new Uint8Array(await response.arrayBuffer()), type });
  }
  return out;
}
