import { assertEquals, assertThrows } from "./asserts.ts";
import { parseFlags, parseFlagsAndArguments } from "../cli/flags.ts";
import { UsageError } from "../cli/usage_error.ts";

const SPEC = {
  model_name: { type: "string", default: "124M", help: "model" },
  top_k: { type: "int", default: 0, help: "top k" },
  temperature: { type: "float", default: 1, help: "temperature" },
  seed: { type: "int", help: "seed" },
} as const;

Deno.test("parseFlags() reads --name=value and --name value, numbers by type, None as the default", () => {
  assertEquals(parseFlags(["--top_k=40", "--temperature", "0.7", "--model_name=355M"], SPEC), {
    model_name: "355M",
    top_k: 40,
    temperature: 0.7,
    seed: undefined,
  });
  assertEquals(parseFlags(["--seed=None", "--top_k", "None"], SPEC), {
    model_name: "124M",
    top_k: 0,
    temperature: 1,
    seed: undefined,
  });
  assertEquals(parseFlags(["-h"], SPEC), "help");
  assertEquals(parseFlags(["--top_k=3", "--help"], SPEC), "help");
});

Deno.test("parseFlags() names what is wrong in one line", () => {
  assertThrows(() => parseFlags(["--topk=40"], SPEC), UsageError, "Unknown flag --topk");
  assertThrows(() => parseFlags(["--top_k"], SPEC), UsageError, "Flag --top_k needs a value");
  assertThrows(() => parseFlags(["--top_k=4.5"], SPEC), UsageError, "must be an integer");
  assertThrows(() => parseFlags(["--temperature=hot"], SPEC), UsageError, "must be a number");
  assertThrows(() => parseFlags(["--help=yes"], SPEC), UsageError, "takes no value");
  assertThrows(() => parseFlags(["124M"], SPEC), UsageError, 'Unexpected argument "124M"');
});

Deno.test("parseFlagsAndArguments() returns the plain arguments in order beside the flags", () => {
  assertEquals(parseFlagsAndArguments(["a", "--top_k=2", "b"], SPEC), {
    flags: { model_name: "124M", top_k: 2, temperature: 1, seed: undefined },
    args: ["a", "b"],
  });
  assertEquals(parseFlagsAndArguments(["a", "-h"], SPEC), "help");
});

Deno.test("a flag's former spelling is still read, with a note on stderr naming the new one", () => {
  const spec = { api_key: { type: "string", help: "key", formerly: "api-key" } } as const;
  const notes: string[] = [];
  const error = console.error;
  console.error = (line: string) => notes.push(line);
  try {
    assertEquals(parseFlags(["--api-key=k"], spec), { api_key: "k" });
    assertEquals(parseFlags(["--api-key", "k"], spec), { api_key: "k" });
    assertEquals(parseFlags(["--api_key=k"], spec), { api_key: "k" });
  } finally {
    console.error = error;
  }
  assertEquals(notes.length, 2);
  assertEquals(notes[0], "Note: --api-key is now spelled --api_key; the old spelling will go");
  assertThrows(() => parseFlags(["--api-key"], spec), UsageError, "Flag --api-key needs a value");
});
