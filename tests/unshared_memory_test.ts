/**
 * What a page that is not cross-origin isolated gets: no shared memory, so the kernels run
 * on one thread over an unshared memory (the module's memory import rewritten), whose
 * buffer detaches as it grows. The logits are the shared memory's, bit for bit, and more
 * threads are refused with the headers that would allow them.
 */
import { assertEquals, assertRejects } from "./asserts.ts";
import { withTempDir } from "./temp_dir.ts";
import { loadModel } from "../runtime/generate/model.ts";
import { BackendError } from "../runtime/errors.ts";
import type { HParams } from "../runtime/gpt2/hparams.ts";
import { randomWeights, writeModelFolder } from "../testing/random_model.ts";

const HP: HParams = { n_vocab: 300, n_ctx: 64, n_embd: 64, n_head: 4, n_layer: 2 };

/** Runs `fn` as a page without cross-origin isolation would. */
async function unisolated<T>(fn: () => Promise<T>): Promise<T> {
  Object.defineProperty(globalThis, "crossOriginIsolated", { value: false, configurable: true });
  try {
    return await fn();
  } finally {
    delete (globalThis as { crossOriginIsolated?: boolean }).crossOriginIsolated;
  }
}

for (const dtype of ["f32", "q8"] as const) {
  Deno.test(`on an unshared memory one thread gives the shared memory's ${dtype} logits`, async () => {
    await withTempDir(async (dir) => {
      await writeModelFolder(dir, HP, randomWeights(HP, 4));
      const ids = [1, 2, 3, 250, 17, 9];
      const run = async () => {
        using model = await loadModel(dir, { threads: 1, dtype });
        const greedy: number[] = [];
        for await (const id of model.generate(ids, { length: 8, temperature: 0 })) greedy.push(id);
        return { logits: await model.logits(ids), greedy };
      };
      assertEquals(await unisolated(run), await run());
    });
  });
}

Deno.test("on an unshared memory more than one thread is a BackendError naming the headers", async () => {
  await withTempDir(async (dir) => {
    await writeModelFolder(dir, HP, randomWeights(HP, 4));
    await unisolated(() =>
      assertRejects(
        () => loadModel(dir, { threads: 2 }),
        BackendError,
        "Cross-Origin-Opener-Policy",
      )
    );
  });
});
