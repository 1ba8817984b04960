/**
 * Continuous batching over a `Gpt2` with KV-cache slots: every concurrent generation gets
 * a slot of its own (or waits, first come first served, for one to free up); a new
 * sequence's prompt runs as a pass of its own in its slot, then the sequence joins the
 * decoding steps, where one forward pass runs the last token of every active sequence,
 * each at its own position. Each sequence samples with its own `Sampler`, so its tokens
 * are the ones it gets alone, whatever else runs beside it.
 *
 * @module
 */
import { setImmediate } from "node:timers";
import type { Gpt2 } from "../gpt2/gpt2.ts";
import { checkLogprobs, type StepLogprobs, stepLogprobs } from "./logprobs.ts";
import { checkGeneration } from "./prompt_check.ts";
import { Sampler, type SamplerOptions } from "./sampler.ts";

/** What one generation asks of the scheduler. */
export interface SequenceOptions extends SamplerOptions {
  /** Tokens to generate (at least 1); the prompt and they must fit the context window. */
  length: number;
  /**
   * Give each token its log-probability and those of the `logprobs` most likely tokens
   * (0 to `MAX_TOP_LOGPROBS`); absent: none.
   */
  logprobs?: number;
  /** End after `<|endoftext|>` (the scheduler's `endOfText`), which is yielded (default false). */
  stopAtEndOfText?: boolean;
  /** Aborting ends the generation at the next step; the generator then throws the reason. */
  signal?: AbortSignal;
}

/** Options of {@linkcode Scheduler}. */
export interface SchedulerOptions {
  /** The id of `<|endoftext|>`, for `stopAtEndOfText`. */
  endOfText: number;
}

/** What one step of a generation produced: a token, and what was asked about it. */
export interface GenerationStep {
  /** The token drawn. */
  readonly token: number;
  /**
   * With the `logprobs` option: the token's log-probability and the most likely tokens',
   * from the model's logits before any sampling control (see `stepLogprobs`).
   */
  readonly logprobs?: StepLogprobs;
}

/** One generation: its slot once it has one, its sampler, and the steps not yet read. */
class Sequence {
  slot = -1;
  /** Tokens generated so far. */
  generated = 0;
  /** The last token, the input of the next decoding step. */
  last = -1;
  /** Generated, not yet taken by the consumer. */
  readonly outbox: GenerationStep[] = [];
  /** No more tokens will come: finished, cancelled or failed. */
  ended = false;
  /** The consumer left (returned early or aborted): drop it at the next step. */
  cancelled = false;
  error: unknown = undefined;
  #wake: (() => void) | undefined;

  constructor(
    readonly ids: readonly number[],
    readonly sampler: Sampler,
    readonly length: number,
    readonly stopAt: number,
    readonly logprobs: number | undefined,
  ) {}

  /**
   * Draws the next token from `row` (n_vocab logits, valid during the call) and hands it
   * to the consumer; returns whether the sequence is done.
   */
  step(row: Float32Array): boolean {
    const token = this.sampler.sample(row, 1)[0];
    const logprobs = this.logprobs === undefined
      ? undefined
      : stepLogprobs(row, token, this.logprobs);
    this.generated++;
    this.last = token;
    this.outbox.push(logprobs ? { token, logprobs } : { token });
    const done = this.generated === this.length || token === this.stopAt;
    if (done) this.ended = true;
    this.notify();
    return done;
  }

  fail(error: unknown): void {
    this.error = error;
    this.ended = true;
    this.notify();
  }

