// Tenants, rate limits and admission through a real gridgate in front of real enginesims: the 401, 429 and
// 503 answers in both dialects with their headers, exact admission counts under concurrency, queue bounds and
// timeouts, a client that leaves the queue, the DRR order under a flooder, and the per-tenant metrics.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { enginesim, gridgate, http, sleep, writeConfig, waitModels } from '../lib/harness.mjs';

const chat = (extra = {}) => ({ model: 'm', messages: [{ role: 'user', content: 'Tell me about fairness.' }], max_tokens: 8, ...extra });
const ochat = (extra = {}) => ({ model: 'm', messages: [{ role: 'user', content: 'Tell me about fairness.' }], stream: false, ...extra });
const auth = (key) => (key ? { authorization: `Bearer ${key}` } : {});
const post = (gw, path, body, key, signal) => http('POST', `${gw.url}${path}`, { body, headers: auth(key), signal });

async function metrics(gw) {
  return (await http('GET', `${gw.url}/metrics`)).body;
}
function metric(text, name, labels) {
  const re = new RegExp(`^${name}\\{${labels.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\} (\\d+)`, 'm');
  const m = text.match(re);
  return m ? Number(m[1]) : undefined;
}
async function waitMetric(gw, name, labels, want, ms = 5000) {
  const deadline = Date.now() + ms;
  let v;
  while (Date.now() < deadline) {
    v = metric(await metrics(gw), name, labels);
    if (v === want) return;
    await sleep(20);
  }
  assert.fail(`${name}{${labels}} is ${v}, expected ${want}`);
}

// One engine that decodes one request at a time (llama.cpp, a hard slot count: no burst beyond the cap),
// each taking about 10 tokens x 30 ms.
let sim, gw;
before(async () => {
  sim = await enginesim('llamacpp', ['m'], ['--max-seqs', '1', '--decode-ms', '30', '--default-tokens', '10']);
  const cfg = await writeConfig({
    backends: [{ name: 'one', url: sim.url, kind: 'llamacpp', max_inflight: 1 }],
    tenants: [
      { name: 'quiet', keys: ['quiet-key'] },
      { name: 'flood', keys: ['sha256:' + (await sha256('flood-key'))], max_queue: 6 },
      { name: 'limited', keys: ['limited-key'], rate: { requests_per_s: 0.001, burst: 3 } },
      { name: 'metered', keys: ['metered-key'], rate: { tokens_per_min: 100 } },
    ],
    health: { interval_ms: 200 },
    routing: { queue_ms: 1500 },
  });
  gw = await gridgate(['--config', cfg, '--threads', '2']);
  await waitModels(gw, ['m']);
});

async function sha256(s) {
  const { createHash } = await import('node:crypto');
  return createHash('sha256').update(s).digest('hex');
}

test('401 without a known key, in both dialects; a key stored as sha256 works', async () => {
  for (const key of [undefined, 'wrong-key']) {
    const o = await post(gw, '/v1/chat/completions', chat(), key);
    assert.equal(o.status, 401, o.body);
    assert.equal(o.json.error.code, 'invalid_api_key');
    assert.equal(o.json.error.type, 'invalid_request_error');
    assert.match(o.headers.get('www-authenticate'), /^Bearer/);
    const l = await post(gw, '/api/chat', ochat(), key);
    assert.equal(l.status, 401, l.body);
    assert.equal(typeof l.json.error, 'string');
  }
  const ok = await post(gw, '/v1/chat/completions', chat(), 'flood-key');
  assert.equal(ok.status, 200, ok.body);
  const ok2 = await post(gw, '/api/chat', ochat(), 'quiet-key');
  assert.equal(ok2.status, 200, ok2.body);
});

