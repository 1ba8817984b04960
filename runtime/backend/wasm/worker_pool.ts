/**
 * Kernels on several threads: the calling thread plus `threads - 1` module workers, each
 * with its own instance of the same compiled module on the same shared memory. Both are
 * sent to each worker once, at startup. A kernel call is then dispatched without any
 * message: the caller writes the op's id and its arguments into a small control block in
 * the shared memory, bumps an epoch counter and wakes the workers with `Atomics.notify`;
 * every thread runs its share of the op's units (ops.ts), the workers count themselves
 * done, and the caller waits for the count with `Atomics.wait`.
 *
 * Each output element belongs to one unit and is computed by the same instructions
 * whichever thread runs it, so every thread count gives bit-identical results. The memory
 * may grow while the workers run: a shared buffer never detaches, and the control block
 * lies in its first page.
 */
import { assetUrl } from "../../assets.ts";
import { instantiate, type KernelInstance } from "./kernel_module.ts";
import { namedArgs, type Op, OP_LIST, type OpArgs } from "./ops.ts";

/**
 * Bytes at the start of memory kept for the wasm module's static data (from offset 1024,
 * a few hundred bytes: the `static_data_end` export says where it ends) and for the
 * worker pool's control block; the backend allocates tensors after them.
 */
export const RESERVED_BYTES = 65536;

/**
 * Where the control block lives: inside the reserved bytes, far above the module's static
 * data. `WorkerPool.create` checks that the two do not overlap.
 */
const CONTROL_OFFSET = 32768;

/** Bytes of the control block: counters, kernel arguments and an error message. */
const CONTROL_BYTES = 4096;

// The control block: Int32 words from CONTROL_OFFSET.
/** Bumped by the caller for every call; the workers wait on it. */
const EPOCH = 0;
/** The op's id in `OP_LIST`, or `STOP`. */
const OP = 1;
/** How many parts the call is split into (threads with a higher part index idle). */
const PARTS = 2;
/** Workers done with the current call; the caller waits on it. */
const DONE = 3;
/** 0, or the part index of the first worker whose share failed. */
const ERROR = 4;
/** Bytes of that worker's error message, at `MESSAGE`. */
const ERROR_LENGTH = 5;
/** 0, or the id of the pool that owns the block: one pool per memory. */
const OWNER = 6;
/** The op's arguments. */
const ARGS = 16;
const MAX_ARGS = 48;
/** With profiling on: the index of the call's profile entry (`WorkerPool.profile`). */
const PROFILE_ENTRY = 7;
/** The sum of the workers' counts, for an op whose kernel returns one (`Op.run`). */
const COUNT = 8;
/** Byte offset, within the block, of the failed worker's error message. */
const MESSAGE = 256;
const STOP = -1;

/**
 * Where profiling threads add up their busy time: after the control block, inside the
 * reserved bytes, a float64 of ms per (thread, entry), thread-major.
 */
const PROFILE_OFFSET = CONTROL_OFFSET + CONTROL_BYTES;
const PROFILE_CELLS = (RESERVED_BYTES - PROFILE_OFFSET) / 8;

/** What the pool sends each worker once, at startup. */
export interface WorkerInit {
  /** The compiled kernels. */
  readonly module: WebAssembly.Module;
  /** The shared memory every thread's instance imports. */
  readonly memory: WebAssembly.Memory;
  /** This worker's part index, 1 … threads - 1 (the caller runs part 0). */
  readonly part: number;
  /** Threads of the pool, the caller's included. */
  readonly threads: number;
  /** The pool's id in the control block's OWNER word; a worker of another pool stops. */
  readonly pool: number;
  /** µs a worker spins for the next call before it blocks (`WorkerPoolOptions`). */
  readonly spinMicros: number;
  /** Entries of the profile, or 0 when the pool does not profile. */
  readonly profileEntries: number;
}

