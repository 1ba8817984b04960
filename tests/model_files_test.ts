/**
 * Model folders on disk in both formats, written by the random-model generator: the same
 * weights give the same logits from either format, and every kind of broken folder gets a
 * one-line error that names the file or tensor, what was expected and what was found.
 */
import { assertClose } from "./assert_close.ts";
import { withTempDir } from "./temp_dir.ts";
import { assertEquals, assertRejects } from "./asserts.ts";
import { createBackend } from "../runtime/backend/create.ts";
import { Gpt2 } from "../runtime/gpt2/gpt2.ts";
import { ModelFileError } from "../runtime/errors.ts";
import type { HParams } from "../runtime/gpt2/hparams.ts";
import { openModelFiles } from "../runtime/gpt2/model_files.ts";
import { randomWeights, type Weights, writeModelFolder } from "../testing/random_model.ts";
import { referenceForward } from "../testing/reference_model.ts";
import { writeTfBundle } from "../testing/tf_bundle_writer.ts";

const HP: HParams = { n_vocab: 300, n_ctx: 16, n_embd: 24, n_head: 2, n_layer: 2 };
const weights = randomWeights(HP, 3);
const tokens = [5, 299, 17, 0, 256, 42, 7];

/** Logits at every position of `tokens` from the model folder `dir`. */
async function logitsFrom(dir: string): Promise<Float32Array> {
  using files = await openModelFiles(dir);
  assertEquals(files.hparams, HP);
  using gpt2 = Gpt2.create(await createBackend("wasm"), files.hparams);
  await gpt2.load(files.source, files.names);
  return await gpt2.forward([{ slot: 0, tokens }], { allPositions: true });
}

Deno.test("float16 safetensors load as the float32 model with weights rounded to float16", async () => {
  await withTempDir(async (dir) => {
    await writeModelFolder(dir, HP, weights, { format: "safetensors", storedDType: "float16" });
    const rounded: Weights = new Map(
      [...weights].map((
        [n, t],
      ) => [n, { shape: t.shape, data: Float32Array.from(new Float16Array(t.data)) }]),
    );
    assertClose(await logitsFrom(dir), referenceForward(rounded, HP, tokens), {
      atol: 1e-4,
      rtol: 1e-4,
    });
  });
});

/** Writes a TF folder, lets `spoil` break it, and expects `openModelFiles` + load to fail. */
async function expectBroken(
  spoil: (dir: string) => Promise<void>,
  ...fragments: string[]
): Promise<void> {
  await withTempDir(async (dir) => {
    await writeModelFolder(dir, HP, weights);
    await spoil(dir);
    const e = await assertRejects(() => logitsFrom(dir), ModelFileError);
    for (const f of fragments) {
      if (!e.message.includes(f)) throw new Error(`"${e.message}" does not mention "${f}"`);
    }
    if (e.message.includes("\n")) throw new Error(`not one line: ${e.message}`);
  });
}

/** Rewrites the checkpoint with `edit` applied to the tensor list. */
function rewrite(
  edit: (
    list: { name: string; dtype: "float32" | "int32"; shape: number[]; data: Uint8Array }[],
  ) => void,
) {
  return async (dir: string) => {
    const list = [...weights].map(([name, t]) => ({
      name,
      dtype: "float32" as "float32" | "int32",
      shape: [...t.shape],
      data: new Uint8Array(t.data.buffer.slice(0)),
    }));
    edit(list);
    await writeTfBundle(`${dir}/model.ckpt`, list);
  };
}

Deno.test("a missing model folder says where it looked and how to download", async () => {
  const e = await assertRejects(() => openModelFiles("no/such/models/124M"), ModelFileError);
  assertEquals(
    e.message,
    `Cannot find the model folder "no/such/models/124M" (download it with: deno task download 124M)`,
  );
});

Deno.test("an empty folder names both formats", async () => {
  await withTempDir(async (dir) => {
    await assertRejects(() => openModelFiles(dir), ModelFileError, "hparams.json and model.ckpt");
  });
});

Deno.test("broken hparams.json: not JSON, a missing field, n_embd not a multiple of n_head", async () => {
  await expectBroken(
    (d) => Deno.writeTextFile(`${d}/hparams.json`, "{n_vocab: 1"),
    "hparams.json",
    "not valid JSON",
  );
  await expectBroken(
    (d) => Deno.writeTextFile(`${d}/hparams.json`, JSON.stringify({ ...HP, n_layer: undefined })),
    "hparams.json",
    `missing "n_layer"`,
  );
  await expectBroken(
    (d) => Deno.writeTextFile(`${d}/hparams.json`, JSON.stringify({ ...HP, n_head: 5 })),
    "n_embd (24) must be a multiple of n_head (5)",
  );
});

Deno.test("a tensor of the wrong shape, a missing one, or of the wrong dtype is named", async () => {
  await expectBroken(
    rewrite((list) => {
      const t = list.find((t) => t.name === "model/h0/attn/c_attn/w")!;
      t.shape = [24, 72];
    }),
    `Cannot load tensor "model/h0/attn/c_attn/w"`,
    "got shape [24, 72], expected [1, 24, 72]",
  );
  await expectBroken(
    rewrite((list) => list.splice(list.findIndex((t) => t.name === "model/ln_f/b"), 1)),
    `"model/ln_f/b": not found`,
  );
  await expectBroken(
    rewrite((list) => {
      list.find((t) => t.name === "model/wpe")!.dtype = "int32";
    }),
    `"model/wpe"`,
    "got dtype int32, expected float32",
  );
});

Deno.test("a truncated data shard, a flipped data byte and a missing checkpoint file are caught", async () => {
  const shard = (d: string) => `${d}/model.ckpt.data-00000-of-00001`;
  await expectBroken(
    async (d) => {
      const bytes = await Deno.readFile(shard(d));
      await Deno.writeFile(shard(d), bytes.subarray(0, bytes.length - 100));
    },
    "model.ckpt.data-00000-of-00001",
    "truncated",
  );
  await expectBroken(
    async (d) => {
      const bytes = await Deno.readFile(shard(d));
      bytes[1000] ^= 0x40;
      await Deno.writeFile(shard(d), bytes);
    },
    "model.ckpt.data-00000-of-00001",
    "CRC-32C",
  );
  await expectBroken((d) => Deno.remove(`${d}/checkpoint`), "checkpoint");
  await expectBroken((d) => Deno.remove(`${d}/model.ckpt.index`), "model.ckpt.index");
});

Deno.test("a truncated or corrupt safetensors file is caught", async () => {
  await withTempDir(async (dir) => {
    await writeModelFolder(dir, HP, weights, { format: "safetensors" });
    const path = `${dir}/model.safetensors`;
    const bytes = await Deno.readFile(path);
    await Deno.writeFile(path, bytes.subarray(0, bytes.length - 10));
    await assertRejects(() => logitsFrom(dir), ModelFileError, "model.safetensors");
    await Deno.writeTextFile(`${dir}/config.json`, "[]");
    await assertRejects(() => logitsFrom(dir), ModelFileError, "config.json");
  });
});
