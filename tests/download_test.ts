/**
 * Tests for `runtime/download.ts` and `cli/download.ts` against a fake model server on
 * 127.0.0.1 that serves seven small files shaped like OpenAI's.
 */
import { fileURLToPath } from "node:url";
import { join } from "node:path";
import { assert, assertEquals, assertRejects, assertThrows } from "./asserts.ts";
import { DownloadError } from "../runtime/errors.ts";
import { UsageError } from "../cli/usage_error.ts";
import {
  downloadModel,
  type DownloadProgress,
  MODEL_FILES,
  MODEL_SIZES,
  parseContentRange,
  PARTIAL_SUFFIX,
} from "../runtime/io/download.ts";
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

/**
 * Sends `bytes` in chunks of `chunkSize`, so that the client sees several reads; `onSend`
 * is told the size of each chunk handed to the connection.
 */
function chunkedBody(
  bytes: Uint8Array,
  chunkSize = 16_384,
  onSend?: (bytes: number) => void,
): ReadableStream<Uint8Array> {
  let offset = 0;
  return new ReadableStream({
    pull(controller) {
      const chunk = bytes.slice(offset, offset + chunkSize);
      controller.enqueue(chunk);
      onSend?.(chunk.length);
      offset += chunkSize;
      if (offset >= bytes.length) controller.close();
    },
  });
}

/** Sends the first `cut` bytes of `bytes`, then fails, so that the connection drops. */
function cutBody(
  bytes: Uint8Array,
  cut: number,
  onSend?: (bytes: number) => void,
): ReadableStream<Uint8Array> {
  let sent = false;
  return new ReadableStream({
    pull(controller) {
      // Deno.serve logs this error.
      if (sent) controller.error(new Error("fake connection drop (expected in this test)"));
      else controller.enqueue(bytes.slice(0, cut));
      if (!sent) onSend?.(cut);
      sent = true;
    },
  });
}

/** Lets a test replace the answer for one file; `undefined` means serve it normally. */
type Override = (file: string, request: Request) => Response | undefined;

interface ServerOptions {
  /** Replaces the answer to some requests. */
  override?: Override;
  /** Answers `Range: bytes=<start>-` with 206 (or 416 past the end); otherwise ignores it. */
  ranges?: boolean;
  /** The first GET of the data file sends this many bytes, then the connection drops. */
  cutAt?: number;
}

interface FakeServer extends AsyncDisposable {
  /** What to pass as `baseUrl`. */
  baseUrl: string;
  /** Every request received, as `"GET encoder.json"`, or `"GET encoder.json bytes=10-"`. */
  requests: string[];
  /** Body bytes handed to the connection for each file, summed over requests. */
  sent: Record<string, number>;
}