/** Options of `WorkerPool.create`. */
export interface WorkerPoolOptions {
  /**
   * A call that reads and writes fewer floats than this runs on the calling thread alone,
   * where waking the workers would cost more than it saves (default 32768; 0 splits every
   * call, as the tests do to exercise every split on small shapes).
   */
  serialBelow?: number;
  /**
   * µs a thread spins, checking the control block, before it blocks in `Atomics.wait`:
   * a worker waiting for the next call, the caller waiting for the workers (default 1000;
   * 0 never spins). Calls follow one another within µs while a model runs, and a thread
   * that blocked takes far longer than that to wake; 1 ms also spans the gap between two
   * decoding steps, where the caller samples the next token.
   */
  spinMicros?: number;
  /**
   * Time every call, per thread (default false): `WorkerPool.profile()` then says where
   * the time went, op by op. Costs two clock reads per call and thread.
   */
  profile?: boolean;
}

/** Where one kind of kernel call spent its time, from `WorkerPool.profile()`. */
export interface OpProfile {
  /** The op's name, form and sizes, e.g. `conv1d(gelu, rows=128, C=768, OC=3072)`. */
  readonly label: string;
  /** The op's name, as in ops.ts. */
  readonly op: string;
  /** The sizes among its arguments (rows, C, OC, …) that the label shows. */
  readonly sizes: Readonly<Record<string, number>>;
  readonly calls: number;
  /** Wall time on the calling thread, from dispatch until every thread was done. */
  readonly wallMs: number;
  /** Time each thread spent inside the kernel, caller first: wallMs − busyMs[t] is its idle time. */
  readonly busyMs: readonly number[];
}

/** The sizes in an op's arguments that tell its calls apart in a profile. */
const PROFILE_SIZES = ["B", "T", "rows", "C", "OC", "V", "heads"];

/** Units [u0, u1) of part `part` of `parts`: an even share, in whole blocks of `align`. */
export function share(units: number, align: number, part: number, parts: number): [number, number] {
  const blocks = Math.ceil(units / align);
  const b0 = Math.floor((blocks * part) / parts);
  const b1 = Math.floor((blocks * (part + 1)) / parts);
  return [Math.min(b0 * align, units), Math.min(b1 * align, units)];
}

/**
 * Spins for at most `micros` µs while word `i` of `c` holds `value`; true if it changed.
 * A thread that blocks in `Atomics.wait` can take tens of µs to wake, while kernel calls
 * follow one another within a few µs.
 */
function spinWhile(c: Int32Array, i: number, value: number, micros: number): boolean {
  if (micros <= 0) return false;
  const end = performance.now() + micros / 1000;
  do {
    for (let n = 0; n < 64; n++) if (Atomics.load(c, i) !== value) return true;
  } while (performance.now() < end);
  return false;
}

/** Runs part `part` of `parts` of `op` with `args`; returns its count, or 0 (`Op.run`). */
function runPart(
  k: KernelInstance,
  op: Op,
  args: OpArgs,
  part: number,
  parts: number,
): number {
  const [u0, u1] = share(op.units(args, k.constants), op.align, part, parts);
  return u0 < u1 ? count(op.run(k.exports, args, u0, u1, part)) : 0;
}

/** What `Op.run` returned, as a count: 0 for nothing. */
function count(result: number | void): number {
  return typeof result === "number" ? result : 0;
}

/**
 * A worker's whole life after startup (kernel_worker.ts): waits for each call, runs its
 * part and counts itself done, until the pool says stop. `ready` is called once the
 * worker listens, before the first call can come.
 */
