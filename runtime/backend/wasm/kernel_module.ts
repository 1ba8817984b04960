/**
 * The compiled kernels (asm/build/gpt2.wasm) and the constants they share with the
 * runtime, read from the module's exported globals so that they are defined once, in
 * AssemblyScript.
 */
import { assetUrl } from "../../assets.ts";

/**
 * A kernel export: offsets and sizes in, nothing out, or a count (`pack_f16`'s weights
 * that did not fit; `static_data_end` returns an offset).
 */
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

const compiled = new Map<boolean, Promise<WebAssembly.Module>>();

/**
 * Compiles asm/build/gpt2.wasm once per process, for a shared memory (the default) or not.
 * It is fetched, so that it loads as well from a `file:` URL as from a package or page
 * served over HTTP. The module imports a shared memory; for an unshared one (a page that is
 * not cross-origin isolated has none) the import's limits are rewritten to unshared, which
 * the kernels allow since they use no atomic instruction.
 */
export function kernelModule(shared = true): Promise<WebAssembly.Module> {
  let module = compiled.get(shared);
  if (module === undefined) {
    module = (async () => {
      const url = assetUrl("kernels");
      const response = await fetch(url);
      if (!response.ok) {
        throw new Error(`Cannot fetch the kernels ${url}: HTTP ${response.status}`);
      }
      const bytes = new Uint8Array(await response.arrayBuffer());
      return await WebAssembly.compile(shared ? bytes : unsharedMemoryImport(bytes));
    })();
    compiled.set(shared, module);
  }
  return module;
}

/**
 * `wasm` with its imported memory declared unshared: the limits flags of the memory
 * import (binary format, import section 2, import kind 2) go from 0x03, shared with a
 * maximum, to 0x01, a maximum only. Changed in place; returns `wasm`.
 */
export function unsharedMemoryImport(wasm: Uint8Array<ArrayBuffer>): Uint8Array<ArrayBuffer> {
  let p = 8; // past the magic number and version
  const leb = () => {
    let value = 0;
    for (let shift = 0;; shift += 7) {
      const b = wasm[p++];
      value += (b & 0x7f) * 2 ** shift;
      if ((b & 0x80) === 0) return value;
    }
  };
  const name = () => {
    const length = leb();
    p += length;
  };
  while (p < wasm.length) {
    const id = wasm[p++];
    const size = leb();
    const end = p + size;
    if (id === 2) {
      for (let n = leb(); n > 0; n--) {
        name();
        name();
        const kind = wasm[p++];
        if (kind === 2) {
          if (wasm[p] === 0x03) wasm[p] = 0x01;
          return wasm;
        }
        if (kind === 0) leb(); // a function's type index
        else if (kind === 1) { // a table: element type, then limits
          p++;
          if (leb() & 1) leb();
          leb();
        } else if (kind === 3) p += 2; // a global: value type, mutability
        else break;
      }
    }
    p = end;
  }
  throw new Error("The kernel module imports no memory");
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
