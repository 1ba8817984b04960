/**
 * Tests for `runtime/download.ts` and `cli/download.ts` against a fake model server on
 * 127.0.0.1 that serves seven small files shaped like OpenAI's.
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { assert, assertEquals, assertRejects, assertThrows } from "./asserts.ts";
import { DownloadError, UsageError } from "../runtime/errors.ts";
import {
  downloadModel,
  type DownloadProgress,
  MODEL_FILES,
  MODEL_SIZES,
  PARTIAL_SUFFIX,
} from "../runtime/download.ts";
import {
  createProgressReporter,
  formatByteRatio,
  formatBytes,
  formatDuration,
  formatProgressBar,
  formatProgressLine,
  parseDownloadArgs,
} from "../cli/download.ts";

const REPO_ROOT = fileURLToPath(new URL("..", import.meta.url));
const VALID_SIZES = MODEL_SIZES.join(", ");

/** Deterministic bytes of a given length, different for each seed. */
function fakeBytes(length: number, seed: number): Uint8Array<ArrayBuffer> {
  const bytes = new Uint8Array(length);
  for (let i = 0; i < length; i++) bytes[i] = (i * 31 + seed * 17) & 0xff;
  return bytes;
}

/** Seven small files with distinct contents; the "weights" span several chunks. */
const FAKE_FILES: Record<string, Uint8Array<ArrayBuffer>> = Object.fromEntries(
  MODEL_FILES.map((file, i) => [
    file,
    file === "model.ckpt.data-00000-of-00001" ? fakeBytes(200_000, i) : fakeBytes(100 + 37 * i, i),
  ]),
);
const DATA_FILE = "model.ckpt.data-00000-of-00001";
const DATA_SIZE = FAKE_FILES[DATA_FILE].length;

/** Sends `bytes` in chunks of `chunkSize`, so that the client sees several reads. */
function chunkedBody(bytes: Uint8Array, chunkSize = 16_384): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      controller.enqueue(bytes.slice(offset, offset + chunkSize));
      offset += chunkSize;
      if (offset >= bytes.length) controller.close();
    },
  });
}

/** Lets a test replace the answer for one file; `undefined` means serve it normally. */
type Override = (file: string, request: Request) => Response | undefined;

interface FakeServer extends AsyncDisposable {
  /** What to pass as `baseUrl`. */
  baseUrl: string;
  /** Every request received, as `"GET encoder.json"`. */
  requests: string[];
}

/** Serves FAKE_FILES at `/gpt-2/models/124M/<file>` on 127.0.0.1. */
function startServer(override?: Override): FakeServer {
  const requests: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const match = new URL(request.url).pathname.match(/^\/gpt-2\/models\/124M\/([^/]+)$/);
    const file = match?.[1] ?? "";
    requests.push(`${request.method} ${file}`);
    const replaced = override?.(file, request);
    if (replaced) return replaced;
    const bytes = FAKE_FILES[file];
    if (!bytes) return new Response("no such file", { status: 404 });
    const headers = { "content-length": String(bytes.length) };
    if (request.method === "HEAD") return new Response(null, { headers });
    return new Response(chunkedBody(bytes), { headers });
  });
  return {
    baseUrl: `http://127.0.0.1:${server.addr.port}/gpt-2`,
    requests,
    [Symbol.asyncDispose]: () => server.shutdown(),
  };
}

interface TempDir extends AsyncDisposable {
  path: string;
}

async function makeTempDir(): Promise<TempDir> {
  const path = await Deno.makeTempDir({ prefix: "download_test_" });
  return { path, [Symbol.asyncDispose]: () => Deno.remove(path, { recursive: true }) };
}

async function listDir(path: string): Promise<string[]> {
  const names: string[] = [];
  for await (const entry of Deno.readDir(path)) names.push(entry.name);
  return names.sort();
}