export function serveCalls(k: KernelInstance, init: WorkerInit, ready: () => void): void {
  const { memory, part, threads, pool } = init;
  const c = new Int32Array(memory.buffer, CONTROL_OFFSET, CONTROL_BYTES / 4);
  const args = c.subarray(ARGS, ARGS + MAX_ARGS);
  const profile = init.profileEntries > 0;
  const busy = new Float64Array(memory.buffer, PROFILE_OFFSET, PROFILE_CELLS);
  let seen = Atomics.load(c, EPOCH);
  ready();
  for (;;) {
    if (!spinWhile(c, EPOCH, seen, init.spinMicros)) Atomics.wait(c, EPOCH, seen);
    const epoch = Atomics.load(c, EPOCH);
    if (epoch === seen) continue;
    seen = epoch;
    if (Atomics.load(c, OWNER) !== pool) return;
    const id = c[OP];
    if (id === STOP) {
      Atomics.add(c, DONE, 1);
      Atomics.notify(c, DONE);
      return;
    }
    const parts = c[PARTS];
    if (part < parts) {
      const t0 = profile ? performance.now() : 0;
      try {
        const op = OP_LIST[id];
        const n = runPart(k, op, namedArgs(op, args), part, parts);
        if (n !== 0) Atomics.add(c, COUNT, n);
      } catch (error) {
        reportError(c, memory, part, error);
      }
      if (profile) busy[part * init.profileEntries + c[PROFILE_ENTRY]] += performance.now() - t0;
    }
    if (Atomics.add(c, DONE, 1) === threads - 2) Atomics.notify(c, DONE);
  }
}

function reportError(c: Int32Array, memory: WebAssembly.Memory, part: number, error: unknown) {
  if (Atomics.compareExchange(c, ERROR, 0, part) !== 0) return;
  const text = new TextEncoder().encode(String(error)).subarray(0, CONTROL_BYTES - MESSAGE);
  new Uint8Array(memory.buffer, CONTROL_OFFSET + MESSAGE, text.length).set(text);
  c[ERROR_LENGTH] = text.length;
}

/**
 * The kernels on `threads` threads: this one and `threads - 1` workers (none for one
 * thread, where every call runs here).
 *
 * @example
 * ```ts
 * import { WorkerPool } from "./worker_pool.ts";
 * import { kernelModule } from "./kernel_module.ts";
 * import { OPS } from "./ops.ts";
 *
 * const memory = new WebAssembly.Memory({ initial: 2, maximum: 65536, shared: true });
 * using pool = await WorkerPool.create(await kernelModule(), memory, 2, { serialBelow: 0 });
 * // Sums one block of READ_BLOCK floats at byte 65536 into the float at byte 32.
 * pool.run(OPS.readSum, { out: 32, inp: 65536, blocks: 1 });
 * ```
 */
export class WorkerPool implements Disposable {
  /** The kernel instance of the calling thread, and the constants it exports. */
  readonly kernels: KernelInstance;
  readonly #serialBelow: number;
  readonly #spinMicros: number;
  readonly #control: Int32Array;
  #workers: Worker[] = [];
  /** Workers that said they are ready, and so serve calls until told to stop. */
  #serving = 0;
  #owner = false;
  #disposed = false;
  /** This pool's id in the control block, never 0. */
  readonly #id = 1 + Math.floor(Math.random() * 0x7ffffffe);
  /** With profiling on: each entry's label, calls and wall time; busy times are in memory. */
  readonly #profile:
    | {
      entries: Map<string, number>;
      info: { op: string; sizes: Record<string, number> }[];
      calls: number[];
      wall: number[];
      busy: Float64Array;
    }
    | undefined;

  private constructor(
    module: WebAssembly.Module,
    readonly memory: WebAssembly.Memory,
    readonly threads: number,
    options: WorkerPoolOptions,
  ) {
    this.kernels = instantiate(module, memory);
    this.#serialBelow = options.serialBelow ?? 32768;
    this.#spinMicros = options.spinMicros ?? 1000;
    this.#control = new Int32Array(memory.buffer, CONTROL_OFFSET, CONTROL_BYTES / 4);
    if (options.profile) {
      const busy = new Float64Array(memory.buffer, PROFILE_OFFSET, PROFILE_CELLS).fill(0);
      this.#profile = { entries: new Map(), info: [], calls: [], wall: [], busy };
    }
  }

