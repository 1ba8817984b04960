/**
 * The package as another project sees it: `deno publish --dry-run` passes (no slow types)
 * and lists no tests, fixtures or benchmarks; and the files it lists, served alone over
 * HTTP as JSR would serve them, are enough for a Deno program that imports `mod.ts` by URL
 * to load a model and generate the same tokens as the local import.
 */
import { assert, assertEquals } from "./asserts.ts";
import { loadModel } from "../mod.ts";
import { writeTestModel } from "./serve_harness.ts";
import { serveHandlerOnLoopback } from "../testing/loopback_server.ts";

const ROOT = new URL("../", import.meta.url);

/** Runs `deno <args>` in the project's folder; its exit code and output. */
async function deno(args: string[], cwd = ROOT.pathname) {
  const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
    args,
    cwd,
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
  }).output();
  const text = new TextDecoder();
  return { code, stdout: text.decode(stdout), out: text.decode(stdout) + text.decode(stderr) };
}

/** The files `deno publish --dry-run` would publish, relative to the project's folder. */
async function publishedFiles(): Promise<string[]> {
  const { code, out } = await deno(["publish", "--dry-run", "--allow-dirty"]);
  assertEquals(code, 0, `deno publish --dry-run failed:\n${out}`);
  return [...out.matchAll(/^\s*file:\/\/(\S+) \(/gm)].map((m) => m[1].slice(ROOT.pathname.length));
}

Deno.test("deno publish --dry-run passes and the package holds the library, not its tests", async () => {
  const files = await publishedFiles();
  for (const needed of ["LICENSE", "README.md", "deno.json", "mod.ts", "asm/build/gpt2.wasm"]) {
    assert(files.includes(needed), `the package holds ${needed}: ${files.join(", ")}`);
  }
  const stray = files.filter((f) => /^(tests|bench|testing|\.ci|models)\/|_test\.ts$/.test(f));
  assertEquals(stray, [], "no tests, fixtures, benchmarks or models in the package");
});

Deno.test("deno doc --lint passes for every module deno.json exports", async () => {
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", ROOT)));
  const modules = Object.values(config.exports as Record<string, string>);
  assert(modules.includes("./mod.ts"), `exports: ${modules.join(", ")}`);
  const { code, out } = await deno(["doc", "--lint", ...modules]);
  assertEquals(code, 0, `deno doc --lint ${modules.join(" ")}:\n${out}`);
});

Deno.test("a program that imports the published files over HTTP generates as the local import does", async () => {
  const files = new Set(await publishedFiles());
  const dir = await writeTestModel();
  await using server = await serveHandlerOnLoopback(async (request) => {
    const path = decodeURIComponent(new URL(request.url).pathname.slice(1));
    if (!files.has(path)) return new Response("not in the package", { status: 404 });
    return new Response(await Deno.readFile(new URL(path, ROOT)));
  });
  const port = new URL(server.url).port;
  try {
    using model = await loadModel(dir, { threads: 2 });
    const ids = model.tokenizer.encode("Hello there");
    const local: number[] = [];
    for await (const id of model.generate(ids, { length: 12, temperature: 0 })) local.push(id);

    const script = await Deno.makeTempFile({ suffix: ".ts" });
    await Deno.writeTextFile(
      script,
      `import { loadModel } from "http://127.0.0.1:${port}/mod.ts";
using model = await loadModel(${JSON.stringify(dir)}, { threads: 2 });
const ids = [];
for await (const id of model.generate(${JSON.stringify(ids)}, { length: 12, temperature: 0 })) {
  ids.push(id);
}
console.log(JSON.stringify(ids));`,
    );
    const { code, stdout, out } = await deno([
      "run",
      "--no-config",
      "--no-lock",
      `--allow-import=127.0.0.1:${port}`,
      `--allow-net=127.0.0.1:${port}`,
      `--allow-read=${dir}`,
      script,
    ], dir);
    await Deno.remove(script);
    assertEquals(code, 0, out);
    assertEquals(JSON.parse(stdout), local);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
