/**
 * `deno task download <size>`: fetches a GPT-2 checkpoint into `models/<size>/`, with a
 * progress bar per file on a terminal and one plain line per file otherwise.
 *
 * @module
 */
import { describeFlags, type FlagSpec, parseFlagsAndArguments } from "./flags.ts";
import { runMain } from "./run_main.ts";
import { UsageError } from "./usage_error.ts";
import {
  DEFAULT_BASE_URL,
  downloadModel,
  type DownloadProgress,
  isModelSize,
  MODEL_FILES,
  MODEL_SIZES,
  PARTIAL_SUFFIX,
} from "../runtime/io/download.ts";

/** The flags of `deno task download`. */
export const DOWNLOAD_FLAGS = {
  models_dir: {
    type: "string",
    default: "models",
    help: "folder holding one subfolder per model size",
  },
  base_url: { type: "string", default: DEFAULT_BASE_URL, help: "where the files are served from" },
} as const satisfies Record<string, FlagSpec>;

/** The text `--help` prints. */
export const USAGE = `usage: deno task download <size> [--models_dir=models] [--base_url=URL]

Downloads OpenAI's GPT-2 checkpoint of the given size into <models_dir>/<size>/.
Files already complete are skipped, and a file cut short resumes from its .part
file, so an interrupted download continues when run again.

arguments:
  <size>  one of ${MODEL_SIZES.join(", ")}

flags:
${describeFlags(DOWNLOAD_FLAGS)}`;

/** The command line, parsed: either a request for help or what to download and where. */
export type DownloadArgs =
  | { help: true }
  | { help: false; size: string; modelsDir: string; baseUrl: string };

/**
 * Parses the CLI's arguments.
 *
 * @throws {UsageError} on an unknown flag, a flag without its value, a malformed
 *   `--base_url`, or not exactly one published model size
 *
 * @example
 * ```ts
 * import { parseDownloadArgs } from "./download.ts";
 * import { DEFAULT_BASE_URL } from "../runtime/io/download.ts";
 * import assert from "node:assert/strict";
 * const args = parseDownloadArgs(["355M", "--models_dir", "/tmp/models"]);
 * assert.deepEqual(args, {
 *   help: false,
 *   size: "355M",
 *   modelsDir: "/tmp/models",
 *   baseUrl: DEFAULT_BASE_URL,
 * });
 * ```
 */
export function parseDownloadArgs(args: string[]): DownloadArgs {
  const parsed = parseFlagsAndArguments(args, DOWNLOAD_FLAGS);
  if (parsed === "help") return { help: true };
  const { flags, args: sizes } = parsed;
  if (sizes.length !== 1) {
    const got = sizes.length === 0 ? "none" : sizes.join(" ");
    throw new UsageError(
      `Expected one model size (${MODEL_SIZES.join(", ")}), got ${got}; see --help`,
    );
  }
  if (!isModelSize(sizes[0])) {
    throw new UsageError(
      `Unknown model size "${sizes[0]}": give one of ${MODEL_SIZES.join(", ")}`,
    );
  }
  if (!/^https?:$/.test(URL.parse(flags.base_url)?.protocol ?? "")) {
    throw new UsageError(`--base_url must be an http or https URL, got "${flags.base_url}"`);
  }
  return { help: false, size: sizes[0], modelsDir: flags.models_dir, baseUrl: flags.base_url };
}

/**
 * A byte count in decimal units, as downloads are usually measured.
 *
 * @example
 * ```ts
 * import { formatBytes } from "./download.ts";
 * import assert from "node:assert/strict";
 * assert.equal(formatBytes(77), "77 B");
 * assert.equal(formatBytes(497_759_232), "497.8 MB");
 * ```
 */
export function formatBytes(bytes: number): string {
  const [value, unit] = scaleBytes(bytes, bytes);
  return `${value} ${unit}`;
}

/**
 * `received/total unit`, both in the unit that suits `total`, e.g. `"12.3/497.8 MB"`; just
 * the received bytes when the total is unknown.
 */
export function formatByteRatio(received: number, total: number | undefined): string {
  if (total === undefined) return formatBytes(received);
  const [value, unit] = scaleBytes(total, total);
  const [part] = scaleBytes(received, total);
  return `${part}/${value} ${unit}`;
}

const UNITS = [[1e9, "GB"], [1e6, "MB"], [1e3, "kB"]] as const;

