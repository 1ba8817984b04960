/**
 * Weight types and slots decided by estimate (runtime/generate/placement.ts): the wasm
 * backend's estimate equals what it allocates, the choice equals the trial-and-error
 * policy it replaced (every type and slot count tried on a fresh backend), and a model that
 * fits nowhere gets a message that says what would help. Large shapes are only allocated:
 * memory that is never touched costs nothing resident.
 */
import { assert, assertEquals, assertRejects } from "./asserts.ts";
import { gpuTest, openWebGpu } from "./webgpu_harness.ts";
import { WEIGHT_TYPES, type WeightType } from "../runtime/backend/backend.ts";
import { type BackendTarget, wasmTarget } from "../runtime/backend/create.ts";
import { WasmBackend } from "../runtime/backend/wasm/wasm_backend.ts";
import { WebGpuBackend } from "../runtime/backend/webgpu/webgpu_backend.ts";
import { BackendError } from "../runtime/errors.ts";
import { createGpt2 } from "../runtime/generate/model.ts";
import { DEFAULT_SLOTS, place, type PlacementOptions } from "../runtime/generate/placement.ts";
import { Gpt2 } from "../runtime/gpt2/gpt2.ts";
import { GPT2_SIZES, type HParams } from "../runtime/gpt2/hparams.ts";
import { gpt2Plan } from "../runtime/gpt2/plan.ts";
import { memorySource, randomWeights } from "../testing/random_model.ts";

/** Small shapes that run: odd sizes, a q8 tail block, 16-column panels (4C > 1024), a context too short to lend the cache to staging. */
const SMALL: HParams[] = [
  { n_vocab: 397, n_ctx: 64, n_embd: 72, n_head: 3, n_layer: 2 },
  { n_vocab: 300, n_ctx: 8, n_embd: 32, n_head: 2, n_layer: 2 },
  { n_vocab: 1000, n_ctx: 40, n_embd: 272, n_head: 4, n_layer: 1 },
];

/** Each slot's KV cache is 1 GiB: four and the weights are over 4 GiB, two fit. */
const LONG: HParams = { n_vocab: 300, n_ctx: 65536, n_embd: 32, n_head: 2, n_layer: 64 };

Deno.test("the wasm estimate is what the backend allocates, exactly, once the model has loaded and run", async () => {
  for (const hp of SMALL) {
    const weights = randomWeights(hp, 3);
    for (const weightType of WEIGHT_TYPES) {
      for (const [slots, chunk, threads] of [[1, 256, 1], [3, 5, 1], [2, 9, 2]]) {
        const backend = await WasmBackend.create({ threads, weightType });
        using gpt2 = Gpt2.create(backend, hp, { slots, chunk });
        await gpt2.load(memorySource(weights));
        await gpt2.forward([{ slot: 0, tokens: [1, 2, 3, 4, 5, 6, 7] }]);
        await gpt2.forward(
          Array.from({ length: slots }, (_, slot) => ({ slot, tokens: [8] })),
        );
        const { bytes } = WasmBackend.fit(gpt2Plan(hp, { slots, chunk }), weightType, threads);
        const what = `${JSON.stringify(hp)} ${weightType} ${slots} slots, ${threads} threads`;
        assertEquals(bytes, backend.allocatedBytes, what);
      }
    }
  }
});

Deno.test("the wasm estimate counts f16's widened panel once per thread, the widest C's, and no scratch for f32", () => {
  const plan = gpt2Plan(GPT2_SIZES["124M"], { slots: 1 });
  const extra = (type: WeightType) =>
    WasmBackend.fit(plan, type, 3).bytes - WasmBackend.fit(plan, type, 1).bytes;
  // c_proj of the MLP reads 4 · 768 features: a panel of 16 columns of them in f32.
  assertEquals(extra("f16"), 2 * 4 * 16 * 3072);
  assertEquals(extra("f32"), 0);
});

Deno.test("the wasm estimate is what the backend allocates for GPT-2's sizes, every type, 1 to 4 slots", async () => {
  for (const size of ["124M", "355M", "774M", "1558M"]) {
    const hp = GPT2_SIZES[size];
    for (const weightType of WEIGHT_TYPES) {
      for (const slots of [1, 2, 4]) {
        const fit = WasmBackend.fit(gpt2Plan(hp, { slots }), weightType, 1);
        using backend = await WasmBackend.create({ threads: 1, weightType });
        let allocated: number | undefined;
        try {
          Gpt2.create(backend, hp, { slots });
          allocated = backend.allocatedBytes;
        } catch (e) {
          if (!(e instanceof BackendError)) throw e;
        }
        const what = `${size} ${weightType} ${slots} slots`;
        if (allocated === undefined) {
          assert(fit.misfit !== undefined, `${what}: did not fit, but the estimate said it does`);
          assert(fit.bytes > 2 ** 32, what);
        } else {
          assertEquals(fit.misfit, undefined, `${what}: fit, but the estimate said not`);
          // The products' staging buffers lie in the cache here: created is final.
          assertEquals(fit.bytes, allocated, what);
        }
      }
    }
  }
});

