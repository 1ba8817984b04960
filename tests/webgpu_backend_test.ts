/**
 * Every op of the WebGPU backend against the scalar reference (runtime/backend/reference/
 * ops.ts), held to a normalised mean squared error of at most 1e-6 as ggml holds its
 * backends: shapes that are not multiples of the blocks (16, 32, 64, 128), both matrix
 * kernels (split-K up to 8 rows, tiled above), batches with different pasts in
 * non-contiguous slots, attention over several steps and past one chunk of scores, the
 * vocabulary split forced onto small shapes, float16 weights both ways, and the errors
 * and the exit a user meets. On a machine without an adapter they fail in CI and are
 * skipped with the reason elsewhere.
 */
import { assertEquals } from "./asserts.ts";
import { weight } from "./backend_weights.ts";
import { assertNmse, gpuTest, openWebGpu } from "./webgpu_harness.ts";
import type { Tensor } from "../runtime/backend/backend.ts";
import { WebGpuBackend, WGPU_BACKEND_VARIABLE } from "../runtime/backend/webgpu/webgpu_backend.ts";
import { Rng } from "../runtime/generate/random.ts";
import {
  refAttention,
  refConv1d,
  refEmbed,
  refGelu,
  refLayerNorm,
  refLogits,
} from "../runtime/backend/reference/ops.ts";

const gpu = await openWebGpu();
/** A second backend whose vocabulary split limit is 8000 bytes. */
const split = await openWebGpu({ vocabularySplitBytes: 8000 });

function randn(rng: Rng, n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = rng.normal() * scale;
  return a;
}

function randint(rng: Rng, lo: number, hi: number): number {
  return lo + Math.floor(rng.next() * (hi - lo + 1));
}

function ints(b: WebGpuBackend, data: readonly number[], shape = [data.length]): Tensor {
  const t = b.tensor(shape, "i32");
  b.write(t, Int32Array.from(data));
  return t;
}

async function get(b: WebGpuBackend, t: Tensor, n: number): Promise<Float32Array> {
  const out = new Float32Array(n);
  await b.read(t, out);
  return out;
}

gpuTest("embed() equals the reference for every row's token and position", gpu, async (b) => {
  const rng = new Rng(1);
  for (const [V, P, C, rows] of [[7, 5, 3, 1], [50, 9, 37, 6], [300, 20, 130, 17]]) {
    const wte = randn(rng, V * C);
    const wpe = randn(rng, P * C, 0.1);
    const tokens = Array.from({ length: rows }, () => randint(rng, 0, V - 1));
    const positions = Array.from({ length: rows }, () => randint(rng, 0, P - 1));
    const out = b.tensor([rows, C]);
    b.embed(
      out,
      ints(b, tokens),
      ints(b, positions),
      await weight(b, "plain", [V, C], wte),
      await weight(b, "plain", [P, C], wpe),
      rows,
    );
    const expected = new Float32Array(rows * C);
    for (let r = 0; r < rows; r++) {
      expected.set(refEmbed([tokens[r]], wte, wpe, 1, C, positions[r]), r * C);
    }
    assertNmse(await get(b, out, rows * C), expected, `embed V=${V} C=${C} rows=${rows}`);
  }
});

gpuTest("layerNorm() equals the reference on odd widths", gpu, async (b) => {
  const rng = new Rng(2);
  for (const [rows, C] of [[1, 1], [1, 3], [5, 100], [3, 769], [70, 64], [2, 1600]]) {
    const x = randn(rng, rows * C, 3);
    for (let i = 0; i < x.length; i++) x[i] += 2;
    const g = randn(rng, C, 0.1).map((v) => v + 1);
    const bias = randn(rng, C, 0.1);
    const out = b.tensor([rows, C]);
    b.layerNorm(
      out,
      await weight(b, "plain", [rows, C], x),
      await weight(b, "plain", [C], g),
      await weight(b, "plain", [C], bias),
      rows,
    );
    const expected = refLayerNorm(x, g, bias, rows, C);
    assertNmse(await get(b, out, rows * C), expected, `layerNorm rows=${rows} C=${C}`);
  }
});

