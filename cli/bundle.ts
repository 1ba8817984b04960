/**
 * `deno task bundle`: the engine for the browser, bundled by `deno bundle --platform
 * browser` into web/dist/: `gpt2.js` (the ES module a page imports: `loadModel`,
 * `forgetModel`, …), the three workers it starts (`engine_worker.js`, `kernel_worker.js`,
 * `crc32c_worker.js`) and the compiled kernels (`gpt2.wasm`), side by side, as
 * runtime/assets.ts expects them. Then it checks what it wrote: every file there, each
 * self-contained (no `import` left), within its size budget, and `gpt2.js` exporting the
 * page's API.
 *
 *   deno task bundle [--out=web/dist]
 *
 * @module
 */
import { parseArgs } from "node:util";
import { UsageError } from "./usage_error.ts";
import { runMain } from "./run_main.ts";

const ROOT = new URL("../", import.meta.url);

/** Each bundle: its entry module and the most bytes it may take. */
export const BUNDLES: readonly { out: string; entry: string; budget: number }[] = [
  { out: "gpt2.js", entry: "runtime/browser/mod.ts", budget: 200_000 },
  { out: "engine_worker.js", entry: "runtime/browser/engine_worker.ts", budget: 600_000 },
  { out: "kernel_worker.js", entry: "runtime/backend/wasm/kernel_worker.ts", budget: 60_000 },
  { out: "crc32c_worker.js", entry: "runtime/io/crc32c_worker.ts", budget: 20_000 },
];

/** What `gpt2.js` must export. */
export const PAGE_API: readonly string[] = [
  "loadModel",
  "forgetModel",
  "keptBytes",
  "tabEnvironment",
  "TabModel",
  "chatChoices",
];

/** Writes every bundle and the kernels into `out`; returns their sizes in bytes. */
export async function bundle(out: string): Promise<Record<string, number>> {
  await Deno.mkdir(out, { recursive: true });
  const sizes: Record<string, number> = {};
  for (const { out: name, entry } of BUNDLES) {
    const { code, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["bundle", "--platform", "browser", "--output", `${out}/${name}`, entry],
      cwd: ROOT.pathname,
      stdout: "null",
      stderr: "piped",
      env: { NO_COLOR: "1" },
    }).output();
    if (code !== 0) {
      throw new Error(`deno bundle ${entry} failed:\n${new TextDecoder().decode(stderr)}`);
    }
  }
  await Deno.copyFile(new URL("asm/build/gpt2.wasm", ROOT), `${out}/gpt2.wasm`);
  for (const name of [...BUNDLES.map((b) => b.out), "gpt2.wasm"]) {
    sizes[name] = (await Deno.stat(`${out}/${name}`)).size;
  }
  return sizes;
}

/**
 * What is wrong with the bundles in `out`, one line each: a file missing or over its
 * budget, an `import` left in one, an export of the page's API missing.
 */
export async function checkBundles(out: string): Promise<string[]> {
  const problems: string[] = [];
  for (const { out: name, budget } of BUNDLES) {
    let text: string;
    try {
      text = await Deno.readTextFile(`${out}/${name}`);
    } catch {
      problems.push(`${out}/${name} is missing`);
      continue;
    }
    if (text.length < 1000) problems.push(`${name} has ${text.length} bytes: nothing bundled`);
    if (text.length > budget) problems.push(`${name} has ${text.length} bytes, over ${budget}`);
    const left = /^\s*import\b.*$|\bimport\(/m.exec(text);
    if (left) problems.push(`${name} still imports: ${left[0].trim().slice(0, 80)}`);
    if (name === "gpt2.js") {
      const exported = /export\s*\{([^}]*)\}\s*;?\s*$/.exec(text)?.[1] ?? "";
      const names = new Set(exported.split(",").map((s) => s.trim().split(/\s+as\s+/).pop()));
      for (const api of PAGE_API) {
        if (!names.has(api)) problems.push(`gpt2.js does not export ${api}`);
      }
    }
  }
  const kernels = await Deno.readFile(`${out}/gpt2.wasm`).catch(() => undefined);
  const committed = await Deno.readFile(new URL("asm/build/gpt2.wasm", ROOT));
  if (
    !kernels || kernels.length !== committed.length || !kernels.every((b, i) => b === committed[i])
  ) {
    problems.push(`${out}/gpt2.wasm is not asm/build/gpt2.wasm`);
  }
  return problems;
}

async function main(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { out: { type: "string" } }, strict: false });
  if (typeof values.out === "boolean") throw new UsageError("--out needs a folder: --out=DIR");
  const out = values.out ?? new URL("web/dist", ROOT).pathname;
  const sizes = await bundle(out);
  const problems = await checkBundles(out);
  for (const p of problems) console.error(`error: ${p}`);
  if (problems.length > 0) return 1;
  const list = Object.entries(sizes).map(([n, s]) => `${n} ${(s / 1024).toFixed(0)} KiB`);
  console.log(`wrote ${out}: ${list.join(", ")}`);
  return 0;
}

if (import.meta.main) runMain(() => main(Deno.args));
