/**
 * Drives the served page in headless Chromium as a person would: fills the prompt and the
 * controls, presses Generate, waits for the streamed text (or presses Stop once it
 * starts), and reports what the page shows; optionally saves a screenshot.
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
  prompt: string;
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
  await page.fill("#prompt", run.prompt);
  for (const key of ["temperature", "top_k", "top_p", "max_tokens", "seed"] as const) {
    if (run[key] !== undefined) await page.fill(`#${key}`, String(run[key]));
  }
  await page.click("#generate");
  if (run.stop) {
    await page.waitForSelector("#speed:has-text('token')");
    await page.click("#stop");
    await page.waitForSelector("#status:has-text('stopped')");
  } else {
    await page.waitForSelector("#status:has-text('done')", { timeout: 120_000 });
  }
  const text = async (id: string) => (await page.textContent(`#${id}`)) ?? "";
  const result = {
    model: await text("model"),
    echo: await text("echo"),
    completion: await text("completion"),
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
