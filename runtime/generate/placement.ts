/**
 * Where a model runs and how it is stored, decided before anything is allocated: from
 * the backends' targets (what each stores, and how a model's plan fits it) the backend,
 * the weight type and the number of KV-cache slots, with `loadModel`'s policy. The model
 * is then created once.
 *
 * @module
 */
import { AUTO_WEIGHT_TYPES, type WeightType } from "../backend/backend.ts";
import { type BackendTarget, wasmTarget } from "../backend/create.ts";
import { BackendError } from "../errors.ts";
import type { HParams } from "../gpt2/hparams.ts";
import { type Gpt2Plan, gpt2Plan } from "../gpt2/plan.ts";

/** Slots by default: enough for a few concurrent generations, few enough to be cheap. */
export const DEFAULT_SLOTS = 4;

/** What a model asks of its placement. */
export interface PlacementOptions {
  /** A weight type, or `"auto"` (the default): the most faithful that fits. */
  dtype?: WeightType | "auto";
  /** KV-cache slots; by default `DEFAULT_SLOTS`, halved while they do not fit. */
  slots?: number;
  /** Sequences `generateBatch` decodes side by side: at least this many slots (default 1). */
  batch?: number;
  /** The most new tokens per sequence in one pass (Gpt2's default when absent). */
  chunk?: number;
  /** Threads the backend will run (its default when absent): the wasm backend's scratch is per thread. */
  threads?: number;
  /** The weight types `"auto"` tries, in order (default `AUTO_WEIGHT_TYPES`). */
  autoTypes?: readonly WeightType[];
}

/** A backend, a weight type and a plan that fits it. */
export interface Placement {
  readonly target: BackendTarget;
  readonly weightType: WeightType;
  readonly plan: Gpt2Plan;
}

/**
 * The first placement that fits, in this order of preference: the targets in turn (the
 * preferred backend first); on each, its weight types from the most faithful (or the one
 * asked for); for each, the slots asked for, or `DEFAULT_SLOTS` halved while they do not
 * fit down to `batch`. Fewer slots are tried before a less faithful type, and a less
 * faithful type before the next backend.
 * @throws {BackendError} when nothing fits, saying why and what would (another weight
 *   type or backend, fewer slots, a smaller model or context)
 */
export async function place(
  targets: readonly BackendTarget[],
  hp: HParams,
  options: PlacementOptions = {},
): Promise<Placement> {
  const tries = slotTries(options);
  const misfits: string[] = [];
  for (const target of targets) {
    const types = weightTypes(target, options.dtype, options.autoTypes);
    if (types.length === 0) {
      misfits.push(`The ${target.name} backend has no ${options.dtype} weights`);
      continue;
    }
    for (const weightType of types) {
      for (const slots of tries) {
        const plan = gpt2Plan(hp, { slots, chunk: options.chunk });
        const { misfit } = target.fit(plan, weightType, options.threads);
        if (!misfit) return { target, weightType, plan };
        misfits.push(misfit);
      }
    }
  }
  const last = targets[targets.length - 1];
  throw new BackendError(
    `${summary(targets, options, misfits)}: ${await advice(last, hp, options)}`,
  );
}

/** The slot counts to try, most first. */
function slotTries(options: PlacementOptions): number[] {
  const batch = options.batch ?? 1;
  if (options.slots !== undefined) return [Math.max(options.slots, batch)];
  return halvings(Math.max(DEFAULT_SLOTS, batch), batch);
}

/** `from`, halved while above `least`, then `least`. */
function halvings(from: number, least: number): number[] {
  const out: number[] = [];
  for (let n = from; n > least; n = Math.floor(n / 2)) out.push(n);
  out.push(least);
  return out;
}

/**
 * The weight types to try on `target` for `dtype`, in order: for `"auto"` those of `auto`
 * (by default `AUTO_WEIGHT_TYPES`, most faithful first) that the target stores.
 */
function weightTypes(
  target: BackendTarget,
  dtype: WeightType | "auto" = "auto",
  auto: readonly WeightType[] = AUTO_WEIGHT_TYPES,
): WeightType[] {
  if (dtype === "auto") return auto.filter((t) => target.weightTypes.includes(t));
  return target.weightTypes.includes(dtype) ? [dtype] : [];
}

/**
 * What did not fit: the one reason when one placement was tried, else what was tried and
 * the reason of the last (the least demanding) try.
 */
function summary(
  targets: readonly BackendTarget[],
  options: PlacementOptions,
  misfits: readonly string[],
): string {
  const last = misfits[misfits.length - 1];
  if (misfits.length === 1) return last;
  if (targets.length > 1) {
    const names = targets.map((t) => t.name).join(" and ");
    return `The model fits none of the ${names} backends (${lowerFirst(last)})`;
  }
  const types = weightTypes(targets[0], options.dtype, options.autoTypes);
  const slots = slotTries(options);
  const fewest = slots[slots.length - 1];
  const withSlots = `${slots.length > 1 ? "even " : ""}with ${fewest} slot${
    fewest === 1 ? "" : "s"
  }`;
  const where = `the ${targets[0].name} backend`;
  const tried = types.length === 1
    ? `does not fit ${where} in ${types[0]} weights`
    : types.length === 2
    ? `fits ${where} in neither ${types[0]} nor ${types[1]} weights`
    : `fits ${where} in none of ${types.join(", ")} weights`;
  return `The model ${tried}, ${withSlots} (${lowerFirst(last)})`;
}

/**
 * What would help when nothing fit on `target` (the last tried): another weight type
 * there (for `"auto"`, one it does not pick itself), fewer slots than asked, the wasm backend (which also stores q8) where it holds
 * the model; else a smaller model or a shorter context.
 */
async function advice(
  target: BackendTarget,
  hp: HParams,
  options: PlacementOptions,
): Promise<string> {
  const fits = (t: BackendTarget, weightType: WeightType, slots: number) =>
    !t.fit(gpt2Plan(hp, { slots, chunk: options.chunk }), weightType, options.threads).misfit;
  const batch = options.batch ?? 1;
  const asked = options.dtype ?? "auto";
  const [slots] = slotTries(options);
  const helps: string[] = [];
  // Another type than the one asked for, among those "auto" picks; for "auto", one it
  // never picks itself (q4).
  const tried = weightTypes(target, asked, options.autoTypes);
  const others = asked === "auto" ? target.weightTypes : weightTypes(target, "auto");
  const other = others.find((t) => !tried.includes(t) && fits(target, t, slots));
  if (other) helps.push(`dtype "${other}"`);
  if (options.slots !== undefined) {
    const fewer = halvings(slots, batch).slice(1).find((n) =>
      weightTypes(target, asked, options.autoTypes).some((t) => fits(target, t, n))
    );
    if (fewer) helps.push(`fewer slots (${fewer} fit)`);
  }
  if (target.name !== "wasm") {
    const wasm = await wasmTarget();
    const type = weightTypes(wasm, asked, options.autoTypes).find((t) => fits(wasm, t, slots)) ??
      wasm.weightTypes.find((t) => fits(wasm, t, slots));
    if (type) helps.push(`backend "wasm"${type === asked ? "" : ` with dtype "${type}"`}`);
  }
  if (helps.length === 0) return "use a smaller model or a shorter context";
  return `use ${helps.join(", or ")}`;
}

function lowerFirst(s: string): string {
  return s[0].toLowerCase() + s.slice(1);
}