const CONV_SHAPES: [number, number, number][] = [
  [1, 1, 1],
  [1, 768, 2304],
  [3, 17, 129],
  [8, 64, 128],
  [9, 16, 64],
  [5, 100, 45],
  [33, 130, 77],
  [70, 31, 200],
];

gpuTest("conv1d(), conv1dGelu() and conv1dResidual() equal the reference", gpu, async (b) => {
  const rng = new Rng(3);
  const shapes = [...CONV_SHAPES];
  for (let i = 0; i < 6; i++) {
    shapes.push([randint(rng, 1, 40), randint(rng, 1, 150), randint(rng, 1, 150)]);
  }
  for (const [T, C, OC] of shapes) {
    const x = randn(rng, T * C);
    const w = randn(rng, C * OC, 1 / Math.sqrt(C));
    const bias = randn(rng, OC, 0.1);
    const resid = randn(rng, T * OC);
    const inp = await weight(b, "plain", [T, C], x);
    const wt = b.weight("conv1d", [C, OC]);
    await b.loadWeight(wt, (dest) => Promise.resolve(dest.set(w)));
    const bt = await weight(b, "plain", [OC], bias);
    const plain = b.tensor([T, OC]);
    const gelu = b.tensor([T, OC]);
    const sum = await weight(b, "plain", [T, OC], resid);
    b.conv1d(plain, inp, wt, bt, T);
    b.conv1dGelu(gelu, inp, wt, bt, T);
    b.conv1dResidual(sum, inp, wt, bt, T);
    const expected = refConv1d(x, w, bias, T, C, OC);
    const shape = `T=${T} C=${C} OC=${OC}`;
    assertNmse(await get(b, plain, T * OC), expected, `conv1d ${shape}`);
    assertNmse(await get(b, gelu, T * OC), refGelu(expected), `conv1dGelu ${shape}`);
    assertNmse(
      await get(b, sum, T * OC),
      expected.map((v, i) => resid[i] + v),
      `conv1dResidual ${shape}`,
    );
  }
});

gpuTest("conv1dGelu() stays finite where tanh saturates", gpu, async (b) => {
  const x = Float32Array.from([-200, -20, -3, 0, 3, 20, 200]);
  const out = b.tensor([7, 1]);
  b.conv1dGelu(
    out,
    await weight(b, "plain", [7, 1], x),
    await weight(b, "plain", [1, 1], new Float32Array([1])),
    await weight(b, "plain", [1], new Float32Array(1)),
    7,
  );
  assertNmse(await get(b, out, 7), refGelu(x), "gelu at large |x|");
});

/** Host copies of each slot's keys and values, advanced with refAttention. */
class CacheModel {
  k = new Map<number, Float32Array>();
  v = new Map<number, Float32Array>();
  past = new Map<number, number>();
  constructor(readonly H: number, readonly D: number) {}

  /** The reference output of a step of `seqs` ([slot, T rows of qkv]) and the cache update. */
  step(qkv: Float32Array, slots: readonly number[], T: number): Float32Array {
    const C = this.H * this.D;
    const out = new Float32Array(slots.length * T * C);
    slots.forEach((slot, b) => {
      const past = this.past.get(slot) ?? 0;
      const rows = qkv.subarray(b * T * 3 * C, (b + 1) * T * 3 * C);
      const r = refAttention(
        rows,
        this.k.get(slot) ?? new Float32Array(0),
        this.v.get(slot) ?? new Float32Array(0),
        1,
        T,
        past,
        this.H,
        this.D,
      );
      out.set(r.out, b * T * C);
      this.k.set(slot, r.k);
      this.v.set(slot, r.v);
      this.past.set(slot, past + T);
    });
    return out;
  }
}