  /** Resolves at the next token, end or notification. */
  wait(): Promise<void> {
    return new Promise((resolve) => this.#wake = resolve);
  }

  notify(): void {
    const wake = this.#wake;
    this.#wake = undefined;
    wake?.();
  }
}

/**
 * Slots held for work of one's own on the `Gpt2` (a batch of sequences decoded side by
 * side, a single pass): while a lease is held, the scheduler runs no pass. Dispose it to
 * give the slots back.
 */
export interface SlotLease extends Disposable {
  /** The slots held, each reset to no cached positions. */
  readonly slots: readonly number[];
}

/** A lease waiting in line with the sequences, then held. */
class LeaseRequest {
  slots: number[] = [];
  readonly granted = Promise.withResolvers<void>();
  readonly released = Promise.withResolvers<void>();
  constructor(readonly count: number) {}
}

/**
 * Runs concurrent generations on one `Gpt2`, up to `gpt2.slots` of them in one forward
 * pass per step.
 */
export class Scheduler {
  readonly #gpt2: Gpt2;
  readonly #endOfText: number;
  /** Slots no sequence holds, lowest first. */
  readonly #free: number[];
  readonly #active = new Set<Sequence>();
  /** Sequences and leases in arrival order, waiting for slots. */
  readonly #waiting: (Sequence | LeaseRequest)[] = [];
  /** The lease being held: no pass runs until it is released. */
  #lease: LeaseRequest | undefined;
  #running = false;
  /** Logits of one step, (slots, n_vocab), reused from step to step. */
  readonly #out: Float32Array;

  constructor(gpt2: Gpt2, options: SchedulerOptions) {
    this.#gpt2 = gpt2;
    this.#endOfText = options.endOfText;
    this.#free = Array.from({ length: gpt2.slots }, (_, i) => i);
    this.#out = new Float32Array(gpt2.slots * gpt2.hparams.n_vocab);
  }

  /** Sequences holding a slot. */
  get active(): number {
    return this.#active.size;
  }

  /** Sequences waiting for a slot. */
  get waiting(): number {
    return this.#waiting.length;
  }

