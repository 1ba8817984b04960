/**
 * The served mode over raw HTTP on loopback: answers as OpenAI's completions API gives
 * them, streamed and not, equal to the library's own tokens; every error case with its
 * status and the field it names; disconnects, a full queue and shutdown.
 */
import { assert, assertEquals } from "./asserts.ts";
import { assertClose } from "./assert_close.ts";
import { loadModel } from "../runtime/generate/model.ts";
import {
  gatedModel,
  parseEvents,
  post,
  readEvents,
  slowModel,
  startServer,
  TEST_HPARAMS,
  writeTestModel,
} from "./serve_harness.ts";

const dir = await writeTestModel();
const open = () => loadModel(dir, { threads: 1 });

async function collect<T>(it: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) out.push(x);
  return out;
}

Deno.test("a completion equals the library's tokens for the seed, streamed or not; one event per token, then [DONE]", async () => {
  using model = await open();
  await using server = await startServer(model);
  const url = server.url + "v1/completions";
  const request = { model: "test", prompt: "Hello world", max_tokens: 12, seed: 7, top_k: 20 };
  const ids = model.tokenizer.encode("Hello world");
  const tokens = await collect(
    model.generate(ids, { length: 12, seed: 7, topK: 20, stopAtEndOfText: true }),
  );
  const eot = tokens.indexOf(model.tokenizer.endOfText);
  const want = model.tokenizer.decode(eot < 0 ? tokens : tokens.slice(0, eot));

  const response = await post(url, request);
  assertEquals(response.status, 200);
  assertEquals(response.headers.get("content-type"), "application/json");
  const body = await response.json();
  assertEquals(body.object, "text_completion");
  assertEquals(body.model, "test");
  assert(/^cmpl-/.test(body.id) && Number.isInteger(body.created));
  assertEquals(body.choices.length, 1);
  assertEquals(body.choices[0].text, want);
  assertEquals(body.choices[0].index, 0);
  assertEquals(body.choices[0].logprobs, null);
  assertEquals(body.choices[0].finish_reason, eot < 0 ? "length" : "stop");
  assertEquals(body.usage, {
    prompt_tokens: ids.length,
    completion_tokens: eot < 0 ? 12 : eot + 1,
    total_tokens: ids.length + (eot < 0 ? 12 : eot + 1),
    // The library's run of the same prompt left it in a slot: all but its last token.
    prompt_tokens_details: { cached_tokens: ids.length - 1 },
  });

  const streamed = await post(url, { ...request, stream: true });
  assertEquals(streamed.headers.get("content-type"), "text/event-stream");
  const events = await readEvents(streamed);
  assertEquals(events.at(-1), "[DONE]");
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  assertEquals(chunks.length, eot < 0 ? 12 : eot + 1, "one event per generated token");
  assertEquals(chunks.map((c) => c.choices[0].text).join(""), want);
  for (const [i, c] of chunks.entries()) {
    assertEquals(c.object, "text_completion");
    assertEquals(
      c.choices[0].finish_reason,
      i === chunks.length - 1 ? body.choices[0].finish_reason : null,
    );
    // Half a character would show as a lone surrogate.
    assert(
      !/[\uD800-\uDFFF]/.test(c.choices[0].text.replace(/[\uD800-\uDBFF][\uDC00-\uDFFF]/g, "")),
    );
  }
});

Deno.test("a stop string ends the text before it, streamed or not", async () => {
  using model = await open();
  await using server = await startServer(model);
  const url = server.url + "v1/completions";
  const request = { model: "test", prompt: "Once", max_tokens: 30, seed: 3 };
  const full = (await (await post(url, request)).json()).choices[0].text as string;
  assert(full.length > 12, `the test needs a longer text, got ${JSON.stringify(full)}`);
  const stop = full.slice(8, 11);
  const want = full.slice(0, full.indexOf(stop));
  const body = await (await post(url, { ...request, stop: ["\u0000never", stop] })).json();
  assertEquals(body.choices[0].text, want);
  assertEquals(body.choices[0].finish_reason, "stop");
  const events = await readEvents(await post(url, { ...request, stop, stream: true }));
  const chunks = events.slice(0, -1).map((e) => JSON.parse(e));
  assertEquals(chunks.map((c) => c.choices[0].text).join(""), want);
  assertEquals(chunks.at(-1).choices[0].finish_reason, "stop");
});

