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

Deno.test("the openai client's chat.completions.create, streamed and not, equals raw HTTP's", async () => {
  using model = await loadModel(dir, { threads: 1 });
  await using server = await startServer(model, { apiKey: "k" });
  const client = new OpenAI({ baseURL: server.url + "v1", apiKey: "k", maxRetries: 0 });
  const request = {
    model: "test",
    messages: [
      { role: "system" as const, content: "Hi" },
      { role: "user" as const, content: [{ type: "text" as const, text: "Yo" }] },
    ],
    max_completion_tokens: 10,
    seed: 3,
    n: 2,
    logprobs: true,
    top_logprobs: 2,
  };
  const raw = await (await post(server.url + "v1/chat/completions", request, {
    authorization: "Bearer k",
  })).json();
  const completion = await client.chat.completions.create(request);
  assertEquals(completion.object, "chat.completion");
  assertEquals(completion.choices, raw.choices);
  assertEquals(raw.usage.prompt_tokens_details, { cached_tokens: 0 });
  // The same conversation again: both choices find all but its last token in the cache.
  const again = {
    ...raw.usage,
    prompt_tokens_details: { cached_tokens: raw.usage.prompt_tokens - 1 },
  };
  assertEquals(completion.usage, again);
  assertEquals(completion.choices.map((c) => c.message.role), ["assistant", "assistant"]);

  const stream = await client.chat.completions.create({
    ...request,
    stream: true,
    stream_options: { include_usage: true },
  });
  const content = ["", ""];
  const finish: (string | null)[] = [null, null];
  let usage = null;
  for await (const chunk of stream) {
    assertEquals(chunk.object, "chat.completion.chunk");
    for (const c of chunk.choices) {
      content[c.index] += c.delta.content ?? "";
      finish[c.index] = c.finish_reason ?? finish[c.index];
    }
    usage = chunk.usage ?? usage;
  }
  assertEquals(
    content,
    raw.choices.map((c: { message: { content: string } }) => c.message.content),
  );
  assertEquals(finish, raw.choices.map((c: { finish_reason: string }) => c.finish_reason));
  assertEquals(usage, again);

  const error = <InstanceType<typeof OpenAI.BadRequestError>> await assertRejects(
    () =>
      client.chat.completions.create({
        model: "test",
        messages: [{
          role: "user",
          content: [{ type: "image_url", image_url: { url: "https://example.com/a.png" } }],
        }],
      }),
    OpenAI.BadRequestError,
  );
  assertEquals(error.param, "messages[0].content[0].type");
});

Deno.test("the openai client sends a batch of prompts and gets each prompt's choices", async () => {
  using model = await loadModel(dir, { threads: 1 });
  await using server = await startServer(model);
  const client = new OpenAI({ baseURL: server.url + "v1", apiKey: "none", maxRetries: 0 });
  const base = { model: "test", max_tokens: 5, seed: 8 };
  const batch = await client.completions.create({ ...base, prompt: ["One", "Two"] });
  const alone = await Promise.all(
    ["One", "Two"].map((prompt) => client.completions.create({ ...base, prompt })),
  );
  assertEquals(batch.choices.map((c) => c.index), [0, 1]);
  assertEquals(batch.choices.map((c) => c.text), alone.map((a) => a.choices[0].text));
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