/** A port nothing listens on: bound, then released. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Runs the CLI as a subprocess from the repository root. */
async function runCli(args: string[]) {
  const output = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-net",
      "--allow-read",
      "--allow-write",
      "--allow-env",
      "cli/download.ts",
      ...args,
    ],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const decoder = new TextDecoder();
  return {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  };
}

// --- downloadModel -----------------------------------------------------------------------

Deno.test("downloadModel() writes all seven files with the served bytes and no .part files", async () => {
  await using server = startServer();
  await using tmp = await makeTempDir();
  const result = await downloadModel("124M", { baseUrl: server.baseUrl, modelsDir: tmp.path });
  const dir = join(tmp.path, "124M");
  assertEquals(result.dir, dir);
  assertEquals(await listDir(dir), [...MODEL_FILES].sort());
  for (const file of MODEL_FILES) {
    assertEquals(await Deno.readFile(join(dir, file)), FAKE_FILES[file], file);
  }
  assertEquals(
    result.files,
    MODEL_FILES.map((file) => ({
      file,
      path: join(dir, file),
      bytes: FAKE_FILES[file].length,
      skipped: false,
    })),
  );
  assertEquals(server.requests, MODEL_FILES.map((file) => `GET ${file}`));
});

Deno.test("downloadModel() skips complete files on a second run and fetches only a wrong-sized one", async () => {
  await using server = startServer();
  await using tmp = await makeTempDir();
  const options = { baseUrl: server.baseUrl, modelsDir: tmp.path };
  await downloadModel("124M", options);

  server.requests.length = 0;
  const states: string[] = [];
  const again = await downloadModel("124M", {
    ...options,
    onProgress: (p) => states.push(`${p.state} ${p.file}`),
  });
  assert(again.files.every((f) => f.skipped));
  assertEquals(server.requests, MODEL_FILES.map((file) => `HEAD ${file}`));
  assertEquals(states, MODEL_FILES.map((file) => `skipped ${file}`));

  // A truncated file is fetched again; the others stay skipped.
  const encoder = join(tmp.path, "124M", "encoder.json");
  await Deno.writeFile(encoder, FAKE_FILES["encoder.json"].subarray(0, 10));
  server.requests.length = 0;
  const repaired = await downloadModel("124M", options);
  assertEquals(server.requests.filter((r) => r.startsWith("GET")), ["GET encoder.json"]);
  assertEquals(repaired.files.filter((f) => !f.skipped).map((f) => f.file), ["encoder.json"]);
  assertEquals(await Deno.readFile(encoder), FAKE_FILES["encoder.json"]);
});

Deno.test("downloadModel() downloads again when the server refuses HEAD", async () => {
  await using server = startServer((_file, request) =>
    request.method === "HEAD" ? new Response(null, { status: 405 }) : undefined
  );
  await using tmp = await makeTempDir();
  const options = { baseUrl: server.baseUrl, modelsDir: tmp.path };
  await downloadModel("124M", options);
  server.requests.length = 0;
  const again = await downloadModel("124M", options);
  assert(again.files.every((f) => !f.skipped));
  assertEquals(server.requests.filter((r) => r.startsWith("GET")).length, MODEL_FILES.length);
  for (const file of MODEL_FILES) {
    assertEquals(await Deno.readFile(join(tmp.path, "124M", file)), FAKE_FILES[file], file);
  }
});

Deno.test("downloadModel() rejects a body shorter than content-length and leaves no file", async () => {
  const sent = 1000;
  await using server = startServer((file, request) => {
    if (file !== DATA_FILE || request.method !== "GET") return undefined;
    return new Response(chunkedBody(FAKE_FILES[DATA_FILE].subarray(0, sent)), {
      headers: { "content-length": String(DATA_SIZE) },
    });
  });
  await using tmp = await makeTempDir();
  const error = await assertRejects(
    () => downloadModel("124M", { baseUrl: server.baseUrl, modelsDir: tmp.path }),
    DownloadError,
    `Cannot download ${DATA_FILE} from ${server.baseUrl}/models/124M/${DATA_FILE}: `,
  );
  assert(error.message.includes(`of ${DATA_SIZE} bytes`), error.message);
  assert(!error.message.includes("\n"));
  // The files before it are complete; it and everything after are absent.
  assertEquals(await listDir(join(tmp.path, "124M")), [
    "checkpoint",
    "encoder.json",
    "hparams.json",
  ]);
});

