// gridgate as an operator meets it: /health with required models, /metrics, the JSON access log,
// SIGHUP reload, SIGTERM drain, and HTTP/2 + TLS.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import http2 from 'node:http2';
import https from 'node:https';
import { execFileSync } from 'node:child_process';
import { enginesim, gridgate, http, sseEvents, sleep, writeConfig, waitModels } from '../lib/harness.mjs';

const chat = (model, extra = {}) => ({ model, messages: [{ role: 'user', content: 'hello' }], ...extra });

test('/health is 503 with missing_models until every required model is served, then 200', async () => {
  const sim = await enginesim('vllm', ['a']);
  const cfg = await writeConfig({ require_models: ['a', 'b'], health: { interval_ms: 100 }, backends: [{ name: 's1', url: sim.url }] });
  const gw = await gridgate(['--config', cfg]);
  await waitModels(gw, ['a']);
  let h = await http('GET', `${gw.url}/health`);
  assert.equal(h.status, 503);
  assert.equal(h.json.status, 'loading');
  assert.deepEqual(h.json.missing_models, ['b']);

  const sim2 = await enginesim('llamacpp', ['b']);
  await fs.writeFile(cfg, JSON.stringify({ require_models: ['a', 'b'], health: { interval_ms: 100 },
    backends: [{ name: 's1', url: sim.url }, { name: 's2', url: sim2.url }] }));
  gw.child.kill('SIGHUP');
  await gw.waitFor(/reload: .* applied/);
  await waitModels(gw, ['a', 'b']);
  h = await http('GET', `${gw.url}/health`);
  assert.equal(h.status, 200, h.body);
  assert.deepEqual(h.json.missing_models, []);

  // A reload that drops s1 removes it; a broken file keeps the running config.
  await fs.writeFile(cfg, JSON.stringify({ health: { interval_ms: 100 }, backends: [{ name: 's2', url: sim2.url }] }));
  gw.child.kill('SIGHUP');
  await gw.waitFor(/removing backend s1/);
  await fs.writeFile(cfg, '{"backends": [');
  gw.child.kill('SIGHUP');
  await gw.waitFor(/reload: .*keeping the running config/);
  const r = await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('b') });
  assert.equal(r.status, 200);
});

test('/metrics and the access log report what happened', async () => {
  const sim = await enginesim('vllm', ['m1']);
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gg-log-'));
  const log = path.join(dir, 'access.log');
  const gw = await gridgate(['--backend', `${sim.url}#name=sim`, '--access-log', log]);
  await waitModels(gw, ['m1']);
  await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('m1', { stream: true }) });
  await http('POST', `${gw.url}/v1/chat/completions?api_key=SECRET123`, { body: chat('m1') });
  await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('nope') });
  const m = await http('GET', `${gw.url}/metrics`);
  assert.equal(m.status, 200);
  assert.match(m.body, /gridgate_requests_total\{model="m1",backend="sim",code="200"\} 2/);
  assert.match(m.body, /gridgate_ttft_seconds_bucket\{model="m1",le="\+Inf"\} 1/);
  assert.match(m.body, /gridgate_request_duration_seconds_count\{model="m1"\} 2/);
  assert.match(m.body, /gridgate_backend_up\{backend="sim",kind="vllm",state="up"\} 1/);
  assert.match(m.body, /gridgate_inflight \d+/);
  assert.match(m.body, /# TYPE gridgate_retries_total counter/);

  let lines = [];
  for (let i = 0; i < 50 && lines.length < 3; i++) {
    lines = (await fs.readFile(log, 'utf8').catch(() => '')).split('\n').filter(Boolean).map((l) => JSON.parse(l))
      .filter((l) => l.path === '/v1/chat/completions');
    await sleep(20);
  }
  assert.equal(lines.length, 3);
  // A line is written when its request is done with, which for a proxied answer can come after the client has sent
  // its next request: find each by what it is, not by its place.
  const s = lines.find((l) => l.stream === true);
  const ns = lines.find((l) => l !== s && l.status !== 404);
  const nf = lines.find((l) => l.status === 404);
  assert.ok(s && ns && nf, JSON.stringify(lines));
  assert.equal(s.stream, true);
  assert.equal(s.model, 'm1');
  assert.equal(s.backend, 'sim');
  assert.ok(s.ttft_ms > 0 && s.tokens_out > 0 && s.bytes_out > 0);
  assert.equal(ns.status, 200);
  assert.ok(ns.bytes_out > 100, 'a buffered answer counts its bytes');
  assert.equal(ns.path, '/v1/chat/completions');
  assert.equal(nf.status, 404);
  assert.equal(nf.model, 'nope', 'a refused request is logged with the model it asked for');
  assert.ok(!(await fs.readFile(log, 'utf8')).includes('SECRET123'), 'query strings are never logged');
});