Deno.test("logprobs are the log-softmax of the model's logits at each step, with the top alternatives", async () => {
  using model = await open();
  await using server = await startServer(model);
  const prompt = [5, 6, 7];
  const response = await post(server.url + "v1/completions", {
    model: "test",
    prompt,
    max_tokens: 4,
    seed: 11,
    logprobs: 3,
    temperature: 0.7,
  });
  const choice = (await response.json()).choices[0];
  const lp = choice.logprobs;
  assertEquals(lp.tokens.length, 4);
  assertEquals(lp.top_logprobs.length, 4);
  const ctx = [...prompt];
  const tokens = await collect(
    model.generate(prompt, { length: 4, seed: 11, temperature: 0.7, stopAtEndOfText: true }),
  );
  for (let i = 0; i < 4; i++) {
    const logits = await model.logits(ctx);
    let max = -Infinity;
    for (const v of logits) max = Math.max(max, v);
    let sum = 0;
    for (const v of logits) sum += Math.exp(v - max);
    const logZ = max + Math.log(sum);
    assertClose([lp.token_logprobs[i]], [logits[tokens[i]] - logZ], { atol: 1e-5, rtol: 0 });
    const sorted = [...logits].sort((a, b) => b - a).slice(0, 3).map((v) => v - logZ);
    // Sorted: an object lists integer-like keys ("7") first, whatever their value.
    const top = (Object.values(lp.top_logprobs[i]) as number[]).sort((a, b) => b - a);
    assertClose(top, sorted, { atol: 1e-5, rtol: 0 });
    assertEquals(lp.text_offset[i], model.tokenizer.decode(tokens.slice(0, i)).length);
    ctx.push(tokens[i]);
  }
  assertEquals(lp.tokens.join(""), choice.text);
});

Deno.test("echo with logprobs gives the prompt's tokens their logprobs, the first none", async () => {
  using model = await open();
  await using server = await startServer(model);
  const text = "Hello world again";
  const prompt = model.tokenizer.encode(text);
  const response = await post(server.url + "v1/completions", {
    model: "test",
    prompt: text,
    max_tokens: 2,
    seed: 1,
    logprobs: 2,
    echo: true,
  });
  const choice = (await response.json()).choices[0];
  const lp = choice.logprobs;
  assertEquals(lp.tokens.length, prompt.length + 2);
  assertEquals(lp.token_logprobs[0], null);
  assertEquals(lp.top_logprobs[0], null);
  assertEquals(lp.tokens.slice(0, prompt.length).join(""), text);
  assert(choice.text.startsWith(text));
  for (let i = 1; i < prompt.length; i++) {
    const logits = await model.logits(prompt.slice(0, i));
    let max = -Infinity;
    for (const v of logits) max = Math.max(max, v);
    let sum = 0;
    for (const v of logits) sum += Math.exp(v - max);
    const logZ = max + Math.log(sum);
    assertClose([lp.token_logprobs[i]], [logits[prompt[i]] - logZ], { atol: 1e-5, rtol: 0 });
    assertEquals(Object.keys(lp.top_logprobs[i]).length <= 2, true);
    assertEquals(lp.text_offset[i], model.tokenizer.decode(prompt.slice(0, i)).length);
  }
});

Deno.test("echo puts the prompt first; n gives choice i the text of seed + i", async () => {
  using model = await open();
  await using server = await startServer(model);
  const url = server.url + "v1/completions";
  const base = { model: "test", prompt: "abc", max_tokens: 6, temperature: 1 };
  const one = (await (await post(url, { ...base, seed: 21 })).json()).choices[0].text;
  const echoed = (await (await post(url, { ...base, seed: 21, echo: true })).json()).choices[0];
  assertEquals(echoed.text, "abc" + one);
  const two = await (await post(url, { ...base, seed: 20, n: 2 })).json();
  assertEquals(two.choices.map((c: { index: number }) => c.index), [0, 1]);
  assertEquals(two.choices[1].text, one);
  const streamed = await readEvents(await post(url, { ...base, seed: 20, n: 2, stream: true }));
  const texts = ["", ""];
  for (const e of streamed.slice(0, -1)) {
    const c = JSON.parse(e).choices[0];
    texts[c.index] += c.text;
  }
  assertEquals(texts, two.choices.map((c: { text: string }) => c.text));
  const usage = await readEvents(
    await post(url, { ...base, seed: 20, stream: true, stream_options: { include_usage: true } }),
  );
  const last = JSON.parse(usage.at(-2)!);
  assertEquals(last.choices, []);
  assertEquals(last.usage.completion_tokens, usage.length - 2);
});