Deno.test("downloadModel() rejects a body that ends early without an error and leaves no file", async () => {
  // A real HTTP client reports a short body as a read error; a stub fetch can end it cleanly.
  const stub: typeof fetch = (input) => {
    const url = String(input);
    const bytes = FAKE_FILES[url.slice(url.lastIndexOf("/") + 1)];
    return Promise.resolve(
      new Response(bytes.subarray(0, 50), {
        headers: { "content-length": String(bytes.length) },
      }),
    );
  };
  await using tmp = await makeTempDir();
  await assertRejects(
    () =>
      downloadModel("124M", {
        baseUrl: "http://127.0.0.1:9/gpt-2",
        modelsDir: tmp.path,
        fetch: stub,
      }),
    DownloadError,
    `checkpoint from http://127.0.0.1:9/gpt-2/models/124M/checkpoint: body ended early: got 50 of ${FAKE_FILES.checkpoint.length} bytes`,
  );
  assertEquals(await listDir(join(tmp.path, "124M")), []);
});

Deno.test("downloadModel() rejects a dropped connection and leaves no file", async () => {
  await using server = startServer((file, request) => {
    if (file !== DATA_FILE || request.method !== "GET") return undefined;
    let pulls = 0;
    const body = new ReadableStream<Uint8Array>({
      pull(controller) {
        // Half the body, then the connection "drops". Deno.serve logs this error.
        if (pulls++ === 0) controller.enqueue(FAKE_FILES[DATA_FILE].subarray(0, DATA_SIZE / 2));
        else controller.error(new Error("fake connection drop (expected in this test)"));
      },
    });
    return new Response(body, { headers: { "content-length": String(DATA_SIZE) } });
  });
  await using tmp = await makeTempDir();
  const error = await assertRejects(
    () => downloadModel("124M", { baseUrl: server.baseUrl, modelsDir: tmp.path }),
    DownloadError,
    `Cannot download ${DATA_FILE} from ${server.baseUrl}/models/124M/${DATA_FILE}: connection dropped`,
  );
  assert(error.message.includes(`of ${DATA_SIZE} bytes`), error.message);
  const left = await listDir(join(tmp.path, "124M"));
  assert(!left.includes(DATA_FILE), `unexpected ${DATA_FILE}`);
  assert(!left.some((name) => name.endsWith(PARTIAL_SUFFIX)), `left behind: ${left}`);
});

Deno.test("downloadModel() names the file, URL and status of a 404", async () => {
  await using server = startServer((file) =>
    file === "hparams.json" ? new Response("gone", { status: 404 }) : undefined
  );
  await using tmp = await makeTempDir();
  const error = await assertRejects(
    () => downloadModel("124M", { baseUrl: server.baseUrl, modelsDir: tmp.path }),
    DownloadError,
  );
  assertEquals(
    error.message,
    `Cannot download hparams.json from ${server.baseUrl}/models/124M/hparams.json: 404 Not Found`,
  );
  assertEquals(await listDir(join(tmp.path, "124M")), ["checkpoint", "encoder.json"]);
});

Deno.test("downloadModel() rejects an unknown size with the valid sizes, before touching disk", async () => {
  await using tmp = await makeTempDir();
  await assertRejects(
    () => downloadModel("117M", { baseUrl: "http://127.0.0.1:9/gpt-2", modelsDir: tmp.path }),
    UsageError,
    `Unknown model size "117M", expected one of ${VALID_SIZES}`,
  );
  assertEquals(await listDir(tmp.path), []);
});

