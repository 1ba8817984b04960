/**
 * The worker pool: every kernel and the whole forward pass give bit-identical results on
 * 1, 2 and 3 threads; a kernel that traps in a worker surfaces as an Error in the caller;
 * a disposed pool leaves no worker behind (the test sanitizers would fail the test).
 */
import { assert, assertEquals, assertRejects, assertThrows } from "./asserts.ts";
import { randint, randn } from "./kernel_harness.ts";
import { forward } from "../runtime/forward.ts";
import type { HParams } from "../runtime/gpt2/hparams.ts";
import type { Kernels } from "../runtime/backend/wasm/kernels.ts";
import { KVCache } from "../runtime/kv_cache.ts";
import {
  CONTROL_BYTES,
  CONTROL_OFFSET,
  packedSize,
  PANEL,
  planMemory,
  RESERVED_BYTES,
} from "../runtime/backend/wasm/memory_plan.ts";
import { Rng } from "../runtime/random.ts";
import { randomWeights } from "../runtime/random_model.ts";
import {
  createMemory,
  instantiate,
  kernelModule,
  READ_BLOCK,
  WasmKernels,
} from "../runtime/backend/wasm/wasm_kernels.ts";
import { loadWeights } from "../runtime/weights.ts";
import { memorySource } from "../runtime/random_model.ts";
import { createKernels, share, WorkerPool } from "../runtime/backend/wasm/worker_pool.ts";

const module = await kernelModule();
const THREADS = [1, 2, 3];

/** Exact equality, bit for bit (so -0 differs from 0 and NaNs are compared by payload). */
function assertBitIdentical(actual: Float32Array, expected: Float32Array, msg: string): void {
  assertEquals(actual.length, expected.length, msg);
  const a = new Uint32Array(actual.buffer, actual.byteOffset, actual.length);
  const e = new Uint32Array(expected.buffer, expected.byteOffset, expected.length);
  for (let i = 0; i < a.length; i++) {
    if (a[i] !== e[i]) {
      throw new Error(`${msg}: element ${i} is ${actual[i]}, expected ${expected[i]}`);
    }
  }
}

/** A bump allocator over the memory of `kernels`, from the end of the reserved bytes. */
class Scratch {
  #next = RESERVED_BYTES;
  constructor(readonly memory: WebAssembly.Memory) {}
  put(data: Float32Array | Int32Array | number): number {
    const n = typeof data === "number" ? data : data.length;
    const at = this.#next;
    this.#next = Math.ceil((at + n * 4) / 64) * 64;
    const view = new Float32Array(this.memory.buffer, at, n);
    if (typeof data === "number") view.fill(0);
    else if (data instanceof Int32Array) new Int32Array(this.memory.buffer, at, n).set(data);
    else view.set(data);
    return at;
  }
  get(offset: number, n: number): Float32Array {
    return new Float32Array(this.memory.buffer, offset, n).slice();
  }
}

/**
 * Runs `body` (which writes its inputs, calls kernels and returns its outputs) once on
 * each thread count of `THREADS`, each on a fresh memory, every call split across all
 * threads; checks that every output is bit-identical to the one-thread run.
 */
async function sameOnEveryThreadCount(
  name: string,
  body: (k: Kernels, s: Scratch) => Float32Array[],
): Promise<void> {
  let expected: Float32Array[] | undefined;
  for (const threads of THREADS) {
    const memory = createMemory(64 << 20);
    using k = await createKernels(module, memory, threads, { serialBelow: 0 });
    assertEquals(k.threads, threads);
    const got = body(k, new Scratch(memory));
    if (!expected) expected = got;
    else {
      got.forEach((out, i) =>
        assertBitIdentical(out, expected![i], `${name} output ${i}, ${threads} threads`)
      );
    }
  }
}

Deno.test("share() gives every unit to exactly one part, in whole aligned blocks", () => {
  for (const units of [0, 1, 5, 16, 17, 100, 1001]) {
    for (const align of [1, 16]) {
      for (const parts of [1, 2, 3, 7]) {
        let next = 0;
        for (let p = 0; p < parts; p++) {
          const [u0, u1] = share(units, align, p, parts);
          assertEquals(u0, next, `units=${units} align=${align} parts=${parts}`);
          assert(u1 >= u0 && (u1 % align === 0 || u1 === units));
          next = u1;
        }
        assertEquals(next, units);
      }
    }
  }
});

