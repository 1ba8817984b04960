/**
 * GPT-2 1558M, whose 6.2 GB of float32 weights no wasm memory holds, loads and decodes in
 * float16 and in q8 on the 4 GiB of one wasm memory, with the process's peak resident
 * memory under 1.3× the bytes the backend holds (nothing held twice while loading). Each
 * type runs in a process of its own (tests/large_model_child.ts) so that its peak memory
 * is its own; the weights are synthetic, streamed as a checkpoint would be.
 */
import { assert, assertEquals } from "./asserts.ts";

for (const dtype of ["q8", "f16"]) {
  Deno.test(`1558M loads and decodes with ${dtype} weights, peak memory under 1.3× the backend's`, async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "tests/large_model_child.ts", dtype],
      cwd: new URL("..", import.meta.url),
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assertEquals(out.code, 0, stderr);
    const r = JSON.parse(new TextDecoder().decode(out.stdout));
    assertEquals(r.dtype, dtype);
    assertEquals(r.tokens.length, 4);
    assert(r.tokens.every((t: number) => Number.isInteger(t) && t >= 0 && t < 50257));
    assert(r.finite, "the logits are finite");
    assert(r.backend_bytes < 2 ** 32, `${r.backend_bytes} bytes`);
    const ratio = r.peak_rss / r.backend_bytes;
    assert(
      ratio < 1.3,
      `peak RSS ${r.peak_rss} is ${ratio.toFixed(2)}× the backend's ${r.backend_bytes}`,
    );
  });
}