Deno.test("downloadModel() says it cannot reach a host nothing listens on", async () => {
  const port = freePort();
  await using tmp = await makeTempDir();
  const error = await assertRejects(
    () => downloadModel("124M", { baseUrl: `http://127.0.0.1:${port}/gpt-2`, modelsDir: tmp.path }),
    DownloadError,
    `Cannot download checkpoint from http://127.0.0.1:${port}/gpt-2/models/124M/checkpoint: ` +
      `cannot reach 127.0.0.1:${port}: check your network connection`,
  );
  assert(!error.message.includes("\n"));
  assert(error.cause !== undefined, "the fetch error is kept as the cause");
});

Deno.test("downloadModel() reports progress that rises monotonically to each file's total", async () => {
  await using server = startServer();
  await using tmp = await makeTempDir();
  const events: DownloadProgress[] = [];
  await downloadModel("124M", {
    baseUrl: server.baseUrl,
    modelsDir: tmp.path,
    onProgress: (p) => events.push({ ...p }),
  });
  assertEquals([...new Set(events.map((e) => e.file))], [...MODEL_FILES]);
  for (const file of MODEL_FILES) {
    const mine = events.filter((e) => e.file === file);
    const total = FAKE_FILES[file].length;
    assertEquals(mine[0].received, 0, `${file} starts at 0`);
    for (let i = 1; i < mine.length; i++) {
      assert(mine[i].received >= mine[i - 1].received, `${file} progress went backwards`);
    }
    assert(mine.every((e) => e.total === total && e.bytesPerSecond >= 0));
    assert(mine.every((e) => Number.isFinite(e.bytesPerSecond)));
    assertEquals(mine.map((e) => e.state).filter((s) => s !== "downloading"), ["done"]);
    assertEquals(mine.at(-1)?.state, "done");
    assertEquals(mine.at(-1)?.received, total);
  }
  // The large file arrives in several chunks, each reported.
  assert(events.filter((e) => e.file === DATA_FILE).length > 3);
});

Deno.test("downloadModel() stops when aborted, rejects with the reason and removes the partial file", async () => {
  await using server = startServer();
  await using tmp = await makeTempDir();
  const controller = new AbortController();
  const reason = new Error("stop");
  await assertRejects(
    () =>
      downloadModel("124M", {
        baseUrl: server.baseUrl,
        modelsDir: tmp.path,
        signal: controller.signal,
        onProgress: (p) => {
          if (p.file === DATA_FILE && p.received > 0) controller.abort(reason);
        },
      }),
    Error,
    "stop",
  );
  assertEquals(await listDir(join(tmp.path, "124M")), [
    "checkpoint",
    "encoder.json",
    "hparams.json",
  ]);
});

// --- CLI pieces ------------------------------------------------------------------------

Deno.test("parseDownloadArgs() reads the size and both options, in either form", () => {
  assertEquals(parseDownloadArgs(["124M"]), {
    help: false,
    size: "124M",
    modelsDir: "models",
    baseUrl: "https://openaipublic.blob.core.windows.net/gpt-2",
  });
  assertEquals(
    parseDownloadArgs(["--models_dir", "/tmp/m", "355M", "--base_url=http://127.0.0.1:1/x"]),
    { help: false, size: "355M", modelsDir: "/tmp/m", baseUrl: "http://127.0.0.1:1/x" },
  );
  assertEquals(parseDownloadArgs(["--help"]), { help: true });
  assertEquals(parseDownloadArgs(["124M", "-h"]), { help: true });
});

