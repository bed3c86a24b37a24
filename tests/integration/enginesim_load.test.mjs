// enginesim: the load model (queueing, metrics, model loading and eviction, client disconnects) and every
// fault-injection mode, observed from outside through real HTTP requests.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { enginesim, http, rawRequest, sseEvents, sleep } from '../lib/harness.mjs';

const chat = (model, extra = {}) => ({ model, messages: [{ role: 'user', content: 'hello' }], ...extra });
const stats = async (url) => (await http('GET', `${url}/_sim/stats`)).json;
const setFault = (url, f) => http('POST', `${url}/_sim/fault`, { body: f });

async function until(fn, what, tries = 200) {
  for (let i = 0; i < tries; i++) {
    const v = await fn();
    if (v) return v;
    await sleep(25);
  }
  throw new Error(`never became true: ${what}`);
}

test('max-seqs 1: 10 concurrent requests show up as waiting in /metrics, then all complete', async () => {
  const sim = await enginesim('vllm', ['m'], ['--max-seqs', '1', '--decode-ms', '10']);
  const reqs = Array.from({ length: 10 }, () => http('POST', `${sim.url}/v1/chat/completions`, { body: chat('m') }));
  const seen = await until(async () => {
    const m = (await http('GET', `${sim.url}/metrics`)).body;
    const waiting = Number(m.match(/vllm:num_requests_waiting\{[^}]*\} (\S+)/)[1]);
    const running = Number(m.match(/vllm:num_requests_running\{[^}]*\} (\S+)/)[1]);
    return waiting >= 5 ? { waiting, running } : null;
  }, 'waiting >= 5');
  assert.equal(seen.running, 1);
  const res = await Promise.all(reqs);
  assert.ok(res.every((r) => r.status === 200));
  const m = (await http('GET', `${sim.url}/metrics`)).body;
  assert.match(m, /vllm:num_requests_waiting\{[^}]*\} 0/);
  assert.match(m, /vllm:time_to_first_token_seconds_count\{[^}]*\} 10/);
  const s = await stats(sim.url);
  assert.equal(s.completed, 10);
  assert.equal(s.paths['/v1/chat/completions'], 10);
});

test('ollama: bounded queue answers 503 beyond --max-queue', async () => {
  const sim = await enginesim('ollama', ['m'], ['--max-queue', '2', '--decode-ms', '50']);
  const first = http('POST', `${sim.url}/api/generate`, { body: { model: 'm', prompt: 'x', stream: false } });
  await until(async () => (await stats(sim.url)).running === 1, 'first running');
  const rest = await Promise.all(Array.from({ length: 5 }, () => http('POST', `${sim.url}/api/generate`, { body: { model: 'm', prompt: 'x', stream: false } })));
  const busy = rest.filter((r) => r.status === 503);
  assert.equal(busy.length, 3);
  assert.equal(typeof busy[0].json.error, 'string');
  assert.equal((await first).status, 200);
  assert.equal((await stats(sim.url)).rejected, 3);
});

test('model load with --load-ms is visible, then the model shows in /api/ps; --vram-mb evicts LRU', async () => {
  const sim = await enginesim('ollama', ['a:6000', 'b:6000'], ['--load-ms', '300', '--vram-mb', '10000']);
  const p = http('POST', `${sim.url}/api/chat`, { body: { ...chat('a'), stream: false } });
  const s = await until(async () => {
    const st = await stats(sim.url);
    return st.loading_models.includes('a') ? st : null;
  }, 'a loading');
  assert.deepEqual(s.loaded_models, []);
  assert.deepEqual((await http('GET', `${sim.url}/api/ps`)).json.models, []);
  const r = await p;
  assert.ok(r.json.load_duration > 0);
  assert.deepEqual((await http('GET', `${sim.url}/api/ps`)).json.models.map((m) => m.name), ['a:latest']);
  await http('POST', `${sim.url}/api/chat`, { body: { ...chat('b'), stream: false } });
  assert.deepEqual((await http('GET', `${sim.url}/api/ps`)).json.models.map((m) => m.name), ['b:latest']);
  const again = await http('POST', `${sim.url}/api/chat`, { body: { ...chat('b'), stream: false } });
  assert.equal(again.json.load_duration < r.json.load_duration, true, 'a loaded model costs no load time');
});