  /**
   * Generates up to `options.length` tokens after `ids` in a slot of its own, waiting for
   * one if all are taken. Returning early (or aborting `signal`) frees the slot at the
   * next step.
   * @throws {RangeError} for an empty prompt, a bad token, a prompt and length that do
   *   not fit the context window, or a bad sampling option (before anything runs)
   */
  async *generate(
    ids: readonly number[],
    options: SequenceOptions,
  ): AsyncGenerator<GenerationStep> {
    const { length, signal, logprobs } = options;
    checkGeneration(this.#gpt2.hparams, ids, length);
    if (logprobs !== undefined) checkLogprobs(logprobs);
    const sampler = new Sampler(options, { prompt: ids, vocabSize: this.#gpt2.hparams.n_vocab });
    signal?.throwIfAborted();
    const stopAt = options.stopAtEndOfText ? this.#endOfText : -1;
    const seq = new Sequence([...ids], sampler, length, stopAt, logprobs);
    const onAbort = () => {
      seq.cancelled = true;
      seq.notify();
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    this.#waiting.push(seq);
    this.#kick();
    try {
      while (true) {
        signal?.throwIfAborted();
        if (seq.outbox.length > 0) {
          yield seq.outbox.shift()!;
          continue;
        }
        if (seq.ended) {
          if (seq.error !== undefined) throw seq.error;
          return;
        }
        await seq.wait();
      }
    } finally {
      signal?.removeEventListener("abort", onAbort);
      seq.cancelled = true;
      this.#drop(seq);
    }
  }

  /**
   * Waits for `count` free slots, in line with the generations that wait for one, and for
   * the pass in progress to end; then holds them, and no generation steps, until the
   * lease is disposed.
   * @throws {RangeError} if `count` is not in `[1, gpt2.slots]`
   */
  async lease(count: number, signal?: AbortSignal): Promise<SlotLease> {
    if (!Number.isInteger(count) || count < 1 || count > this.#gpt2.slots) {
      throw new RangeError(
        `A lease takes 1 to ${this.#gpt2.slots} slots (the model's slots), got ${count}`,
      );
    }
    signal?.throwIfAborted();
    const request = new LeaseRequest(count);
    const onAbort = () => {
      const at = this.#waiting.indexOf(request);
      if (at < 0) return;
      this.#waiting.splice(at, 1);
      request.granted.reject(signal!.reason);
    };
    signal?.addEventListener("abort", onAbort, { once: true });
    this.#waiting.push(request);
    this.#kick();
    try {
      await request.granted.promise;
    } finally {
      signal?.removeEventListener("abort", onAbort);
    }
    let released = false;
    return {
      slots: request.slots,
      [Symbol.dispose]: () => {
        if (released) return;
        released = true;
        request.released.resolve();
      },
    };
  }

  /** Starts the decoding loop unless it runs. */
  #kick(): void {
    if (this.#running) return;
    this.#running = true;
    this.#loop().finally(() => {
      this.#running = false;
      // A sequence that came while the loop was ending must not wait for nobody.
      if (this.#waiting.length > 0) this.#kick();
    });
  }

  /** Steps while any sequence holds or wants a slot. */
  async #loop(): Promise<void> {
    try {
      while (true) {
        this.#retire();
        this.#admit();
        const lease = this.#lease;
        if (lease) {
          // No pass is in flight here: the lease's holder has the model to itself.
          lease.granted.resolve();
          await lease.released.promise;
          this.#free.push(...lease.slots);
          this.#free.sort((a, b) => a - b);
          this.#lease = undefined;
          continue;
        }
        if (this.#active.size === 0) return;
        for (const seq of this.#active) {
          if (seq.slot >= 0 && seq.generated === 0 && !seq.cancelled) await this.#prefill(seq);
        }
        const step = [...this.#active].filter((s) => !s.ended && !s.cancelled && s.generated > 0);
        if (step.length > 0) await this.#decode(step);
        // Consumers read their tokens, signals fire and new requests arrive between steps.
        await new Promise((resolve) => setImmediate(resolve));
      }
    } catch (e) {
      // A failed pass leaves the cache in an unknown state: every sequence ends with it.
      for (const seq of [...this.#active, ...this.#waiting.splice(0)]) {
        if (seq instanceof LeaseRequest) seq.granted.reject(e);
        else seq.fail(e);
      }
      for (const seq of this.#active) this.#release(seq);
    }
  }

  /** Frees the slots of sequences that ended or whose consumer left. */
  #retire(): void {
    for (const seq of this.#active) {
      if (seq.cancelled || seq.ended) this.#release(seq);
    }
  }

  /**
   * Takes a sequence whose consumer left out of the line or off its slot. A pass in
   * flight may still hold the slot, but slots are only handed out between passes.
   */
  #drop(seq: Sequence): void {
    const at = this.#waiting.indexOf(seq);
    if (at >= 0) this.#waiting.splice(at, 1);
    if (this.#active.has(seq)) this.#release(seq);
    // A freed slot can go to a waiting sequence.
    if (this.#waiting.length > 0) this.#kick();
  }

  #release(seq: Sequence): void {
    if (!this.#active.delete(seq)) return;
    this.#free.push(seq.slot);
    this.#free.sort((a, b) => a - b);
  }

  /**
   * Gives free slots to what waits, in arrival order: a lease that needs more slots than
   * are free holds up those behind it, so that it is not starved. A lease granted stops
   * admission until it is released.
   */
  #admit(): void {
    while (this.#waiting.length > 0 && !this.#lease) {
      const next = this.#waiting[0];
      if (next instanceof LeaseRequest) {
        if (this.#free.length < next.count) return;
        this.#waiting.shift();
        next.slots = this.#free.splice(0, next.count);
        for (const slot of next.slots) this.#gpt2.reset(slot);
        this.#lease = next;
        return;
      }
      if (this.#free.length === 0) return;
      this.#waiting.shift();
      if (next.cancelled) continue;
      next.slot = this.#free.shift()!;
      this.#gpt2.reset(next.slot);
      this.#active.add(next);
    }
  }

  /** The prompt's pass, alone in its slot, and the first token. */
  async #prefill(seq: Sequence): Promise<void> {
    const logits = await this.#gpt2.forward([{ slot: seq.slot, tokens: seq.ids }], {
      out: this.#out,
    });
    if (seq.step(logits)) this.#release(seq);
  }

  /** One decoding step: every sequence's last token in one pass, one new token each. */
  async #decode(step: Sequence[]): Promise<void> {
    const { n_vocab: V } = this.#gpt2.hparams;
    const logits = await this.#gpt2.forward(
      step.map((s) => ({ slot: s.slot, tokens: [s.last] })),
      { out: this.#out },
    );
    step.forEach((seq, b) => {
      if (seq.cancelled) return;
      if (seq.step(logits.subarray(b * V, (b + 1) * V))) this.#release(seq);
    });
  }
}
