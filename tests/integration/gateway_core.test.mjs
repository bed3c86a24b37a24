// The gateway core against real enginesim backends of three flavours: listings, routing by model,
// streaming, dialect translation both ways, failover, timeouts, cancellation and the error answers.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import {
  enginesim, gridgate, http, sseEvents, ndjson, sleep, writeConfig, waitModels, simStats, simFault,
} from '../lib/harness.mjs';

let ol, vl, lc, gw;
const chat = (model, extra = {}) => ({ model, messages: [{ role: 'user', content: 'Tell me about gateways.' }], ...extra });

before(async () => {
  ol = await enginesim('ollama', ['qwen2', 'llama3'], ['--max-seqs', '4']);
  vl = await enginesim('vllm', ['mistral', 'llama3']);
  lc = await enginesim('llamacpp', ['phi3']);
  const cfg = await writeConfig({
    backends: [
      { name: 'ol', url: ol.url },
      { name: 'vl', url: vl.url, kind: 'vllm' },
      { name: 'lc', url: lc.url },
    ],
    health: { interval_ms: 200, timeout_ms: 1000 },
    timeouts: { connect_ms: 1000, first_byte_ms: 1500, idle_ms: 1500 },
    limits: { max_body_bytes: 65536 },
    routing: { aliases: { fast: 'phi3' } },
  });
  gw = await gridgate(['--config', cfg, '--threads', '2']);
  await waitModels(gw, ['qwen2', 'llama3', 'mistral', 'phi3']);
});

test('model listings merge every backend, deduplicated, with who serves each', async () => {
  const m = await http('GET', `${gw.url}/v1/models`);
  assert.equal(m.status, 200);
  const ids = m.json.data.map((x) => x.id).sort();
  assert.deepEqual(ids, ['llama3', 'mistral', 'phi3', 'qwen2']);
  const llama = m.json.data.find((x) => x.id === 'llama3');
  assert.deepEqual([...llama.served_by].sort(), ['ol', 'vl']);
  const tags = await http('GET', `${gw.url}/api/tags`);
  assert.equal(tags.status, 200);
  assert.deepEqual(tags.json.models.map((x) => x.name).sort(), ['llama3', 'mistral', 'phi3', 'qwen2']);
  for (const x of tags.json.models) assert.ok('details' in x && 'size' in x);
});

test('requests go to a backend that serves the model', async () => {
  const before = await simStats(vl);
  const r = await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('mistral') });
  assert.equal(r.status, 200, r.body);
  assert.equal(r.json.object, 'chat.completion');
  assert.ok(r.json.usage.completion_tokens > 0);
  const after = await simStats(vl);
  assert.equal(after.paths['/v1/chat/completions'], (before.paths['/v1/chat/completions'] || 0) + 1);

  const lb = (await simStats(lc)).paths['/v1/chat/completions'] || 0;
  const r2 = await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('fast') });
  assert.equal(r2.status, 200, r2.body);
  assert.equal((await simStats(lc)).paths['/v1/chat/completions'], lb + 1, 'alias fast -> phi3 on llamacpp');
});

test('an OpenAI stream passes through: deltas equal the non-stream content, usage, [DONE]', async () => {
  const body = chat('mistral', { seed: 7, max_tokens: 12 });
  const whole = await http('POST', `${gw.url}/v1/chat/completions`, { body });
  const s = await http('POST', `${gw.url}/v1/chat/completions`, {
    body: { ...body, stream: true, stream_options: { include_usage: true } },
  });
  assert.equal(s.status, 200);
  assert.match(s.headers.get('content-type'), /text\/event-stream/);
  const ev = sseEvents(s.body);
  assert.equal(ev.at(-1), '[DONE]');
  const text = ev.filter((e) => e !== '[DONE]' && e.choices?.length).map((e) => e.choices[0].delta.content || '').join('');
  assert.equal(text, whole.json.choices[0].message.content);
  const usage = ev.find((e) => e !== '[DONE]' && e.usage && e.choices.length === 0);
  assert.ok(usage, 'usage chunk present');
  assert.equal(usage.usage.completion_tokens, 12);
});

test('an Ollama-dialect chat is served by an OpenAI-only engine (translated, streaming)', async () => {
  const body = { model: 'mistral', messages: [{ role: 'user', content: 'hello' }], options: { seed: 3, num_predict: 8 } };
  const before = await simStats(vl);
  const s = await http('POST', `${gw.url}/api/chat`, { body });
  assert.equal(s.status, 200, s.body);
  assert.match(s.headers.get('content-type'), /application\/x-ndjson/);
  const lines = ndjson(s.body);
  const last = lines.at(-1);
  assert.equal(last.done, true);
  assert.equal(last.eval_count, 8);
  assert.ok(last.prompt_eval_count > 0);
  assert.ok(lines.slice(0, -1).every((l) => l.done === false && l.message.role === 'assistant'));
  assert.equal((await simStats(vl)).paths['/v1/chat/completions'], (before.paths['/v1/chat/completions'] || 0) + 1);

  const ns = await http('POST', `${gw.url}/api/chat`, { body: { ...body, stream: false } });
  assert.equal(ns.status, 200, ns.body);
  assert.equal(ns.json.done, true);
  assert.equal(ns.json.message.content, lines.map((l) => l.message?.content || '').join(''));
});