test('a client that disconnects mid-stream or while queued is counted as cancelled and frees its slot', async () => {
  const sim = await enginesim('vllm', ['m'], ['--max-seqs', '1', '--decode-ms', '20']);
  const ac = new AbortController();
  const res = await fetch(`${sim.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(chat('m', { stream: true, max_tokens: 100000, ignore_eos: true })),
    signal: ac.signal,
  });
  const reader = res.body.getReader();
  await reader.read();
  // a second request waits behind the first; abort it while it is queued
  const ac2 = new AbortController();
  const queued = fetch(`${sim.url}/v1/chat/completions`, {
    method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(chat('m')), signal: ac2.signal,
  }).catch((e) => e);
  await until(async () => (await stats(sim.url)).waiting === 1, 'second queued');
  ac2.abort();
  await queued;
  await until(async () => (await stats(sim.url)).cancelled === 1, 'queued request cancelled');
  ac.abort();
  const s = await until(async () => {
    const st = await stats(sim.url);
    return st.cancelled === 2 && st.running === 0 ? st : null;
  }, 'streaming request cancelled');
  assert.equal(s.completed, 0);
  const ok = await http('POST', `${sim.url}/v1/chat/completions`, { body: chat('m', { max_tokens: 2 }) });
  assert.equal(ok.status, 200);
});

test('fault status (with count), hang, redirect, --fault at start-up', async () => {
  const sim = await enginesim('vllm', ['m'], ['--fault', '{"mode":"status","status":500,"count":1}']);
  const r1 = await http('POST', `${sim.url}/v1/chat/completions`, { body: chat('m') });
  assert.equal(r1.status, 500);
  assert.ok(r1.json.error.message);
  assert.equal((await http('POST', `${sim.url}/v1/chat/completions`, { body: chat('m') })).status, 200);

  await setFault(sim.url, { mode: 'status', status: 503 });
  for (let i = 0; i < 3; i++) assert.equal((await http('GET', `${sim.url}/v1/models`)).status, 503);
  assert.equal((await stats(sim.url)).fault.mode, 'status');

  await setFault(sim.url, { mode: 'hang', count: 1 });
  const hung = await http('POST', `${sim.url}/v1/chat/completions`, { body: chat('m'), signal: AbortSignal.timeout(300) }).catch((e) => e);
  assert.equal(hung.name, 'TimeoutError');
  assert.equal((await http('POST', `${sim.url}/v1/chat/completions`, { body: chat('m') })).status, 200);

  await setFault(sim.url, { mode: 'redirect', location: 'http://127.0.0.1:1/elsewhere', count: 1 });
  const red = await fetch(`${sim.url}/v1/models`, { redirect: 'manual' });
  assert.equal(red.status, 302);
  assert.equal(red.headers.get('location'), 'http://127.0.0.1:1/elsewhere');
  const bad = await setFault(sim.url, { mode: 'explode' });
  assert.equal(bad.status, 400);
  await setFault(sim.url, { mode: 'none' });
  assert.equal((await http('GET', `${sim.url}/v1/models`)).status, 200);
});

test('fault reset_after, malformed, garbage, close_after_headers, refuse', async () => {
  const sim = await enginesim('vllm', ['m'], ['--decode-ms', '5']);
  await setFault(sim.url, { mode: 'reset_after', after_tokens: 3, count: 1 });
  let text = '';
  const err = await (async () => {
    const res = await fetch(`${sim.url}/v1/chat/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(chat('m', { stream: true })),
    });
    const dec = new TextDecoder();
    for await (const c of res.body) text += dec.decode(c);
  })().catch((e) => e);
  assert.ok(err instanceof Error, 'the stream breaks');
  assert.ok(!text.includes('[DONE]'));
  const got = sseEvents(text.slice(0, text.lastIndexOf('\n\n') + 2)).filter((e) => e.choices?.[0]?.delta?.content);
  assert.ok(got.length <= 3);

  await setFault(sim.url, { mode: 'malformed', count: 2 });
  const m1 = await http('POST', `${sim.url}/v1/chat/completions`, { body: chat('m', { stream: true }) });
  assert.throws(() => sseEvents(m1.body));
  const m2 = await http('POST', `${sim.url}/v1/chat/completions`, { body: chat('m') });
  assert.equal(m2.status, 200);
  assert.equal(m2.json, undefined, 'body is not JSON');

  await setFault(sim.url, { mode: 'garbage', count: 1 });
  const g = await rawRequest(sim.port, 'GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.ok(g.length > 0 && !g.startsWith('HTTP/'), JSON.stringify(g));

  await setFault(sim.url, { mode: 'close_after_headers', count: 1 });
  const c = await rawRequest(sim.port, 'GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n');
  assert.match(c, /^HTTP\/1\.1 200/);
  assert.match(c, /content-length: 4096/i);
  assert.equal(c.split('\r\n\r\n')[1], '');

  await setFault(sim.url, { mode: 'refuse', count: 1 });
  // a fresh connection (fetch would reuse a pooled one) is reset without a byte of answer
  assert.equal(await rawRequest(sim.port, 'GET /v1/models HTTP/1.1\r\nHost: x\r\n\r\n'), '');
  assert.equal((await http('GET', `${sim.url}/v1/models`)).status, 200);
  assert.equal((await stats(sim.url)).fault.mode, 'none');
});

test('fault slow: factor 30 makes a request much slower', async () => {
  const sim = await enginesim('vllm', ['m'], ['--decode-ms', '4']);
  const t0 = Date.now();
  await http('POST', `${sim.url}/v1/chat/completions`, { body: chat('m', { max_tokens: 10 }) });
  const normal = Date.now() - t0;
  await setFault(sim.url, { mode: 'slow', factor: 30, count: 1 });
  const t1 = Date.now();
  const r = await http('POST', `${sim.url}/v1/chat/completions`, { body: chat('m', { max_tokens: 10 }) });
  const slow = Date.now() - t1;
  assert.equal(r.json.usage.completion_tokens, 10);
  assert.ok(slow > 3 * normal && slow >= 9 * 4 * 30 * 0.9, `slow ${slow} ms vs normal ${normal} ms`);
});

test('--crash-after 2: two requests are served, the third kills the process', async () => {
  const sim = await enginesim('vllm', ['m'], ['--crash-after', '2']);
  assert.equal((await http('GET', `${sim.url}/v1/models`)).status, 200);
  assert.equal((await http('POST', `${sim.url}/v1/chat/completions`, { body: chat('m') })).status, 200);
  const third = await http('GET', `${sim.url}/v1/models`).catch((e) => e);
  assert.ok(third instanceof Error);
  const { code } = await sim.exited;
  assert.equal(code, 1);
});