/** `bytes` in the unit that suits `scale`, with one decimal above bytes. */
function scaleBytes(bytes: number, scale: number): [string, string] {
  for (const [size, unit] of UNITS) {
    if (scale >= size) return [(bytes / size).toFixed(1), unit];
  }
  return [String(Math.round(bytes)), "B"];
}

/**
 * A duration as `m:ss`, or `h:mm:ss` from an hour up.
 *
 * @example
 * ```ts
 * import { formatDuration } from "./download.ts";
 * import assert from "node:assert/strict";
 * assert.equal(formatDuration(7.4), "0:07");
 * assert.equal(formatDuration(3723), "1:02:03");
 * ```
 */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const hours = Math.floor(s / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const secs = String(s % 60).padStart(2, "0");
  if (hours === 0) return `${minutes}:${secs}`;
  return `${hours}:${String(minutes).padStart(2, "0")}:${secs}`;
}

/** Width the file names are padded to, so the bars line up. */
const NAME_WIDTH = Math.max(...MODEL_FILES.map((f) => f.length));
/** Widest a bar gets, and narrowest worth drawing. */
const BAR_MAX = 30;
const BAR_MIN = 8;
/** Width of the widest usual text after a bar: `"999.9/999.9 MB 999.9 kB/s 59:59 left"`. */
const TAIL_WIDTH = 36;

/**
 * One redraw of a terminal progress bar, at most `columns - 1` characters wide so that it
 * never wraps: name, bar (a percentage if the bar would be too narrow), bytes, rate, and
 * time left or the final state.
 *
 * @example
 * ```ts
 * import { formatProgressBar } from "./download.ts";
 * import assert from "node:assert/strict";
 * const progress = {
 *   file: "vocab.bpe",
 *   received: 250_000,
 *   total: 500_000,
 *   resumedFrom: 0,
 *   bytesPerSecond: 100_000,
 *   state: "downloading",
 * } as const;
 * assert.equal(
 *   formatProgressBar(progress, 80),
 *   "vocab.bpe                      [####-----] 250.0/500.0 kB 100.0 kB/s 0:03 left",
 * );
 * ```
 */
export function formatProgressBar(progress: DownloadProgress, columns = 80): string {
  const { file, received, total, bytesPerSecond, state } = progress;
  const status = state === "skipped"
    ? "already complete"
    : state === "done"
    ? "done"
    : total !== undefined && bytesPerSecond > 0
    ? `${formatDuration((total - received) / bytesPerSecond)} left`
    : "--:-- left";
  const rate = state === "skipped" ? "" : `${formatBytes(bytesPerSecond)}/s`;
  const tail = [formatByteRatio(received, total), rate, status].filter((s) => s).join(" ");
  const name = file.padEnd(NAME_WIDTH);
  const fraction = total === undefined ? undefined : total === 0 ? 1 : received / total;
  // The bar takes what the text leaves; too narrow a bar gives way to a percentage.
  // Its width assumes the widest usual text, so that the bars of all files line up.
  const barWidth = Math.min(BAR_MAX, columns - 1 - name.length - TAIL_WIDTH - 4);
  let line = `${name} ${tail}`;
  if (fraction !== undefined && barWidth >= BAR_MIN) {
    const filled = Math.floor(barWidth * fraction);
    line = `${name} [${"#".repeat(filled)}${"-".repeat(barWidth - filled)}] ${tail}`;
  } else if (fraction !== undefined) {
    line = `${name} ${`${Math.floor(100 * fraction)}%`.padStart(4)} ${tail}`;
  }
  return line.slice(0, Math.max(0, columns - 1));
}

/**
 * The line written when a file completes or is skipped and stderr is not a terminal; a
 * resumed file says where it resumed, and its rate counts only the bytes fetched this time.
 *
 * @example
 * ```ts
 * import { formatProgressLine } from "./download.ts";
 * import assert from "node:assert/strict";
 * const progress = {
 *   file: "checkpoint",
 *   received: 77,
 *   total: 77,
 *   resumedFrom: 77,
 *   bytesPerSecond: 0,
 *   state: "skipped",
 * } as const;
 * assert.equal(formatProgressLine(progress), "checkpoint: already complete (77 B), skipped");
 * ```
 */
