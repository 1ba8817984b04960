/**
 * The page at `/` in real headless Chromium (Debian's, driven by cli/page_driver.ts in a
 * subprocess): typing a prompt and pressing Generate streams the same text the API gives
 * for the same seed; Stop stops a generation and the server frees its place.
 */
import { assert, assertEquals } from "./asserts.ts";
import type { PageResult, PageRun } from "../cli/page_driver.ts";
import { loadModel } from "../runtime/generate/model.ts";
import { post, slowModel, startServer, writeTestModel } from "./serve_harness.ts";
import { CHROMIUM, hasChromium } from "../cli/chromium.ts";

const dir = await writeTestModel();

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

Deno.test("teardown: the page test's model folder", async () => {
  await Deno.remove(dir, { recursive: true });
});
