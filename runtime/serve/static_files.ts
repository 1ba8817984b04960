/**
 * The page `GET /` serves: the static files in the project's `web/` folder, read once
 * when the server starts, with no build step.
 *
 * @module
 */

/** The files the page is made of, by URL path, with their media types. */
const FILES: Record<string, { file: string; type: string }> = {
  "/": { file: "index.html", type: "text/html; charset=utf-8" },
  "/app.js": { file: "app.js", type: "text/javascript; charset=utf-8" },
  "/style.css": { file: "style.css", type: "text/css; charset=utf-8" },
};

/** A static file ready to send. */
export interface StaticFile {
  readonly body: Uint8Array<ArrayBuffer>;
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
  for (const [path, { file, type }] of Object.entries(FILES)) {
    const url = new URL(file, dir);
    const response = await fetch(url);
    if (!response.ok) {
      throw new Error(`Cannot fetch the page's file ${url}: HTTP ${response.status}`);
    }
    out.set(path, { body: new Uint8Array(await response.arrayBuffer()), type });
  }
  return out;
}