test('N concurrent requests against a request limit of M admit exactly M; the rest get 429 with Retry-After', async () => {
  const rs = await Promise.all(Array.from({ length: 10 }, (_, i) =>
    i % 2 ? post(gw, '/v1/chat/completions', chat(), 'limited-key') : post(gw, '/api/chat', ochat(), 'limited-key')));
  assert.equal(rs.filter((r) => r.status === 200).length, 3, rs.map((r) => r.status).join(','));
  const refused = rs.filter((r) => r.status !== 200);
  assert.equal(refused.length, 7);
  for (const r of refused) {
    assert.equal(r.status, 429, r.body);
    assert.ok(Number(r.headers.get('retry-after')) >= 1, 'Retry-After is whole seconds >= 1');
    if (typeof r.json.error === 'string') assert.match(r.json.error, /rate limit/i); // Ollama dialect
    else assert.equal(r.json.error.code, 'rate_limit_exceeded');
  }
  assert.ok(refused.some((r) => typeof r.json.error === 'string') && refused.some((r) => typeof r.json.error === 'object'));
});

test('an exhausted token quota is 429 insufficient_quota with x-should-retry: false', async () => {
  // 100 tokens per minute; each request is charged its prompt estimate + max_tokens.
  const big = await post(gw, '/v1/chat/completions', chat({ max_tokens: 500 }), 'metered-key');
  assert.equal(big.status, 429, big.body);
  assert.equal(big.json.error.code, 'insufficient_quota');
  assert.equal(big.json.error.type, 'insufficient_quota');
  assert.equal(big.headers.get('x-should-retry'), 'false');
  const small = await post(gw, '/v1/chat/completions', chat({ max_tokens: 40 }), 'metered-key');
  assert.equal(small.status, 200, small.body);
  const again = await post(gw, '/api/chat', ochat({ options: { num_predict: 80 } }), 'metered-key');
  assert.equal(again.status, 429, again.body);
  assert.equal(again.headers.get('x-should-retry'), 'false');
  assert.equal(typeof again.json.error, 'string');
});

test('under a flooder, the quiet tenant is admitted ahead of the flooder\'s already-queued requests', async () => {
  const done = [];
  const run = (who, key) => post(gw, '/v1/chat/completions', chat(), key).then((r) => {
    assert.equal(r.status, 200, r.body);
    done.push(who);
  });
  const all = [];
  for (let i = 0; i < 6; i++) all.push(run(`f${i}`, 'flood-key'));
  // one flooder request runs, five wait; only then does the quiet tenant ask
  await waitMetric(gw, 'gridgate_queue_depth', 'backend="one"', 5);
  all.push(run('quiet', 'quiet-key'));
  await waitMetric(gw, 'gridgate_queue_depth', 'backend="one"', 6);
  await Promise.all(all);
  // FIFO would finish it last (7th); DRR lets it in at the next slot or the one after.
  const at = done.indexOf('quiet');
  assert.ok(at >= 1 && at <= 2, `completion order ${done.join(',')}`);
});

test('a queue bound gives 429 at once; a queue timeout gives 429 over the share and 503 within it', async () => {
  // The flooder holds the slot and fills its queue bound of 6.
  const hold = [];
  for (let i = 0; i < 7; i++) hold.push(post(gw, '/v1/chat/completions', chat({ max_tokens: 10 }), 'flood-key'));
  await waitMetric(gw, 'gridgate_queue_depth', 'backend="one"', 6);
  const full = await post(gw, '/api/chat', ochat(), 'flood-key');
  assert.equal(full.status, 429, full.body);
  assert.ok(Number(full.headers.get('retry-after')) >= 1);
  assert.equal(typeof full.json.error, 'string');
  const rs = await Promise.all(hold);
  // 7 requests x ~300 ms through one slot do not all fit in a 1.5 s wait: the late ones time out, over the
  // flooder's share (it holds the only slot), so 429 with a Retry-After from its own queue.
  const late = rs.filter((r) => r.status !== 200);
  assert.ok(rs.filter((r) => r.status === 200).length >= 2);
  assert.ok(late.length >= 1, rs.map((r) => r.status).join(','));
  for (const r of late) {
    assert.equal(r.status, 429, r.body);
    assert.equal(r.json.error.code, 'rate_limit_exceeded');
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
  }

  // Now the quiet tenant waits behind a slot the flooder holds for longer than the queue wait: it is within
  // its share, so the gateway is what is overloaded: 503 in each dialect.
  const long = post(gw, '/v1/chat/completions', chat({ max_tokens: 80, ignore_eos: true }), 'flood-key');
  await waitMetric(gw, 'gridgate_tenant_inflight', 'tenant="flood"', 1);
  const [o, l] = await Promise.all([post(gw, '/v1/chat/completions', chat(), 'quiet-key'), post(gw, '/api/chat', ochat(), 'quiet-key')]);
  for (const r of [o, l]) {
    assert.equal(r.status, 503, r.body);
    assert.ok(Number(r.headers.get('retry-after')) >= 1);
  }
  assert.equal(o.json.error.code, 'overloaded');
  assert.equal(typeof l.json.error, 'string');
  assert.equal((await long).status, 200);
});

