/**
 * The files the runtime starts or reads besides its modules: the kernel worker, the
 * CRC-32C worker, the compiled kernels and a page's engine worker. From the TypeScript sources they sit where the
 * repository keeps them; in the browser bundle (`deno task bundle`, web/dist/) every
 * module is inlined into a few `.js` files that sit side by side, with the kernels copied
 * beside them. A bundle is told apart by its own URL: its files end in `.js`.
 *
 * @module
 */

/** Where each asset is in the sources, relative to this file. */
const SOURCES = {
  kernelWorker: "./backend/wasm/kernel_worker.ts",
  crc32cWorker: "./io/crc32c_worker.ts",
  kernels: "../asm/build/gpt2.wasm",
  engineWorker: "./browser/engine_worker.ts",
} as const;

/** Each asset's name in the bundle's folder (deno task bundle writes them). */
export const BUNDLED_ASSETS: Readonly<Record<Asset, string>> = {
  kernelWorker: "kernel_worker.js",
  crc32cWorker: "crc32c_worker.js",
  kernels: "gpt2.wasm",
  engineWorker: "engine_worker.js",
};

/** A file the runtime needs besides its modules. */
export type Asset = keyof typeof SOURCES;

/** Whether this module runs from the browser bundle rather than the sources. */
export const IN_BUNDLE: boolean = import.meta.url.endsWith(".js");

/** The URL of `asset`, in the sources or beside the bundle. */
export function assetUrl(asset: Asset): URL {
  return new URL(IN_BUNDLE ? BUNDLED_ASSETS[asset] : SOURCES[asset], import.meta.url);
}