export function formatProgressLine(progress: DownloadProgress): string {
  const { file, received, total, resumedFrom, bytesPerSecond, state } = progress;
  switch (state) {
    case "skipped":
      return `${file}: already complete (${formatBytes(received)}), skipped`;
    case "done": {
      if (resumedFrom > 0 && resumedFrom >= received) {
        return `${file}: completed from its ${PARTIAL_SUFFIX} file (${formatBytes(received)})`;
      }
      const resumed = resumedFrom > 0 ? `, resumed at ${formatBytes(resumedFrom)}` : "";
      const rate = `${formatBytes(bytesPerSecond)}/s`;
      return `${file}: downloaded ${formatBytes(received)}${resumed} (${rate})`;
    }
    case "downloading":
      return `${file}: ${formatByteRatio(received, total)}`;
  }
}

/** Options for {@linkcode createProgressReporter}. */
export interface ProgressReporterOptions {
  /** Draw redrawn bars (`true`) or write one plain line per finished file (`false`). */
  terminal: boolean;
  /** Where the text goes, e.g. stderr. */
  write: (text: string) => void;
  /** Milliseconds clock; `performance.now` by default. */
  now?: () => number;
  /** Terminal width; 80 by default. */
  columns?: () => number;
  /** Least time between two redraws of a bar, in milliseconds; 100 by default. */
  redrawMs?: number;
}

/** Turns progress reports into text; see {@linkcode createProgressReporter}. */
export interface ProgressReporter {
  /** Pass as `onProgress` to `downloadModel`. */
  onProgress: (progress: DownloadProgress) => void;
  /** Ends a bar left open by a failure, so that what follows starts on its own line. */
  end: () => void;
}

/**
 * Reports download progress: on a terminal, one bar per file redrawn with `\r` at most
 * every `redrawMs` and finished with a newline; otherwise one plain line per file once it
 * is done or skipped, with no escape codes.
 */
export function createProgressReporter(options: ProgressReporterOptions): ProgressReporter {
  const { terminal, write, now = () => performance.now(), redrawMs = 100 } = options;
  const columns = options.columns ?? (() => 80);
  let open = false;
  let lastDraw = -Infinity;
  const onProgress = (progress: DownloadProgress) => {
    const finished = progress.state !== "downloading";
    if (!terminal) {
      if (finished) write(formatProgressLine(progress) + "\n");
      return;
    }
    const time = now();
    if (!finished && open && time - lastDraw < redrawMs) return;
    lastDraw = time;
    // `\x1b[K` clears whatever a longer previous draw left at the end of the line.
    write(`\r${formatProgressBar(progress, columns())}\x1b[K${finished ? "\n" : ""}`);
    open = !finished;
  };
  const end = () => {
    if (open) write("\n");
    open = false;
  };
  return { onProgress, end };
}

function writeStderr(text: string): void {
  const bytes = new TextEncoder().encode(text);
  for (let written = 0; written < bytes.length;) {
    written += Deno.stderr.writeSync(bytes.subarray(written));
  }
}

function terminalColumns(): number {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return 80;
  }
}

/** The CLI: parses `args`, downloads, and returns the exit code. */
export async function main(args: string[]): Promise<number> {
  const parsed = parseDownloadArgs(args);
  if (parsed.help) {
    console.log(USAGE);
    return 0;
  }
  const reporter = createProgressReporter({
    terminal: Deno.stderr.isTerminal(),
    write: writeStderr,
    columns: terminalColumns,
  });
  // Ctrl-C aborts the download cleanly: the bytes received stay in the .part file, and the
  // next run resumes from there.
  const controller = new AbortController();
  const interrupt = () => controller.abort();
  Deno.addSignalListener("SIGINT", interrupt);
  try {
    const result = await downloadModel(parsed.size, {
      baseUrl: parsed.baseUrl,
      modelsDir: parsed.modelsDir,
      onProgress: reporter.onProgress,
      signal: controller.signal,
    });
    const skipped = result.files.filter((f) => f.skipped).length;
    const note = skipped === 0 ? "" : ` (${skipped} of ${result.files.length} already complete)`;
    console.log(`GPT-2 ${parsed.size} is in ${result.dir}${note}`);
    return 0;
  } catch (e) {
    if (!controller.signal.aborted) throw e;
    reporter.end();
    console.error("error: interrupted; run the same command again to resume the download");
    return 130;
  } finally {
    reporter.end();
    Deno.removeSignalListener("SIGINT", interrupt);
  }
}

if (import.meta.main) {
  await runMain(() => main(Deno.args));
}
