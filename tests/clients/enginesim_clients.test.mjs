// enginesim against the official clients: the openai SDK on the vllm flavour and the ollama client on the
// ollama flavour. If a real client is unhappy with the simulator's wire format, these fail.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI, { NotFoundError } from 'openai';
import { Ollama } from 'ollama';
import { enginesim, http } from '../lib/harness.mjs';

const messages = [{ role: 'user', content: 'Say something about engines' }];

test('openai SDK on vllm: models, chat, stream with usage, embeddings base64 and float, 404, malformed 400', async () => {
  const sim = await enginesim('vllm', ['m1', 'm2']);
  const client = new OpenAI({ baseURL: `${sim.url}/v1`, apiKey: 'sk-test', maxRetries: 0 });
  const ids = [];
  for await (const m of client.models.list()) ids.push(m.id);
  assert.deepEqual(ids, ['m1', 'm2']);

  const full = await client.chat.completions.create({ model: 'm1', messages, seed: 3 });
  assert.equal(full.choices[0].finish_reason, 'stop');
  assert.equal(full.usage.completion_tokens, 16);

  const stream = await client.chat.completions.create({ model: 'm1', messages, seed: 3, stream: true, stream_options: { include_usage: true } });
  let text = '';
  let usage;
  let finish;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta.content ?? '';
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.equal(text, full.choices[0].message.content);
  assert.equal(finish, 'stop');
  assert.deepEqual(usage, full.usage);

  const cut = await client.completions.create({ model: 'm2', prompt: 'abc', max_tokens: 2 });
  assert.equal(cut.choices[0].finish_reason, 'length');
  assert.equal(cut.usage.completion_tokens, 2);

  // the SDK asks for base64 by default and decodes it; it must equal the float answer
  const b64 = await client.embeddings.create({ model: 'm1', input: ['one', 'two'] });
  const flt = await client.embeddings.create({ model: 'm1', input: ['one', 'two'], encoding_format: 'float' });
  assert.equal(b64.data.length, 2);
  assert.equal(b64.data[0].embedding.length, 384);
  for (let i = 0; i < 2; i++) assert.deepEqual(b64.data[i].embedding, flt.data[i].embedding.map(Math.fround));
  const norm = Math.hypot(...flt.data[0].embedding);
  assert.ok(Math.abs(norm - 1) < 1e-4);

  await assert.rejects(client.chat.completions.create({ model: 'ghost', messages }), (e) => e instanceof NotFoundError && e.status === 404);
  const bad = await http('POST', `${sim.url}/v1/chat/completions`, { body: '{"model":"m1",', headers: { 'content-type': 'application/json' } });
  assert.equal(bad.status, 400);
  assert.equal(typeof bad.json.error.message, 'string');
});

test('ollama client on ollama: list, chat, stream, generate, embed, ps, 404, malformed 400', async () => {
  const sim = await enginesim('ollama', ['llama3', 'nomic-embed-text']);
  const ollama = new Ollama({ host: sim.url });
  const list = await ollama.list();
  assert.deepEqual(list.models.map((m) => m.name), ['llama3:latest', 'nomic-embed-text:latest']);

  const full = await ollama.chat({ model: 'llama3', messages, options: { seed: 1 } });
  assert.equal(full.done, true);
  assert.equal(full.eval_count, 16);
  assert.equal(full.message.role, 'assistant');

  const stream = await ollama.chat({ model: 'llama3', messages, options: { seed: 1 }, stream: true });
  let text = '';
  let last;
  for await (const part of stream) {
    text += part.message.content;
    last = part;
  }
  assert.equal(text, full.message.content);
  assert.equal(last.done, true);
  assert.equal(last.done_reason, 'stop');

  const gen = await ollama.generate({ model: 'llama3', prompt: 'hi', options: { num_predict: 3 } });
  assert.equal(gen.done_reason, 'length');
  assert.equal(gen.eval_count, 3);

  const emb = await ollama.embed({ model: 'nomic-embed-text', input: ['a', 'b', 'c'] });
  assert.equal(emb.embeddings.length, 3);
  assert.equal(emb.embeddings[0].length, 384);

  const ps = await ollama.ps();
  assert.deepEqual(ps.models.map((m) => m.name).sort(), ['llama3:latest', 'nomic-embed-text:latest']);
  assert.ok(ps.models.every((m) => m.size_vram > 0 && m.expires_at));

  assert.match((await ollama.version()).version, /^\d+\.\d+\.\d+$/);
  await assert.rejects(ollama.chat({ model: 'ghost', messages }), (e) => e.name === 'ResponseError' && e.status_code === 404);
  const bad = await http('POST', `${sim.url}/api/chat`, { body: '{"model":', headers: { 'content-type': 'application/json' } });
  assert.equal(bad.status, 400);
  assert.equal(typeof bad.json.error, 'string');
});