Deno.test("the control block lies in the reserved bytes, above the module's static data", () => {
  const k = instantiate(module, createMemory(1 << 20));
  const end = k.static_data_end();
  assert(end >= 1024 && end <= CONTROL_OFFSET, `static data ends at ${end}`);
  assert(CONTROL_OFFSET + CONTROL_BYTES <= RESERVED_BYTES);
});

Deno.test("conv1d() and packPanels() are bit-identical on 1, 2 and 3 threads", async () => {
  for (const [T, C, OC] of [[1, 64, 200], [5, 33, 37], [9, 40, 8 * PANEL + 3], [4, 1040, 70]]) {
    const rng = new Rng(T * 1000 + OC);
    const inp = randn(rng, T * C);
    const w = randn(rng, C * OC);
    const bias = randn(rng, Math.ceil(OC / PANEL) * PANEL);
    await sameOnEveryThreadCount(`conv1d T=${T} C=${C} OC=${OC}`, (k, s) => {
      const packed = s.put(packedSize(C, OC));
      k.packPanels(packed, s.put(w), C, OC);
      const [pi, pb, out] = [s.put(inp), s.put(bias), s.put(T * OC)];
      k.conv1d(out, pi, packed, pb, T, C, OC);
      return [s.get(packed, packedSize(C, OC)), s.get(out, T * OC)];
    });
  }
});

Deno.test("logits(), layerNorm(), embed() are bit-identical on 1, 2 and 3 threads", async () => {
  const rng = new Rng(2);
  const [T, C, V, nCtx] = [3, 40, 301, 16];
  const x = randn(rng, T * C);
  const wte = randn(rng, V * C);
  const wpe = randn(rng, nCtx * C);
  const g = randn(rng, C);
  const b = randn(rng, C);
  const tokens = Int32Array.from({ length: T }, () => randint(rng, 0, V - 1));
  await sameOnEveryThreadCount("logits, layerNorm, embed", (k, s) => {
    const [px, pw, pe, pg, pb] = [s.put(x), s.put(wte), s.put(wpe), s.put(g), s.put(b)];
    const [logits, norm, emb] = [s.put(T * V), s.put(T * C), s.put(T * C)];
    k.logits(logits, px, pw, T, C, V);
    k.layerNorm(norm, px, pg, pb, T, C);
    k.embed(emb, s.put(tokens), pw, pe, 1, T, C, 4);
    return [s.get(logits, T * V), s.get(norm, T * C), s.get(emb, T * C)];
  });
});

Deno.test("gelu(), add(), softmax(), readSum() are bit-identical on 1, 2 and 3 threads", async () => {
  const rng = new Rng(3);
  const n = 1003;
  const [rows, cols] = [7, 131];
  const x = randn(rng, n, 3);
  const y = randn(rng, n);
  const z = randn(rng, rows * cols, 4);
  const blocks = 5;
  const r = randn(rng, blocks * READ_BLOCK);
  await sameOnEveryThreadCount("element-wise", (k, s) => {
    const [px, py, pz, pr] = [s.put(x), s.put(y), s.put(z), s.put(r)];
    const [g, a, sm, sums] = [s.put(n), s.put(n), s.put(rows * cols), s.put(blocks)];
    k.gelu(g, px, n);
    k.add(a, px, py, n);
    k.softmax(sm, pz, rows, cols);
    k.readSum(sums, pr, blocks);
    return [s.get(g, n), s.get(a, n), s.get(sm, rows * cols), s.get(sums, blocks)];
  });
});

