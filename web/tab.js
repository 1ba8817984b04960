// Running the model in this tab: the engine that `deno task bundle` writes to /dist/
// (loaded only when asked for), the model's files from /models/<id>/ or a folder picked
// from disk, a progress bar while the weights stream in, and "Forget the model".

const $ = (id) => document.getElementById(id);
let engine = null; // the module /dist/gpt2.js, once imported
let model = null; // the TabModel loaded
let loading = null; // the promise of a load under way
let source = null; // what the model was loaded from: a URL, or "the folder picked"

async function engineModule() {
  try {
    engine ??= await import("/dist/gpt2.js");
  } catch {
    throw new Error("the tab's engine is not built: run deno task bundle (deno task serve does)");
  }
  return engine;
}

function status(text) {
  $("tab_status").textContent = text;
}

function megabytes(bytes) {
  return `${(bytes / 1e6).toFixed(bytes < 1e7 ? 1 : 0)} MB`;
}

function number(id) {
  const v = $(id).value;
  return v === "" ? undefined : Number(v);
}

/** Loads the model in the tab from `location` (a folder's URL, or picked files). */
async function load(location, headers) {
  model?.[Symbol.dispose]();
  model = null;
  const { loadModel } = await engineModule();
  const bar = $("tab_progress");
  bar.hidden = false;
  bar.value = 0;
  status("loading…");
  const start = performance.now();
  try {
    const options = {
      backend: $("tab_backend").value,
      dtype: $("tab_dtype").value,
      headers,
      onProgress: ({ loaded, total }) => {
        bar.value = total > 0 ? loaded / total : 0;
        status(`loading: ${megabytes(loaded)} of ${megabytes(total)}`);
      },
    };
    const threads = number("tab_threads");
    if (threads !== undefined) options.threads = threads;
    model = await loadModel(location, options);
    source = typeof location === "string" ? location : "the folder picked";
    const seconds = ((performance.now() - start) / 1000).toFixed(1);
    const from = model.cachedBytes > 0
      ? `, ${megabytes(model.cachedBytes)} from the browser's cache`
      : model.cached
      ? ", kept in the browser for next time"
      : "";
    status(
      `loaded in ${seconds} s: ${model.backend}, ${model.dtype} weights, ` +
        `${model.threads} thread${model.threads === 1 ? "" : "s"}${from}`,
    );
  } catch (e) {
    status(`error: ${e.message}`);
    throw e;
  } finally {
    bar.hidden = true;
  }
}

/** Loads once at a time; later calls wait for the load under way. */
function loadOnce(location, headers) {
  loading ??= load(location, headers).finally(() => loading = null);
  return loading;
}

/**
 * The text of each token generated in the tab after `prompt` ("" while a character is
 * incomplete), then what the decoder still holds as `{ text, token: false }`.
 */
export async function* tabTokens(prompt, settings, signal, location, headers) {
  if (loading) await loading;
  if (!model) await loadOnce(location, headers);
  const decoder = model.tokenizer.decoder();
  const ids = model.tokenizer.encode(prompt);
  const tokens = model.generate(ids, {
    length: settings.max_tokens,
    temperature: settings.temperature,
    topK: settings.top_k,
    topP: settings.top_p,
    seed: settings.seed,
    signal,
  });
  for await (const id of tokens) yield { text: decoder.push(id), token: true };
  yield { text: decoder.flush(), token: false };
}

/**
 * The `choices` entries of the chat API's chunks for `body` (the page's chat request),
 * generated in the tab by the server's own chat code.
 */
export async function* tabChat(body, signal, location, headers) {
  if (loading) await loading;
  if (!model) await loadOnce(location, headers);
  yield* engine.chatChoices(model, body, signal);
}

/** Wires the tab's controls; `location()` is the served model's folder, `headers()` the key. */
export function initTab(location, headers) {
  const where = $("where");
  const show = () => $("tab").hidden = where.value !== "tab";
  where.addEventListener("change", show);
  show();
  const env = [];
  const isolated = globalThis.crossOriginIsolated === true;
  env.push(
    isolated
      ? `cross-origin isolated: up to ${navigator.hardwareConcurrency} threads`
      : "not cross-origin isolated: the model runs on one thread " +
        "(serve the page with Cross-Origin-Opener-Policy: same-origin and " +
        "Cross-Origin-Embedder-Policy: require-corp)",
  );
  const showEnv = (gpu) => $("tab_env").textContent = [...env, gpu].join("; ");
  showEnv(navigator.gpu ? "WebGPU: looking for an adapter…" : "WebGPU: not in this browser");
  navigator.gpu?.requestAdapter().then(
    (adapter) => showEnv(adapter ? "WebGPU: an adapter" : "WebGPU: no adapter (use wasm)"),
    () => showEnv("WebGPU: no adapter (use wasm)"),
  );
  $("tab_threads").placeholder = isolated
    ? String(Math.min(navigator.hardwareConcurrency || 1, 8))
    : "1";
  $("tab_load").addEventListener("click", () => loadOnce(location(), headers()).catch(() => {}));
  $("tab_folder").addEventListener("change", (e) => {
    const files = [...e.target.files];
    if (files.length > 0) loadOnce(files).catch(() => {});
  });
  $("tab_forget").addEventListener("click", async () => {
    model?.[Symbol.dispose]();
    model = null;
    try {
      const { forgetModel, keptBytes } = await engineModule();
      const url = new URL(location(), globalThis.location.href).href;
      const kept = await keptBytes(url);
      await forgetModel(url);
      status(`forgot the model: ${megabytes(kept)} removed from the browser`);
    } catch (e) {
      status(`error: ${e.message}`);
    }
  });
  return { loaded: () => model !== null, source: () => source };
}
