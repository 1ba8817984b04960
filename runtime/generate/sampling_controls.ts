/**
 * The sampling controls, in one table: each one's library option, command-line flag,
 * server field, range and neutral default. The library's checks (`validateSampling`), the
 * tools' flags (cli/sampling.ts) and the server's parser (runtime/serve/sampling_fields.ts)
 * all derive from it, so a control is added here once.
 *
 * The order they act in, the same on every path (greedy included, which takes the arg max
 * of what the first four steps leave):
 * 1. `repetitionPenalty` on the raw logits of every token in the context window,
 * 2. `presencePenalty` and `frequencyPenalty` on the tokens generated so far,
 * 3. `logitBias`,
 * 4. `noRepeatNgramSize` bans,
 * 5. `temperature`, then `topK`, `topP` and `minP` on what is left.
 *
 * @module
 */

/** How the next token is drawn; every control is neutral by default. */
export interface SamplingOptions {
  /** Divides the logits; 0 picks the most likely token (default 1). */
  temperature?: number;
  /** Keep only the k most likely tokens; 0 keeps all (default 0). */
  topK?: number;
  /**
   * Keep the smallest set of most likely tokens whose probability reaches p, and always at
   * least one; 1 keeps all (default 1).
   */
  topP?: number;
  /**
   * Keep the tokens whose probability is at least `minP` times the most likely one's
   * (llama.cpp's `min_p`); 0 keeps all (default 0).
   */
  minP?: number;
  /**
   * Hugging Face's (CTRL's) repetition penalty: a token in the context window has its
   * logit divided by it when positive, multiplied when negative; 1 is none (default 1).
   */
  repetitionPenalty?: number;
  /**
   * The context window of `repetitionPenalty`: the last n tokens of the prompt and what
   * was generated (llama.cpp's `repeat_last_n`); -1 is all of them (the default), 0 none.
   */
  repeatLastN?: number;
  /**
   * OpenAI's presence penalty: subtracted from the logit of every token generated so far
   * (default 0).
   */
  presencePenalty?: number;
  /**
   * OpenAI's frequency penalty: subtracted once per time a token was generated so far
   * (default 0).
   */
  frequencyPenalty?: number;
  /** Token id → a bias in [-100, 100] added to its logit; -100 bans it in effect (default none). */
  logitBias?: Readonly<Record<number, number>>;
  /**
   * Hugging Face's `no_repeat_ngram_size`: ban any token that would complete an n-gram
   * already in the context (prompt and generated); 0 is off (default 0).
   */
  noRepeatNgramSize?: number;
}

/** One control: where it appears and what it takes. */
export interface SamplingControl {
  /** The library option (`SamplingOptions`). */
  readonly option: keyof SamplingOptions;
  /** The command-line flag, without `--`. */
  readonly flag: string;
  /** The server's request field. */
  readonly field: string;
  /** A number, a whole number, or a map of token ids to biases. */
  readonly kind: "number" | "integer" | "bias";
  /** The smallest value taken (the bias's, for `"bias"`). */
  readonly min: number;
  /** With `minOpen`, `min` itself is not taken. */
  readonly minOpen?: boolean;
  /** The largest value taken. */
  readonly max: number;
  /** A narrower largest value of the server's field, where OpenAI's API documents one. */
  readonly fieldMax?: number;
  /** The neutral value: the control then changes no token. */
  readonly default: number | Readonly<Record<number, number>>;
  /** What it does, for `--help`. */
  readonly help: string;
}

/** Every sampling control, in the order they act. */
export const SAMPLING_CONTROLS: readonly SamplingControl[] = [
  {
    option: "repetitionPenalty",
    flag: "repetition_penalty",
    field: "repeat_penalty",
    kind: "number",
    min: 0,
    minOpen: true,
    max: Infinity,
    default: 1,
    help:
      "divides the logit of a token in the last repeat_last_n (multiplies if negative); 1 is off",
  },
  {
    option: "repeatLastN",
    flag: "repeat_last_n",
    field: "repeat_last_n",
    kind: "integer",
    min: -1,
    max: Number.MAX_SAFE_INTEGER,
    default: -1,
    help: "tokens of context repetition_penalty looks back over; -1 all, 0 none",
  },
  {
    option: "presencePenalty",
    flag: "presence_penalty",
    field: "presence_penalty",
    kind: "number",
    min: -2,
    max: 2,
    default: 0,
    help: "subtracted from the logit of every token generated so far",
  },
  {
    option: "frequencyPenalty",
    flag: "frequency_penalty",
    field: "frequency_penalty",
    kind: "number",
    min: -2,
    max: 2,
    default: 0,
    help: "subtracted from a token's logit once per time it was generated",
  },
  {
    option: "logitBias",
    flag: "logit_bias",
    field: "logit_bias",
    kind: "bias",
    min: -100,
    max: 100,
    default: {},
    help:
      `JSON of token ids to biases in [-100, 100] added to their logits, e.g. '{"50256": -100}'`,
  },
  {
    option: "noRepeatNgramSize",
    flag: "no_repeat_ngram_size",
    field: "no_repeat_ngram_size",
    kind: "integer",
    min: 0,
    max: Number.MAX_SAFE_INTEGER,
    default: 0,
    help: "ban any token that would repeat an n-gram of this size; 0 is off",
  },
  {
    option: "temperature",
    flag: "temperature",
    field: "temperature",
    kind: "number",
    min: 0,
    max: Infinity,
    fieldMax: 2,
    default: 1,
    help: "divides the logits: lower is more predictable, 0 is greedy",
  },
  {
    option: "topK",
    flag: "top_k",
    field: "top_k",
    kind: "integer",
    min: 0,
    max: Number.MAX_SAFE_INTEGER,
    default: 0,
    help: "sample from the k most likely tokens; 0 for no limit",
  },
  {
    option: "topP",
    flag: "top_p",
    field: "top_p",
    kind: "number",
    min: 0,
    minOpen: true,
    max: 1,
    default: 1,
    help: "sample from the smallest set of tokens with this much probability",
  },
  {
    option: "minP",
    flag: "min_p",
    field: "min_p",
    kind: "number",
    min: 0,
    max: 1,
    default: 0,
    help: "keep tokens at least this fraction as likely as the most likely one; 0 is off",
  },
];

