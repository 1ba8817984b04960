// The page's behaviour: it asks the server's own API (/v1/models, then /v1/completions or
// /v1/chat/completions with stream: true) and shows the text as its server-sent events
// arrive. In chat mode it keeps the conversation and sends all of it each turn. With "Run
// in this tab", both run in the page's own engine instead (tab.js).
import { initTab, tabChat, tabTokens } from "/tab.js";

const $ = (id) => document.getElementById(id);
// ?model=URL: a model folder (or .gguf file) to run in the tab, for a page hosted as static
// files with no server behind it.
const hostedModel = new URLSearchParams(location.search).get("model");
let modelId = null;
let running = null; // the AbortController of the request being streamed
/** The chat so far: {role, content} messages, without the system message. */
const history = [];

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

function inTab() {
  return $("where").value === "tab";
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

function mode() {
  return document.querySelector("input[name=mode]:checked").value;
}

/** The sampling settings both APIs take. */
function settings() {
  return {
    model: modelId,
    stream: true,
    temperature: number("temperature"),
    top_k: number("top_k"),
    top_p: number("top_p"),
    seed: number("seed"),
  };
}

/** POSTs `body` to `path` and calls `onChunk` with each server-sent event's JSON. */
async function stream(path, body, onChunk) {
  const response = await fetch(path, {
    method: "POST",
    headers: headers(),
    signal: running.signal,
    body: JSON.stringify(body),
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
      onChunk(chunk);
    }
  }
}

/** Counts tokens as they come and shows the speed. */
function speedometer() {
  const start = performance.now();
  let first = 0;
  let tokens = 0;
  const show = () => {
    const seconds = (performance.now() - first) / 1000;
    const after = ((first - start) / 1000).toFixed(2);
    $("speed").textContent = tokens > 1
      ? `${tokens} tokens, ${((tokens - 1) / seconds).toFixed(1)} tokens/s, first after ${after} s`
      : `first token after ${after} s`;
  };
  return {
    /** `count` more tokens came. */
    add(count = 1) {
      if (tokens === 0) first = performance.now();
      tokens += count;
      show();
    },
    /** The answer's usage says how many tokens there were in all. */
    total(count) {
      tokens = count;
      if (count > 0) show();
    },
  };
}

async function complete() {
  const prompt = $("prompt").value;
  if (prompt === "") throw new Error("write a prompt first");
  $("echo").textContent = prompt;
  $("completion").textContent = "";
  const speed = speedometer();
  if (inTab()) {
    const tabSettings = { ...settings(), max_tokens: number("max_tokens") };
    const steps = tabTokens(prompt, tabSettings, running.signal, tabModelUrl(), keyHeaders());
    for await (const { text, token } of steps) {
      if (token) speed.add();
      $("completion").textContent += text;
    }
    return null;
  }
  let finish = null;
  await stream(
    "/v1/completions",
    { ...settings(), prompt, max_tokens: number("max_tokens") },
    (chunk) => {
      const choice = chunk.choices[0];
      speed.add();
      $("completion").textContent += choice.text;
      if (choice.finish_reason) finish = choice.finish_reason;
    },
  );
  return finish;
}

/** Adds a message to the conversation shown; returns its element. */
function showMessage(role, content) {
  const item = document.createElement("li");
  item.className = `message ${role}`;
  item.dataset.role = role;
  const who = document.createElement("span");
  who.className = "role";
  who.textContent = role === "user" ? "You" : "GPT-2";
  const text = document.createElement("span");
  text.className = "content";
  text.textContent = content;
  item.append(who, text);
  $("conversation").append(item);
  return item;
}

async function chat() {
  const content = $("message").value;
  if (content === "") throw new Error("write a message first");
  history.push({ role: "user", content });
  showMessage("user", content);
  $("message").value = "";
  const system = $("system").value;
  const messages = system === "" ? [...history] : [{ role: "system", content: system }, ...history];
  const reply = showMessage("assistant", "");
  const text = reply.querySelector(".content");
  const speed = speedometer();
  let finish = null;
  const request = { ...settings(), messages, max_completion_tokens: number("max_tokens") };
  const onChoice = (choice) => {
    if (choice.delta.content) {
      speed.add();
      text.textContent += choice.delta.content;
    }
    if (choice.finish_reason) finish = choice.finish_reason;
  };
  try {
    if (inTab()) {
      // The same chat request, answered in the tab by the server's own chat code.
      const choices = tabChat(request, running.signal, tabModelUrl(), keyHeaders());
      for await (const choice of choices) onChoice(choice);
    } else {
      await stream(
        "/v1/chat/completions",
        { ...request, stream_options: { include_usage: true } },
        (chunk) =>
          chunk.usage ? speed.total(chunk.usage.completion_tokens) : onChoice(chunk.choices[0]),
      );
    }
  } catch (e) {
    if (e.name !== "AbortError") {
      // The turn failed: it is taken back, and the message is there to send again.
      history.pop();
      reply.previousElementSibling.remove();
      reply.remove();
      $("message").value = content;
      throw e;
    }
  }
  // A reply stopped halfway stays in the conversation as far as it came.
  history.push({ role: "assistant", content: text.textContent });
  reply.dataset.finished = finish ?? "stopped";
  return finish;
}

async function generate(event) {
  event.preventDefault();
  if (running) return;
  if (!hostedModel && !modelId && !(await connect())) return;
  $("speed").textContent = "";
  $("status").textContent = "generating…";
  $("generate").disabled = true;
  $("clear").disabled = true;
  $("stop").disabled = false;
  running = new AbortController();
  try {
    const finish = mode() === "chat" ? await chat() : await complete();
    if (running.signal.aborted) $("status").textContent = "stopped";
    else $("status").textContent = finish === "stop" ? "done (stopped)" : "done";
  } catch (e) {
    $("status").textContent = e.name === "AbortError" ? "stopped" : `error: ${e.message}`;
  } finally {
    running = null;
    $("generate").disabled = false;
    $("clear").disabled = false;
    $("stop").disabled = true;
  }
}

function switchMode() {
  const chatting = mode() === "chat";
  $("completion-input").hidden = chatting;
  $("completion-output").hidden = chatting;
  $("chat-input").hidden = !chatting;
  $("clear").hidden = !chatting;
  $("generate").textContent = chatting ? "Send" : "Generate";
  $("status").textContent = "";
  $("speed").textContent = "";
}

$("form").addEventListener("submit", generate);
$("stop").addEventListener("click", () => running?.abort());
$("clear").addEventListener("click", () => {
  history.length = 0;
  $("conversation").replaceChildren();
  $("status").textContent = "";
  $("speed").textContent = "";
});
for (const input of document.querySelectorAll("input[name=mode]")) {
  input.addEventListener("change", switchMode);
}
for (const id of ["prompt", "message"]) {
  $(id).addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey || id === "message" && !e.shiftKey)) {
      e.preventDefault();
      $("form").requestSubmit();
    }
  });
}
switchMode();
initTab(tabModelUrl, keyHeaders);
if (hostedModel) {
  $("where").value = "tab";
  $("where").disabled = true;
  $("where").dispatchEvent(new Event("change"));
  $("model").textContent = `model ${hostedModel}`;
} else {
  connect();
}
