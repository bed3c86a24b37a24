// The official openai and ollama npm clients, unchanged but for their base URL, through gridgate in
// front of an ollama-flavour and a vllm-flavour enginesim: listing, chat, streaming, embeddings.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';
import { Ollama } from 'ollama';
import { enginesim, gridgate, writeConfig, waitModels } from '../lib/harness.mjs';

let gw, openai, ollama;

before(async () => {
  const ol = await enginesim('ollama', ['qwen2', 'nomic-embed-text'], ['--max-seqs', '4']);
  const vl = await enginesim('vllm', ['mistral', 'bge-m3']);
  const cfg = await writeConfig({
    backends: [{ name: 'ol', url: ol.url }, { name: 'vl', url: vl.url }],
    health: { interval_ms: 200 },
  });
  gw = await gridgate(['--config', cfg, '--threads', '2']);
  await waitModels(gw, ['qwen2', 'mistral', 'bge-m3', 'nomic-embed-text']);
  openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'unused', maxRetries: 0 });
  ollama = new Ollama({ host: gw.url });
});

test('openai: models.list sees every backend', async () => {
  const ids = [];
  for await (const m of openai.models.list()) ids.push(m.id);
  assert.deepEqual(ids.sort(), ['bge-m3', 'mistral', 'nomic-embed-text', 'qwen2']);
});

for (const model of ['mistral', 'qwen2']) {
  test(`openai: chat and stream with usage (${model})`, async () => {
    const msgs = [{ role: 'user', content: 'Say something about routers.' }];
    const r = await openai.chat.completions.create({ model, messages: msgs, max_tokens: 10, seed: 1 });
    assert.equal(r.choices[0].message.role, 'assistant');
    assert.ok(r.choices[0].message.content.length > 0);
    assert.equal(r.usage.completion_tokens, 10);

    const stream = await openai.chat.completions.create({
      model, messages: msgs, max_tokens: 10, seed: 1, stream: true, stream_options: { include_usage: true },
    });
    let text = '', usage;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content || '';
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(text, r.choices[0].message.content);
    assert.equal(usage.completion_tokens, 10);
  });

  test(`openai: embeddings, base64 (the SDK default) and float (${model === 'mistral' ? 'bge-m3' : 'nomic-embed-text'})`, async () => {
    const m = model === 'mistral' ? 'bge-m3' : 'nomic-embed-text';
    const b = await openai.embeddings.create({ model: m, input: ['alpha', 'beta'] });
    const f = await openai.embeddings.create({ model: m, input: ['alpha', 'beta'], encoding_format: 'float' });
    assert.equal(b.data.length, 2);
    assert.ok(b.data[0].embedding.length > 8);
    for (let i = 0; i < 2; i++) {
      assert.equal(b.data[i].embedding.length, f.data[i].embedding.length);
      b.data[i].embedding.forEach((x, k) => assert.ok(Math.abs(x - f.data[i].embedding[k]) < 1e-6));
    }
  });
}

test('openai: unknown model is a NotFoundError', async () => {
  await assert.rejects(openai.chat.completions.create({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }), (e) => e.status === 404);
});

for (const model of ['qwen2', 'mistral']) {
  test(`ollama: chat, streaming chat and generate (${model})`, async () => {
    const r = await ollama.chat({ model, messages: [{ role: 'user', content: 'hi' }], options: { num_predict: 7, seed: 2 } });
    assert.equal(r.done, true);
    assert.equal(r.eval_count, 7);
    let text = '', last;
    for await (const part of await ollama.chat({ model, messages: [{ role: 'user', content: 'hi' }], stream: true, options: { num_predict: 7, seed: 2 } })) {
      text += part.message.content;
      last = part;
    }
    assert.equal(last.done, true);
    assert.equal(text, r.message.content);
    const g = await ollama.generate({ model, prompt: 'Why is the sky blue?', options: { num_predict: 5 } });
    assert.equal(g.done, true);
    assert.ok(g.response.length > 0);
  });
}

test('ollama: list and embed', async () => {
  const l = await ollama.list();
  assert.deepEqual(l.models.map((m) => m.name).sort(), ['bge-m3', 'mistral', 'nomic-embed-text', 'qwen2']);
  for (const model of ['nomic-embed-text', 'bge-m3']) {
    const e = await ollama.embed({ model, input: ['one', 'two'] });
    assert.equal(e.embeddings.length, 2);
    assert.ok(e.embeddings[0].length > 8);
  }
});

test('ollama: unknown model is a ResponseError with status 404', async () => {
  await assert.rejects(ollama.chat({ model: 'nope', messages: [{ role: 'user', content: 'x' }] }), (e) => e.status_code === 404);
});