/** The range a control takes, as messages write it: `in [0, 2]`, `in (0, 1]`, `>= 0`. */
export function describeRange(control: SamplingControl, max = control.max): string {
  const open = control.minOpen ? "(" : "[";
  if (max === Infinity || max === Number.MAX_SAFE_INTEGER) {
    return `${control.minOpen ? ">" : ">="} ${control.min}`;
  }
  return `in ${open}${control.min}, ${max}]`;
}

/** How {@linkcode checkControl} names and bounds a value. */
export interface CheckOptions {
  /** The name messages give it: the option, the flag or the field, as the caller speaks. */
  name: string;
  /** The model's n_vocab: a bias's keys must be below it (unchecked when absent). */
  vocabSize?: number;
  /** A narrower largest value than the table's (a server field's `fieldMax`). */
  max?: number;
}

/**
 * Checks `value` for `control`; returns it as the library takes it.
 * @throws {RangeError} saying, under `options.name`, what is wrong and what is taken
 */
export function checkControl(
  control: SamplingControl,
  value: unknown,
  options: CheckOptions,
): number | Readonly<Record<number, number>> {
  const { name } = options;
  const max = options.max ?? control.max;
  if (control.kind === "bias") return checkBias(control, value, name, options.vocabSize);
  const integer = control.kind === "integer";
  const kind = integer ? "an integer" : "a number";
  const ok = typeof value === "number" &&
    (integer ? Number.isInteger(value) : Number.isFinite(value)) &&
    (control.minOpen ? value > control.min : value >= control.min) && value <= max;
  if (!ok) {
    throw new RangeError(
      `${name} must be ${kind} ${describeRange(control, max)}, got ${show(value)}`,
    );
  }
  return value as number;
}

function checkBias(
  control: SamplingControl,
  value: unknown,
  name: string,
  vocabSize: number | undefined,
): Readonly<Record<number, number>> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new RangeError(
      `${name} must be an object of token ids to biases in [${control.min}, ${control.max}], got ${
        show(value)
      }`,
    );
  }
  const ids = vocabSize === undefined ? "integers >= 0" : `integers in [0, ${vocabSize})`;
  for (const [key, bias] of Object.entries(value)) {
    const id = Number(key);
    if (!(/^(0|[1-9][0-9]*)$/.test(key) && (vocabSize === undefined || id < vocabSize))) {
      throw new RangeError(`${name} has the key "${key}", not a token id: ids are ${ids}`);
    }
    if (!(typeof bias === "number" && bias >= control.min && bias <= control.max)) {
      throw new RangeError(
        `${name}["${key}"] must be a number in [${control.min}, ${control.max}], got ${show(bias)}`,
      );
    }
  }
  return value as Readonly<Record<number, number>>;
}

/** A value for a message: itself if short, else its type. */
function show(v: unknown): string {
  if (typeof v === "number") return String(v);
  const text = JSON.stringify(v);
  return text !== undefined && text.length <= 40 ? text : typeof v;
}

/** Every control's value in `options`, defaults filled in. */
export type ResolvedSampling = Required<SamplingOptions>;

/**
 * Checks every control in `options` (named by its option) and fills in the defaults.
 * @throws {RangeError} naming the first bad one
 */
export function validateSampling(
  options: SamplingOptions,
  vocabSize?: number,
): ResolvedSampling {
  const out: Record<string, unknown> = {};
  for (const control of SAMPLING_CONTROLS) {
    const value = options[control.option];
    out[control.option] = value === undefined
      ? control.default
      : checkControl(control, value, { name: control.option, vocabSize });
  }
  return out as ResolvedSampling;
}
