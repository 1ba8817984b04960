/**
 * `POST /v1/chat/completions` over raw HTTP: a reply is the completion of the rendered
 * transcript for the same seed, trimmed, and ends at the next speaker's line; streamed as
 * OpenAI's chunks (role, content pieces, finish); logprobs in the chat shape; the sampling
 * table's fields and prompt reuse over a conversation; every bad request a 400 naming the
 * field.
 */
import { assert, assertEquals } from "./asserts.ts";
import { assertClose } from "./assert_close.ts";
import { loadModel } from "../runtime/generate/model.ts";
import { renderTranscript, SPEAKER_STOPS } from "../runtime/serve/chat_template.ts";
import type { AccessLogEntry } from "../runtime/serve/access_log.ts";
import {
  post,
  readEvents,
  scriptedModel,
  startServer,
  TEST_HPARAMS,
  writeTestModel,
} from "./serve_harness.ts";

// A longer context than the other tests' model: a transcript takes about a token a character.
const HPARAMS = { ...TEST_HPARAMS, n_ctx: 160 };
const dir = await writeTestModel(HPARAMS);
const open = () => loadModel(dir, { threads: 1 });

const MESSAGES = [
  { role: "system", content: "Be kind" },
  { role: "user", content: "Hi" },
  { role: "assistant", content: "Yo." },
  { role: "user", content: [{ type: "text", text: "and " }, { type: "text", text: "so" }] },
];

/** What the README shows: one `Speaker: content` line per message, then `Assistant:`. */
const TRANSCRIPT = "System: Be kind\nUser: Hi\nAssistant: Yo.\nUser: and so\nAssistant:";

/** The content of a streamed chat answer's choices, by index, and their finish reasons. */
function streamedChoices(events: string[]) {
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  const out: { role: string[]; content: string; finish: string | null; deltas: number }[] = [];
  for (const c of chunks) {
    assertEquals(c.object, "chat.completion.chunk");
    if (c.choices.length === 0) continue;
    assertEquals(c.choices.length, 1, "one choice per chunk");
    const { index, delta, finish_reason } = c.choices[0];
    out[index] ??= { role: [], content: "", finish: null, deltas: 0 };
    const choice = out[index];
    assertEquals(choice.finish, null, "nothing comes after a choice's finish_reason");
    if (delta.role !== undefined) {
      assertEquals(choice.deltas, 0, "the role comes first");
      choice.role.push(delta.role);
    }
    choice.content += delta.content ?? "";
    choice.finish = finish_reason;
    if (finish_reason !== null) assertEquals(delta, {}, "the last chunk's delta is empty");
    choice.deltas++;
  }
  return out;
}

Deno.test("the transcript is one line per message and an open Assistant: line", () => {
  const messages = MESSAGES.map((m) => ({
    role: m.role,
    content: typeof m.content === "string" ? m.content : m.content.map((p) => p.text).join(""),
  }));
  assertEquals(renderTranscript(messages), TRANSCRIPT);
  assertEquals(SPEAKER_STOPS, ["\nSystem:", "\nUser:", "\nAssistant:"]);
});

Deno.test("a chat reply is the completion of its transcript for the same seed, trimmed, streamed or not", async () => {
  using model = await open();
  await using server = await startServer(model);
  const settings = { seed: 9, temperature: 0.9, top_k: 40, max_tokens: 20 };
  const completion = await (await post(server.url + "v1/completions", {
    model: "test",
    prompt: TRANSCRIPT,
    stop: SPEAKER_STOPS,
    ...settings,
  })).json();
  const want = completion.choices[0].text.trim();
  assert(want.length > 0, "the test needs a reply with text");

  const response = await post(server.url + "v1/chat/completions", {
    model: "test",
    messages: MESSAGES,
    ...settings,
  });
  assertEquals(response.status, 200);
  const body = await response.json();
  assertEquals(body.object, "chat.completion");
  assert(/^chatcmpl-/.test(body.id) && Number.isInteger(body.created));
  assertEquals(body.model, "test");
  assertEquals(body.choices, [{
    index: 0,
    message: { role: "assistant", content: want, refusal: null },
    logprobs: null,
    finish_reason: completion.choices[0].finish_reason,
  }]);
  // The same transcript again: all but its last token come from the KV cache.
  assertEquals(body.usage, {
    ...completion.usage,
    prompt_tokens_details: { cached_tokens: completion.usage.prompt_tokens - 1 },
  });
  assertEquals(body.usage.prompt_tokens, model.tokenizer.encode(TRANSCRIPT).length);

  const events = await readEvents(
    await post(server.url + "v1/chat/completions", {
      model: "test",
      messages: MESSAGES,
      stream: true,
      stream_options: { include_usage: true },
      ...settings,
    }),
  );
  assertEquals(events.at(-1), "[DONE]");
  const [choice] = streamedChoices(events);
  assertEquals(choice.role, ["assistant"]);
  assertEquals(choice.content, want);
  assertEquals(choice.finish, body.choices[0].finish_reason);
  const last = JSON.parse(events.at(-2)!);
  assertEquals(last.choices, []);
  assertEquals(last.usage, body.usage);
  for (const e of events.slice(0, -2)) assertEquals(JSON.parse(e).usage, null);

  // max_completion_tokens is max_tokens' newer name.
  const { max_tokens, ...rest } = settings;
  const newer = await (await post(server.url + "v1/chat/completions", {
    model: "test",
    messages: MESSAGES,
    max_completion_tokens: max_tokens,
    ...rest,
  })).json();
  assertEquals(newer.choices, body.choices);
});