test('SIGTERM: a stream in flight finishes, new connections are refused, the process exits 0', async () => {
  const sim = await enginesim('vllm', ['m1'], ['--decode-ms', '20']);
  const gw = await gridgate(['--backend', sim.url]);
  await waitModels(gw, ['m1']);
  const streaming = http('POST', `${gw.url}/v1/chat/completions`, { body: chat('m1', { stream: true, max_tokens: 30 }) });
  await sleep(150);
  gw.child.kill('SIGTERM');
  await gw.waitFor(/draining/);
  const r = await streaming;
  assert.equal(r.status, 200);
  assert.equal(sseEvents(r.body).at(-1), '[DONE]');
  const exit = await gw.exited;
  assert.equal(exit.code, 0);
  await assert.rejects(http('GET', `${gw.url}/health`));
});

test('HTTP/2 over TLS with ALPN, and HTTP/1.1 over TLS', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gg-tls-'));
  const cert = path.join(dir, 'cert.pem'), key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '1',
    '-subj', '/CN=localhost'], { stdio: 'ignore' });
  const sim = await enginesim('vllm', ['m1']);
  const cfg = await writeConfig({ tls: { cert, key }, backends: [{ url: sim.url }], health: { interval_ms: 100 } });
  const gw = await gridgate(['--config', cfg], { ready: /listening on https:\/\/([\d.]+):(\d+)/ });
  const base = `https://127.0.0.1:${gw.port}`;

  const session = http2.connect(base, { rejectUnauthorized: false });
  const h2req = (p, body) => new Promise((resolve, reject) => {
    const req = session.request({ ':method': body ? 'POST' : 'GET', ':path': p, 'content-type': 'application/json' });
    let data = '', status;
    req.on('response', (h) => (status = h[':status']));
    req.on('data', (d) => (data += d));
    req.on('end', () => resolve({ status, body: data }));
    req.on('error', reject);
    req.end(body ? JSON.stringify(body) : undefined);
  });
  let r;
  for (let i = 0; i < 100; i++) {
    r = await h2req('/v1/models');
    if (r.body.includes('m1')) break;
    await sleep(50);
  }
  assert.equal(r.status, 200);
  assert.equal(session.alpnProtocol, 'h2');
  r = await h2req('/v1/chat/completions', chat('m1', { stream: true }));
  assert.equal(r.status, 200);
  assert.equal(sseEvents(r.body).at(-1), '[DONE]');
  session.close();

  const h1 = await new Promise((resolve, reject) => {
    https.get(`${base}/v1/models`, { rejectUnauthorized: false, ALPNProtocols: ['http/1.1'] }, (res) => {
      let d = '';
      const alpn = res.socket.alpnProtocol;
      res.on('data', (c) => (d += c));
      res.on('end', () => resolve({ status: res.statusCode, body: d, alpn }));
    }).on('error', reject);
  });
  assert.equal(h1.status, 200);
  assert.equal(h1.alpn, 'http/1.1');
  assert.match(h1.body, /m1/);
});