gpuTest(
  "attention() over several steps of B sequences in scattered slots equals the reference",
  gpu,
  async (b) => {
    const rng = new Rng(4);
    const [layers, slots, P, H, D] = [2, 5, 300, 3, 7];
    const C = H * D;
    const cache = b.kvCache({ layers, slots, positions: P, heads: H, headDim: D });
    const models = [new CacheModel(H, D), new CacheModel(H, D)];
    // Each step: the slots it runs and T. Sequences start at different pasts, share steps
    // later, and one grows past 256 positions (more than one chunk of scores).
    const steps: [number[], number][] = [
      [[3], 7],
      [[0], 2],
      [[3, 0], 3],
      [[0, 3], 1],
      [[4, 0, 3], 1],
      [[4], 260],
      [[3, 4], 2],
      [[4, 3, 0], 1],
    ];
    for (const [i, [slotList, T]] of steps.entries()) {
      const B = slotList.length;
      const seqs = slotList.flatMap((s) => [s, models[0].past.get(s) ?? 0]);
      for (let layer = 0; layer < layers; layer++) {
        const qkv = randn(rng, B * T * 3 * C);
        const out = b.tensor([B * T, C]);
        b.attention(
          out,
          await weight(b, "plain", [B * T, 3 * C], qkv),
          cache,
          layer,
          ints(b, seqs, [B, 2]),
          B,
          T,
        );
        const expected = models[layer].step(qkv, slotList, T);
        assertNmse(
          await get(b, out, B * T * C),
          expected,
          `attention step ${i} layer ${layer} slots [${slotList}] T=${T}`,
        );
      }
    }
  },
);

gpuTest("attention() of GPT-2's head size (64) over a 1024-position context", gpu, async (b) => {
  const rng = new Rng(5);
  const [H, D, P] = [2, 64, 1024];
  const C = H * D;
  const cache = b.kvCache({ layers: 1, slots: 2, positions: P, heads: H, headDim: D });
  const model = new CacheModel(H, D);
  for (const T of [1000, 23, 1]) {
    const qkv = randn(rng, T * 3 * C);
    const out = b.tensor([T, C]);
    const past = model.past.get(1) ?? 0;
    b.attention(
      out,
      await weight(b, "plain", [T, 3 * C], qkv),
      cache,
      0,
      ints(b, [1, past], [1, 2]),
      1,
      T,
    );
    assertNmse(await get(b, out, T * C), model.step(qkv, [1], T), `attention T=${T} past=${past}`);
  }
});

gpuTest("logits() equals the reference", gpu, async (b) => {
  const rng = new Rng(6);
  for (const [rows, C, V] of [[1, 5, 3], [1, 64, 1000], [4, 33, 257], [20, 48, 130]]) {
    const h = randn(rng, rows * C);
    const wte = randn(rng, V * C, 0.1);
    const w = b.weight("embedding", [V, C]);
    await b.loadWeight(w, (dest) => Promise.resolve(dest.set(wte)));
    const out = b.tensor([rows, V]);
    b.logits(out, await weight(b, "plain", [rows, C], h), w, rows);
    assertNmse(
      await get(b, out, rows * V),
      refLogits(h, wte, rows, C, V),
      `logits ${rows}×${C}×${V}`,
    );
  }
});

