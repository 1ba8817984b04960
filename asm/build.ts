/**
 * Builds asm/build/gpt2.wasm: AssemblyScript (asc) compiles the kernels with SIMD,
 * relaxed SIMD and threads against an imported shared memory, then binaryen's optimiser
 * (wasm-opt -O3, here through its JS API) shrinks and speeds them up.
 *
 * Usage: deno task build [--check]   (--check: fail if the committed file differs)
 */
import asc from "assemblyscript/asc";
import binaryen from "binaryen";

const here = new URL(".", import.meta.url);
const out = new URL("build/gpt2.wasm", here);

const FEATURES = ["simd", "relaxed-simd", "threads"];

async function compile(): Promise<Uint8Array> {
  let wasm: Uint8Array | undefined;
  const { error, stderr } = await asc.main([
    "index.ts",
    "--optimizeLevel",
    "3",
    "--shrinkLevel",
    "0",
    "--noAssert",
    "--runtime",
    "stub",
    "--use",
    "abort=",
    "--importMemory",
    "--noExportMemory",
    "--sharedMemory",
    "--initialMemory",
    "1",
    "--maximumMemory",
    "65536",
    "--enable",
    FEATURES.join(","),
    "--outFile",
    "gpt2.wasm",
  ], {
    readFile: (name: string, baseDir: string) => {
      try {
        return Deno.readTextFileSync(new URL(name, new URL(baseDir + "/", here)));
      } catch {
        return null;
      }
    },
    writeFile: (_name: string, contents: string | Uint8Array) => {
      if (typeof contents !== "string") wasm = contents;
    },
    listFiles: () => [],
  });
  if (error) throw new Error(`asc failed: ${error.message}\n${stderr.toString()}`);
  if (!wasm) throw new Error("asc wrote no wasm");

  const module = binaryen.readBinary(wasm);
  module.setFeatures(
    binaryen.Features.MVP | binaryen.Features.SIMD128 | binaryen.Features.RelaxedSIMD |
      binaryen.Features.Atomics | binaryen.Features.BulkMemory | binaryen.Features.BulkMemoryOpt |
      binaryen.Features.MutableGlobals |
      binaryen.Features.SignExt | binaryen.Features.NontrappingFPToInt,
  );
  binaryen.setOptimizeLevel(3);
  binaryen.setShrinkLevel(0);
  module.optimize();
  if (!module.validate()) throw new Error("wasm-opt produced an invalid module");
  const bytes = module.emitBinary();
  module.dispose();
  return bytes;
}

if (import.meta.main) {
  const bytes = await compile();
  if (Deno.args.includes("--check")) {
    let committed: Uint8Array;
    try {
      committed = await Deno.readFile(out);
    } catch {
      console.error(`error: ${out.pathname} is missing; run: deno task build`);
      Deno.exit(1);
    }
    const same = committed.length === bytes.length && committed.every((b, i) => b === bytes[i]);
    if (!same) {
      console.error(`error: ${out.pathname} differs from a fresh build; run: deno task build`);
      Deno.exit(1);
    }
    console.log(`${out.pathname} matches a fresh build (${bytes.length} bytes)`);
  } else {
    await Deno.mkdir(new URL("build/", here), { recursive: true });
    const tmp = new URL("build/gpt2.wasm.tmp", here);
    await Deno.writeFile(tmp, bytes);
    await Deno.rename(tmp, out);
    console.log(`wrote ${out.pathname} (${bytes.length} bytes)`);
  }
}