Deno.test("n gives chat choice i the reply of seed + i, streamed or not", async () => {
  using model = await open();
  await using server = await startServer(model);
  const request = { model: "test", messages: MESSAGES, max_tokens: 8, temperature: 1.2 };
  const url = server.url + "v1/chat/completions";
  const alone = await Promise.all(
    [4, 5, 6].map(async (seed) =>
      (await (await post(url, { ...request, seed })).json()).choices[0]
    ),
  );
  const three = await (await post(url, { ...request, seed: 4, n: 3 })).json();
  assertEquals(three.choices, alone.map((c, index) => ({ ...c, index })));
  const streamed = streamedChoices(
    await readEvents(await post(url, { ...request, seed: 4, n: 3, stream: true })),
  );
  assertEquals(streamed.map((c) => c.content), alone.map((c) => c.message.content));
  assertEquals(streamed.map((c) => c.role), [["assistant"], ["assistant"], ["assistant"]]);
});

Deno.test("a reply ends where the model starts the next speaker's line, or at <|endoftext|>", async () => {
  using model = await open();
  const cases: [string, string][] = [
    [" Sure thing.\nUser: and then", "Sure thing."],
    [" Two\n\nlines\nAssistant: again", "Two\n\nlines"],
    ["  Ends here  \n", "Ends here"],
    [" ok\nSystem: x", "ok"],
  ];
  for (const [said, reply] of cases) {
    await using server = await startServer(scriptedModel(model, said));
    const request = { model: "test", messages: [{ role: "user", content: "?" }], max_tokens: 30 };
    const body = await (await post(server.url + "v1/chat/completions", request)).json();
    assertEquals(body.choices[0].message.content, reply, JSON.stringify(said));
    assertEquals(body.choices[0].finish_reason, "stop", JSON.stringify(said));
    const [streamed] = streamedChoices(
      await readEvents(
        await post(server.url + "v1/chat/completions", { ...request, stream: true }),
      ),
    );
    assertEquals(streamed.content, reply, `streamed ${JSON.stringify(said)}`);
    assertEquals(streamed.finish, "stop");
  }
});

Deno.test("without max_tokens a reply may fill the rest of the context", async () => {
  using model = await open();
  // The model never starts a speaker's line: the reply runs to the end of the context.
  await using server = await startServer(scriptedModel(model, " la".repeat(200)));
  const body = await (await post(server.url + "v1/chat/completions", {
    model: "test",
    messages: [{ role: "user", content: "Sing" }],
  })).json();
  assertEquals(body.choices[0].finish_reason, "length");
  assertEquals(body.usage.prompt_tokens + body.usage.completion_tokens, HPARAMS.n_ctx);
});

