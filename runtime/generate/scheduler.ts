/**
 * Continuous batching over a `Gpt2` with KV-cache slots: every concurrent generation gets
 * a slot of its own (or waits, first come first served, for one to free up); a new
 * sequence's prompt runs as a pass of its own in its slot, then the sequence joins the
 * decoding steps, where one forward pass runs the last token of every active sequence,
 * each at its own position. Each sequence samples with its own `Sampler`, so its tokens
 * are the ones it gets alone, whatever else runs beside it.
 *
 * A new sequence's first token goes to its consumer before the next pass starts: the loop
 * runs one prompt pass a turn and yields to the event loop after it, so a server writes
 * the first event while the others wait for the next decoding step.
 *
 * Prompt reuse: a slot's KV cache stays after its sequence ends. A new sequence takes the
 * free slot whose cached tokens share the longest prefix with its prompt (else the one
 * least recently used) and runs only the rest, at least one token so that the first
 * logits exist. On a backend whose rows sum the same way however a pass groups them (the
 * wasm and reference backends), the logits and tokens are those of a cold run, bit for
 * bit.
 *
 * @module
 */
import { yieldToEventLoop } from "./event_loop.ts";
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
  /**
   * Reuse a prefix of the prompt that a free slot's KV cache already holds (default
   * true); false runs the whole prompt.
   */
  cachePrompt?: boolean;
}

/** Options of {@linkcode Scheduler}. */
export interface SchedulerOptions {
  /** The id of `<|endoftext|>`, for `stopAtEndOfText`. */
  endOfText: number;
  /**
   * Whether cached prefixes may stand for recomputing them (default true): only where the
   * backend gives a row the same bits however passes group the rows.
   */
  promptReuse?: boolean;
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
  /**
   * On the first step only: how many of the prompt's tokens were found in the KV cache
   * (prompt reuse) and not run again.
   */
  readonly cachedTokens?: number;
}

/** One generation: its slot once it has one, its sampler, and the steps not yet read. */
class Sequence {
  slot = -1;
  /** Prompt tokens its slot already held when it took it. */
  cached = 0;
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
    readonly cachePrompt: boolean,
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
    const cachedTokens = this.generated === 0 ? this.cached : undefined;
    this.generated++;
    this.last = token;
    this.outbox.push({
      token,
      ...(logprobs && { logprobs }),
      ...(cachedTokens !== undefined && { cachedTokens }),
    });
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

/** A KV-cache slot: whether something holds it, and what its cache holds. */
interface SlotState {
  /** Held by a sequence or a lease. */
  busy: boolean;
  /** The tokens whose keys and values the slot's cache holds, in order (`gpt2.cached`). */
  tokens: number[];
  /** When it was last given back (a count of releases), for least-recently-used reuse. */
  freedAt: number;
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
 * pass per step. It owns the model's slots and what they cache: run passes of your own
 * through a `lease`.
 */
export class Scheduler {
  readonly #gpt2: Gpt2;
  readonly #endOfText: number;
  readonly #promptReuse: boolean;
  /** Each slot's state, by slot. */
  readonly #slots: SlotState[];
  /** Releases so far: the clock of `SlotState.freedAt`. */
  #releases = 0;
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
    this.#promptReuse = options.promptReuse ?? true;
    this.#slots = Array.from(
      { length: gpt2.slots },
      () => ({ busy: false, tokens: [], freedAt: 0 }),
    );
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
    const reuse = (options.cachePrompt ?? true) && this.#promptReuse;
    const seq = new Sequence([...ids], sampler, length, stopAt, logprobs, reuse);
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

