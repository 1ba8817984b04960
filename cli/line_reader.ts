/**
 * Reads prompts one line at a time. On a terminal: line editing and history (node's
 * readline), Ctrl-C or Ctrl-D at the prompt ends the session. From a pipe: one prompt per
 * line, the prompt text printed as Python's `input()` prints it, no escape codes.
 *
 * @module
 */
import { createInterface, type Interface } from "node:readline";
import process from "node:process";

export interface LineReader extends Disposable {
  /** Prints `prompt` and reads a line; `null` at end of input or Ctrl-C at the prompt. */
  readLine(prompt: string): Promise<string | null>;
  /** Lets Ctrl-C reach the process as SIGINT while something else runs (terminal only). */
  pauseForWork(): void;
  /** Takes the terminal back for reading after `pauseForWork`. */
  resumeAfterWork(): void;
}

/** A reader on standard input, suited to whether it is a terminal. */
export function stdinLineReader(): LineReader {
  return Deno.stdin.isTerminal() ? terminalReader() : pipeReader();
}

function terminalReader(): LineReader {
  const history: string[] = [];
  const rl: Interface = createInterface({
    input: process.stdin,
    output: process.stdout,
    terminal: true,
    history,
    historySize: 1000,
  });
  let pending: ((line: string | null) => void) | undefined;
  const finish = (line: string | null) => {
    const p = pending;
    pending = undefined;
    p?.(line);
  };
  rl.on("SIGINT", () => {
    process.stdout.write("\n");
    finish(null);
  });
  rl.on("close", () => finish(null));
  return {
    readLine(prompt) {
      return new Promise((resolve) => {
        pending = resolve;
        rl.question(prompt, (line) => finish(line));
      });
    },
    pauseForWork() {
      rl.pause();
      Deno.stdin.setRaw(false);
    },
    resumeAfterWork() {
      Deno.stdin.setRaw(true);
      rl.resume();
    },
    [Symbol.dispose]() {
      rl.close();
    },
  };
}

function pipeReader(): LineReader {
  const lines = createInterface({ input: process.stdin, terminal: false })[Symbol.asyncIterator]();
  const encoder = new TextEncoder();
  return {
    async readLine(prompt) {
      Deno.stdout.writeSync(encoder.encode(prompt));
      const next = await lines.next();
      return next.done ? null : next.value;
    },
    pauseForWork() {},
    resumeAfterWork() {},
    [Symbol.dispose]() {
      lines.return?.();
    },
  };
}
