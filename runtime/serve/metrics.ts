/**
 * The server's metrics in Prometheus' text exposition format (version 0.0.4), as
 * llama.cpp's `--metrics` gives them: requests by status, prompt, cached and generated
 * tokens, generated tokens per second, and how full the slots and the queue are.
 *
 * @module
 */

/** The media type of Prometheus' text format. */
export const METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8";

/** The moment's load, read when the metrics are scraped. */
export interface LoadGauges {
  /** HTTP requests being answered (a stream until its last event). */
  readonly requestsInFlight: number;
  /** Sequences admitted and not yet finished, decoding or waiting. */
  readonly sequencesInFlight: number;
  /** KV-cache slots holding a sequence, if the model says. */
  readonly slotsBusy?: number;
  /** The model's slots. */
  readonly slots: number;
  /** Sequences waiting for a slot, if the model says. */
  readonly queueLength?: number;
}

/** Upper bounds of the time histograms' buckets, in seconds. */
const SECONDS_BUCKETS = [0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120];

/** Seconds over which `gpt2_generated_tokens_per_second` is averaged. */
const RATE_WINDOW = 10;

/** A histogram of seconds with fixed buckets. */
class Histogram {
  readonly counts = new Array<number>(SECONDS_BUCKETS.length).fill(0);
  sum = 0;
  count = 0;

  observe(seconds: number): void {
    const i = SECONDS_BUCKETS.findIndex((le) => seconds <= le);
    if (i >= 0) this.counts[i]++;
    this.sum += seconds;
    this.count++;
  }

  lines(name: string): string[] {
    let cumulative = 0;
    const out = SECONDS_BUCKETS.map((le, i) => {
      cumulative += this.counts[i];
      return `${name}_bucket{le="${le}"} ${cumulative}`;
    });
    out.push(`${name}_bucket{le="+Inf"} ${this.count}`);
    out.push(`${name}_sum ${number(this.sum)}`, `${name}_count ${this.count}`);
    return out;
  }
}

/** Counters the server adds to as it answers, and the text `GET /metrics` returns. */
export class Metrics {
  /** Requests answered, by HTTP status. */
  readonly #requests = new Map<number, number>();
  #promptTokens = 0;
  #cachedTokens = 0;
  #generatedTokens = 0;
  readonly #duration = new Histogram();
  readonly #firstToken = new Histogram();
  /** Tokens generated in each of the last whole seconds: [second, tokens] pairs, oldest first. */
  readonly #recent: [number, number][] = [];
  readonly #start: number;

  constructor(readonly now: () => number = () => performance.now()) {
    this.#start = now();
  }

  /** A request has been answered with `status`. */
  request(status: number): void {
    this.#requests.set(status, (this.#requests.get(status) ?? 0) + 1);
  }

  /** A generation request was admitted with prompts of `tokens` tokens in all. */
  prompt(tokens: number): void {
    this.#promptTokens += tokens;
  }

  /** `tokens` prompt tokens were found in the KV cache instead of computed. */
  cached(tokens: number): void {
    this.#cachedTokens += tokens;
  }

  /** `tokens` tokens were generated just now. */
  generated(tokens: number): void {
    this.#generatedTokens += tokens;
    const second = Math.floor(this.now() / 1000);
    const last = this.#recent.at(-1);
    if (last && last[0] === second) last[1] += tokens;
    else this.#recent.push([second, tokens]);
    this.#forget(second);
  }

  /** A generation request ended after `seconds`, its first token after `firstToken` (if any). */
  generation(seconds: number, firstToken: number | undefined): void {
    this.#duration.observe(seconds);
    if (firstToken !== undefined) this.#firstToken.observe(firstToken);
  }

  /** Generated tokens per second over the last RATE_WINDOW seconds (or since the start). */
  tokensPerSecond(): number {
    const now = this.now();
    const second = Math.floor(now / 1000);
    this.#forget(second);
    const tokens = this.#recent.reduce((sum, [, n]) => sum + n, 0);
    const span = Math.min(RATE_WINDOW, (now - this.#start) / 1000);
    return span > 0 ? tokens / span : 0;
  }

  /** Drops the seconds that have left the window ending at `second`. */
  #forget(second: number): void {
    while (this.#recent.length > 0 && this.#recent[0][0] <= second - RATE_WINDOW) {
      this.#recent.shift();
    }
  }

  /** The metrics in Prometheus' text format, with the load as it is now. */
  render(load: LoadGauges): string {
    const out: string[] = [];
    const metric = (name: string, type: string, help: string, lines: string[]) => {
      out.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...lines);
    };
    const requests = [...this.#requests].sort(([a], [b]) => a - b);
    metric(
      "gpt2_requests_total",
      "counter",
      "HTTP requests answered, by status.",
      requests.map(([status, n]) => `gpt2_requests_total{status="${status}"} ${n}`),
    );
    metric("gpt2_prompt_tokens_total", "counter", "Prompt tokens of the generations admitted.", [
      `gpt2_prompt_tokens_total ${this.#promptTokens}`,
    ]);
    metric(
      "gpt2_cached_tokens_total",
      "counter",
      "Prompt tokens found in the KV cache rather than computed.",
      [`gpt2_cached_tokens_total ${this.#cachedTokens}`],
    );
    metric("gpt2_generated_tokens_total", "counter", "Tokens generated.", [
      `gpt2_generated_tokens_total ${this.#generatedTokens}`,
    ]);
    metric(
      "gpt2_generated_tokens_per_second",
      "gauge",
      `Tokens generated per second over the last ${RATE_WINDOW} seconds.`,
      [`gpt2_generated_tokens_per_second ${number(this.tokensPerSecond())}`],
    );
    metric(
      "gpt2_requests_in_flight",
      "gauge",
      "HTTP requests being answered (a stream until its last event).",
      [`gpt2_requests_in_flight ${load.requestsInFlight}`],
    );
    metric(
      "gpt2_sequences_in_flight",
      "gauge",
      "Sequences admitted and not yet finished, decoding or waiting for a slot.",
      [`gpt2_sequences_in_flight ${load.sequencesInFlight}`],
    );
    if (load.slotsBusy !== undefined) {
      metric("gpt2_slots_busy", "gauge", "KV-cache slots holding a sequence.", [
        `gpt2_slots_busy ${load.slotsBusy}`,
      ]);
    }
    metric("gpt2_slots", "gauge", "KV-cache slots: sequences decoded together.", [
      `gpt2_slots ${load.slots}`,
    ]);
    if (load.queueLength !== undefined) {
      metric("gpt2_queue_length", "gauge", "Sequences waiting for a slot.", [
        `gpt2_queue_length ${load.queueLength}`,
      ]);
    }
    metric(
      "gpt2_request_duration_seconds",
      "histogram",
      "Time from a generation request's arrival to its answer's end.",
      this.#duration.lines("gpt2_request_duration_seconds"),
    );
    metric(
      "gpt2_time_to_first_token_seconds",
      "histogram",
      "Time from a generation request's arrival to its first generated token.",
      this.#firstToken.lines("gpt2_time_to_first_token_seconds"),
    );
    return out.join("\n") + "\n";
  }
}

/** A sample value as the text format writes it (finite here, so no NaN or Inf). */
function number(v: number): string {
  return Number.isInteger(v) ? String(v) : v.toPrecision(6).replace(/\.?0+$/, "");
}
