/**
 * How fast a model folder loads, beside plain reads of the same files, and how much
 * memory loading takes, beside the size of the weights.
 *
 *   deno task bench:load [--model models/124M]
 *
 * Two plain reads are the baselines: `read` reads each file whole into a buffer of its
 * size, as a program that reads the files once does (it pays, as loading does, for the
 * fresh memory the bytes land in); `stream` reads them through one reused 16 MiB buffer,
 * which is the disk's speed alone.
 *
 * Without --model it writes a random model with the real 124M shapes to a temporary folder
 * (speed does not depend on the values). Each measurement runs in its own process (with
 * --allow-all, which reading /proc/self/status for the peak memory needs), from a cold
 * page cache when the process may drop it (root on Linux), else warm: `cache` says which.
 * The three are measured in turn, `ROUNDS` times; the result is one JSON line with the
 * median times and the largest peak memory.
 */
import { loadModel } from "../runtime/generate/model.ts";
import { gpt2Tensors } from "../runtime/gpt2/tensor_names.ts";
import { readFully } from "../runtime/io/file_pool.ts";
import { GPT2_SIZES } from "../runtime/gpt2/hparams.ts";
import { randomWeights, writeModelFolder } from "../testing/random_model.ts";

/** The files of the model at `path`: a folder's files, or the one file (a `.gguf`). */
function modelFilePaths(path: string): string[] {
  if (Deno.statSync(path).isFile) return [path];
  return [...Deno.readDirSync(path)].filter((e) => e.isFile).map((e) => `${path}/${e.name}`);
}

/** Reads every file of the model at `dir` whole into a buffer of its size; returns the bytes read. */
async function readFiles(dir: string): Promise<number> {
  const files: Uint8Array[] = [];
  for (const path of modelFilePaths(dir)) {
    using file = await Deno.open(path);
    const bytes = new Uint8Array((await file.stat()).size);
    await readFully(file, bytes);
    files.push(bytes);
  }
  return files.reduce((total, bytes) => total + bytes.byteLength, 0);
}

/** Reads every file of the model at `dir` once through one 16 MiB buffer; returns the bytes read. */
async function streamFiles(dir: string): Promise<number> {
  const buffer = new Uint8Array(16 << 20);
  let total = 0;
  for (const path of modelFilePaths(dir)) {
    using file = await Deno.open(path);
    for (let n; (n = await file.read(buffer)) !== null;) total += n;
  }
  return total;
}

/** The process's peak resident memory in bytes (Linux). */
function peakRss(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

/** Each of read, stream and load is measured this many times; the medians are printed. */
const ROUNDS = 3;

async function child(mode: string, dir: string): Promise<void> {
  const t0 = performance.now();
  if (mode === "read" || mode === "stream") {
    const bytes = await (mode === "read" ? readFiles : streamFiles)(dir);
    console.log(
      JSON.stringify({ seconds: (performance.now() - t0) / 1000, bytes, peak_rss: peakRss() }),
    );
  } else {
    using model = await loadModel(dir);
    const seconds = (performance.now() - t0) / 1000;
    // Every tensor of the model as float32.
    const weights = gpt2Tensors(model.hparams)
      .reduce((sum, { shape }) => sum + 4 * shape.reduce((a, b) => a * b, 1), 0);
    console.log(JSON.stringify({ seconds, weights, peak_rss: peakRss() }));
  }
}

/** Empties the page cache if allowed; says whether it could. */
function dropCaches(): boolean {
  try {
    new Deno.Command("sync").outputSync();
    Deno.writeTextFileSync("/proc/sys/vm/drop_caches", "3");
    return true;
  } catch {
    return false;
  }
}

async function measure(mode: string, dir: string): Promise<Record<string, number>> {
  dropCaches();
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-all",
      new URL(import.meta.url).pathname,
      "--child",
      mode,
      dir,
    ],
    stderr: "inherit",
  }).output();
  if (!out.success) throw new Error(`the ${mode} process failed`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

if (import.meta.main) {
  const args = Deno.args;
  if (args[0] === "--child") {
    await child(args[1], args[2]);
  } else {
    let dir = args[args.indexOf("--model") + 1];
    let temp: string | undefined;
    if (!args.includes("--model")) {
      temp = dir = await Deno.makeTempDir({ prefix: "gpt2-load-bench-" });
      const hp = GPT2_SIZES["124M"];
      await writeModelFolder(dir, hp, randomWeights(hp, 0));
    }
    try {
      const cold = dropCaches();
      if (!cold) await streamFiles(dir); // warm: every measurement finds the files cached
      // Rounds of the three, side by side, then the median of each: this machine's disk
      // and memory speeds drift between runs.
      const rounds: Record<string, Record<string, number>[]> = { read: [], stream: [], load: [] };
      for (let r = 0; r < ROUNDS; r++) {
        for (const mode of ["read", "stream", "load"]) rounds[mode].push(await measure(mode, dir));
      }
      const median = (mode: string) =>
        rounds[mode].sort((a, b) => a.seconds - b.seconds)[ROUNDS >> 1];
      const peak = (mode: string) => Math.max(...rounds[mode].map((m) => m.peak_rss));
      const [read, stream, load] = [median("read"), median("stream"), median("load")];
      const weightsBytes = load.weights;
      console.log(JSON.stringify({
        cache: cold ? "cold" : "warm",
        rounds: ROUNDS,
        read_s: +read.seconds.toFixed(3),
        stream_s: +stream.seconds.toFixed(3),
        load_s: +load.seconds.toFixed(3),
        load_over_read: +(load.seconds / read.seconds).toFixed(2),
        load_over_stream: +(load.seconds / stream.seconds).toFixed(2),
        weights_mb: +(weightsBytes / 1e6).toFixed(1),
        read_peak_rss_mb: +(peak("read") / 1e6).toFixed(1),
        load_peak_rss_mb: +(peak("load") / 1e6).toFixed(1),
        rss_over_weights: +(peak("load") / weightsBytes).toFixed(2),
      }));
    } finally {
      if (temp) await Deno.remove(temp, { recursive: true });
    }
  }
}
