/**
 * A {@linkcode ByteCache} over any store of named files with positioned reads and writes
 * (in a browser, the origin-private file system). Each fetched file is kept as two files:
 * `<key>.bin`, its bytes at their own offsets, and `<key>.json`, its URL, version and the
 * byte ranges known to be complete. A range counts only once every byte of it was written,
 * so a load cut short keeps what it finished and fetches the rest next time.
 *
 * @module
 */
import type { ByteCache, CacheEntry } from "./http_files.ts";

/** One file of a {@linkcode CacheStore}, open for positioned reads and writes. */
export interface StoreFile {
  /** Reads into `dest` from byte `at`; returns the bytes read. */
  read(at: number, dest: Uint8Array): number | Promise<number>;
  /** Writes `bytes` at byte `at`. */
  write(at: number, bytes: Uint8Array): void | Promise<void>;
  /** Cuts or extends the file to `size` bytes. */
  truncate(size: number): void | Promise<void>;
  /** Bytes in the file. */
  size(): number | Promise<number>;
  /** Makes what was written durable and releases the file. */
  close(): void | Promise<void>;
}

/** A flat folder of files a cache keeps its entries in. */
export interface StoreFolder {
  /**
   * Opens the file `name`, creating it empty if there is none; `undefined` if it cannot be
   * opened now (in a browser: another tab has it open).
   */
  open(name: string): Promise<StoreFile | undefined>;
  /** The names of the files in the folder. */
  list(): Promise<string[]>;
  /** Removes the file `name`, if there is one. */
  remove(name: string): Promise<void>;
}

/** What `<key>.json` holds. */
interface EntryRecord {
  url: string;
  version: string;
  /** Complete byte ranges [begin, end), sorted and disjoint. */
  ranges: [number, number][];
}

/** A cache of fetched bytes in `folder`, with a way to forget what it keeps. */
export interface FileCache extends ByteCache {
  /** Removes every file kept whose URL starts with `prefix` (all of them for `""`). */
  forget(prefix: string): Promise<void>;
  /** The bytes kept of files whose URL starts with `prefix`. */
  keptBytes(prefix: string): Promise<number>;
}

/** The name a file's entry is kept under: its URL with every `/` and `%` escaped. */
function keyOf(url: string): string {
  return encodeURIComponent(url);
}

/** A {@linkcode ByteCache} kept in `folder`. */
export function fileCache(folder: StoreFolder): FileCache {
  async function records(prefix: string): Promise<[string, EntryRecord][]> {
    const out: [string, EntryRecord][] = [];
    for (const name of await folder.list()) {
      if (!name.endsWith(".json")) continue;
      const file = await folder.open(name);
      if (file === undefined) continue;
      const record = await readRecord(file).finally(() => file.close());
      if (record?.url.startsWith(prefix)) out.push([name.slice(0, -".json".length), record]);
    }
    return out;
  }

  return {
    async open(url: string, size: number, version: string): Promise<CacheEntry | undefined> {
      const key = keyOf(url);
      const json = await folder.open(`${key}.json`);
      if (json === undefined) return undefined;
      const bin = await folder.open(`${key}.bin`);
      if (bin === undefined) {
        await json.close();
        return undefined;
      }
      const kept = await readRecord(json);
      if (kept?.url === url && kept.version === version) {
        return new FileCacheEntry(json, bin, size, kept);
      }
      // Nothing kept, or bytes of another version of the file: start again.
      const entry = new FileCacheEntry(json, bin, size, { url, version, ranges: [] });
      await bin.truncate(0);
      await entry.save();
      return entry;
    },
    async forget(prefix: string): Promise<void> {
      const keys = new Set((await records(prefix)).map(([key]) => key));
      for (const name of await folder.list()) {
        const key = name.replace(/\.(bin|json)$/, "");
        if (keys.has(key) || (prefix === "" && key !== name)) await folder.remove(name);
      }
    },
    async keptBytes(prefix: string): Promise<number> {
      let total = 0;
      for (const [, record] of await records(prefix)) {
        for (const [a, b] of record.ranges) total += b - a;
      }
      return total;
    },
  };
}

/** The record in `file`, or `undefined` if it is empty, cut short or garbled. */
async function readRecord(file: StoreFile): Promise<EntryRecord | undefined> {
  try {
    const bytes = new Uint8Array(await file.size());
    await file.read(0, bytes);
    if (bytes.length === 0) return undefined;
    const record = JSON.parse(new TextDecoder().decode(bytes));
    if (typeof record?.url !== "string" || !Array.isArray(record.ranges)) return undefined;
    return record as EntryRecord;
  } catch {
    return undefined;
  }
}

/** Adds [begin, end) to sorted, disjoint `ranges`, merging what touches or overlaps. */
export function addRange(ranges: [number, number][], begin: number, end: number): void {
  if (end <= begin) return;
  const kept: [number, number][] = [];
  for (const [a, b] of ranges) {
    if (b < begin || a > end) kept.push([a, b]);
    else {
      begin = Math.min(begin, a);
      end = Math.max(end, b);
    }
  }
  kept.push([begin, end]);
  kept.sort((x, y) => x[0] - y[0]);
  ranges.splice(0, ranges.length, ...kept);
}

/** Whether sorted, disjoint `ranges` hold every byte of [begin, end). */
export function coversRange(ranges: [number, number][], begin: number, end: number): boolean {
  return end <= begin || ranges.some(([a, b]) => a <= begin && end <= b);
}

/** One kept file: its bytes and its record, saved after every completed range. */
class FileCacheEntry implements CacheEntry {
  #closed = false;
  /** The saves in order: each writes the whole record, so they must not interleave. */
  #saving: Promise<void> = Promise.resolve();

  constructor(
    readonly json: StoreFile,
    readonly bin: StoreFile,
    readonly size: number,
    readonly record: EntryRecord,
  ) {}

  async read(offset: number, dest: Uint8Array): Promise<boolean> {
    if (this.#closed || !coversRange(this.record.ranges, offset, offset + dest.byteLength)) {
      return false;
    }
    return await this.bin.read(offset, dest) === dest.byteLength;
  }

  async write(offset: number, bytes: Uint8Array): Promise<void> {
    if (!this.#closed) await this.bin.write(offset, bytes);
  }

  async complete(begin: number, end: number): Promise<void> {
    if (this.#closed) return;
    addRange(this.record.ranges, begin, Math.min(end, this.size));
    await this.save();
  }

  /** Writes the record, after any save under way. */
  save(): Promise<void> {
    const bytes = new TextEncoder().encode(JSON.stringify(this.record));
    this.#saving = this.#saving.then(async () => {
      await this.json.truncate(0);
      await this.json.write(0, bytes);
    });
    return this.#saving;
  }

  [Symbol.dispose](): void {
    if (this.#closed) return;
    this.#closed = true;
    void this.#saving.finally(() => {
      void this.json.close();
      void this.bin.close();
    });
  }
}