test('a client that leaves while queued leaves the queue', async () => {
  const long = post(gw, '/v1/chat/completions', chat({ max_tokens: 20 }), 'flood-key');
  await waitMetric(gw, 'gridgate_tenant_inflight', 'tenant="flood"', 1);
  const ac = new AbortController();
  const gone = post(gw, '/v1/chat/completions', chat(), 'quiet-key', ac.signal).catch((e) => e);
  await waitMetric(gw, 'gridgate_queue_depth', 'backend="one"', 1);
  await sleep(100); // past the 20 ms after which the proxy watches the client socket
  ac.abort();
  await waitMetric(gw, 'gridgate_queue_depth', 'backend="one"', 0);
  await waitMetric(gw, 'gridgate_tenant_queued', 'tenant="quiet"', 0);
  assert.ok((await gone) instanceof Error);
  assert.equal((await long).status, 200);
  // the slot is free again afterwards
  await waitMetric(gw, 'gridgate_tenant_inflight', 'tenant="flood"', 0);
  assert.equal((await post(gw, '/v1/chat/completions', chat(), 'quiet-key')).status, 200);
});

test('per-tenant metrics: outcomes, rejections by reason, queue wait, TTFT, tokens', async () => {
  const s = await post(gw, '/v1/chat/completions', chat({ stream: true }), 'quiet-key');
  assert.equal(s.status, 200);
  const m = await metrics(gw);
  assert.ok(metric(m, 'gridgate_tenant_requests_total', 'tenant="quiet",outcome="ok"') >= 3);
  assert.ok(metric(m, 'gridgate_tenant_requests_total', 'tenant="limited",outcome="rejected"') >= 7);
  assert.ok(metric(m, 'gridgate_tenant_rejected_total', 'tenant="limited",reason="rate_limit"') >= 7);
  assert.ok(metric(m, 'gridgate_tenant_rejected_total', 'tenant="metered",reason="quota"') >= 2);
  assert.ok(metric(m, 'gridgate_tenant_rejected_total', 'tenant="flood",reason="queue_full"') >= 1);
  assert.ok(metric(m, 'gridgate_tenant_rejected_total', 'tenant="quiet",reason="overloaded"') >= 2);
  assert.ok(metric(m, 'gridgate_tenant_queue_wait_seconds_count', 'tenant="flood"') >= 6);
  assert.ok(metric(m, 'gridgate_tenant_ttft_seconds_count', 'tenant="quiet"') >= 1);
  assert.ok(metric(m, 'gridgate_tenant_tokens_total', 'tenant="quiet",direction="out"') > 0);
  assert.ok(metric(m, 'gridgate_tenant_tokens_total', 'tenant="quiet",direction="in"') > 0);
  assert.equal(metric(m, 'gridgate_tenant_inflight', 'tenant="quiet"'), 0);
  assert.equal(metric(m, 'gridgate_queue_depth', 'backend="one"'), 0);
});