  /** Entries a profile can hold for this many threads. */
  get #profileEntries(): number {
    return this.#profile ? Math.floor(PROFILE_CELLS / this.threads) : 0;
  }

  /**
   * Where the time of every call since the pool started (or since `resetProfile`) went,
   * by op and sizes, in order of first call; undefined unless created with `profile`.
   */
  profile(): OpProfile[] | undefined {
    const p = this.#profile;
    if (!p) return undefined;
    const stride = this.#profileEntries;
    return [...p.entries].map(([label, e]) => ({
      label,
      ...p.info[e],
      calls: p.calls[e],
      wallMs: p.wall[e],
      busyMs: Array.from({ length: this.threads }, (_, t) => p.busy[t * stride + e]),
    }));
  }

  /** Starts the profile afresh. */
  resetProfile(): void {
    const p = this.#profile;
    if (!p) return;
    p.entries.clear();
    p.info.length = p.calls.length = p.wall.length = 0;
    p.busy.fill(0);
  }

  /** The profile entry of a call of `op` with `args`, made on its first call. */
  #entry(op: Op, args: OpArgs): number {
    const p = this.#profile!;
    const sizes = PROFILE_SIZES.filter((a) => (op.args as readonly string[]).includes(a));
    const variant = op.variant?.(args, this.kernels.constants);
    const shown = [...(variant ? [variant] : []), ...sizes.map((a) => `${a}=${args[a]}`)];
    const label = `${op.name}(${shown.join(", ")})`;
    let e = p.entries.get(label);
    if (e === undefined) {
      e = p.entries.size;
      if (e >= this.#profileEntries) throw new RangeError("The profile has no room left");
      p.entries.set(label, e);
      p.info.push({ op: op.name, sizes: Object.fromEntries(sizes.map((a) => [a, args[a]])) });
      p.calls.push(0);
      p.wall.push(0);
    }
    return e;
  }

  /**
   * Starts `threads - 1` workers on `memory` (a shared memory `module` imports) and
   * resolves when every one is ready. One pool per memory: the pool owns the control
   * block in its reserved bytes until disposed.
   */
  static async create(
    module: WebAssembly.Module,
    memory: WebAssembly.Memory,
    threads: number,
    options: WorkerPoolOptions = {},
  ): Promise<WorkerPool> {
    if (!Number.isInteger(threads) || threads < 1) {
      throw new RangeError(`threads must be a positive integer, got ${threads}`);
    }
    if (threads > 1 && !isShared(memory)) {
      throw new TypeError(
        "A worker pool of more than one thread needs a shared WebAssembly.Memory",
      );
    }
    if (memory.buffer.byteLength < RESERVED_BYTES) {
      throw new RangeError(`A worker pool needs a memory of at least ${RESERVED_BYTES} bytes`);
    }
    const pool = new WorkerPool(module, memory, threads, options);
    const staticEnd = pool.kernels.exports.static_data_end() as number;
    if (staticEnd > CONTROL_OFFSET) {
      throw new RangeError(
        `The kernel module's static data ends at byte ${staticEnd}, past the worker ` +
          `pool's control block at ${CONTROL_OFFSET}`,
      );
    }
    if (threads === 1) return pool;
    const c = pool.#control;
    if (Atomics.compareExchange(c, OWNER, 0, pool.#id) !== 0) {
      throw new Error("This memory already has a worker pool: dispose it first");
    }
    pool.#owner = true;
    try {
      await Promise.all(
        Array.from({ length: threads - 1 }, (_, i) => pool.#startWorker(module, i + 1)),
      );
    } catch (error) {
      pool[Symbol.dispose]();
      throw error;
    }
    return pool;
  }

  #startWorker(module: WebAssembly.Module, part: number): Promise<void> {
    const worker = new Worker(assetUrl("kernelWorker"), { type: "module" });
    this.#workers.push(worker);
    return new Promise((resolve, reject) => {
      worker.onmessage = (e: MessageEvent<{ ready?: true; error?: string }>) => {
        worker.onmessage = worker.onerror = null;
        if (e.data.ready) {
          this.#serving++;
          resolve();
        } else reject(new Error(`Kernel worker ${part} failed to start: ${e.data.error}`));
      };
      worker.onerror = (e: ErrorEvent) => {
        e.preventDefault();
        worker.onmessage = worker.onerror = null;
        reject(new Error(`Kernel worker ${part} failed to start: ${e.message}`));
      };
      const init: WorkerInit = {
        module,
        memory: this.memory,
        part,
        threads: this.threads,
        pool: this.#id,
        spinMicros: this.#spinMicros,
        profileEntries: this.#profileEntries,
      };
      worker.postMessage(init);
    });
  }

  /**
   * Runs `op` with `args`: on this thread alone when it is small or the pool has one
   * thread, else on every thread, each on its share of the units. Throws what any threw;
   * returns the sum of the threads' counts for an op whose kernel returns one, else 0.
   */
  run<A extends string>(op: Op<A>, args: OpArgs<A>): number {
    if (this.#disposed) throw new Error("This worker pool has been disposed");
    const p = this.#profile;
    const entry = p ? this.#entry(op as Op, args) : 0;
    const t0 = p ? performance.now() : 0;
    try {
      return this.#dispatch(op, args, entry);
    } finally {
      if (p) {
        p.calls[entry]++;
        p.wall[entry] += performance.now() - t0;
      }
    }
  }

  #dispatch<A extends string>(op: Op<A>, args: OpArgs<A>, entry: number): number {
    const k = this.kernels;
    const busy = this.#profile?.busy;
    if (this.threads === 1 || op.size(args, k.constants) < this.#serialBelow) {
      const t0 = busy ? performance.now() : 0;
      const n = count(op.run(k.exports, args, 0, op.units(args, k.constants)));
      if (busy) busy[entry] += performance.now() - t0;
      return n;
    }
    const c = this.#control;
    for (let i = 0; i < op.args.length; i++) c[ARGS + i] = args[op.args[i]];
    c[OP] = op.id;
    c[PARTS] = this.threads;
    c[DONE] = 0;
    c[ERROR] = 0;
    c[COUNT] = 0;
    c[PROFILE_ENTRY] = entry;
    // A sequentially consistent write: the workers that see the new epoch see all of the above.
    Atomics.add(c, EPOCH, 1);
    Atomics.notify(c, EPOCH);
    let failure: unknown;
    let n = 0;
    const t0 = busy ? performance.now() : 0;
    try {
      n = runPart(k, op as Op, args, 0, this.threads);
    } catch (error) {
      failure = error;
    }
    if (busy) busy[entry] += performance.now() - t0;
    const workers = this.threads - 1;
    for (let done; (done = Atomics.load(c, DONE)) !== workers;) {
      if (!spinWhile(c, DONE, done, this.#spinMicros)) Atomics.wait(c, DONE, done);
    }
    if (failure !== undefined) throw failure;
    const failed = Atomics.load(c, ERROR);
    if (failed !== 0) {
      const bytes = new Uint8Array(this.memory.buffer, CONTROL_OFFSET + MESSAGE, c[ERROR_LENGTH]);
      throw new Error(
        `Kernel ${op.name} failed in worker ${failed} of ${this.threads - 1}: ${
          new TextDecoder().decode(bytes.slice())
        }`,
      );
    }
    // Each worker added its count before counting itself done.
    return n + Atomics.load(c, COUNT);
  }

  /**
   * Stops every worker, waits until each has left the control block (so that a new pool
   * can take the memory), and terminates them; the pool can no longer run kernels.
   */
  [Symbol.dispose](): void {
    if (this.#disposed) return;
    this.#disposed = true;
    if (!this.#owner) return;
    const c = this.#control;
    c[OP] = STOP;
    c[DONE] = 0;
    Atomics.add(c, EPOCH, 1);
    Atomics.notify(c, EPOCH);
    // A worker that left the loop counts itself; a second is far more than enough.
    const deadline = performance.now() + 1000;
    for (let done; (done = Atomics.load(c, DONE)) < this.#serving;) {
      const left = deadline - performance.now();
      if (left <= 0) break;
      Atomics.wait(c, DONE, done, left);
    }
    for (const worker of this.#workers) worker.terminate();
    this.#workers = [];
    Atomics.store(c, OWNER, 0);
  }
}

/** Whether `memory` is shared (where the runtime has no SharedArrayBuffer, none is). */
export function isShared(memory: WebAssembly.Memory): boolean {
  return typeof SharedArrayBuffer === "function" && memory.buffer instanceof SharedArrayBuffer;
}
