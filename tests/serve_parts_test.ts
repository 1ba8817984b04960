/** The served mode's pure parts: stop strings over streamed text, and step logprobs. */
import fc from "fast-check";
import { assertEquals, assertThrows } from "./asserts.ts";
import { assertClose } from "./assert_close.ts";
import { StopText } from "../runtime/serve/stop_text.ts";
import { stepLogprobs } from "../runtime/generate/logprobs.ts";

/**
 * What a stream ends as: generation stops at the first piece after which a stop string
 * appears, and the text ends before the earliest stop string in what came so far.
 */
function cutStream(pieces: string[], stops: string[]): { text: string; stopped: boolean } {
  let text = "";
  for (const p of pieces) {
    text += p;
    const r = cutWhole(text, stops);
    if (r.stopped) return r;
  }
  return { text, stopped: false };
}

/** The text cut before the first stop string, all at once. */
function cutWhole(text: string, stops: string[]): { text: string; stopped: boolean } {
  let cut = -1;
  for (const s of stops) {
    const at = text.indexOf(s);
    if (at >= 0 && (cut < 0 || at < cut)) cut = at;
  }
  return cut < 0 ? { text, stopped: false } : { text: text.slice(0, cut), stopped: true };
}

Deno.test("StopText: text streamed in any pieces ends before the first stop string, and never shows part of one", () => {
  const alphabet = fc.constantFrom("a", "b", "c", "\n", "é");
  const word = fc.array(alphabet, { minLength: 1, maxLength: 4 }).map((a) => a.join(""));
  fc.assert(
    fc.property(
      fc.array(fc.array(alphabet, { maxLength: 5 }).map((a) => a.join("")), { maxLength: 12 }),
      fc.array(word, { maxLength: 4 }),
      (pieces, stops) => {
        const s = new StopText(stops);
        let shown = "";
        let stopped = false;
        for (const p of pieces) {
          const r = s.push(p);
          shown += r.text;
          stopped ||= r.stopped;
          // What is shown is always a prefix of the final answer.
          const whole = cutStream(pieces, stops).text;
          if (!whole.startsWith(shown)) return false;
        }
        if (!stopped) shown += s.flush();
        const want = cutStream(pieces, stops);
        return shown === want.text && stopped === want.stopped;
      },
    ),
    { numRuns: 500 },
  );
});

Deno.test("StopText holds back a possible start of a stop string until it is decided", () => {
  const s = new StopText(["END"]);
  assertEquals(s.push("abcE"), { text: "abc", stopped: false });
  assertEquals(s.push("N"), { text: "", stopped: false });
  assertEquals(s.push("x"), { text: "ENx", stopped: false });
  assertEquals(s.push("yEND and more"), { text: "y", stopped: true });
  assertEquals(s.push("more"), { text: "", stopped: true });
});

Deno.test("stepLogprobs is the log-softmax at the chosen token and at the largest logits", () => {
  fc.assert(
    fc.property(
      fc.array(fc.float({ min: -20, max: 20, noNaN: true }), { minLength: 1, maxLength: 40 }),
      fc.nat(),
      fc.integer({ min: 0, max: 5 }),
      (values, pick, top) => {
        const logits = new Float32Array(values);
        const token = pick % logits.length;
        const { chosen, top: best } = stepLogprobs(logits, token, top);
        const max = Math.max(...logits);
        const logZ = max + Math.log(logits.reduce((s, v) => s + Math.exp(v - max), 0));
        assertClose([chosen.logprob], [logits[token] - logZ], { atol: 1e-9, rtol: 0 });
        assertEquals(chosen.token, token);
        // The reference: indices sorted by logit descending, lower index first on ties.
        const order = [...logits.keys()].sort((a, b) => logits[b] - logits[a] || a - b);
        assertEquals(best.map((t) => t.token), order.slice(0, top));
        assertClose(best.map((t) => t.logprob), order.slice(0, top).map((i) => logits[i] - logZ), {
          atol: 1e-9,
          rtol: 0,
        });
      },
    ),
  );
  assertThrows(() => stepLogprobs(new Float32Array(3), 0, 6), RangeError, "logprobs");
  assertThrows(() => stepLogprobs(new Float32Array(3), 3, 1), RangeError, "Token 3");
});