/**
 * The policy placement.ts replaced, as model.ts had it: every (weight type × slot count)
 * pair tried in order, each on a fresh backend, until one allocates. Memoised by pair.
 */
const allocates = new Map<string, boolean>();
async function trialAndError(
  hp: HParams,
  options: PlacementOptions,
): Promise<[WeightType, number] | "fails"> {
  const batch = options.batch ?? 1;
  const slotTries: number[] = [];
  if (options.slots !== undefined) slotTries.push(Math.max(options.slots, batch));
  else {
    for (let s = Math.max(DEFAULT_SLOTS, batch); s > batch; s = Math.floor(s / 2)) {
      slotTries.push(s);
    }
    slotTries.push(batch);
  }
  const dtype = options.dtype ?? "auto";
  for (const type of dtype === "auto" ? WEIGHT_TYPES : [dtype]) {
    for (const slots of slotTries) {
      const key = `${JSON.stringify(hp)} ${type} ${slots}`;
      if (!allocates.has(key)) {
        using backend = await WasmBackend.create({ threads: 1, weightType: type });
        try {
          Gpt2.create(backend, hp, { slots });
          allocates.set(key, true);
        } catch (e) {
          if (!(e instanceof BackendError)) throw e;
          allocates.set(key, false);
        }
      }
      if (allocates.get(key)) return [type, slots];
    }
  }
  return "fails";
}

Deno.test("placement chooses what trying every type and slot count on a fresh backend chose", async () => {
  const wasm = await wasmTarget();
  const shapes = [...["124M", "774M", "1558M"].map((s) => GPT2_SIZES[s]), LONG];
  let compared = 0;
  for (const hp of shapes) {
    for (const dtype of ["auto", "f32", "f16", "q8"] as const) {
      for (const slots of [undefined, 1, 3, 8]) {
        for (const batch of [1, 2]) {
          const options = { dtype, slots, batch };
          const want = await trialAndError(hp, options);
          const got = await place([wasm], hp, options).then(
            (p) => [p.weightType, p.plan.slots] as [WeightType, number],
            (e) => {
              if (!(e instanceof BackendError)) throw e;
              return "fails" as const;
            },
          );
          assertEquals(got, want, `${JSON.stringify(hp)} ${JSON.stringify(options)}`);
          compared++;
        }
      }
    }
  }
  assertEquals(compared, 4 * 4 * 4 * 2);
});

Deno.test("placement: f32 where it fits, else f16, else q8; fewer slots before a less faithful type; batch slots kept", async () => {
  const wasm = await wasmTarget();
  const cases: [string, PlacementOptions, WeightType, number][] = [
    ["124M", {}, "f32", 4],
    ["774M", {}, "f32", 2], // three slots would fit; the default halves 4 to 2
    ["1558M", {}, "f16", 1], // 6.2 GB in float32 cannot fit 4 GiB
    ["1558M", { dtype: "q8" }, "q8", 4], // 3.97 GiB with four slots (1.0625 bytes a weight)
    ["1558M", { batch: 2 }, "q8", 4], // generateBatch needs two slots: q8 holds the default four
    ["124M", { dtype: "f16", slots: 3 }, "f16", 3],
    ["124M", { batch: 6 }, "f32", 6],
  ];
  for (const [size, options, dtype, slots] of cases) {
    const p = await place([wasm], GPT2_SIZES[size], options);
    assertEquals(
      [p.weightType, p.plan.slots],
      [dtype, slots],
      `${size} ${JSON.stringify(options)}`,
    );
  }
  const long = await place([wasm], LONG, {});
  assertEquals([long.weightType, long.plan.slots], ["f32", 2]);
});

Deno.test("placement's errors say what did not fit and what would", async () => {
  const wasm = await wasmTarget();
  const fails = async (hp: HParams, options: PlacementOptions) => {
    const e = await place([wasm], hp, options).then(() => undefined, (e) => e);
    assert(e instanceof BackendError, `${JSON.stringify(options)}: ${e}`);
    return e.message;
  };
  const huge = GPT2_SIZES["1558M"];
  assertEquals(
    await fails(huge, { dtype: "f32", slots: 1 }),
    'The model needs 6.40 GiB of wasm memory, more than the 4 GiB a WebAssembly memory holds: use dtype "f16"',
  );
  const slots = await fails(huge, { dtype: "f16", slots: 4 });
  assert(slots.startsWith("The model needs 5.31 GiB of wasm memory"), slots);
  // q8 holds the four slots that float16 cannot.
  assert(slots.endsWith(': use dtype "q8", or fewer slots (1 fit)'), slots);
  const tooLong = await fails({ ...huge, n_ctx: 65536 }, {});
  assert(
    tooLong.startsWith(
      "The model fits the wasm backend in none of f32, f16, q8 weights, even with 1 slot (the model needs",
    ),
    tooLong,
  );
  assert(tooLong.endsWith(": use a smaller model or a shorter context"), tooLong);
});

