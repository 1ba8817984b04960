/**
 * The compiled kernels (asm/build/gpt2.wasm) and the constants they share with the
 * runtime, read from the module's exported globals so that they are defined once, in
 * AssemblyScript.
 */

/** A kernel export: offsets and sizes in, nothing out (`static_data_end` returns one). */
export type KernelFunction = (...args: number[]) => number | void;

/** The exports of one instance, by name; ops.ts says which it calls and how. */
export type KernelExports = Readonly<Record<string, KernelFunction>>;

/** Layout constants of the kernels that the runtime sizes buffers and splits work by. */
export interface KernelConstants {
  /** Columns per packed Conv1D weight panel (asm/matmul.ts). */
  readonly PANEL: number;
  /** Positions per block of a head's keys; a slot's positions are a multiple of it. */
  readonly KEY_BLOCK: number;
  /** Floats per partial sum of `read_sum`. */
  readonly READ_BLOCK: number;
  /** Columns per q8 weight panel (asm/matmul_q8.ts). */
  readonly QPANEL: number;
  /** Input features per q8 block. */
  readonly QBLOCK: number;
  /** The `mode` of the Conv1D kernels: out = y, out = gelu(y), out = out + y. */
  readonly modes: { readonly store: number; readonly gelu: number; readonly residual: number };
}

/** One instance of the kernels: its functions and the constants it exports. */
export interface KernelInstance {
  /** The kernel functions. */
  readonly exports: KernelExports;
  /** The layout constants, from the module's exported globals. */
  readonly constants: KernelConstants;
}

let compiled: Promise<WebAssembly.Module> | undefined;

/** Compiles asm/build/gpt2.wasm once per process. */
export function kernelModule(): Promise<WebAssembly.Module> {
  compiled ??= Deno.readFile(new URL("../../../asm/build/gpt2.wasm", import.meta.url))
    .then((bytes) => WebAssembly.compile(bytes));
  return compiled;
}

/** Instantiates the kernel module on `memory`, a shared memory of up to 65536 pages. */
export function instantiate(
  module: WebAssembly.Module,
  memory: WebAssembly.Memory,
): KernelInstance {
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  const global = (name: string) => (instance.exports[name] as WebAssembly.Global).value as number;
  return {
    exports: instance.exports as unknown as KernelExports,
    constants: {
      PANEL: global("PANEL"),
      KEY_BLOCK: global("KEY_BLOCK"),
      READ_BLOCK: global("READ_BLOCK"),
      QPANEL: global("QPANEL"),
      QBLOCK: global("QBLOCK"),
      modes: { store: global("STORE"), gelu: global("GELU"), residual: global("RESIDUAL") },
    },
  };
}
