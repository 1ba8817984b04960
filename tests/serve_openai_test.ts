/** The served mode with the official `openai` npm client pointed at it. */
import OpenAI from "openai";
import { assert, assertEquals, assertRejects } from "./asserts.ts";
import { loadModel } from "../runtime/generate/model.ts";
import { post, startServer, writeTestModel } from "./serve_harness.ts";

const dir = await writeTestModel();

Deno.test("the openai client gets completions, streamed and not, equal to raw HTTP's", async () => {
  using model = await loadModel(dir, { threads: 1 });
  await using server = await startServer(model, { apiKey: "k" });
  const client = new OpenAI({ baseURL: server.url + "v1", apiKey: "k", maxRetries: 0 });
  const request = { model: "test", prompt: "The cat", max_tokens: 10, seed: 5, temperature: 0.8 };
  const raw = await (await post(server.url + "v1/completions", request, {
    authorization: "Bearer k",
  })).json();
  const completion = await client.completions.create(request);
  assertEquals(completion.choices[0].text, raw.choices[0].text);
  // The same prompt again: all but its last token come from the cache.
  assertEquals(completion.usage, {
    ...raw.usage,
    prompt_tokens_details: { cached_tokens: raw.usage.prompt_tokens - 1 },
  });
  assertEquals(completion.object, "text_completion");

  const stream = await client.completions.create({ ...request, stream: true });
  let text = "";
  let finish: string | null = null;
  for await (const chunk of stream) {
    text += chunk.choices[0].text;
    finish = chunk.choices[0].finish_reason ?? finish;
  }
  assertEquals(text, raw.choices[0].text);
  assertEquals(finish, raw.choices[0].finish_reason);

  const models = await client.models.list();
  assertEquals(models.data.map((m) => m.id), ["test"]);
});

Deno.test("the openai client raises OpenAI's errors: 400 naming the field, 401 for a wrong key", async () => {
  using model = await loadModel(dir, { threads: 1 });
  await using server = await startServer(model, { apiKey: "k" });
  const client = new OpenAI({ baseURL: server.url + "v1", apiKey: "k", maxRetries: 0 });
  const error = <InstanceType<typeof OpenAI.BadRequestError>> await assertRejects(
    () => client.completions.create({ model: "test", prompt: "x", max_tokens: -3 }),
    OpenAI.BadRequestError,
  );
  assertEquals(error.status, 400);
  assertEquals(error.param, "max_tokens");
  assert(error.message.includes("max_tokens"), error.message);
  const other = <InstanceType<typeof OpenAI.BadRequestError>> await assertRejects(
    () => client.completions.create({ model: "davinci-002", prompt: "x" }),
    OpenAI.BadRequestError,
  );
  assertEquals(other.param, "model");
  const stranger = new OpenAI({ baseURL: server.url + "v1", apiKey: "nope", maxRetries: 0 });
  await assertRejects(
    () => stranger.completions.create({ model: "test", prompt: "x" }),
    OpenAI.AuthenticationError,
  );
});

Deno.test("teardown: the openai test's model folder", async () => {
  await Deno.remove(dir, { recursive: true });
});