gpuTest("logits() and embed() split by vocabulary ranges equal the reference", split, async (b) => {
  const rng = new Rng(7);
  // Bindings start at multiples of 256 bytes (WebGPU's default alignment): wte's ranges
  // are 48 rows of 40 floats (7680 bytes), so 48 + 48 + 4; the logits' row blocks 16 rows
  // of 100 (6400 bytes), so 16 + 16 + 8.
  const [rows, C, V, P] = [40, 40, 100, 4];
  const h = randn(rng, rows * C);
  const wte = randn(rng, V * C, 0.1);
  const wpe = randn(rng, P * C, 0.1);
  const w = b.weight("embedding", [V, C]);
  await b.loadWeight(w, (dest) => Promise.resolve(dest.set(wte)));
  const out = b.tensor([rows, V]);
  const before = b.stats().dispatches;
  b.logits(out, await weight(b, "plain", [rows, C], h), w, rows);
  assertEquals(b.stats().dispatches - before, 3 * 3, "3 row blocks × 3 vocabulary ranges");
  assertNmse(await get(b, out, rows * V), refLogits(h, wte, rows, C, V), "split logits");

  const tokens = Array.from({ length: rows }, (_, r) => (r * 37) % V);
  const positions = tokens.map((t) => t % P);
  const x = b.tensor([rows, C]);
  b.embed(x, ints(b, tokens), ints(b, positions), w, await weight(b, "plain", [P, C], wpe), rows);
  const expected = new Float32Array(rows * C);
  for (let r = 0; r < rows; r++) {
    expected.set(refEmbed([tokens[r]], wte, wpe, 1, C, positions[r]), r * C);
  }
  assertNmse(await get(b, x, rows * C), expected, "split embed");
});

/** `x` rounded to float16 and back: what a float16 weight holds. */
function half(x: Float32Array): Float32Array {
  return new Float32Array(new Float16Array(x));
}

for (const shaderF16 of [true, false]) {
  const how = shaderF16 ? "as f16 where the adapter has shader-f16" : "unpacked from u32 words";
  gpuTest(
    `float16 weights, read ${how}, equal the reference on the rounded values`,
    gpu,
    async () => {
      const rng = new Rng(8);
      // 12000-byte bindings split this wte (37 floats a row, 74 bytes in float16) in ranges
      // of 128 rows, the multiple of rows that starts a range on a 256-byte boundary.
      using b = await WebGpuBackend.create({
        weightType: "f16",
        shaderF16,
        vocabularySplitBytes: 12000,
      });
      for (const [T, C, OC] of [[1, 37, 129], [3, 64, 33], [21, 17, 45], [1, 1, 1]]) {
        const x = randn(rng, T * C);
        const w = randn(rng, C * OC, 1 / Math.sqrt(C));
        const bias = randn(rng, OC, 0.1);
        const wt = b.weight("conv1d", [C, OC]);
        assertEquals([wt.type, wt.bytes], ["f16", Math.ceil(C * OC / 2) * 4]);
        await b.loadWeight(wt, (dest) => Promise.resolve(dest.set(w)));
        const out = b.tensor([T, OC]);
        b.conv1dGelu(
          out,
          await weight(b, "plain", [T, C], x),
          wt,
          await weight(b, "plain", [OC], bias),
          T,
        );
        const expected = refGelu(refConv1d(x, half(w), bias, T, C, OC));
        assertNmse(await get(b, out, T * OC), expected, `f16 conv1dGelu T=${T} C=${C} OC=${OC}`);
      }
      const [rows, C, V, P] = [3, 37, 301, 5];
      const wte = randn(rng, V * C, 0.1);
      const wpe = randn(rng, P * C, 0.1);
      const w = b.weight("embedding", [V, C]);
      await b.loadWeight(w, (dest) => Promise.resolve(dest.set(wte)));
      const h = randn(rng, rows * C);
      const logits = b.tensor([rows, V]);
      const before = b.stats().dispatches;
      b.logits(logits, await weight(b, "plain", [rows, C], h), w, rows);
      assertEquals(b.stats().dispatches - before, 3, "ranges of 128 + 128 + 45 rows");
      assertNmse(await get(b, logits, rows * V), refLogits(h, half(wte), rows, C, V), "f16 logits");
      const tokens = [0, 300, 128];
      const x = b.tensor([rows, C]);
      b.embed(
        x,
        ints(b, tokens),
        ints(b, [4, 0, 2]),
        w,
        await weight(b, "plain", [P, C], wpe),
        rows,
      );
      const expected = new Float32Array(rows * C);
      tokens.forEach((t, r) =>
        expected.set(refEmbed([t], half(wte), wpe, 1, C, [4, 0, 2][r]), r * C)
      );
      assertNmse(await get(b, x, rows * C), expected, "f16 embed");
    },
  );
}

