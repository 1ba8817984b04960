/**
 * Drives the served page in headless Chromium as a person would: fills the prompt and the
 * controls, presses Generate, waits for the streamed text (or presses Stop once it
 * starts), and reports what the page shows; in chat mode, sends each message in turn and
 * waits for each reply; optionally saves a screenshot.
 *
 * Playwright reads system paths that Deno grants only with --allow-all, so tests run this
 * file as a subprocess instead of widening their own permissions:
 *
 *   deno run -A cli/page_driver.ts '{"url": "http://127.0.0.1:8080/", "prompt": "Hi"}'
 *
 * @module
 */
import { launchChromium } from "./browser.ts";

/** What to do on the page. */
export interface PageRun {
  /** The server's base URL, ending in `/`. */
  url: string;
  /** The page's mode (default `"completion"`). */
  mode?: "completion" | "chat";
  /** In completion mode, the prompt. */
  prompt?: string;
  /** In chat mode, the system message. */
  system?: string;
  /** In chat mode, the messages to send, one turn each. */
  messages?: string[];
  temperature?: number;
  top_k?: number;
  top_p?: number;
  max_tokens?: number;
  seed?: number;
  /** Press Stop as soon as text appears, instead of waiting for the end. */
  stop?: boolean;
  /** Save a PNG of the page here at the end. */
  screenshot?: string;
}

/** What the page showed. */
export interface PageResult {
  model: string;
  echo: string;
  completion: string;
  /** In chat mode, the conversation shown. */
  conversation: { role: string; content: string }[];
  status: string;
  speed: string;
  /** Uncaught errors of the page's script. */
  errors: string[];
}

/** Runs `run` in a fresh headless Chromium and reports what the page showed. */
export async function drivePage(run: PageRun): Promise<PageResult> {
  await using browser = await launchChromium();
  const page = await browser.context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  await page.goto(run.url);
  await page.waitForSelector("#model:has-text('model ')");
  for (const key of ["temperature", "top_k", "top_p", "max_tokens", "seed"] as const) {
    if (run[key] !== undefined) await page.fill(`#${key}`, String(run[key]));
  }
  const finished = async () => {
    if (run.stop) {
      await page.waitForSelector("#speed:has-text('token')");
      await page.click("#stop");
      await page.waitForSelector("#status:has-text('stopped')");
    } else {
      await page.waitForSelector("#status:has-text('done')", { timeout: 120_000 });
    }
  };
  if (run.mode === "chat") {
    await page.check("input[name=mode][value=chat]");
    if (run.system !== undefined) await page.fill("#system", run.system);
    for (const [turn, message] of (run.messages ?? []).entries()) {
      await page.fill("#message", message);
      await page.click("#generate");
      // Each turn ends with its reply marked finished (the status reads the same each time).
      await page.waitForSelector(`#conversation li[data-finished]:nth-of-type(${2 * turn + 2})`, {
        timeout: 120_000,
      });
      await finished();
    }
  } else {
    await page.fill("#prompt", run.prompt ?? "");
    await page.click("#generate");
    await finished();
  }
  const text = async (id: string) => (await page.textContent(`#${id}`)) ?? "";
  const conversation = await page.$$eval("#conversation li", (items) =>
    items.map((li) => ({
      role: li.getAttribute("data-role") ?? "",
      content: li.querySelector(".content")?.textContent ?? "",
    })));
  const result = {
    model: await text("model"),
    echo: await text("echo"),
    completion: await text("completion"),
    conversation,
    status: await text("status"),
    speed: await text("speed"),
    errors,
  };
  if (run.screenshot) await page.screenshot({ path: run.screenshot, fullPage: true });
  return result;
}

if (import.meta.main) {
  const result = await drivePage(JSON.parse(Deno.args[0]));
  console.log(JSON.stringify(result));
}