Deno.test("parseDownloadArgs() rejects bad command lines with one-line usage errors", () => {
  assertThrows(() => parseDownloadArgs(["124M", "--bogus"]), UsageError, "Unknown flag --bogus");
  assertThrows(() => parseDownloadArgs(["124M", "-x"]), UsageError, "Unknown flag -x");
  assertThrows(
    () => parseDownloadArgs([]),
    UsageError,
    `one model size (${VALID_SIZES}), got none`,
  );
  assertThrows(() => parseDownloadArgs(["124M", "355M"]), UsageError, "got 124M 355M");
  assertThrows(() => parseDownloadArgs(["124M", "--models_dir"]), UsageError, "needs a value");
  assertThrows(() => parseDownloadArgs(["124M", "--help=yes"]), UsageError, "takes no value");
  assertThrows(
    () => parseDownloadArgs(["124M", "--base_url", "ftp://example.com"]),
    UsageError,
    "--base_url must be an http or https URL",
  );
});

Deno.test("formatBytes(), formatByteRatio() and formatDuration() pick readable units", () => {
  assertEquals(formatBytes(0), "0 B");
  assertEquals(formatBytes(999), "999 B");
  assertEquals(formatBytes(1_000), "1.0 kB");
  assertEquals(formatBytes(1_042_301), "1.0 MB");
  assertEquals(formatBytes(6_231_652_024), "6.2 GB");
  assertEquals(formatByteRatio(12_345_678, 497_759_232), "12.3/497.8 MB");
  assertEquals(formatByteRatio(12_345, undefined), "12.3 kB");
  assertEquals(formatDuration(0), "0:00");
  assertEquals(formatDuration(59.6), "1:00");
  assertEquals(formatDuration(754), "12:34");
  assertEquals(formatDuration(36_000), "10:00:00");
});

const RUNNING: DownloadProgress = {
  file: DATA_FILE,
  received: 124_000_000,
  total: 497_759_232,
  bytesPerSecond: 10_000_000,
  state: "downloading",
};

Deno.test("formatProgressBar() shows bar, bytes, rate and time left, and never wraps", () => {
  assertEquals(
    formatProgressBar(RUNNING, 100),
    `${DATA_FILE} [${"#".repeat(7)}${"-".repeat(22)}] 124.0/497.8 MB 10.0 MB/s 0:37 left`,
  );
  for (let columns = 0; columns <= 200; columns++) {
    for (const state of ["downloading", "done", "skipped"] as const) {
      const line = formatProgressBar({ ...RUNNING, state }, columns);
      assert(line.length <= Math.max(0, columns - 1), `${line.length} chars in ${columns}`);
    }
  }
  // Too narrow for a bar: a percentage instead.
  assert(formatProgressBar(RUNNING, 75).startsWith(`${DATA_FILE}  24% 124.0/497.8 MB`));
  // Unknown total: neither bar nor time left.
  const unknown = formatProgressBar({ ...RUNNING, total: undefined }, 120);
  assertEquals(unknown, `${DATA_FILE} 124.0 MB 10.0 MB/s --:-- left`);
  assert(
    formatProgressBar({ ...RUNNING, received: RUNNING.total!, state: "done" }, 120)
      .endsWith("] 497.8/497.8 MB 10.0 MB/s done"),
  );
});

Deno.test("formatProgressLine() says what happened to a file in plain text", () => {
  assertEquals(
    formatProgressLine({ ...RUNNING, received: 497_759_232, state: "done" }),
    `${DATA_FILE}: downloaded 497.8 MB (10.0 MB/s)`,
  );
  assertEquals(
    formatProgressLine({ ...RUNNING, file: "vocab.bpe", received: 456_318, state: "skipped" }),
    "vocab.bpe: already complete (456.3 kB), skipped",
  );
  assertEquals(
    formatProgressLine({ ...RUNNING, file: "vocab.bpe", received: 1000, total: undefined }),
    "vocab.bpe: 1.0 kB",
  );
});