gpuTest("gatherRows() copies the chosen rows in order", gpu, async (b) => {
  const x = Float32Array.from({ length: 6 * 3 }, (_, i) => i);
  const out = b.tensor([4, 3]);
  b.gatherRows(out, await weight(b, "plain", [6, 3], x), [5, 1, 2, 0]);
  assertEquals([...await get(b, out, 12)], [15, 16, 17, 3, 4, 5, 6, 7, 8, 0, 1, 2]);
});

gpuTest("a write after recorded ops does not change what those ops read", gpu, async (b) => {
  const [V, C] = [4, 2];
  const wte = await weight(b, "plain", [V, C], Float32Array.from({ length: V * C }, (_, i) => i));
  const wpe = await weight(b, "plain", [1, C], new Float32Array(C));
  const tokens = b.tensor([1], "i32");
  const pos = ints(b, [0]);
  const first = b.tensor([1, C]);
  const second = b.tensor([1, C]);
  b.write(tokens, Int32Array.of(1));
  b.embed(first, tokens, pos, wte, wpe, 1);
  b.write(tokens, Int32Array.of(3));
  b.embed(second, tokens, pos, wte, wpe, 1);
  assertEquals([...await get(b, first, C)], [2, 3]);
  assertEquals([...await get(b, second, C)], [6, 7]);
});

gpuTest(
  "reading or writing past a tensor's end is a RangeError, and the backend goes on",
  gpu,
  async (b) => {
    const t = b.tensor([4]);
    let caught: unknown;
    try {
      await b.read(t, new Float32Array(5));
    } catch (e) {
      caught = e;
    }
    assertEquals((caught as Error)?.name, "RangeError");
    caught = undefined;
    try {
      b.write(b.tensor([2], "i32"), Int32Array.of(1, 2, 3));
    } catch (e) {
      caught = e;
    }
    assertEquals((caught as Error)?.name, "RangeError");
    assertEquals([...await get(b, t, 4)], [0, 0, 0, 0]);
  },
);

gpuTest("reads in flight at once each get their own rows", gpu, async (b) => {
  const x = await weight(b, "plain", [4, 3], Float32Array.from({ length: 12 }, (_, i) => i));
  const outs = [0, 1, 2, 3].map(() => b.tensor([1, 3]));
  const got = await Promise.all(outs.map((out, r) => {
    b.gatherRows(out, x, [r]);
    return get(b, out, 3);
  }));
  assertEquals(got.map((g) => [...g]), [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10, 11]]);
});

gpuTest("a read submits once and reads back only what was asked", gpu, async (b) => {
  const x = await weight(b, "plain", [2, 2], new Float32Array([1, 2, 3, 4]));
  const out = b.tensor([2, 2]);
  b.resetStats();
  b.layerNorm(
    out,
    x,
    await weight(b, "plain", [2], new Float32Array([1, 1])),
    await weight(b, "plain", [2], new Float32Array(2)),
    2,
  );
  b.conv1d(
    out,
    x,
    await weight(b, "plain", [2, 2], new Float32Array(4)),
    await weight(b, "plain", [2], new Float32Array(2)),
    2,
  );
  await get(b, out, 3);
  assertEquals(b.stats(), { dispatches: 2, submits: 1, bytesRead: 12, bytesWritten: 0 });
});

