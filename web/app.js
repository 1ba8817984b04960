// The page's behaviour: it asks the server's own API (/v1/models, /v1/completions with
// stream: true) and shows the completion as its server-sent events arrive; or, with "Run
// in this tab", generates in the page's own engine (tab.js).
import { initTab, tabTokens } from "/tab.js";

const $ = (id) => document.getElementById(id);
// ?model=URL: a model folder to run in the tab, for a page hosted as static files with no
// server behind it.
const hostedModel = new URLSearchParams(location.search).get("model");
let modelId = null;
let running = null; // the AbortController of the completion being streamed

function keyHeaders() {
  const key = $("api_key").value;
  return key ? { authorization: `Bearer ${key}` } : {};
}

function headers() {
  return { "content-type": "application/json", ...keyHeaders() };
}

/** Where the model's own files are, for the tab to load: ?model=, or the server's. */
function tabModelUrl() {
  return hostedModel ?? `/models/${encodeURIComponent(modelId ?? "")}/`;
}

async function errorMessage(response) {
  try {
    return (await response.json()).error.message;
  } catch {
    return `HTTP ${response.status}`;
  }
}

async function connect() {
  const response = await fetch("/v1/models", { headers: headers() });
  if (response.status === 401) {
    $("key-label").hidden = false;
    $("model").textContent = "this server needs an API key";
    return false;
  }
  if (!response.ok) {
    $("model").textContent = await errorMessage(response);
    return false;
  }
  modelId = (await response.json()).data[0].id;
  $("model").textContent = `model ${modelId}`;
  return true;
}

function number(id) {
  const v = $(id).value;
  return v === "" ? undefined : Number(v);
}

async function generate(event) {
  event.preventDefault();
  if (running) return;
  if (!hostedModel && !modelId && !(await connect())) return;
  const prompt = $("prompt").value;
  $("echo").textContent = prompt;
  $("completion").textContent = "";
  $("speed").textContent = "";
  $("status").textContent = "generating…";
  $("generate").disabled = true;
  $("stop").disabled = false;
  running = new AbortController();
  let tokens = 0;
  let first = 0;
  const start = performance.now();
  const show = (text, isToken = true) => {
    if (isToken) tokens++;
    if (tokens === 1 && isToken) first = performance.now();
    $("completion").textContent += text;
    const seconds = (performance.now() - first) / 1000;
    $("speed").textContent = tokens > 1
      ? `${tokens} tokens, ${((tokens - 1) / seconds).toFixed(1)} tokens/s, first after ${
        ((first - start) / 1000).toFixed(2)
      } s`
      : `first token after ${((first - start) / 1000).toFixed(2)} s`;
  };
  const settings = {
    temperature: number("temperature"),
    top_k: number("top_k"),
    top_p: number("top_p"),
    max_tokens: number("max_tokens"),
    seed: number("seed"),
  };
  let finish = null;
  try {
    if ($("where").value === "tab") {
      const steps = tabTokens(prompt, settings, running.signal, tabModelUrl(), keyHeaders());
      for await (const { text, token } of steps) show(text, token);
      $("status").textContent = "done";
      return;
    }
    const response = await fetch("/v1/completions", {
      method: "POST",
      headers: headers(),
      signal: running.signal,
      body: JSON.stringify({ model: modelId, prompt, stream: true, ...settings }),
    });
    if (!response.ok) throw new Error(await errorMessage(response));
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    while (true) {
      const { done, value } = await reader.read();
      if (done) break;
      buffer += value;
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const line = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        const choice = chunk.choices[0];
        if (choice.finish_reason) finish = choice.finish_reason;
        show(choice.text);
      }
    }
    $("status").textContent = finish === "stop" ? "done (stopped)" : "done";
  } catch (e) {
    $("status").textContent = e.name === "AbortError" ? "stopped" : `error: ${e.message}`;
  } finally {
    running = null;
    $("generate").disabled = false;
    $("stop").disabled = true;
  }
}

$("form").addEventListener("submit", generate);
$("stop").addEventListener("click", () => running?.abort());
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) $("form").requestSubmit();
});
initTab(tabModelUrl, keyHeaders);
if (hostedModel) {
  $("where").value = "tab";
  $("where").disabled = true;
  $("where").dispatchEvent(new Event("change"));
  $("model").textContent = `model ${hostedModel}`;
} else {
  connect();
}
