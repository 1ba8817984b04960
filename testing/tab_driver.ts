/**
 * Runs a list of steps in one page of headless Chromium (Debian's, through
 * `playwright-core`, as cli/page_driver.ts does) and prints what they gave as one JSON line:
 * the browser tests and `deno task bench:browser` drive the tab's engine with it.
 * Playwright reads system paths that Deno grants only with --allow-all, so it runs as a
 * subprocess:
 *
 *   deno run -A testing/tab_driver.ts '{"steps": [{"goto": "http://127.0.0.1:8080/"}, …]}'
 *
 * @module
 */
import type { Page } from "playwright-core";
import { launchChromium } from "../cli/browser.ts";

/** One thing to do in the page; steps that give a value add it to `results`. */
export type TabStep =
  | { readonly goto: string }
  /** The body of an async function run in the page; its return value is the result. */
  | { readonly eval: string }
  /** The body of an async function run in the page's first dedicated worker. */
  | { readonly workerEval: string }
  | { readonly click: string }
  | { readonly fill: readonly [string, string] }
  | { readonly select: readonly [string, string] }
  /** Sets the files of an `<input type="file">`: paths of files, or one folder. */
  | { readonly files: readonly [string, readonly string[]] }
  /** Waits for `selector` to show `text` (a substring), for up to `timeout` ms. */
  | { readonly waitFor: string; readonly text: string; readonly timeout?: number }
  /** The text content of `selector`. */
  | { readonly textOf: string };

/** What to run. */
export interface TabPlan {
  readonly steps: readonly TabStep[];
  /** Give the page a WebGPU adapter (SwiftShader's). */
  readonly webgpu?: boolean;
  /** The body of a function run in every dedicated worker of the page as it starts. */
  readonly workerInit?: string;
}

/** What the steps gave. */
export interface TabRun {
  readonly results: unknown[];
  /** Uncaught errors of the page's scripts. */
  readonly errors: string[];
  /** The step that failed and why, if one did (the steps after it did not run). */
  readonly failed?: string;
}

async function runStep(page: Page, step: TabStep): Promise<unknown> {
  if ("goto" in step) await page.goto(step.goto);
  else if ("eval" in step) return await page.evaluate(`(async () => { ${step.eval} })()`);
  else if ("workerEval" in step) {
    const worker = page.workers()[0];
    if (!worker) throw new Error("the page has no worker");
    return await worker.evaluate(`(async () => { ${step.workerEval} })()`);
  } else if ("click" in step) await page.click(step.click);
  else if ("fill" in step) await page.fill(...step.fill);
  else if ("select" in step) await page.selectOption(...step.select);
  else if ("files" in step) await page.setInputFiles(step.files[0], [...step.files[1]]);
  else if ("waitFor" in step) {
    await page.locator(step.waitFor, { hasText: step.text })
      .waitFor({ timeout: step.timeout ?? 60_000 });
  } else if ("textOf" in step) return (await page.textContent(step.textOf)) ?? "";
  return undefined;
}

/** Runs `plan` in a fresh headless Chromium. */
export async function runInTab(plan: TabPlan): Promise<TabRun> {
  await using browser = await launchChromium({ webgpu: plan.webgpu });
  const page = await browser.context.newPage();
  const errors: string[] = [];
  page.on("pageerror", (e) => errors.push(e.message));
  if (plan.workerInit) {
    const init = `(() => { ${plan.workerInit} })()`;
    page.on("worker", (worker) => void worker.evaluate(init).catch(() => {}));
  }
  const results: unknown[] = [];
  for (const [i, step] of plan.steps.entries()) {
    try {
      const value = await runStep(page, step);
      if ("eval" in step || "workerEval" in step || "textOf" in step) results.push(value);
    } catch (e) {
      const text = await page.textContent("body").catch(() => "");
      return {
        results,
        errors,
        failed: `step ${i} ${JSON.stringify(step).slice(0, 120)}: ${(e as Error).message}` +
          `\npage: ${text?.replace(/\s+/g, " ").slice(0, 600)}`,
      };
    }
  }
  return { results, errors };
}

if (import.meta.main) {
  console.log(JSON.stringify(await runInTab(JSON.parse(Deno.args[0]))));
}