Deno.test("placement tries the targets in order: the first that holds the model", async () => {
  const wasm = await wasmTarget();
  let created = 0;
  const small: BackendTarget = {
    name: "webgpu",
    weightTypes: ["f32", "f16"],
    fit: (plan, type) => {
      const { bytes } = wasm.fit(plan, type);
      return bytes > 2 ** 31 ? { bytes, misfit: "Over 2 GiB" } : { bytes };
    },
    create: () => {
      created++;
      return Promise.reject(new Error("not created by place()"));
    },
  };
  const p124 = await place([small, wasm], GPT2_SIZES["124M"], {});
  assertEquals([p124.target.name, p124.weightType, p124.plan.slots], ["webgpu", "f32", 4]);
  const p774 = await place([small, wasm], GPT2_SIZES["774M"], {});
  assertEquals([p774.target.name, p774.weightType, p774.plan.slots], ["webgpu", "f16", 1]);
  const p1558 = await place([small, wasm], GPT2_SIZES["1558M"], {});
  assertEquals([p1558.target.name, p1558.weightType, p1558.plan.slots], ["wasm", "f16", 1]);
  assertEquals(created, 0, "placing creates no backend");
});

Deno.test("createGpt2() makes one backend, of the chosen type", async () => {
  using gpt2 = await createGpt2(GPT2_SIZES["1558M"], { threads: 1 });
  assertEquals([gpt2.backend.weightType, gpt2.slots], ["f16", 1]);
  const est = WasmBackend.fit(gpt2Plan(GPT2_SIZES["1558M"], { slots: 1 }), "f16", 1).bytes;
  assertEquals((gpt2.backend as WasmBackend).allocatedBytes, est);
  await assertRejects(
    () => createGpt2(GPT2_SIZES["124M"], { backend: "cuda" as "wasm" }),
    RangeError,
    'Unknown backend "cuda": choose one of wasm, webgpu, auto',
  );
});

// The WebGPU target: its limits from one adapter probe (here Mesa's llvmpipe, whose
// storage bindings hold 128 MiB), and no device requested when nothing fits.
const probe = await openWebGpu();
if (!(probe instanceof Error)) probe.dispose();

/** 4608 features: a c_fc weight is 170 MB even in float16; in q8 the model fits wasm. */
const WIDE: HParams = { n_vocab: 1000, n_ctx: 64, n_embd: 4608, n_head: 36, n_layer: 9 };

gpuTest(
  "webgpu: a model that fits neither f32 nor f16 says so, and that wasm's q8 holds it",
  probe,
  async () => {
    const { limits } = await WebGpuBackend.probe();
    const fc = 4608 * 4 * 4608 * 2;
    assert(
      fc > limits.maxStorageBufferBindingSize,
      "the f16 weight exceeds this adapter's binding",
    );
    const e = await createGpt2(WIDE, { backend: "webgpu", dtype: "auto" }).then(
      () => undefined,
      (e) => e,
    );
    assert(e instanceof BackendError, String(e));
    assertEquals(
      e.message,
      "The model fits the webgpu backend in neither f32 nor f16 weights, even with 1 slot " +
        `(a conv1d weight [4608, 18432] is ${fc} bytes, more than the ` +
        `${limits.maxStorageBufferBindingSize} bytes the adapter binds at once): ` +
        'use backend "wasm" with dtype "q8"',
    );
    assert(!e.message.includes('dtype "f16"'), "never the type that just failed");
  },
);

gpuTest(
  "webgpu: q8, which it does not store, is refused with the types it does and wasm",
  probe,
  async () => {
    await assertRejects(
      () => createGpt2(GPT2_SIZES["124M"], { backend: "webgpu", dtype: "q8" }),
      BackendError,
      'The webgpu backend has no q8 weights: use dtype "f32", or backend "wasm"',
    );
  },
);

gpuTest(
  "webgpu: a KV cache layer over the binding limit points to wasm in float32",
  probe,
  async () => {
    // Each layer's cache for one slot is 256 MiB.
    const hp: HParams = { n_vocab: 300, n_ctx: 65536, n_embd: 512, n_head: 8, n_layer: 2 };
    const e = await createGpt2(hp, { backend: "webgpu" }).then(() => undefined, (e) => e);
    assert(e instanceof BackendError, String(e));
    assert(e.message.includes("one layer's KV cache for 1 slot is 268435456 bytes"), e.message);
    assert(e.message.endsWith('use backend "wasm" with dtype "f32"'), e.message);
  },
);