Deno.test("createProgressReporter() on a terminal redraws at most every 100 ms and ends lines", () => {
  let clock = 0;
  const out: string[] = [];
  const reporter = createProgressReporter({
    terminal: true,
    write: (text) => out.push(text),
    now: () => clock,
    columns: () => 100,
  });
  for (let i = 0; i <= 100; i++) {
    clock = i * 10; // a report every 10 ms for a second
    reporter.onProgress({ ...RUNNING, received: i * 1_000_000 });
  }
  reporter.onProgress({ ...RUNNING, received: RUNNING.total!, state: "done" });
  assert(out.length >= 10 && out.length <= 12, `${out.length} writes`);
  assert(out.every((text) => text.startsWith("\r")));
  assert(out.slice(0, -1).every((text) => !text.includes("\n")));
  assert(out.at(-1)!.endsWith("\n") && out.at(-1)!.includes("done"));

  // A bar left open by a failure is closed by end(), once.
  out.length = 0;
  reporter.onProgress({ ...RUNNING, file: "vocab.bpe", received: 0 });
  reporter.end();
  reporter.end();
  assertEquals(out.filter((text) => text === "\n").length, 1);
});

Deno.test("createProgressReporter() off a terminal writes one plain line per finished file", () => {
  const out: string[] = [];
  const reporter = createProgressReporter({ terminal: false, write: (text) => out.push(text) });
  reporter.onProgress({
    ...RUNNING,
    file: "checkpoint",
    received: 77,
    total: 77,
    state: "skipped",
  });
  for (let i = 0; i < 50; i++) reporter.onProgress({ ...RUNNING, received: i });
  reporter.onProgress({ ...RUNNING, received: RUNNING.total!, state: "done" });
  reporter.end();
  assertEquals(out, [
    "checkpoint: already complete (77 B), skipped\n",
    `${DATA_FILE}: downloaded 497.8 MB (10.0 MB/s)\n`,
  ]);
});

// --- CLI as a subprocess ---------------------------------------------------------------

Deno.test("CLI: an unknown flag exits 1 with one error line and no stack trace", async () => {
  const { code, stdout, stderr } = await runCli(["124M", "--bogus"]);
  assertEquals(code, 1);
  assertEquals(stdout, "");
  assertEquals(stderr, "error: Unknown flag --bogus, see --help\n");
});

Deno.test("CLI: an unknown size exits 1 and lists the valid sizes", async () => {
  const { code, stderr } = await runCli(["117M"]);
  assertEquals(code, 1);
  assertEquals(stderr.trimEnd().split("\n").length, 1);
  assert(stderr.startsWith("error: ") && stderr.includes(VALID_SIZES), stderr);
});

Deno.test("CLI: --help prints the usage and exits 0", async () => {
  const { code, stdout } = await runCli(["--help"]);
  assertEquals(code, 0);
  assert(stdout.startsWith("usage: deno task download <size>"), stdout);
});

Deno.test("CLI: downloads from a local server with one plain progress line per file", async () => {
  await using server = startServer();
  await using tmp = await makeTempDir();
  const args = ["124M", "--models_dir", tmp.path, "--base_url", server.baseUrl];
  const first = await runCli(args);
  assertEquals(first.code, 0, first.stderr);
  assert(
    !first.stderr.includes("\r") && !first.stderr.includes("\x1b"),
    "no carriage returns or escape codes off a terminal",
  );
  const lines = first.stderr.trimEnd().split("\n");
  assertEquals(lines.length, MODEL_FILES.length, first.stderr);
  lines.forEach((line, i) => assert(line.startsWith(`${MODEL_FILES[i]}: downloaded `), line));
  assertEquals(first.stdout, `GPT-2 124M is in ${join(tmp.path, "124M")}\n`);
  for (const file of MODEL_FILES) {
    assertEquals(await Deno.readFile(join(tmp.path, "124M", file)), FAKE_FILES[file], file);
  }

  const second = await runCli(args);
  assertEquals(second.code, 0, second.stderr);
  const skipped = second.stderr.trimEnd().split("\n");
  assertEquals(
    skipped,
    MODEL_FILES.map((f) =>
      `${f}: already complete (${formatBytes(FAKE_FILES[f].length)}), skipped`
    ),
  );
  assert(second.stdout.includes("(7 of 7 already complete)"), second.stdout);
});
