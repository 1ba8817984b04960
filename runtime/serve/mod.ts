/**
 * The HTTP server as a library: OpenAI's completions API over a loaded model, and the
 * page's files to serve beside it.
 *
 * @example Serve a model on port 8080
 * ```ts ignore
 * import { loadModel } from "../../mod.ts";
 * import { ApiServer, loadStaticFiles } from "./mod.ts";
 *
 * using model = await loadModel("models/124M");
 * const api = new ApiServer(model, {
 *   modelId: "124M",
 *   slots: 4,
 *   staticFiles: await loadStaticFiles(),
 * });
 * Deno.serve({ port: 8080 }, api.fetch);
 * ```
 *
 * @module
 */
export { ApiServer, type ApiServerOptions, ISOLATION_HEADERS, ShutdownError } from "./server.ts";
export { ApiError, type ApiErrorOptions } from "./api_error.ts";
export type { AccessLogEntry } from "./access_log.ts";
export { loadStaticFiles, type StaticFile } from "./static_files.ts";
export type { CompletionModel } from "./completion.ts";