Deno.test("attention() is bit-identical on 1, 2 and 3 threads", async () => {
  const rng = new Rng(4);
  for (const [B, T, past, nHead, dHead] of [[1, 1, 20, 3, 64], [2, 5, 3, 2, 20]]) {
    const nCtx = Math.ceil((past + T + 2) / 4) * 4; // the cache holds whole blocks of 4 keys
    const C = nHead * dHead;
    const seqStride = 2 * nHead * nCtx * dHead;
    const qkv = randn(rng, B * T * 3 * C);
    const cache = randn(rng, B * seqStride);
    await sameOnEveryThreadCount(`attention B=${B} T=${T} past=${past}`, (k, s) => {
      const [pq, pc, ps, out] = [
        s.put(qkv),
        s.put(cache),
        s.put(B * nHead * nCtx),
        s.put(B * T * C),
      ];
      k.attention(out, pq, pc, ps, B, T, past, nHead, dHead, nCtx, seqStride);
      return [s.get(out, B * T * C), s.get(pc, B * seqStride)];
    });
  }
});

Deno.test("the whole forward pass is bit-identical on 1, 2 and 3 threads", async () => {
  const hp: HParams = { n_vocab: 101, n_ctx: 48, n_embd: 60, n_head: 5, n_layer: 2 };
  const weights = randomWeights(hp, 7);
  const rng = new Rng(5);
  const prompt = [0, 1].map(() => Array.from({ length: 21 }, () => randint(rng, 0, 100)));
  let expected: Float32Array[] | undefined;
  for (const threads of THREADS) {
    const plan = planMemory(hp, { batch: 2, chunk: 16 });
    using k = await createKernels(module, createMemory(plan.bytes), threads, { serialBelow: 0 });
    await loadWeights(k, plan, memorySource(weights));
    const cache = new KVCache(plan);
    const got = [forward(k, cache, prompt, { allPositions: true })];
    for (let step = 0; step < 3; step++) got.push(forward(k, cache, [[step], [step + 50]]));
    if (!expected) expected = got;
    else {got.forEach((l, i) =>
        assertBitIdentical(l, expected![i], `pass ${i}, ${threads} threads`)
      );}
  }
});

Deno.test("a kernel that traps in a worker throws in the caller, and the pool goes on", async () => {
  const bytes = 2 << 20;
  const memory = createMemory(bytes);
  using pool = await WorkerPool.create(module, memory, 3, { serialBelow: 0 });
  const n = 3 * 1024;
  // The caller's third of the range is in bounds; the workers' two thirds run off the end.
  const a = bytes - 4 * 1024;
  const error = assertThrows(
    () => pool.add(RESERVED_BYTES, a, a, n),
    Error,
    "Kernel add failed in worker",
  );
  assert(/out of bounds/.test(error.message), error.message);
  // The caller's own share traps too: its error comes back once the workers are done.
  assertThrows(() => pool.add(RESERVED_BYTES, bytes, bytes, n), WebAssembly.RuntimeError);
  // The pool still works.
  const f32 = new Float32Array(memory.buffer, RESERVED_BYTES, 2 * n).fill(1.5);
  pool.add(RESERVED_BYTES, RESERVED_BYTES, RESERVED_BYTES + 4 * n, n);
  assertEquals(f32.subarray(0, n), new Float32Array(n).fill(3));
});

Deno.test("dispose() stops every worker; the pool then refuses calls", async () => {
  const memory = createMemory(1 << 20);
  const pool = await WorkerPool.create(module, memory, 3);
  await assertRejects(
    () => WorkerPool.create(module, memory, 2),
    Error,
    "already has a worker pool",
  );
  pool[Symbol.dispose]();
  pool[Symbol.dispose]();
  assertThrows(
    () => pool.add(RESERVED_BYTES, RESERVED_BYTES, RESERVED_BYTES, 4),
    Error,
    "disposed",
  );
  // The memory is free for a new pool.
  using again = await WorkerPool.create(module, memory, 2);
  again.add(RESERVED_BYTES, RESERVED_BYTES, RESERVED_BYTES, 100000);
});

Deno.test("createKernels() gives a WasmKernels for one thread and rejects a bad count", async () => {
  using one = await createKernels(module, createMemory(1 << 20), 1);
  assert(one instanceof WasmKernels && !(one instanceof WorkerPool));
  await assertRejects(() => createKernels(module, createMemory(1 << 20), 0), RangeError, "got 0");
  await assertRejects(
    () => WorkerPool.create(module, new WebAssembly.Memory({ initial: 2 }), 2),
    TypeError,
    "shared",
  );
});