test('an OpenAI-dialect chat is served by Ollama (translated, streaming)', async () => {
  const before = await simStats(ol);
  const s = await http('POST', `${gw.url}/v1/chat/completions`, {
    body: chat('qwen2', { stream: true, max_tokens: 6, stream_options: { include_usage: true } }),
  });
  assert.equal(s.status, 200, s.body);
  const ev = sseEvents(s.body);
  assert.equal(ev.at(-1), '[DONE]');
  assert.equal(ev[0].choices[0].delta.role, 'assistant');
  assert.ok(ev.some((e) => e !== '[DONE]' && e.choices?.[0]?.finish_reason));
  const usage = ev.find((e) => e !== '[DONE]' && e.usage);
  assert.equal(usage.usage.completion_tokens, 6);
  assert.equal((await simStats(ol)).paths['/api/chat'], (before.paths['/api/chat'] || 0) + 1);
});

test('errors come in the caller dialect and gridgate keeps serving', async () => {
  let r = await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('nope') });
  assert.equal(r.status, 404);
  assert.equal(r.json.error.code, 'model_not_found');
  assert.equal(typeof r.json.error.message, 'string');
  r = await http('POST', `${gw.url}/api/chat`, { body: chat('nope') });
  assert.equal(r.status, 404);
  assert.equal(typeof r.json.error, 'string');

  r = await http('POST', `${gw.url}/v1/chat/completions`, { body: '{"model": "mistral", "messages": [', headers: { 'content-type': 'application/json' } });
  assert.equal(r.status, 400);
  assert.match(r.json.error.message, /line 1/);
  r = await http('POST', `${gw.url}/api/generate`, { body: '{"model":', headers: { 'content-type': 'application/json' } });
  assert.equal(r.status, 400);
  assert.equal(typeof r.json.error, 'string');

  r = await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('mistral', { pad: 'x'.repeat(100000) }) });
  assert.equal(r.status, 413);

  r = await http('GET', `${gw.url}/v1/chat/completions`);
  assert.equal(r.status, 405);
  r = await http('GET', `${gw.url}/v1/nothing-here`);
  assert.equal(r.status, 404);

  r = await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('mistral') });
  assert.equal(r.status, 200);
});

test('a backend answering 503 or refusing is replaced before the client sees anything', async () => {
  // llama3 lives on ol and vl; make vl refuse with 503 and check every request still succeeds.
  await simFault(vl, { mode: 'status', status: 503 });
  try {
    for (let i = 0; i < 6; i++) {
      const r = await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('llama3', { max_tokens: 3 }) });
      assert.equal(r.status, 200, r.body);
    }
  } finally {
    await simFault(vl, { mode: 'none' });
  }
});

test('a stream that breaks mid-way ends with an error in the client dialect', async () => {
  await simFault(lc, { mode: 'reset_after', after_tokens: 3, count: 2 });
  const s = await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('phi3', { stream: true, max_tokens: 50 }) });
  assert.equal(s.status, 200);
  const ev = sseEvents(s.body);
  assert.equal(ev.at(-1), '[DONE]');
  const err = ev.find((e) => e !== '[DONE]' && e.error);
  assert.ok(err, `error event expected in ${s.body}`);
  assert.equal(err.choices[0].finish_reason, 'error');

  const o = await http('POST', `${gw.url}/api/chat`, { body: { model: 'phi3', messages: [{ role: 'user', content: 'x' }], options: { num_predict: 50 } } });
  const lines = ndjson(o.body);
  assert.equal(typeof lines.at(-1).error, 'string', o.body);
  await simFault(lc, { mode: 'none' });
  await sleep(500); // the reset ejected lc passively; health brings it back
});

test('a slow backend still streams to completion (no timeout fires while tokens keep coming)', async () => {
  await waitModels(gw, ['mistral']);
  await simFault(vl, { mode: 'slow', factor: 40 }); // 2 ms decode steps become 80 ms
  try {
    const s = await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('mistral', { stream: true, max_tokens: 12 }) });
    assert.equal(s.status, 200);
    const ev = sseEvents(s.body);
    assert.equal(ev.at(-1), '[DONE]');
    assert.equal(ev.filter((e) => e !== '[DONE]' && e.choices?.[0]?.delta?.content).length, 12);
    assert.ok(!ev.some((e) => e !== '[DONE]' && e.error));
  } finally {
    await simFault(vl, { mode: 'none' });
  }
});

test('a hung backend: the first-byte timeout fires with a 504', async () => {
  await waitModels(gw, ['phi3']);
  await simFault(lc, { mode: 'hang' });
  try {
    const r = await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('phi3') });
    assert.equal(r.status, 504, r.body);
    assert.equal(typeof r.json.error.message, 'string');
  } finally {
    await simFault(lc, { mode: 'none' });
  }
});

test('a client that leaves mid-stream cancels the upstream request', async () => {
  await waitModels(gw, ['mistral']);
  await simFault(vl, { mode: 'slow', factor: 50 });
  try {
    const before = await simStats(vl);
    const ac = new AbortController();
    const res = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify(chat('mistral', { stream: true, max_tokens: 200 })), signal: ac.signal,
    });
    const reader = res.body.getReader();
    await reader.read();
    ac.abort();
    let after;
    for (let i = 0; i < 100; i++) {
      after = await simStats(vl);
      if (after.cancelled > before.cancelled) break;
      await sleep(50);
    }
    assert.equal(after.cancelled, before.cancelled + 1);
  } finally {
    await simFault(vl, { mode: 'none' });
  }
});

test('no healthy backend for a model: 503 with Retry-After', async () => {
  await lc.stop('SIGKILL');
  let r;
  for (let i = 0; i < 100; i++) {
    r = await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('phi3') });
    if (r.status === 503) break;
    await sleep(50);
  }
  assert.equal(r.status, 503, r.body);
  assert.ok(Number(r.headers.get('retry-after')) >= 1);
  const h = await http('GET', `${gw.url}/health`);
  assert.equal(h.status, 200, 'no require_models configured');
  const ok = await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('mistral') });
  assert.equal(ok.status, 200);
});