gpuTest("a process that used the backend exits on its own after dispose", gpu, async () => {
  const script = new URL("../runtime/backend/webgpu/webgpu_backend.ts", import.meta.url).href;
  const code = `
    import { WebGpuBackend } from "${script}";
    const b = await WebGpuBackend.create();
    const x = b.weight("plain", [2, 3]);
    await b.loadWeight(x, (d) => Promise.resolve(d.set([1, 2, 3, 4, 5, 6])));
    const out = b.tensor([2, 3]);
    b.gatherRows(out, x, [1, 0]);
    const got = new Float32Array(6);
    await b.read(out, got);
    b.dispose();
    console.log(got.join(","));
  `;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const timer = setTimeout(() => child.kill(), 15000);
  const { code: status, stdout } = await child.output();
  clearTimeout(timer);
  assertEquals(status, 0, "exit status (killed after 15 s if it hangs)");
  assertEquals(new TextDecoder().decode(stdout).trim(), "4,5,6,1,2,3");
});

Deno.test("no adapter is a one-line BackendError naming the fix, not a hang", async () => {
  const script = new URL("../runtime/backend/webgpu/webgpu_backend.ts", import.meta.url).href;
  const code = `
    import { WebGpuBackend } from "${script}";
    try {
      await WebGpuBackend.create();
      console.log("created");
    } catch (e) {
      console.log(e.name + ": " + e.message);
    }
  `;
  // Vulkan alone, with no Vulkan driver to load: wgpu finds no adapter.
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", code],
    env: { DENO_WEBGPU_BACKEND: "vulkan", VK_ICD_FILENAMES: "/nonexistent.json" },
    stdout: "piped",
    stderr: "null",
  }).spawn();
  const timer = setTimeout(() => child.kill(), 15000);
  const { code: status, stdout } = await child.output();
  clearTimeout(timer);
  assertEquals(status, 0, "exit status (killed after 15 s if it hangs)");
  const line = new TextDecoder().decode(stdout).trim();
  assertEquals(
    line.startsWith("BackendError: webgpu backend: no WebGPU adapter found"),
    true,
    line,
  );
  assertEquals(line.endsWith(`; use backend "wasm"`), true, line);
});

gpuTest(
  "on Linux, wgpu gets Vulkan alone: OpenGL's libEGL, which aborts at exit, never loads",
  gpu,
  () => {
    if (Deno.build.os !== "linux") return;
    assertEquals(Deno.env.get(WGPU_BACKEND_VARIABLE), "vulkan");
    // Read by a child: Deno asks for every permission to read /proc/self.
    const cat = new Deno.Command("cat", { args: [`/proc/${Deno.pid}/maps`], stdout: "piped" });
    const maps = new TextDecoder().decode(cat.outputSync().stdout);
    assertEquals(maps.includes("libc.so"), true, "the process's maps were not read");
    assertEquals(maps.includes("libEGL"), false, "libEGL is mapped into the test process");
  },
);

gpuTest("a device lost mid-run makes read() a one-line BackendError, not a hang", gpu, async () => {
  const adapter = await navigator.gpu.requestAdapter();
  const device = await adapter!.requestDevice();
  const b = await WebGpuBackend.create({ device });
  const x = await weight(b, "plain", [1, 3], new Float32Array([1, 2, 3]));
  const out = b.tensor([1, 3]);
  b.gatherRows(out, x, [0]);
  assertEquals([...await get(b, out, 3)], [1, 2, 3]);
  device.destroy();
  b.gatherRows(out, x, [0]);
  let caught: unknown;
  try {
    await get(b, out, 3);
  } catch (e) {
    caught = e;
  }
  assertEquals((caught as Error)?.name, "BackendError");
  assertEquals((caught as Error).message.includes("\n"), false);
  assertEquals((caught as Error).message.endsWith(`use backend "wasm"`), true);
  b.dispose();
});

gpuTest("dispose() destroys the device; later use is a TypeError", split, (b) => {
  b.dispose();
  let caught: unknown;
  try {
    b.layerNorm(b.tensor([1]), b.tensor([1]), b.tensor([1]), b.tensor([1]), 1);
  } catch (e) {
    caught = e;
  }
  assertEquals((caught as Error)?.name, "TypeError");
});

globalThis.addEventListener("unload", () => {
  if (!(gpu instanceof Error)) gpu.dispose();
});