Deno.test("chat takes the sampling table's penalties and cache_prompt; a conversation's second turn reports its cached tokens in usage, the log and /metrics", async () => {
  using model = await open();
  const log: AccessLogEntry[] = [];
  await using server = await startServer(model, { onRequest: (e) => log.push(e) });
  const chat = async (body: Record<string, unknown>) => {
    const response = await post(server.url + "v1/chat/completions", { model: "test", ...body });
    assertEquals(response.status, 200);
    return await response.json();
  };
  const penalties = { presence_penalty: 2, frequency_penalty: 2, repeat_penalty: 2 };
  const settings = { seed: 5, temperature: 0.8, max_tokens: 24, ...penalties };
  const first = [{ role: "system", content: "Be kind" }, { role: "user", content: "Hi" }];
  const turn1 = await chat({ messages: first, ...settings });
  assertEquals(turn1.usage.prompt_tokens_details, { cached_tokens: 0 }, "a fresh model");
  const reply = turn1.choices[0].message.content;
  assert(reply.length > 0, "the test needs a reply with text");

  // The penalties reach the library: the reply is the completion of the transcript with
  // them, and not the one without.
  const completion = async (fields: object) => {
    const body = {
      model: "test",
      prompt: renderTranscript(first),
      stop: SPEAKER_STOPS,
      cache_prompt: false,
      ...fields,
    };
    return (await (await post(server.url + "v1/completions", body)).json()).choices[0].text.trim();
  };
  assertEquals(await completion(settings), reply);
  const { presence_penalty: _, frequency_penalty: __, repeat_penalty: ___, ...plain } = settings;
  assert(await completion(plain) !== reply, "the penalties change the reply");

  // The second turn sends the first again, with the reply: its transcript's start is cached.
  const second = [...first, { role: "assistant", content: reply }, {
    role: "user",
    content: "And?",
  }];
  const turn2 = await chat({ messages: second, ...settings });
  const before = model.tokenizer.encode(renderTranscript(first)).length;
  const cached = turn2.usage.prompt_tokens_details.cached_tokens;
  assert(
    cached >= before && cached < turn2.usage.prompt_tokens,
    `${cached} cached of ${turn2.usage.prompt_tokens}, the first turn's transcript ${before}`,
  );
  const entry = log.findLast((e) => e.path === "/v1/chat/completions")!;
  assertEquals(entry.cachedTokens, cached);

  // cache_prompt: false runs the whole transcript again, to the same reply.
  const cold = await chat({ messages: second, ...settings, cache_prompt: false });
  assertEquals(cold.usage.prompt_tokens_details, { cached_tokens: 0 });
  assertEquals(cold.choices, turn2.choices);

  const metrics = await (await fetch(server.url + "metrics")).text();
  const total = metrics.match(/^gpt2_cached_tokens_total (\d+)$/m);
  assertEquals(Number(total?.[1]), log.reduce((sum, e) => sum + (e.cachedTokens ?? 0), 0));
  assert(Number(total?.[1]) >= cached, metrics);
});

Deno.test("chat logprobs: each generated token's log-softmax, its bytes and the top alternatives", async () => {
  using model = await open();
  await using server = await startServer(model);
  const request = { model: "test", messages: MESSAGES, max_tokens: 6, seed: 2, temperature: 0.8 };
  const { messages: _, ...settings } = request;
  const completion = await (await post(server.url + "v1/completions", {
    ...settings,
    prompt: TRANSCRIPT,
    stop: SPEAKER_STOPS,
    logprobs: 3,
  })).json();
  const want = completion.choices[0].logprobs;
  const body = await (await post(server.url + "v1/chat/completions", {
    ...request,
    logprobs: true,
    top_logprobs: 3,
  })).json();
  const { content, refusal } = body.choices[0].logprobs;
  assertEquals(refusal, null);
  assertEquals(content.length, want.tokens.length);
  const decoder = new TextDecoder();
  content.forEach((entry: {
    token: string;
    logprob: number;
    bytes: number[];
    top_logprobs: { token: string; logprob: number; bytes: number[] }[];
  }, i: number) => {
    assertClose([entry.logprob], [want.token_logprobs[i]], { atol: 0, rtol: 0 });
    assertEquals(entry.token, decoder.decode(new Uint8Array(entry.bytes)));
    assertEquals(entry.top_logprobs.length, 3);
    const top = entry.top_logprobs.map((t) => t.logprob);
    assertEquals(top, [...top].sort((a, b) => b - a), "most likely first");
    assertClose(top, (Object.values(want.top_logprobs[i]) as number[]).sort((a, b) => b - a), {
      atol: 0,
      rtol: 0,
    });
  });
  // The chosen tokens spell the reply before it is trimmed.
  assertEquals(
    content.map((e: { token: string }) => e.token).join("").trim(),
    body.choices[0].message.content,
  );
  // Streamed, each token's entry comes with its piece.
  const events = await readEvents(
    await post(server.url + "v1/chat/completions", {
      ...request,
      logprobs: true,
      top_logprobs: 3,
      stream: true,
    }),
  );
  const streamed = events.slice(0, -1).flatMap((e) =>
    JSON.parse(e).choices[0].logprobs?.content ?? []
  );
  assertEquals(streamed, content);
  // logprobs without top_logprobs: the chosen token's alone.
  const bare =
    await (await post(server.url + "v1/chat/completions", { ...request, logprobs: true }))
      .json();
  assertEquals(
    bare.choices[0].logprobs.content.map((e: { top_logprobs: unknown[] }) => e.top_logprobs),
    content.map(() => []),
  );
});

