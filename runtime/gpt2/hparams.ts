/** The shape of a GPT-2 model, as OpenAI's `hparams.json` names it. */
export interface HParams {
  /** Vocabulary size: 50257 for every released GPT-2. */
  readonly n_vocab: number;
  /** Context window: the most positions the model can attend over (1024). */
  readonly n_ctx: number;
  /** Width of the residual stream (768 for 124M). */
  readonly n_embd: number;
  /** Attention heads per layer; n_embd must be a multiple of it. */
  readonly n_head: number;
  /** Number of transformer blocks (12 for 124M). */
  readonly n_layer: number;
  /**
   * Whether the output head is a (n_vocab, n_embd) matrix of its own rather than the token
   * embedding. Not in `hparams.json`: GPT-2 ties them, and only a GGUF file whose
   * `output.weight` differs from `token_embd.weight` sets it.
   */
  readonly untied_head?: boolean;
}

/** The hyperparameters of the released GPT-2 models, by the name `download_model.py` uses. */
export const GPT2_SIZES: Readonly<Record<string, HParams>> = {
  "124M": { n_vocab: 50257, n_ctx: 1024, n_embd: 768, n_head: 12, n_layer: 12 },
  "355M": { n_vocab: 50257, n_ctx: 1024, n_embd: 1024, n_head: 16, n_layer: 24 },
  "774M": { n_vocab: 50257, n_ctx: 1024, n_embd: 1280, n_head: 20, n_layer: 36 },
  "1558M": { n_vocab: 50257, n_ctx: 1024, n_embd: 1600, n_head: 25, n_layer: 48 },
};

const FIELDS = ["n_vocab", "n_ctx", "n_embd", "n_head", "n_layer"] as const;

/**
 * Checks that `value` holds every field as a positive integer and that n_embd divides by
 * n_head; returns it typed. Throws a `RangeError` naming the field otherwise; `source`
 * names where the values came from.
 */
export function validateHParams(value: unknown, source = "hparams"): HParams {
  if (typeof value !== "object" || value === null) {
    throw new RangeError(`${source} must be a JSON object with ${FIELDS.join(", ")}`);
  }
  const v = value as Record<string, unknown>;
  for (const f of FIELDS) {
    const x = v[f];
    if (x === undefined) throw new RangeError(`${source} is missing "${f}"`);
    if (typeof x !== "number" || !Number.isInteger(x) || x <= 0) {
      throw new RangeError(
        `${source} field "${f}" must be a positive integer, got ${JSON.stringify(x)}`,
      );
    }
  }
  const hp = Object.fromEntries(FIELDS.map((f) => [f, v[f]])) as unknown as HParams;
  if (hp.n_embd % hp.n_head !== 0) {
    throw new RangeError(
      `${source}: n_embd (${hp.n_embd}) must be a multiple of n_head (${hp.n_head})`,
    );
  }
  return hp;
}