/** Serves FAKE_FILES at `/gpt-2/models/124M/<file>` on 127.0.0.1. */
function startServer(options: ServerOptions = {}): FakeServer {
  const { override, ranges = false } = options;
  let cutAt = options.cutAt;
  const requests: string[] = [];
  const sent: Record<string, number> = {};
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, (request) => {
    const match = new URL(request.url).pathname.match(/^\/gpt-2\/models\/124M\/([^/]+)$/);
    const file = match?.[1] ?? "";
    const range = request.headers.get("range");
    requests.push(`${request.method} ${file}${range === null ? "" : ` ${range}`}`);
    const replaced = override?.(file, request);
    if (replaced) return replaced;
    const bytes = FAKE_FILES[file];
    if (!bytes) return new Response("no such file", { status: 404 });
    const size = bytes.length;
    const count = (n: number) => sent[file] = (sent[file] ?? 0) + n;
    const from = ranges ? range?.match(/^bytes=(\d+)-$/) : null;
    if (from) {
      const start = Number(from[1]);
      if (start >= size) {
        return new Response(null, { status: 416, headers: { "content-range": `bytes */${size}` } });
      }
      const headers = {
        "content-length": String(size - start),
        "content-range": `bytes ${start}-${size - 1}/${size}`,
      };
      if (request.method === "HEAD") return new Response(null, { status: 206, headers });
      return new Response(chunkedBody(bytes.subarray(start), 16_384, count), {
        status: 206,
        headers,
      });
    }
    const headers = { "content-length": String(size) };
    if (request.method === "HEAD") return new Response(null, { headers });
    if (file === DATA_FILE && cutAt !== undefined) {
      const body = cutBody(bytes, cutAt, count);
      cutAt = undefined;
      return new Response(body, { headers });
    }
    return new Response(chunkedBody(bytes, 16_384, count), { headers });
  });
  return {
    baseUrl: `http://127.0.0.1:${server.addr.port}/gpt-2`,
    requests,
    sent,
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

/** Where the data file's partial download lies under the models folder `modelsDir`. */
function partPath(modelsDir: string): string {
  return join(modelsDir, "124M", DATA_FILE + PARTIAL_SUFFIX);
}

/** Checks that the data file's `.part` file holds a beginning of it; returns its length. */
async function assertPrefixPart(modelsDir: string): Promise<number> {
  const part = await Deno.readFile(partPath(modelsDir));
  assert(part.length < DATA_SIZE, `${part.length} bytes in the .part file`);
  assertEquals(part, FAKE_FILES[DATA_FILE].subarray(0, part.length));
  return part.length;
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
  await using server = startServer({
    override: (_file, request) =>
      request.method === "HEAD" ? new Response(null, { status: 405 }) : undefined,
  });
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

Deno.test("downloadModel() rejects a body shorter than content-length and keeps it only as .part", async () => {
  const sent = 1000;
  await using server = startServer({
    override: (file, request) => {
      if (file !== DATA_FILE || request.method !== "GET") return undefined;
      return new Response(chunkedBody(FAKE_FILES[DATA_FILE].subarray(0, sent)), {
        headers: { "content-length": String(DATA_SIZE) },
      });
    },
  });
  await using tmp = await makeTempDir();
  const error = await assertRejects(
    () => downloadModel("124M", { baseUrl: server.baseUrl, modelsDir: tmp.path }),
    DownloadError,
    `Cannot download ${DATA_FILE} from ${server.baseUrl}/models/124M/${DATA_FILE}: `,
  );
  assert(error.message.includes(`of ${DATA_SIZE} bytes`), error.message);
  assert(error.message.endsWith(`; run again to resume from ${partPath(tmp.path)}`), error.message);
  assert(!error.message.includes("\n"));
  // The files before it are complete; it is only a .part file holding what arrived.
  assertEquals(await listDir(join(tmp.path, "124M")), [
    "checkpoint",
    "encoder.json",
    "hparams.json",
    DATA_FILE + PARTIAL_SUFFIX,
  ]);
  await assertPrefixPart(tmp.path);
});

Deno.test("downloadModel() rejects a body that ends early without an error and leaves no final file", async () => {
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
    `checkpoint from http://127.0.0.1:9/gpt-2/models/124M/checkpoint: body ended early: got 50 of ${FAKE_FILES.checkpoint.length} bytes; run again to resume`,
  );
  assertEquals(await listDir(join(tmp.path, "124M")), ["checkpoint" + PARTIAL_SUFFIX]);
});

Deno.test("downloadModel() rejects a body longer than content-length and removes its .part file", async () => {
  const stub: typeof fetch = (input) => {
    const url = String(input);
    const bytes = FAKE_FILES[url.slice(url.lastIndexOf("/") + 1)];
    const body = new Uint8Array(bytes.length + 10);
    body.set(bytes);
    return Promise.resolve(
      new Response(body, { headers: { "content-length": String(bytes.length) } }),
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
    `checkpoint from http://127.0.0.1:9/gpt-2/models/124M/checkpoint: body longer than the ${FAKE_FILES.checkpoint.length} bytes announced; run again to start over`,
  );
  assertEquals(await listDir(join(tmp.path, "124M")), []);
});

Deno.test("downloadModel() rejects a dropped connection and keeps the bytes received as .part", async () => {
  await using server = startServer({ cutAt: DATA_SIZE / 2 });
  await using tmp = await makeTempDir();
  const error = await assertRejects(
    () => downloadModel("124M", { baseUrl: server.baseUrl, modelsDir: tmp.path }),
    DownloadError,
    `Cannot download ${DATA_FILE} from ${server.baseUrl}/models/124M/${DATA_FILE}: connection dropped`,
  );
  assert(error.message.includes(`of ${DATA_SIZE} bytes`), error.message);
  assert(error.message.endsWith(`; run again to resume from ${partPath(tmp.path)}`), error.message);
  assert(!error.message.includes("\n"));
  const left = await listDir(join(tmp.path, "124M"));
  assert(!left.includes(DATA_FILE), `unexpected ${DATA_FILE}`);
  await assertPrefixPart(tmp.path);
});

Deno.test("downloadModel() names the file, URL and status of a 404", async () => {
  await using server = startServer({
    override: (file) => file === "hparams.json" ? new Response("gone", { status: 404 }) : undefined,
  });
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
    RangeError,
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
    assert(mine.every((e) => e.resumedFrom === 0), `${file} was not resumed`);
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

Deno.test("downloadModel() stops when aborted, rejects with the reason and keeps the .part file to resume", async () => {
  await using server = startServer({ ranges: true });
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
    DATA_FILE + PARTIAL_SUFFIX,
  ]);
  const kept = await assertPrefixPart(tmp.path);
  assert(kept > 0, "the first chunk was written before the abort");

  // The next run asks only for the rest.
  server.requests.length = 0;
  await downloadModel("124M", { baseUrl: server.baseUrl, modelsDir: tmp.path });
  assert(server.requests.includes(`GET ${DATA_FILE} bytes=${kept}-`), `${server.requests}`);
  assertEquals(await Deno.readFile(join(tmp.path, "124M", DATA_FILE)), FAKE_FILES[DATA_FILE]);
});

// --- Resuming from a .part file ----------------------------------------------------------

/** The data file's progress reports, and the checks every resumed download must pass. */
function dataProgress(events: DownloadProgress[]): DownloadProgress[] {
  const mine = events.filter((e) => e.file === DATA_FILE);
  for (let i = 1; i < mine.length; i++) {
    assert(mine[i].received >= mine[i - 1].received, "progress went backwards");
    assertEquals(mine[i].resumedFrom, mine[0].resumedFrom);
  }
  assert(mine.every((e) => e.total === DATA_SIZE && Number.isFinite(e.bytesPerSecond)));
  assertEquals(mine.at(-1)?.state, "done");
  assertEquals(mine.at(-1)?.received, DATA_SIZE);
  return mine;
}

Deno.test("downloadModel() resumes a dropped download with Range and is sent only the rest", async () => {
  await using server = startServer({ ranges: true, cutAt: 70_000 });
  await using tmp = await makeTempDir();
  const options = { baseUrl: server.baseUrl, modelsDir: tmp.path };
  await assertRejects(() => downloadModel("124M", options), DownloadError, "connection dropped");
  const kept = await assertPrefixPart(tmp.path);
  assert(kept > 0, "some bytes arrived before the drop");

  server.requests.length = 0;
  delete server.sent[DATA_FILE];
  const events: DownloadProgress[] = [];
  const result = await downloadModel("124M", { ...options, onProgress: (p) => events.push(p) });
  assertEquals(server.requests.filter((r) => r.includes(DATA_FILE)), [
    `GET ${DATA_FILE} bytes=${kept}-`,
  ]);
  assertEquals(server.sent[DATA_FILE], DATA_SIZE - kept, "bytes the server re-sent");
  assertEquals(await Deno.readFile(join(tmp.path, "124M", DATA_FILE)), FAKE_FILES[DATA_FILE]);
  assert(!(await listDir(join(tmp.path, "124M"))).some((name) => name.endsWith(PARTIAL_SUFFIX)));
  assertEquals(result.files.find((f) => f.file === DATA_FILE)?.bytes, DATA_SIZE);

  // The progress bar starts at the resumed bytes and counts the rest on top of them.
  const mine = dataProgress(events);
  // Its rate counts only new bytes: none yet at the first report.
  assertEquals(mine[0], {
    ...mine[0],
    received: kept,
    resumedFrom: kept,
    bytesPerSecond: 0,
    state: "downloading",
  });
  assert(mine.length > 2, "the rest arrives in several chunks");
  const line = formatProgressLine(mine.at(-1)!);
  assert(line.startsWith(`${DATA_FILE}: downloaded 200.0 kB, resumed at `), line);
});

Deno.test("downloadModel() starts over from byte 0 when the server ignores Range", async () => {
  await using server = startServer({ ranges: false });
  await using tmp = await makeTempDir();
  await Deno.mkdir(join(tmp.path, "124M"));
  // Wrong bytes in the .part file: only a truncated restart gives the right file.
  await Deno.writeFile(partPath(tmp.path), new Uint8Array(150_000).fill(0xee));
  const events: DownloadProgress[] = [];
  await downloadModel("124M", {
    baseUrl: server.baseUrl,
    modelsDir: tmp.path,
    onProgress: (p) => events.push(p),
  });
  assert(server.requests.includes(`GET ${DATA_FILE} bytes=150000-`), `${server.requests}`);
  assertEquals(server.sent[DATA_FILE], DATA_SIZE);
  assertEquals(await Deno.readFile(join(tmp.path, "124M", DATA_FILE)), FAKE_FILES[DATA_FILE]);
  const mine = dataProgress(events);
  assertEquals(mine[0].received, 0);
  assertEquals(mine[0].resumedFrom, 0);
});

Deno.test("downloadModel() resumes a dropped download from a server without Range by starting over", async () => {
  await using server = startServer({ ranges: false, cutAt: 70_000 });
  await using tmp = await makeTempDir();
  const options = { baseUrl: server.baseUrl, modelsDir: tmp.path };
  await assertRejects(() => downloadModel("124M", options), DownloadError, "connection dropped");
  const kept = await assertPrefixPart(tmp.path);
  delete server.sent[DATA_FILE];
  await downloadModel("124M", options);
  assert(server.requests.includes(`GET ${DATA_FILE} bytes=${kept}-`), `${server.requests}`);
  assertEquals(server.sent[DATA_FILE], DATA_SIZE);
  assertEquals(await Deno.readFile(join(tmp.path, "124M", DATA_FILE)), FAKE_FILES[DATA_FILE]);
});

Deno.test("downloadModel() starts over cleanly when the .part file is larger than the file", async () => {
  for (const ranges of [true, false]) {
    await using server = startServer({ ranges });
    await using tmp = await makeTempDir();
    await Deno.mkdir(join(tmp.path, "124M"));
    await Deno.writeFile(partPath(tmp.path), new Uint8Array(DATA_SIZE + 1000).fill(0xee));
    await downloadModel("124M", { baseUrl: server.baseUrl, modelsDir: tmp.path });
    const asked = server.requests.filter((r) => r.includes(DATA_FILE));
    // A server with Range answers 416 and is asked again for the whole file.
    const expected = ranges
      ? [`GET ${DATA_FILE} bytes=${DATA_SIZE + 1000}-`, `GET ${DATA_FILE}`]
      : [`GET ${DATA_FILE} bytes=${DATA_SIZE + 1000}-`];
    assertEquals(asked, expected, `ranges: ${ranges}`);
    assertEquals(server.sent[DATA_FILE], DATA_SIZE);
    assertEquals(await Deno.readFile(join(tmp.path, "124M", DATA_FILE)), FAKE_FILES[DATA_FILE]);
    assertEquals(await listDir(join(tmp.path, "124M")), [...MODEL_FILES].sort());
  }
});

Deno.test("downloadModel() renames a .part file that is already complete without fetching it again", async () => {
  // The server's 416 says the size in Content-Range, or (second case) not at all.
  for (const withSize of [true, false]) {
    await using server = startServer({
      ranges: true,
      override: (file, request) =>
        !withSize && file === DATA_FILE && request.headers.has("range")
          ? new Response(null, { status: 416 })
          : undefined,
    });
    await using tmp = await makeTempDir();
    await Deno.mkdir(join(tmp.path, "124M"));
    await Deno.writeFile(partPath(tmp.path), FAKE_FILES[DATA_FILE]);
    const events: DownloadProgress[] = [];
    await downloadModel("124M", {
      baseUrl: server.baseUrl,
      modelsDir: tmp.path,
      onProgress: (p) => events.push(p),
    });
    const asked = server.requests.filter((r) => r.includes(DATA_FILE));
    const expected = [`GET ${DATA_FILE} bytes=${DATA_SIZE}-`];
    assertEquals(asked, withSize ? expected : [...expected, `HEAD ${DATA_FILE}`]);
    assertEquals(server.sent[DATA_FILE], undefined, "no bytes sent");
    assertEquals(await Deno.readFile(join(tmp.path, "124M", DATA_FILE)), FAKE_FILES[DATA_FILE]);
    const mine = dataProgress(events);
    assertEquals(mine.map((e) => e.state), ["done"]);
    assertEquals(mine[0].resumedFrom, DATA_SIZE);
    assertEquals(
      formatProgressLine(mine[0]),
      `${DATA_FILE}: completed from its .part file (200.0 kB)`,
    );
  }
});

Deno.test("downloadModel() starts over when a 206 answer does not continue the .part file exactly", async () => {
  // A wrong total could mean the file changed on the server, or a broken server: either way
  // the .part file cannot be trusted to be the beginning of what it sends now, so the file
  // is fetched whole (and checked against its content-length) rather than failing.
  const kept = 50_000;
  const whole = FAKE_FILES[DATA_FILE];
  const rest = whole.subarray(kept);
  // Each answer: its headers and its body, self-consistent where only one thing is wrong.
  const answers: Record<string, [Record<string, string>, Uint8Array<ArrayBuffer>]> = {
    "a wrong total": [{ "content-range": `bytes ${kept}-${DATA_SIZE - 1}/${DATA_SIZE + 1}` }, rest],
    "a total past the end": [
      { "content-range": `bytes ${kept}-${DATA_SIZE - 1}/${DATA_SIZE - 1}` },
      rest,
    ],
    "another start": [{ "content-range": `bytes 0-${DATA_SIZE - 1}/${DATA_SIZE}` }, whole],
    "no content-range": [{}, rest],
    "a length that disagrees": [
      { "content-range": `bytes ${kept}-${DATA_SIZE - 1}/${DATA_SIZE}` },
      rest.subarray(1),
    ],
  };
  for (const [what, [headers, body]] of Object.entries(answers)) {
    await using server = startServer({
      override: (file, request) =>
        file === DATA_FILE && request.headers.has("range")
          ? new Response(body.slice(), { status: 206, headers })
          : undefined,
    });
    await using tmp = await makeTempDir();
    await Deno.mkdir(join(tmp.path, "124M"));
    await Deno.writeFile(partPath(tmp.path), FAKE_FILES[DATA_FILE].subarray(0, kept));
    await downloadModel("124M", { baseUrl: server.baseUrl, modelsDir: tmp.path });
    assertEquals(
      server.requests.filter((r) => r.includes(DATA_FILE)),
      [`GET ${DATA_FILE} bytes=${kept}-`, `GET ${DATA_FILE}`],
      what,
    );
    assertEquals(
      await Deno.readFile(join(tmp.path, "124M", DATA_FILE)),
      FAKE_FILES[DATA_FILE],
      what,
    );
  }
});

Deno.test("downloadModel() keeps the .part file when a resumed request fails with a status", async () => {
  await using server = startServer({
    override: (file, request) =>
      file === DATA_FILE && request.headers.has("range")
        ? new Response("busy", { status: 503 })
        : undefined,
  });
  await using tmp = await makeTempDir();
  await Deno.mkdir(join(tmp.path, "124M"));
  const part = FAKE_FILES[DATA_FILE].subarray(0, 1234);
  await Deno.writeFile(partPath(tmp.path), part);
  await assertRejects(
    () => downloadModel("124M", { baseUrl: server.baseUrl, modelsDir: tmp.path }),
    DownloadError,
    `Cannot download ${DATA_FILE} from ${server.baseUrl}/models/124M/${DATA_FILE}: 503 Service Unavailable`,
  );
  assertEquals(await Deno.readFile(partPath(tmp.path)), part);
});

Deno.test("parseContentRange() reads byte ranges and rejects malformed ones", () => {
  assertEquals(parseContentRange("bytes 0-9/10"), { start: 0, end: 9, total: 10 });
  assertEquals(parseContentRange("Bytes 5-9/*"), { start: 5, end: 9, total: undefined });
  assertEquals(parseContentRange("bytes */10"), { start: undefined, end: undefined, total: 10 });
  for (const bad of [null, "", "bytes 9-5/10", "bytes 0-10/10", "bytes */*", "items 0-9/10"]) {
    assertEquals(parseContentRange(bad), undefined, String(bad));
  }
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
  assertThrows(
    () => parseDownloadArgs(["117M"]),
    UsageError,
    `Unknown model size "117M": give one of ${VALID_SIZES}`,
  );
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
  resumedFrom: 0,
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
  assertEquals(
    formatProgressLine({
      ...RUNNING,
      received: 497_759_232,
      resumedFrom: 300_000_000,
      state: "done",
    }),
    `${DATA_FILE}: downloaded 497.8 MB, resumed at 300.0 MB (10.0 MB/s)`,
  );
  assertEquals(
    formatProgressLine({
      ...RUNNING,
      received: 497_759_232,
      resumedFrom: 497_759_232,
      bytesPerSecond: 0,
      state: "done",
    }),
    `${DATA_FILE}: completed from its .part file (497.8 MB)`,
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

Deno.test("CLI: resumes a file from its .part file and says where it resumed", async () => {
  await using server = startServer({ ranges: true });
  await using tmp = await makeTempDir();
  await Deno.mkdir(join(tmp.path, "124M"));
  await Deno.writeFile(partPath(tmp.path), FAKE_FILES[DATA_FILE].subarray(0, 80_000));
  const { code, stderr } = await runCli([
    "124M",
    "--models_dir",
    tmp.path,
    "--base_url",
    server.baseUrl,
  ]);
  assertEquals(code, 0, stderr);
  const line = stderr.split("\n").find((l) => l.startsWith(DATA_FILE));
  assert(line?.startsWith(`${DATA_FILE}: downloaded 200.0 kB, resumed at 80.0 kB (`), stderr);
  assertEquals(server.sent[DATA_FILE], DATA_SIZE - 80_000);
  assertEquals(await Deno.readFile(join(tmp.path, "124M", DATA_FILE)), FAKE_FILES[DATA_FILE]);
});
