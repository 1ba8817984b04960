/**
 * `deno task perplexity`: how well a model predicts a text file: perplexity, mean negative
 * log-likelihood and bits per byte, over sliding windows as Hugging Face's perplexity
 * guide computes them.
 *
 *   deno task perplexity --model models/124M --file text.txt [--ctx 1024] [--stride 512]
 *
 * @module
 */
import { UsageError } from "./usage_error.ts";
import { loadModel, type Model } from "../runtime/generate/model.ts";
import { openModelFiles } from "../runtime/gpt2/model_files.ts";
import { describeFlags, type FlagSpec, parseCommandLine } from "./flags.ts";
import { loadNotes, MODEL_FLAGS, modelOptions } from "./model_flags.ts";
import { runMain } from "./run_main.ts";

const FLAGS = {
  model: { type: "string", help: "the model: a model folder, or a .gguf file" },
  file: { type: "string", help: "the text to score, UTF-8" },
  ctx: { type: "int", help: "tokens per window (default: the model's n_ctx)" },
  stride: { type: "int", help: "tokens the window moves each time (default: --ctx)" },
  ...MODEL_FLAGS,
} satisfies Record<string, FlagSpec>;

export const USAGE = `usage: deno task perplexity --model DIR|FILE --file TEXT [flags]

Scores a text with a model: its perplexity, its mean negative log-likelihood (NLL, nats
per token) and bits per byte, as Hugging Face's perplexity guide computes them with a
sliding window. The text is encoded as it is (no <|endoftext|> is added). Windows of --ctx
tokens start at tokens 0, S, 2S, … (S = --stride) until one reaches the end; each window
scores only the tokens no earlier window scored, each predicted from all the tokens
before it in its window. With --stride equal to --ctx (the default) the windows do not
overlap and the first token of each is not scored, since nothing precedes it there; a
smaller stride gives every scored token at least ctx − stride tokens of context and costs
ctx / stride times the passes. Bits per byte are the total NLL in bits over the file's
bytes.

flags:
${describeFlags(FLAGS)}`;

/** One window: tokens [begin, end) run through the model; [scoreFrom, end) are scored. */
export interface Window {
  readonly begin: number;
  readonly end: number;
  readonly scoreFrom: number;
}

/**
 * The windows over `n` tokens, as Hugging Face's perplexity guide slides them: from
 * token 0 in steps of `stride`, each `ctx` long (the last may be shorter), ending with
 * the first that reaches token n; each scores the tokens past the previous window's end,
 * except its own first token, which has no context in it.
 *
 * @example
 * ```ts
 * import { slidingWindows } from "./perplexity.ts";
 * const w = slidingWindows(10, 4, 2);
 * // [0, 4) scores 1–3; [2, 6) scores 4–5; [4, 8) scores 6–7; [6, 10) scores 8–9.
 * if (w.map((x) => x.scoreFrom).join() !== "1,4,6,8") throw new Error();
 * ```
 */
export function slidingWindows(n: number, ctx: number, stride: number): Window[] {
  const out: Window[] = [];
  let scored = 0; // tokens before this index are scored or cannot be
  for (let begin = 0; begin < n; begin += stride) {
    const end = Math.min(begin + ctx, n);
    out.push({ begin, end, scoreFrom: Math.max(scored, begin + 1) });
    scored = end;
    if (end === n) break;
  }
  return out;
}

/** The sums a perplexity comes from. */
export interface Score {
  /** Negative log-likelihood of every scored token, summed, in nats. */
  readonly nll: number;
  /** Tokens scored. */
  readonly tokens: number;
  /** Windows run. */
  readonly windows: number;
}

/**
 * Scores `ids` with `model` over `slidingWindows(ids.length, ctx, stride)`; `onWindow`
 * hears after each window how many are done and the score so far.
 */
export async function scoreTokens(
  model: Model,
  ids: readonly number[],
  options: {
    ctx: number;
    stride: number;
    onWindow?: (done: number, total: number, sofar: Score) => void;
  },
): Promise<Score> {
  const windows = slidingWindows(ids.length, options.ctx, options.stride);
  let nll = 0, tokens = 0;
  for (const [i, { begin, end, scoreFrom }] of windows.entries()) {
    // Entry k of promptLogprobs is token begin + k + 1's log-probability.
    const steps = await model.promptLogprobs(ids.slice(begin, end), 0);
    for (let t = scoreFrom; t < end; t++) nll -= steps[t - begin - 1].chosen.logprob;
    tokens += end - scoreFrom;
    options.onWindow?.(i + 1, windows.length, { nll, tokens, windows: i + 1 });
  }
  return { nll, tokens, windows: windows.length };
}