Deno.test("a batch of prompts: choice p × n + i is prompt p's i-th alone, usage sums them, all decode together", async () => {
  using model = await open();
  const gated = gatedModel(model, 8, 0);
  await using server = await startServer(gated, { slots: 8 });
  const url = server.url + "v1/completions";
  // Without prompt reuse, so that a batch's usage is its prompts' alone (the next test has it).
  const base = {
    model: "test",
    max_tokens: 7,
    seed: 30,
    temperature: 1.1,
    n: 2,
    logprobs: 1,
    cache_prompt: false,
  };
  for (const prompts of [["Hello", "a b", "xyz"], [[1, 2], [3], [4, 5, 6]]]) {
    const alone = await Promise.all(
      prompts.map(async (prompt) => (await (await post(url, { ...base, prompt })).json())),
    );
    const batch = await (await post(url, { ...base, prompt: prompts })).json();
    assertEquals(
      batch.choices,
      alone.flatMap((a, p) =>
        a.choices.map((c: { index: number }) => ({ ...c, index: p * 2 + c.index }))
      ),
    );
    const sum = (key: string) => alone.reduce((s, a) => s + a.usage[key], 0);
    assertEquals(batch.usage, {
      prompt_tokens: sum("prompt_tokens"),
      completion_tokens: sum("completion_tokens"),
      total_tokens: sum("total_tokens"),
      prompt_tokens_details: { cached_tokens: 0 },
    });
    assertEquals(gated.mostAtOnce, 6, "the six choices ran at once");

    const events = await readEvents(
      await post(url, {
        ...base,
        prompt: prompts,
        stream: true,
        stream_options: { include_usage: true },
      }),
    );
    const texts = batch.choices.map(() => "");
    for (const e of events.slice(0, -2)) {
      const c = JSON.parse(e).choices[0];
      texts[c.index] += c.text;
    }
    assertEquals(texts, batch.choices.map((c: { text: string }) => c.text));
    assertEquals(JSON.parse(events.at(-2)!).usage, batch.usage);
  }
  // With echo, each choice starts with its own prompt.
  const echo = { ...base, logprobs: undefined, prompt: ["ab", "cd"], echo: true };
  const echoed = await (await post(url, echo)).json();
  assertEquals(
    echoed.choices.map((c: { text: string }) => c.text.slice(0, 2)),
    ["ab", "ab", "cd", "cd"],
  );
});

Deno.test("the sampling fields reach the library: a completion equals generate() with the same controls", async () => {
  using model = await open();
  await using server = await startServer(model);
  const ids = model.tokenizer.encode("Hello world");
  const fields = {
    repeat_penalty: 1.4,
    repeat_last_n: 16,
    presence_penalty: 0.5,
    frequency_penalty: 0.3,
    logit_bias: { "101": 3, "32": -100 },
    min_p: 0.05,
    no_repeat_ngram_size: 2,
    temperature: 0.9,
    top_p: 0.95,
    top_k: 50,
  };
  const options = {
    repetitionPenalty: 1.4,
    repeatLastN: 16,
    presencePenalty: 0.5,
    frequencyPenalty: 0.3,
    logitBias: { 101: 3, 32: -100 },
    minP: 0.05,
    noRepeatNgramSize: 2,
    temperature: 0.9,
    topP: 0.95,
    topK: 50,
  };
  const run = async (o: object) => {
    const tokens = await collect(
      model.generate(ids, { ...o, length: 20, seed: 4, stopAtEndOfText: true }),
    );
    const eot = tokens.indexOf(model.tokenizer.endOfText);
    return model.tokenizer.decode(eot < 0 ? tokens : tokens.slice(0, eot));
  };
  const want = await run(options);
  assert(want !== await run({}), "the controls change the text");
  const response = await post(server.url + "v1/completions", {
    model: "test",
    prompt: "Hello world",
    max_tokens: 20,
    seed: 4,
    ...fields,
  });
  assertEquals(response.status, 200);
  assertEquals((await response.json()).choices[0].text, want);
});

