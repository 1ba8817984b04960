/** The kernels as one WebAssembly instance on the calling thread. */
import type { Kernels } from "./kernels.ts";
import { MAX_MEMORY_BYTES, PANEL } from "./memory_plan.ts";

/** The exports of asm/build/gpt2.wasm, with the work ranges each kernel takes last. */
export interface KernelExports {
  embed(
    out: number,
    tokens: number,
    wte: number,
    wpe: number,
    T: number,
    C: number,
    past: number,
    r0: number,
    r1: number,
  ): void;
  layer_norm(
    out: number,
    inp: number,
    gain: number,
    bias: number,
    C: number,
    r0: number,
    r1: number,
  ): void;
  conv1d(
    out: number,
    inp: number,
    weight: number,
    bias: number,
    T: number,
    C: number,
    OC: number,
    p0: number,
    p1: number,
  ): void;
  logits(
    out: number,
    h: number,
    wte: number,
    T: number,
    C: number,
    V: number,
    v0: number,
    v1: number,
  ): void;
  attention(
    out: number,
    qkv: number,
    cache: number,
    scratch: number,
    T: number,
    past: number,
    nHead: number,
    dHead: number,
    nCtx: number,
    seqStride: number,
    u0: number,
    u1: number,
  ): void;
  gelu(out: number, inp: number, i0: number, i1: number): void;
  add(out: number, a: number, b: number, i0: number, i1: number): void;
  softmax(out: number, inp: number, cols: number, r0: number, r1: number): void;
  pack_panels(dst: number, src: number, C: number, OC: number, p0: number, p1: number): void;
}

let compiled: Promise<WebAssembly.Module> | undefined;

/** Compiles asm/build/gpt2.wasm once per process. */
export function kernelModule(): Promise<WebAssembly.Module> {
  compiled ??= Deno.readFile(new URL("../asm/build/gpt2.wasm", import.meta.url))
    .then((bytes) => WebAssembly.compile(bytes));
  return compiled;
}

/** A shared memory of at least `bytes` bytes, which never grows. */
export function createMemory(bytes: number): WebAssembly.Memory {
  if (bytes > MAX_MEMORY_BYTES) {
    throw new RangeError(
      `The model needs ${(bytes / 2 ** 30).toFixed(2)} GiB of memory, more than the 4 GiB ` +
        `a WebAssembly memory can hold (use a smaller model, batch or context)`,
    );
  }
  const pages = Math.ceil(bytes / 65536);
  return new WebAssembly.Memory({ initial: pages, maximum: pages, shared: true });
}

/** Instantiates the kernel module on `memory`. */
export function instantiate(module: WebAssembly.Module, memory: WebAssembly.Memory): KernelExports {
  const instance = new WebAssembly.Instance(module, { env: { memory } });
  return instance.exports as unknown as KernelExports;
}

/** Every kernel call runs whole on this thread. */
export class WasmKernels implements Kernels {
  readonly threads = 1;
  readonly #k: KernelExports;

  constructor(module: WebAssembly.Module, readonly memory: WebAssembly.Memory) {
    this.#k = instantiate(module, memory);
  }

  embed(
    out: number,
    tokens: number,
    wte: number,
    wpe: number,
    B: number,
    T: number,
    C: number,
    past: number,
  ): void {
    this.#k.embed(out, tokens, wte, wpe, T, C, past, 0, B * T);
  }
  layerNorm(out: number, inp: number, gain: number, bias: number, rows: number, C: number): void {
    this.#k.layer_norm(out, inp, gain, bias, C, 0, rows);
  }
  conv1d(
    out: number,
    inp: number,
    weight: number,
    bias: number,
    rows: number,
    C: number,
    OC: number,
  ): void {
    this.#k.conv1d(out, inp, weight, bias, rows, C, OC, 0, Math.ceil(OC / PANEL));
  }
  logits(out: number, h: number, wte: number, rows: number, C: number, V: number): void {
    this.#k.logits(out, h, wte, rows, C, V, 0, V);
  }
  attention(
    out: number,
    qkv: number,
    cache: number,
    scratch: number,
    B: number,
    T: number,
    past: number,
    nHead: number,
    dHead: number,
    nCtx: number,
    seqStride: number,
  ): void {
    this.#k.attention(
      out,
      qkv,
      cache,
      scratch,
      T,
      past,
      nHead,
      dHead,
      nCtx,
      seqStride,
      0,
      B * nHead,
    );
  }
  gelu(out: number, inp: number, n: number): void {
    this.#k.gelu(out, inp, 0, n);
  }
  add(out: number, a: number, b: number, n: number): void {
    this.#k.add(out, a, b, 0, n);
  }
  softmax(out: number, inp: number, rows: number, cols: number): void {
    this.#k.softmax(out, inp, cols, 0, rows);
  }
  packPanels(dst: number, src: number, C: number, OC: number): void {
    this.#k.pack_panels(dst, src, C, OC, 0, Math.ceil(OC / PANEL));
  }
  [Symbol.dispose](): void {}
}
