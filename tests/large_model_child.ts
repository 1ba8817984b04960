/**
 * Run by large_model_test.ts in a process of its own: GPT-2 1558M's real shapes with
 * synthetic weights, in the weight type given, loaded and decoding a few greedy tokens.
 * Prints one JSON line: the tokens, the bytes the backend holds and the process's peak
 * resident memory.
 *
 *   deno run -A tests/large_model_child.ts f16|q8   (-A: it reads /proc/self/status)
 */
import type { WeightType } from "../runtime/backend/backend.ts";
import { createGpt2 } from "../runtime/generate/model.ts";
import { GPT2_SIZES } from "../runtime/gpt2/hparams.ts";
import { syntheticSource } from "../testing/random_model.ts";
import { argmax } from "../runtime/generate/sampler.ts";

/** The process's peak resident memory in bytes (Linux's VmHWM). */
function peakRss(): number {
  const line = Deno.readTextFileSync("/proc/self/status").match(/^VmHWM:\s+(\d+) kB$/m);
  return line ? Number(line[1]) * 1024 : NaN;
}

const hp = GPT2_SIZES["1558M"];
using gpt2 = await createGpt2(hp, { dtype: Deno.args[0] as WeightType, slots: 1 });
using source = syntheticSource(hp);
await gpt2.load(source);
const tokens: number[] = [];
let logits = await gpt2.forward([{ slot: 0, tokens: [464, 3290, 318, 257, 1332, 286, 262, 6801] }]);
for (let i = 0; i < 4; i++) {
  tokens.push(argmax(logits));
  logits = await gpt2.forward([{ slot: 0, tokens: [tokens[i]] }]);
}
const backend = gpt2.backend as unknown as { allocatedBytes: number; weightType: string };
console.log(JSON.stringify({
  dtype: backend.weightType,
  tokens,
  finite: logits.every(Number.isFinite),
  backend_bytes: backend.allocatedBytes,
  peak_rss: peakRss(),
}));