Deno.test("a batch's cached_tokens: per prompt the fewest over its n choices, summed over the prompts", async () => {
  using model = await open(); // four slots
  await using server = await startServer(model);
  const url = server.url + "v1/completions";
  const cached = async (n: number) => {
    const body = { model: "test", prompt: [[1, 2, 3], [4, 5, 6, 7]], n, max_tokens: 2, seed: 1 };
    const answer = await (await post(url, body)).json();
    return answer.usage.prompt_tokens_details.cached_tokens;
  };
  assertEquals(await cached(1), 0, "nothing cached yet");
  // Each prompt's first choice finds its slot (2 and 3 tokens), its second an empty one.
  assertEquals(await cached(2), 0);
  // Now every choice finds a slot holding its prompt: all but the last token, 2 + 3.
  assertEquals(await cached(2), 5);
});

Deno.test("prompt reuse: usage counts the cached prompt tokens; cache_prompt false runs the whole prompt, with the same text", async () => {
  using model = await open();
  await using server = await startServer(model);
  const url = server.url + "v1/completions";
  const history = { model: "test", prompt: [5, 6, 7, 8, 9, 10, 11, 12], max_tokens: 4, seed: 2 };
  const first = await (await post(url, history)).json();
  assertEquals(first.usage.prompt_tokens_details, { cached_tokens: 0 });
  const turn = { ...history, prompt: [...history.prompt, 30, 31, 32] };
  const warm = await (await post(url, turn)).json();
  // The history and the first three generated tokens were run; the new turn shares eight.
  assertEquals(warm.usage.prompt_tokens_details, { cached_tokens: 8 });
  const cold = await (await post(url, { ...turn, cache_prompt: false })).json();
  assertEquals(cold.usage.prompt_tokens_details, { cached_tokens: 0 });
  assertEquals(warm.choices[0].text, cold.choices[0].text);
  const events = await readEvents(
    await post(url, { ...turn, stream: true, stream_options: { include_usage: true } }),
  );
  assertEquals(JSON.parse(events.at(-2)!).usage.prompt_tokens_details, {
    cached_tokens: turn.prompt.length - 1,
  });
  const bad = await post(url, { ...turn, cache_prompt: "no" });
  assertEquals(bad.status, 400);
  assertEquals((await bad.json()).error.param, "cache_prompt");
});