/** A chat request, and the `param` its 400 must name. */
const BAD_CHATS: [string, Record<string, unknown>, string][] = [
  ["no messages", { model: "test" }, "messages"],
  ["messages not an array", { model: "test", messages: "hi" }, "messages"],
  ["no message", { model: "test", messages: [] }, "messages"],
  ["a message not an object", { model: "test", messages: ["hi"] }, "messages[0]"],
  ["a tool message", {
    model: "test",
    messages: [{ role: "user", content: "x" }, { role: "tool", content: "y" }],
  }, "messages[1].role"],
  ["no role", { model: "test", messages: [{ content: "x" }] }, "messages[0].role"],
  [
    "content a number",
    { model: "test", messages: [{ role: "user", content: 3 }] },
    "messages[0].content",
  ],
  ["no content", { model: "test", messages: [{ role: "assistant" }] }, "messages[0].content"],
  ["an image part", {
    model: "test",
    messages: [{
      role: "user",
      content: [{ type: "text", text: "see" }, { type: "image_url", image_url: { url: "x" } }],
    }],
  }, "messages[0].content[1].type"],
  ["a part without text", {
    model: "test",
    messages: [{ role: "user", content: [{ type: "text" }] }],
  }, "messages[0].content[0].text"],
  ["tool calls", {
    model: "test",
    messages: [{ role: "assistant", content: "x", tool_calls: [{ id: "1" }] }],
  }, "messages[0].tool_calls"],
  ["max_tokens and max_completion_tokens apart", {
    model: "test",
    messages: [{ role: "user", content: "x" }],
    max_tokens: 3,
    max_completion_tokens: 4,
  }, "max_completion_tokens"],
  ["max_completion_tokens over the context", {
    model: "test",
    messages: [{ role: "user", content: "x" }],
    max_completion_tokens: HPARAMS.n_ctx,
  }, "max_completion_tokens"],
  ["messages over the context", {
    model: "test",
    messages: [{ role: "user", content: "word ".repeat(HPARAMS.n_ctx) }],
  }, "messages"],
  ["top_logprobs without logprobs", {
    model: "test",
    messages: [{ role: "user", content: "x" }],
    top_logprobs: 2,
  }, "top_logprobs"],
  ["top_logprobs 6", {
    model: "test",
    messages: [{ role: "user", content: "x" }],
    logprobs: true,
    top_logprobs: 6,
  }, "top_logprobs"],
  ["logprobs a number", {
    model: "test",
    messages: [{ role: "user", content: "x" }],
    logprobs: 2,
  }, "logprobs"],
  [
    "a prompt",
    { model: "test", messages: [{ role: "user", content: "x" }], prompt: "x" },
    "prompt",
  ],
  ["echo", { model: "test", messages: [{ role: "user", content: "x" }], echo: true }, "echo"],
  ["a json response format", {
    model: "test",
    messages: [{ role: "user", content: "x" }],
    response_format: { type: "json_object" },
  }, "response_format"],
  ["temperature over 2", {
    model: "test",
    messages: [{ role: "user", content: "x" }],
    temperature: 2.5,
  }, "temperature"],
  ["presence_penalty over 2", {
    model: "test",
    messages: [{ role: "user", content: "x" }],
    presence_penalty: 2.5,
  }, "presence_penalty"],
  ["logit_bias on no token", {
    model: "test",
    messages: [{ role: "user", content: "x" }],
    logit_bias: { [HPARAMS.n_vocab]: 1 },
  }, "logit_bias"],
  ["cache_prompt a string", {
    model: "test",
    messages: [{ role: "user", content: "x" }],
    cache_prompt: "yes",
  }, "cache_prompt"],
  ["an unknown model", { model: "gpt-4o", messages: [{ role: "user", content: "x" }] }, "model"],
];

Deno.test("bad chat requests get a 400 in OpenAI's error shape naming the field", async () => {
  using model = await open();
  await using server = await startServer(model);
  for (const [what, body, param] of BAD_CHATS) {
    const response = await post(server.url + "v1/chat/completions", body);
    assertEquals(response.status, 400, what);
    const { error } = await response.json();
    assertEquals(error.type, "invalid_request_error", what);
    assertEquals(error.param, param, what);
    assert(error.message.includes(param), `${what}: "${error.message}" names ${param}`);
  }
  // What a client may send back of an answer it was given is taken.
  const echoed = await post(server.url + "v1/chat/completions", {
    model: "test",
    messages: [
      { role: "developer", content: "x", name: "setup" },
      { role: "assistant", content: "y", refusal: null, tool_calls: [] },
      { role: "user", content: "z" },
    ],
    max_tokens: 2,
    response_format: { type: "text" },
  });
  assertEquals(echoed.status, 200);
  await echoed.body?.cancel();
});

Deno.test("teardown: the chat test's model folder", async () => {
  await Deno.remove(dir, { recursive: true });
});
