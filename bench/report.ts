/**
 * Figures for `deno bench`: each benchmark records its own timings, and when the run ends
 * a table prints the rate (GFLOP/s or GB/s) of each one and its ratio to the baseline of
 * its group, measured in the same run.
 */
interface Entry {
  group: string;
  name: string;
  work: number;
  unit: "GFLOP/s" | "GB/s" | "MB/s" | "tok/s";
  baseline: boolean;
  /** Bytes of weights an iteration reads, for a "weights GB/s" column. */
  weightBytes?: number;
  times: number[];
}

const entries: Entry[] = [];

/**
 * Registers a benchmark whose every iteration does `work` units (FLOPs, bytes, tokens):
 * `fn` runs once per iteration and is timed with `performance.now()`.
 */
export function benchRate(
  options: {
    group: string;
    name: string;
    work: number;
    unit: Entry["unit"];
    baseline?: boolean;
    n?: number;
    weightBytes?: number;
  },
  fn: () => void,
): void {
  const entry: Entry = { ...options, baseline: options.baseline ?? false, times: [] };
  entries.push(entry);
  Deno.bench({
    name: options.name,
    group: options.group,
    baseline: entry.baseline,
    n: options.n,
    warmup: options.n === undefined ? undefined : 1,
    fn(b) {
      const t0 = performance.now();
      b.start();
      fn();
      b.end();
      entry.times.push(performance.now() - t0);
    },
  });
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
}

const scale = { "GFLOP/s": 1e9, "GB/s": 1e9, "MB/s": 1e6, "tok/s": 1 };

globalThis.addEventListener("unload", () => {
  const rows: string[][] = [["benchmark", "rate", "× baseline", "weights GB/s"]];
  const base = new Map<string, number>();
  const rate = (e: Entry) => e.work / (median(e.times) / 1000) / scale[e.unit];
  for (const e of entries) if (e.baseline && e.times.length) base.set(e.group, rate(e));
  for (const e of entries) {
    if (!e.times.length) continue;
    const r = rate(e);
    const b = base.get(e.group);
    const gbs = e.weightBytes
      ? (e.weightBytes / (median(e.times) / 1000) / 1e9).toPrecision(3)
      : "";
    rows.push([e.name, `${r.toPrecision(4)} ${e.unit}`, b ? (r / b).toFixed(2) : "", gbs]);
  }
  if (rows.length === 1) return;
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  console.log();
  for (const r of rows) console.log(r.map((c, i) => c.padEnd(widths[i])).join("  "));
});