/** One redraw of the progress bar: `[=====>    ] 12/215 windows, perplexity so far 205.3`. */
export function progressBar(done: number, total: number, sofar: Score, columns = 80): string {
  const tail = ` ${done}/${total} windows, perplexity so far ${
    Math.exp(sofar.nll / sofar.tokens).toFixed(2)
  }`;
  const width = Math.max(10, Math.min(50, columns - 3 - tail.length));
  const filled = Math.round((width * done) / total);
  const bar = "=".repeat(Math.max(0, filled - 1)) +
    (filled > 0 ? (done === total ? "=" : ">") : "");
  return `[${bar.padEnd(width)}]${tail}`;
}

/** KV-cache bytes the tool spends on extra slots, at most. */
const SLOT_BUDGET = 256 << 20;

/**
 * Slots to load the model with. A pass that wants every position's logits computes them
 * `slots` rows per call of the output head, and each call reads the whole token
 * embedding: more slots, fewer reads. Each slot costs a KV cache of n_layer · 2 · n_ctx ·
 * n_embd floats, so take as many as SLOT_BUDGET holds, from 4 (the default) to 32.
 */
async function headRows(path: string): Promise<number> {
  using files = await openModelFiles(path);
  const { n_layer, n_ctx, n_embd } = files.hparams;
  const perSlot = n_layer * 2 * n_ctx * n_embd * 4;
  return Math.max(4, Math.min(32, Math.floor(SLOT_BUDGET / perSlot)));
}

function terminalColumns(): number {
  try {
    return Deno.consoleSize().columns;
  } catch {
    return 80;
  }
}

export async function main(args: string[]): Promise<number> {
  const flags = parseCommandLine(args, FLAGS, USAGE);
  if (!flags) return 0;
  if (flags.model === undefined) {
    throw new UsageError("--model is required: a model folder or a .gguf file, see --help");
  }
  if (flags.file === undefined) throw new UsageError("--file is required: the text to score");
  const options = modelOptions(flags);
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(flags.file);
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.IsADirectory)) throw e;
    throw new UsageError(`Cannot read --file "${flags.file}": not found or not a file`);
  }
  using model = await loadModel(flags.model, { ...options, slots: await headRows(flags.model) });
  const { n_ctx } = model.hparams;
  const ctx = flags.ctx ?? n_ctx;
  if (!(ctx >= 2 && ctx <= n_ctx)) {
    throw new UsageError(`--ctx must be in [2, ${n_ctx}] (the model's n_ctx), got ${ctx}`);
  }
  const stride = flags.stride ?? ctx;
  if (!(stride >= 1 && stride <= ctx)) {
    throw new UsageError(`--stride must be in [1, ${ctx}] (--ctx), got ${stride}`);
  }
  const ids = model.tokenizer.encode(new TextDecoder().decode(bytes));
  if (ids.length < 2) {
    throw new UsageError(`"${flags.file}" encodes to ${ids.length} tokens; at least 2 are needed`);
  }
  for (const note of loadNotes(flags, model)) console.error(note);

  const terminal = Deno.stderr.isTerminal();
  const encoder = new TextEncoder();
  let lastDraw = -Infinity;
  const score = await scoreTokens(model, ids, {
    ctx,
    stride,
    onWindow: (done, total, sofar) => {
      if (!terminal || (done < total && performance.now() - lastDraw < 100)) return;
      lastDraw = performance.now();
      const line = `\r${progressBar(done, total, sofar, terminalColumns())}\x1b[K`;
      Deno.stderr.writeSync(encoder.encode(line + (done === total ? "\n" : "")));
    },
  });
  const meanNll = score.nll / score.tokens;
  console.log(`perplexity: ${Math.exp(meanNll).toFixed(6)}`);
  console.log(
    `mean NLL: ${meanNll.toFixed(10)} nats per token (${score.tokens} of ${ids.length} ` +
      `tokens scored, ${score.windows} windows of ${ctx}, stride ${stride})`,
  );
  console.log(
    `bits per byte: ${(score.nll / Math.LN2 / bytes.length).toFixed(6)} (${bytes.length} bytes)`,
  );
  console.log(`model: ${flags.model} (${model.dtype} on ${model.backend})`);
  return 0;
}

if (import.meta.main) runMain(() => main(Deno.args));
