/**
 * Debian's headless Chromium driven by `playwright-core`, for the page's test and its
 * screenshot: a fresh profile, and the switches that keep Chromium off the network
 * (no background updates, sync or field trials), since only loopback is reachable.
 *
 * @module
 */
import { type BrowserContext, chromium } from "playwright-core";
import { UsageError } from "./usage_error.ts";
import { CHROMIUM, hasChromium } from "./chromium.ts";

/** A browser context in a fresh profile; disposing it closes Chromium and removes the profile. */
export interface Browser extends AsyncDisposable {
  readonly context: BrowserContext;
}

/** How {@linkcode launchChromium} starts the browser. */
export interface LaunchOptions {
  /**
   * Give pages a WebGPU adapter (SwiftShader's, on the CPU) instead of no GPU at all
   * (default false).
   */
  webgpu?: boolean;
}

/**
 * Starts headless Chromium with a new profile.
 * @throws {UsageError} if Chromium is not installed
 */
export async function launchChromium(options: LaunchOptions = {}): Promise<Browser> {
  if (!hasChromium()) {
    throw new UsageError(`No Chromium at ${CHROMIUM}: install it with apt-get install chromium`);
  }
  const profile = await Deno.makeTempDir({ prefix: "gpt2-chromium-" });
  try {
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      viewport: { width: 900, height: 700 },
      args: [
        "--headless",
        "--no-sandbox",
        ...(options.webgpu
          ? ["--enable-unsafe-webgpu", "--use-webgpu-adapter=swiftshader"]
          : ["--disable-gpu"]),
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    });
    return {
      context,
      async [Symbol.asyncDispose]() {
        await context.close();
        await Deno.remove(profile, { recursive: true });
      },
    };
  } catch (e) {
    await Deno.remove(profile, { recursive: true });
    throw e;
  }
}