/** A request, the status it must get, and the `param` its error must name. */
const BAD_REQUESTS: [string, string | Record<string, unknown>, number, string | null][] = [
  ["malformed JSON", '{"model": "test", "prompt": ', 400, null],
  ["not an object", "[1, 2]", 400, null],
  ["an empty body", "", 400, null],
  ["no model", { prompt: "x" }, 400, "model"],
  ["an unknown model", { model: "gpt-4", prompt: "x" }, 400, "model"],
  ["no prompt", { model: "test" }, 400, "prompt"],
  ["an empty prompt", { model: "test", prompt: "" }, 400, "prompt"],
  ["an empty token prompt", { model: "test", prompt: [] }, 400, "prompt"],
  ["a token outside the vocabulary", { model: "test", prompt: [1, 300] }, 400, "prompt"],
  ["a batch with an empty prompt", { model: "test", prompt: ["a", ""] }, 400, "prompt"],
  ["a batch of strings and ids", { model: "test", prompt: ["a", [1]] }, 400, "prompt"],
  ["a batch with a bad id", { model: "test", prompt: [[1], [2, 300]] }, 400, "prompt"],
  ["a batch of arrays of strings", { model: "test", prompt: [["a"]] }, 400, "prompt"],
  [
    "a batch over the limit",
    { model: "test", prompt: Array.from({ length: 17 }, () => "a") },
    400,
    "prompt",
  ],
  [
    "a batched prompt plus max_tokens over the context",
    { model: "test", prompt: [[1], [1, 2, 3, 4, 5]], max_tokens: TEST_HPARAMS.n_ctx - 4 },
    400,
    "max_tokens",
  ],
  ["a chat field", { model: "test", prompt: "x", messages: [] }, 400, "messages"],
  ["a prompt of the wrong type", { model: "test", prompt: 5 }, 400, "prompt"],
  ["max_tokens not an integer", { model: "test", prompt: "x", max_tokens: 1.5 }, 400, "max_tokens"],
  ["max_tokens a string", { model: "test", prompt: "x", max_tokens: "5" }, 400, "max_tokens"],
  ["max_tokens negative", { model: "test", prompt: "x", max_tokens: -1 }, 400, "max_tokens"],
  [
    "prompt plus max_tokens over the context",
    { model: "test", prompt: [1, 2, 3, 4, 5], max_tokens: TEST_HPARAMS.n_ctx - 4 },
    400,
    "max_tokens",
  ],
  ["temperature a string", { model: "test", prompt: "x", temperature: "hot" }, 400, "temperature"],
  ["temperature over 2", { model: "test", prompt: "x", temperature: 3 }, 400, "temperature"],
  ["top_p 0", { model: "test", prompt: "x", top_p: 0 }, 400, "top_p"],
  ["top_k negative", { model: "test", prompt: "x", top_k: -1 }, 400, "top_k"],
  ["stream not a boolean", { model: "test", prompt: "x", stream: "yes" }, 400, "stream"],
  [
    "five stop strings",
    { model: "test", prompt: "x", stop: ["a", "b", "c", "d", "e"] },
    400,
    "stop",
  ],
  ["a stop number", { model: "test", prompt: "x", stop: 5 }, 400, "stop"],
  ["logprobs 6", { model: "test", prompt: "x", logprobs: 6 }, 400, "logprobs"],
  ["n 0", { model: "test", prompt: "x", n: 0 }, 400, "n"],
  ["seed a float", { model: "test", prompt: "x", seed: 0.5 }, 400, "seed"],
  ["an unknown field", { model: "test", prompt: "x", max_token: 5 }, 400, "max_token"],
  [
    "presence_penalty 3",
    { model: "test", prompt: "x", presence_penalty: 3 },
    400,
    "presence_penalty",
  ],
  [
    "frequency_penalty a string",
    { model: "test", prompt: "x", frequency_penalty: "1" },
    400,
    "frequency_penalty",
  ],
  ["repeat_penalty 0", { model: "test", prompt: "x", repeat_penalty: 0 }, 400, "repeat_penalty"],
  ["repeat_last_n -2", { model: "test", prompt: "x", repeat_last_n: -2 }, 400, "repeat_last_n"],
  ["min_p over 1", { model: "test", prompt: "x", min_p: 1.5 }, 400, "min_p"],
  [
    "no_repeat_ngram_size 1.5",
    { model: "test", prompt: "x", no_repeat_ngram_size: 1.5 },
    400,
    "no_repeat_ngram_size",
  ],
  ["logit_bias an array", { model: "test", prompt: "x", logit_bias: [1] }, 400, "logit_bias"],
  [
    "logit_bias on no token",
    { model: "test", prompt: "x", logit_bias: { "300": 1 } },
    400,
    "logit_bias",
  ],
  [
    "logit_bias over 100",
    { model: "test", prompt: "x", logit_bias: { "5": 101 } },
    400,
    "logit_bias",
  ],
];

