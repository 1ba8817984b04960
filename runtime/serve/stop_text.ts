/**
 * Stop strings over streamed text: the text ends before the first stop string to appear,
 * and while the end of what has arrived could still be the start of one, that end is
 * held back, so a streamed piece never shows a part of a stop string.
 *
 * @module
 */

/**
 * Cuts streamed text at the first stop string.
 *
 * @example
 * ```ts
 * import { StopText } from "./stop_text.ts";
 * const s = new StopText(["\n\n"]);
 * const a = s.push("one\n"); // "\n" could start "\n\n": held back
 * const b = s.push("\ntwo"); // the stop string: the text ends before it
 * if (a.text !== "one" || a.stopped || b.text !== "" || !b.stopped) throw new Error();
 * ```
 */
export class StopText {
  #pending = "";
  #stopped = false;

  constructor(readonly stops: readonly string[]) {}

  /** Whether a stop string has appeared; after that, `push` takes nothing more. */
  get stopped(): boolean {
    return this.#stopped;
  }

  /** Adds `text`; returns what can be shown now, and whether a stop string ended the text. */
  push(text: string): { text: string; stopped: boolean } {
    if (this.#stopped) return { text: "", stopped: true };
    const pending = this.#pending + text;
    let cut = -1;
    for (const stop of this.stops) {
      const at = pending.indexOf(stop);
      if (at >= 0 && (cut < 0 || at < cut)) cut = at;
    }
    if (cut >= 0) {
      this.#pending = "";
      this.#stopped = true;
      return { text: pending.slice(0, cut), stopped: true };
    }
    const hold = this.#heldLength(pending);
    this.#pending = pending.slice(pending.length - hold);
    return { text: pending.slice(0, pending.length - hold), stopped: false };
  }

  /** The text held back at the end of the stream (it did not become a stop string). */
  flush(): string {
    const rest = this.#pending;
    this.#pending = "";
    return rest;
  }

  /** The length of the longest end of `text` that is a proper start of a stop string. */
  #heldLength(text: string): number {
    let best = 0;
    for (const stop of this.stops) {
      for (let k = Math.min(stop.length - 1, text.length); k > best; k--) {
        if (text.endsWith(stop.slice(0, k))) {
          best = k;
          break;
        }
      }
    }
    return best;
  }
}
