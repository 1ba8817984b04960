/**
 * The page at `/` in real headless Chromium (Debian's, driven by cli/page_driver.ts in a
 * subprocess): typing a prompt and pressing Generate streams the same text the API gives
 * for the same seed; Stop stops a generation and the server frees its place; in chat mode,
 * each turn's reply is the chat API's for the conversation so far.
 */
import { assert, assertEquals } from "./asserts.ts";
import type { PageResult, PageRun } from "../cli/page_driver.ts";
import { loadModel } from "../runtime/generate/model.ts";
import { post, slowModel, startServer, TEST_HPARAMS, writeTestModel } from "./serve_harness.ts";
import { CHROMIUM, hasChromium } from "../cli/chromium.ts";

// Room for a chat of two turns, at about a token a character.
const dir = await writeTestModel({ ...TEST_HPARAMS, n_ctx: 256 });

async function drive(run: PageRun): Promise<PageResult> {
  const driver = new URL("../cli/page_driver.ts", import.meta.url).pathname;
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", driver, JSON.stringify(run)],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const err = new TextDecoder().decode(stderr);
  if (code !== 0) throw new Error(`The page driver failed:\n${err}`);
  return JSON.parse(new TextDecoder().decode(stdout));
}

// Without Chromium the test is reported as ignored, with the reason, except in CI, whose
// .ci/run installs it: there a missing browser fails the test.
const browser = hasChromium() || Deno.env.get("CI") === "true";
const PAGE_TEST =
  "the page streams the completion the API gives for the same seed, and Stop stops one";

Deno.test({
  name: browser ? PAGE_TEST : `${PAGE_TEST} (no Chromium at ${CHROMIUM}: apt-get install chromium)`,
  ignore: !browser,
}, async () => {
  using model = await loadModel(dir, { threads: 1 });
  await using server = await startServer(slowModel(model, 5));
  const settings = { temperature: 0.9, top_k: 30, top_p: 0.95, max_tokens: 20, seed: 42 };
  const shown = await drive({ url: server.url, prompt: "The cat sat", ...settings });
  const api = await (await post(server.url + "v1/completions", {
    model: "test",
    prompt: "The cat sat",
    ...settings,
  })).json();
  assertEquals(shown.model, "model test");
  assertEquals(shown.echo, "The cat sat");
  assertEquals(shown.completion, api.choices[0].text);
  assert(shown.status.startsWith("done"), shown.status);
  assert(/tokens\/s/.test(shown.speed), `the speed shows: "${shown.speed}"`);
  assertEquals(shown.errors, []);

  const stopped = await drive({ url: server.url, prompt: "x", max_tokens: 55, stop: true });
  assertEquals(stopped.status, "stopped");
  const tokens = Number(/(\d+) tokens?/.exec(stopped.speed)?.[1] ?? "1");
  assert(tokens < 55, `stopped early: ${stopped.speed}`);
  for (let i = 0; i < 100 && server.api.inFlight > 0; i++) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  assertEquals(server.api.inFlight, 0, "the stopped request freed its place");
});

const CHAT_TEST =
  "in chat mode, each reply the page shows is the chat API's for the conversation so far";

Deno.test({
  name: browser ? CHAT_TEST : `${CHAT_TEST} (no Chromium at ${CHROMIUM}: apt-get install chromium)`,
  ignore: !browser,
}, async () => {
  using model = await loadModel(dir, { threads: 1 });
  await using server = await startServer(slowModel(model, 2));
  const settings = { temperature: 0.8, top_k: 20, top_p: 1, max_tokens: 12, seed: 7 };
  const system = "Be kind";
  const said = ["Hi there", "And then?"];
  const shown = await drive({ url: server.url, mode: "chat", system, messages: said, ...settings });
  assertEquals(shown.errors, []);
  assert(shown.status.startsWith("done"), shown.status);
  // The API's replies, turn by turn, each sent the conversation before it.
  const { max_tokens, ...sampling } = settings;
  const messages: { role: string; content: string }[] = [{ role: "system", content: system }];
  const want: { role: string; content: string }[] = [];
  for (const content of said) {
    messages.push({ role: "user", content });
    const body = await (await post(server.url + "v1/chat/completions", {
      model: "test",
      messages,
      max_completion_tokens: max_tokens,
      ...sampling,
    })).json();
    const reply = { role: "assistant", content: body.choices[0].message.content };
    messages.push(reply);
    want.push({ role: "user", content }, reply);
  }
  assertEquals(shown.conversation, want);
  assert(want.some((m) => m.role === "assistant" && m.content !== ""), "a reply with text");
});

Deno.test("teardown: the page test's model folder", async () => {
  await Deno.remove(dir, { recursive: true });
});