Deno.test("bad requests get a 400 in OpenAI's error shape naming the field", async () => {
  using model = await open();
  await using server = await startServer(model);
  for (const [what, body, status, param] of BAD_REQUESTS) {
    const response = await post(server.url + "v1/completions", body);
    assertEquals(response.status, status, what);
    const { error } = await response.json();
    assertEquals(Object.keys(error).sort(), ["code", "message", "param", "type"], what);
    assertEquals(error.type, "invalid_request_error", what);
    assertEquals(error.param, param, what);
    if (param) assert(error.message.includes(param), `${what}: "${error.message}" names ${param}`);
  }
  // The prompt checks are the library's, naming the prompt of a batch.
  const message = async (body: object) =>
    (await (await post(server.url + "v1/completions", body)).json()).error.message;
  const bad = { model: "test", prompt: [[1], [2, 300]] };
  assertEquals(
    await message(bad),
    "prompt[1]: Token 300 at position 1 of the prompt is outside the vocabulary [0, 300)",
  );
  assertEquals(
    await message({ ...bad, prompt: [[1], [1, 2, 3, 4, 5]], max_tokens: TEST_HPARAMS.n_ctx - 4 }),
    `max_tokens (prompt[1]): A prompt of 5 tokens and ${
      TEST_HPARAMS.n_ctx - 4
    } more to generate do not fit the context window of ${TEST_HPARAMS.n_ctx}: shorten the prompt or generate fewer tokens`,
  );
  assertEquals(
    await message({ model: "test", prompt: "" }),
    "prompt: The prompt is empty: give at least one token",
  );
  // Nothing above disturbed the server.
  const ok = await post(server.url + "v1/completions", { model: "test", prompt: "x" });
  assertEquals(ok.status, 200);
  assertEquals((await ok.json()).usage.completion_tokens <= 16, true);
});

Deno.test("unknown paths get a 404, wrong methods a 405 with Allow, large bodies a 413", async () => {
  using model = await open();
  await using server = await startServer(model, { bodyLimit: 4096 });
  const notFound = await fetch(server.url + "v1/chat", { method: "POST" });
  assertEquals(notFound.status, 404);
  assertEquals((await notFound.json()).error.code, "not_found");
  const wrong = await fetch(server.url + "v1/completions");
  assertEquals(wrong.status, 405);
  assertEquals(wrong.headers.get("allow"), "POST");
  await wrong.body?.cancel();
  const big = await post(server.url + "v1/completions", {
    model: "test",
    prompt: "x".repeat(5000),
  });
  assertEquals(big.status, 413);
  assert((await big.json()).error.message.includes("4096 bytes"));
  // Without a Content-Length: the body streams in and is cut off at the limit.
  const chunks = ReadableStream.from([
    new TextEncoder().encode("x".repeat(3000)),
    new TextEncoder().encode("y".repeat(3000)),
  ]);
  const streamed = await fetch(server.url + "tokenize", { method: "POST", body: chunks });
  assertEquals(streamed.status, 413);
  await streamed.body?.cancel();
});

Deno.test("with an API key, requests without it or with a wrong one get a 401; the page and /health need none", async () => {
  using model = await open();
  await using server = await startServer(model, { apiKey: "sesame" });
  const body = { model: "test", prompt: "x", max_tokens: 2 };
  const none = await post(server.url + "v1/completions", body);
  assertEquals(none.status, 401);
  assertEquals((await none.json()).error.code, "invalid_api_key");
  const wrong = await post(server.url + "v1/completions", body, { authorization: "Bearer sesamf" });
  assertEquals(wrong.status, 401);
  await wrong.body?.cancel();
  const models = await fetch(server.url + "v1/models");
  assertEquals(models.status, 401);
  await models.body?.cancel();
  const right = await post(server.url + "v1/completions", body, { authorization: "Bearer sesame" });
  assertEquals(right.status, 200);
  await right.body?.cancel();
  for (const path of ["health", ""]) {
    const r = await fetch(server.url + path);
    assertEquals(r.status, 200, path);
    await r.body?.cancel();
  }
});

