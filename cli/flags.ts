/**
 * Command-line flags the way python-fire reads them for OpenAI's scripts: `--top_k=40` and
 * `--top_k 40` both work. Every flag is declared with its type, default and meaning, so
 * parsing, checking and `--help` come from one table.
 *
 * @module
 */
import { parseArgs } from "node:util";
import { UsageError } from "./usage_error.ts";

/** One flag: its type, default (undefined: none) and meaning for `--help`. */
export interface FlagSpec {
  readonly type: "string" | "int" | "float";
  readonly default?: string | number;
  readonly help: string;
  /** An earlier spelling, still read for a while with a note on stderr. */
  readonly formerly?: string;
}

/** A flag whose value is a string. */
export type StringFlag = FlagSpec & { readonly type: "string" };

/** A flag whose value is a number (`"int"` or `"float"`). */
export type NumberFlag = FlagSpec & { readonly type: "int" | "float" };

/** The parsed values of the flags `S` declares: a string, or a number when given or defaulted. */
export type FlagValues<S extends Record<string, FlagSpec>> = {
  [K in keyof S]: S[K]["type"] extends "string" ? string : number | undefined;
};

/**
 * Parses `args` against `spec`. Returns `"help"` for `-h`/`--help`.
 * @throws {UsageError} naming an unknown flag, a missing value, a value of the wrong type
 *   or an argument that is not a flag
 */
export function parseFlags<S extends Record<string, FlagSpec>>(
  args: string[],
  spec: S,
): FlagValues<S> | "help" {
  const parsed = parseFlagsAndArguments(args, spec);
  if (parsed === "help") return parsed;
  if (parsed.args.length > 0) {
    throw new UsageError(
      `Unexpected argument "${parsed.args[0]}": give flags as --name=value, see --help`,
    );
  }
  return parsed.flags;
}

/**
 * `parseFlags` for commands that also take plain arguments (such as a model size): the
 * flags, and the other arguments in order, for the command to check.
 */
export function parseFlagsAndArguments<S extends Record<string, FlagSpec>>(
  args: string[],
  spec: S,
): { flags: FlagValues<S>; args: string[] } | "help" {
  const options: Record<string, { type: "string" | "boolean"; short?: string }> = {
    help: { type: "boolean", short: "h" },
  };
  const formerly = new Map<string, string>();
  for (const [name, s] of Object.entries(spec)) {
    options[name] = { type: "string" };
    if (s.formerly !== undefined) {
      options[s.formerly] = { type: "string" };
      formerly.set(s.formerly, name);
    }
  }
  const { values, positionals, tokens } = parseArgs({
    args,
    options,
    strict: false,
    allowPositionals: true,
    tokens: true,
  });
  for (const t of tokens) {
    if (t.kind !== "option") continue;
    if (!Object.hasOwn(options, t.name)) {
      throw new UsageError(`Unknown flag ${t.rawName}, see --help`);
    }
    if (t.name === "help" && t.value !== undefined) {
      throw new UsageError(`Flag ${t.rawName} takes no value`);
    }
    const name = formerly.get(t.name) ?? t.name;
    if (t.name !== "help" && t.value === undefined) {
      throw new UsageError(
        `Flag ${t.rawName} needs a value, e.g. ${t.rawName}=${spec[name].default ?? 1}`,
      );
    }
    if (name !== t.name) {
      console.error(`Note: ${t.rawName} is now spelled --${name}; the old spelling will go`);
      values[name] ??= values[t.name];
    }
  }
  if (values.help) return "help";
  const out: Record<string, string | number | undefined> = {};
  for (const [name, s] of Object.entries(spec)) {
    const raw = values[name];
    if (raw === undefined || raw === "None") {
      out[name] = s.default;
      continue;
    }
    const text = String(raw);
    if (s.type === "string") {
      out[name] = text;
      continue;
    }
    const n = Number(text);
    if (text.trim() === "" || !Number.isFinite(n) || (s.type === "int" && !Number.isInteger(n))) {
      throw new UsageError(
        `Flag --${name} must be ${s.type === "int" ? "an integer" : "a number"}, got "${text}"`,
      );
    }
    out[name] = n;
  }
  return { flags: out as FlagValues<S>, args: positionals };
}

/**
 * `parseFlags` for a command's entry point: on `--help`, prints `usage` and returns
 * `undefined`, for the command to exit 0.
 */
export function parseCommandLine<S extends Record<string, FlagSpec>>(
  args: string[],
  spec: S,
  usage: string,
): FlagValues<S> | undefined {
  const flags = parseFlags(args, spec);
  if (flags !== "help") return flags;
  console.log(usage);
  return undefined;
}

/** The flags part of `--help`: one line per flag with its default. */
export function describeFlags(spec: Record<string, FlagSpec>): string {
  const rows = Object.entries(spec).map(([name, s]) => {
    const value = s.type === "string" ? "STR" : s.type === "int" ? "INT" : "NUM";
    const def = s.default === undefined ? "" : ` (default: ${s.default})`;
    return [`  --${name}=${value}`, s.help + def];
  });
  rows.push(["  -h, --help", "print this help and exit"]);
  const width = Math.max(...rows.map((r) => r[0].length)) + 2;
  return rows.map(([a, b]) => a.padEnd(width) + b).join("\n");
}
