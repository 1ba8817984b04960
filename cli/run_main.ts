import { isUserError } from "../runtime/errors.ts";
import { UsageError } from "./usage_error.ts";

/**
 * Runs a CLI entry point: its return value is the exit code; a user error prints one line
 * (`error: <message>`) and exits 1; anything else is a bug and keeps its stack trace.
 */
export async function runMain(main: () => Promise<number | void>): Promise<never> {
  let code: number;
  try {
    code = (await main()) ?? 0;
  } catch (e) {
    if (!(isUserError(e) || e instanceof UsageError)) throw e;
    console.error(`error: ${e.message}`);
    code = 1;
  }
  Deno.exit(code);
}