  /**
   * Steps while any sequence holds or wants a slot: each turn runs one new sequence's
   * prompt pass, or else one decoding step of all the others, and then yields to the
   * event loop, so that consumers read their tokens (a new sequence's first one before
   * the next pass starts), signals fire and new requests arrive.
   */
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
          for (const slot of lease.slots) this.#free(slot, true);
          this.#lease = undefined;
          continue;
        }
        if (this.#active.size === 0) return;
        const fresh = [...this.#active].find((s) => s.generated === 0 && !s.cancelled);
        if (fresh) await this.#prefill(fresh);
        else {
          const step = [...this.#active].filter((s) => !s.ended && !s.cancelled);
          if (step.length > 0) await this.#decode(step);
        }
        // Consumers read their tokens, signals fire and new requests arrive between steps.
        await yieldToEventLoop();
      }
    } catch (e) {
      // A failed pass leaves the cache in an unknown state: every sequence ends with it.
      for (const seq of [...this.#active, ...this.#waiting.splice(0)]) {
        if (seq instanceof LeaseRequest) seq.granted.reject(e);
        else seq.fail(e);
      }
      for (const seq of this.#active) this.#release(seq);
      for (const slot of this.#slots) slot.tokens = [];
      this.#gpt2.reset();
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
    this.#free(seq.slot, false);
  }

  /** Gives `slot` back; its cache stays for reuse unless `forget` (what a lease ran). */
  #free(slot: number, forget: boolean): void {
    const state = this.#slots[slot];
    state.busy = false;
    state.freedAt = ++this.#releases;
    if (forget) {
      state.tokens = [];
      this.#gpt2.reset(slot);
    }
  }

  /** Free slots, least recently used first (never used: lowest first). */
  #freeSlots(): number[] {
    const free = [...this.#slots.keys()].filter((i) => !this.#slots[i].busy);
    return free.sort((a, b) => this.#slots[a].freedAt - this.#slots[b].freedAt || a - b);
  }

  /**
   * Takes a free slot for `seq`: with reuse, the one whose cache shares the longest prefix
   * with its prompt (at most all but its last token), else the least recently used; the
   * cache is cut back to that prefix.
   */
  #takeSlot(seq: Sequence): void {
    let best = -1;
    let bestShared = -1;
    for (const slot of this.#freeSlots()) {
      const shared = seq.cachePrompt
        ? commonPrefix(this.#slots[slot].tokens, seq.ids, seq.ids.length - 1)
        : 0;
      if (shared > bestShared) [best, bestShared] = [slot, shared];
    }
    const state = this.#slots[best];
    state.busy = true;
    state.tokens.length = bestShared;
    this.#gpt2.truncate(best, bestShared);
    seq.slot = best;
    seq.cached = bestShared;
  }

  /**
   * Gives free slots to what waits, in arrival order: a lease that needs more slots than
   * are free holds up those behind it, so that it is not starved. A lease granted stops
   * admission until it is released.
   */
  #admit(): void {
    while (this.#waiting.length > 0 && !this.#lease) {
      const next = this.#waiting[0];
      const free = this.#freeSlots();
      if (next instanceof LeaseRequest) {
        if (free.length < next.count) return;
        this.#waiting.shift();
        next.slots = free.slice(0, next.count).sort((a, b) => a - b);
        for (const slot of next.slots) {
          this.#slots[slot].busy = true;
          this.#slots[slot].tokens = [];
          this.#gpt2.reset(slot);
        }
        this.#lease = next;
        return;
      }
      if (free.length === 0) return;
      this.#waiting.shift();
      if (next.cancelled) continue;
      this.#takeSlot(next);
      this.#active.add(next);
    }
  }

  /** The prompt's pass (what its slot does not hold yet), alone in its slot, and the first token. */
  async #prefill(seq: Sequence): Promise<void> {
    const tokens = seq.ids.slice(seq.cached);
    const logits = await this.#gpt2.forward([{ slot: seq.slot, tokens }], { out: this.#out });
    this.#slots[seq.slot].tokens.push(...tokens);
    if (seq.step(logits)) this.#release(seq);
  }

  /** One decoding step: every sequence's last token in one pass, one new token each. */
  async #decode(step: Sequence[]): Promise<void> {
    const { n_vocab: V } = this.#gpt2.hparams;
    const logits = await this.#gpt2.forward(
      step.map((s) => ({ slot: s.slot, tokens: [s.last] })),
      { out: this.#out },
    );
    // Every slot of the pass cached its token, even one whose consumer left meanwhile.
    for (const seq of step) this.#slots[seq.slot].tokens.push(seq.last);
    step.forEach((seq, b) => {
      if (seq.cancelled) return;
      if (seq.step(logits.subarray(b * V, (b + 1) * V))) this.#release(seq);
    });
  }
}

/** The length of the common prefix of `a` and `b`, at most `max`. */
function commonPrefix(a: readonly number[], b: readonly number[], max: number): number {
  const n = Math.min(a.length, b.length, max);
  let i = 0;
  while (i < n && a[i] === b[i]) i++;
  return i;
}