Deno.test("/v1/models, /health, /tokenize and /detokenize", async () => {
  using model = await open();
  await using server = await startServer(model);
  const models = await (await fetch(server.url + "v1/models")).json();
  assertEquals(models.object, "list");
  assertEquals(models.data.map((m: { id: string }) => m.id), ["test"]);
  assertEquals((await (await fetch(server.url + "v1/models/test")).json()).id, "test");
  assertEquals((await fetch(server.url + "v1/models/other")).status, 404);
  const health = await (await fetch(server.url + "health")).json();
  assertEquals(health.status, "ok");
  const text = "Hello, world";
  const { tokens } = await (await post(server.url + "tokenize", { content: text })).json();
  assertEquals(tokens, model.tokenizer.encode(text));
  const pieces = await (await post(server.url + "tokenize", { content: text, with_pieces: true }))
    .json();
  assertEquals(pieces.tokens.map((p: { piece: string }) => p.piece).join(""), text);
  const back = await (await post(server.url + "detokenize", { tokens })).json();
  assertEquals(back.content, text);
  const bad = await post(server.url + "detokenize", { tokens: [1, -1] });
  assertEquals(bad.status, 400);
  assertEquals((await bad.json()).error.param, "tokens");
});

async function waitIdle(url: string): Promise<void> {
  for (let i = 0; i < 200; i++) {
    const health = await (await fetch(url + "health")).json();
    if (health.sequences_in_flight === 0) return;
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  throw new Error("The server did not become idle");
}

Deno.test("a client that disconnects frees its place; the next request runs", async () => {
  using model = await open();
  await using server = await startServer(slowModel(model, 20), { slots: 1, queue: 0 });
  const url = server.url + "v1/completions";
  const request = { model: "test", prompt: "x", max_tokens: 50, stream: true };
  const abort = new AbortController();
  const response = await fetch(url, {
    method: "POST",
    body: JSON.stringify(request),
    signal: abort.signal,
  });
  const reader = response.body!.getReader();
  await reader.read();
  abort.abort();
  await reader.cancel().catch(() => {});
  await waitIdle(server.url);
  // The same for a request that does not stream.
  const abort2 = new AbortController();
  const pending = fetch(url, {
    method: "POST",
    body: JSON.stringify({ ...request, stream: false }),
    signal: abort2.signal,
  }).catch(() => null);
  await new Promise((resolve) => setTimeout(resolve, 100));
  abort2.abort();
  await pending;
  await waitIdle(server.url);
  const next = await post(url, { ...request, max_tokens: 2, stream: false });
  assertEquals(next.status, 200);
  assertEquals((await next.json()).choices[0].finish_reason !== undefined, true);
});

Deno.test("a request beyond the slots and the queue gets a 503 with Retry-After", async () => {
  using model = await open();
  await using server = await startServer(slowModel(model, 20), { slots: 1, queue: 1 });
  const url = server.url + "v1/completions";
  const long = { model: "test", prompt: "x", max_tokens: 10 };
  const first = post(url, long);
  const second = post(url, long);
  // Both taken in (one running, one waiting) before the third comes, however slow the machine.
  for (let waited = 0; server.api.inFlight < 2; waited += 5) {
    assert(waited < 10_000, `the first two requests were not taken in: ${server.api.inFlight}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  const third = await post(url, long);
  assertEquals(third.status, 503);
  assertEquals(third.headers.get("retry-after"), "1");
  assertEquals((await third.json()).error.type, "server_error");
  assertEquals((await first).status, 200);
  assertEquals((await second).status, 200);
  await (await first).body?.cancel();
  await (await second).body?.cancel();
});

Deno.test("shutting down ends a running stream with an error event, and refuses new requests", async () => {
  using model = await open();
  const server = await startServer(slowModel(model, 20));
  const response = await post(server.url + "v1/completions", {
    model: "test",
    prompt: "x",
    max_tokens: 50,
    stream: true,
  });
  const reader = response.body!.pipeThrough(new TextDecoderStream()).getReader();
  let text = (await reader.read()).value!;
  server.api.shutdown();
  const refused = await post(server.url + "v1/completions", { model: "test", prompt: "x" });
  assertEquals(refused.status, 503);
  assertEquals((await refused.json()).error.code, "server_shutdown");
  while (true) {
    const { done, value } = await reader.read();
    if (done) break;
    text += value;
  }
  const events = parseEvents(text);
  assert(!events.includes("[DONE]"));
  assertEquals(JSON.parse(events.at(-1)!).error.code, "server_shutdown");
  await server[Symbol.asyncDispose]();
});

Deno.test("teardown: the test model folder", async () => {
  await Deno.remove(dir, { recursive: true });
});
