// Tests build/gridload against the real build/enginesim: per-flow reporting, the JSON report and its
// per-second windows, warm-up exclusion, errors by status and by class, both dialects streaming and not,
// and the queueing acceptance check (TTFT under 10 concurrent requests on a one-slot engine, with the
// engine's /metrics showing the waiting requests meanwhile).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import httpServer from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { bin, enginesim as startSim, http, sleep } from '../lib/harness.mjs';

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gridload-test-'));
let runs = 0;

/** Runs gridload with args (plus --json); resolves {code, stdout, stderr, report}. */
function gridload(args, { json = true } = {}) {
  const file = path.join(tmp, `run${runs++}.json`);
  const full = json ? [...args, '--json', file] : args;
  return new Promise((resolve, reject) => {
    const child = spawn(bin('gridload'), full, { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const killer = setTimeout(() => child.kill('SIGKILL'), 60000);
    child.on('error', reject);
    child.on('exit', (code) => {
      clearTimeout(killer);
      let report;
      if (json && fs.existsSync(file)) report = JSON.parse(fs.readFileSync(file, 'utf8'));
      resolve({ code, stdout, stderr, report });
    });
  });
}

/** Starts an enginesim that is stopped when test t ends (one engine at a time on a 2-core machine). */
async function enginesim(t, flavor, models, extra) {
  const sim = await startSim(flavor, models, extra);
  t.after(() => sim.stop());
  return sim;
}

const flow = (report, name) => {
  const f = report.flows.find((x) => x.name === name);
  assert.ok(f, `flow ${name} in report`);
  return f;
};
const sum = (arr, key) => arr.reduce((a, w) => a + w[key], 0);

test('--help documents every flag; bad usage exits 2', async () => {
  const help = await gridload(['--help'], { json: false });
  assert.equal(help.code, 0);
  for (const flag of ['--target', '--flow', '--model', '--api', '--stream', '--max-tokens', '--prompt-tokens', '--duration',
    '--warmup', '--timeout', '--max-outstanding', '--seed', '--json', '--quiet', '--log-level', 'conc=']) {
    assert.ok(help.stdout.includes(flag), `--help mentions ${flag}`);
  }
  for (const bad of [[], ['--flow', 'x'], ['--flow', 'a:k:1,bogus=1'], ['--flow', 'a:k:0'], ['--flow', 'a:k:1', '--flow', 'a:k:2'],
    ['--flow', 'a:k:1', '--target', 'ftp://x'], ['--flow', 'a:k:1', '--api', 'grpc']]) {
    const r = await gridload(bad, { json: false });
    assert.equal(r.code, 2, `exit 2 for ${bad.join(' ')}: ${r.stderr}`);
  }
});

test('two OpenAI flows, streaming and not, are reported separately with per-second windows', async (t) => {
  const sim = await enginesim(t, 'vllm', ['llama3'], ['--max-seqs', '64', '--decode-ms', '2', '--default-tokens', '6']);
  const r = await gridload(['--target', sim.url, '--model', 'llama3', '--duration', '2', '--max-tokens', '6',
    '--flow', 'streamer:key-a:15', '--flow', 'plain:key-b:10,stream=0']);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^streamer\s/m);
  assert.match(r.stdout, /^plain\s/m);
  assert.equal(r.report.flows.length, 2);

  const s = flow(r.report, 'streamer');
  const p = flow(r.report, 'plain');
  for (const f of [s, p]) {
    assert.ok(f.sent > 0, `${f.name} sent requests`);
    assert.equal(f.ok, f.sent, `${f.name}: every request ok (${JSON.stringify(f.errors)})`);
    assert.equal(f.errors.total, 0);
    assert.equal(f.ttft_ms.n, f.ok, `${f.name}: a TTFT for each ok request`);
    assert.equal(f.e2e_ms.n, f.ok);
    assert.equal(f.tokens, f.ok * 6, `${f.name}: 6 tokens per request`);
    assert.ok(f.ttft_ms.p50 <= f.ttft_ms.p90 && f.ttft_ms.p90 <= f.ttft_ms.p99);
    // windows: one per second of the run, cohort counts add up to the summary
    assert.ok(f.windows.length >= 2, 'at least one window per measured second');
    f.windows.forEach((w, i) => {
      assert.equal(w.t, i);
      for (const k of ['sent', 'ok', 'errors', 'dropped', 'tokens']) assert.equal(typeof w[k], 'number', `window.${k}`);
      assert.ok('ttft_p50_ms' in w && 'ttft_p99_ms' in w);
      assert.equal(w.warmup, false);
    });
    assert.equal(sum(f.windows, 'sent'), f.sent);
    assert.equal(sum(f.windows, 'ok'), f.ok);
    assert.equal(sum(f.windows, 'tokens'), f.tokens, `${f.name}: tokens received per second add up`);
  }
  assert.equal(s.stream, true);
  assert.equal(p.stream, false);
  // streaming: the first token comes before the last; non-streaming: TTFT is the full latency
  assert.ok(s.ttft_ms.p50 < s.e2e_ms.p50, `stream ttft ${s.ttft_ms.p50} < e2e ${s.e2e_ms.p50}`);
  assert.ok(s.tpot_ms.n > 0);
  assert.equal(p.ttft_ms.p50, p.e2e_ms.p50);
  assert.equal(p.tpot_ms.n, 0);
});

test('TTFT is the first non-empty content token, not the first byte', async (t) => {
  // enginesim writes its role chunk together with the first token, so it cannot tell the two clocks
  // apart. This server sends the head, an SSE comment and empty-content events at once, and the first
  // real content DELAY ms later: a first-byte clock would read ~0.
  const DELAY = 300;
  const seen = { '/v1/chat/completions': [], '/api/chat': [] };
  const server = httpServer.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      const ollama = req.url === '/api/chat';
      seen[req.url]?.push({ auth: req.headers.authorization, body: JSON.parse(body) });
      res.writeHead(200, { 'content-type': ollama ? 'application/x-ndjson' : 'text/event-stream' });
      const ev = (content, extra = '') =>
        ollama ? JSON.stringify({ message: { role: 'assistant', content }, done: false }) + '\n'
          : `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content }, finish_reason: null }] })}${extra}\n\n`;
      res.write(ollama ? ev('') : ': keep-alive\n\n' + ev('') + ev(''));
      setTimeout(() => {
        res.write(ev('Hello') + ev(' world'));
        res.end(ollama ? JSON.stringify({ message: { content: '' }, done: true, eval_count: 2 }) + '\n' : 'data: [DONE]\n\n');
      }, DELAY);
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.after(() => server.close());
  const url = `http://127.0.0.1:${server.address().port}`;
  const r = await gridload(['--target', url, '--duration', '1', '--model', 'm1', '--max-tokens', '7', '--flow', 'sse:k-sse:3',
    '--flow', 'nd::3,api=ollama,model=m2']);
  assert.equal(r.code, 0, r.stderr);
  for (const name of ['sse', 'nd']) {
    const f = flow(r.report, name);
    assert.ok(f.ok > 0 && f.ok === f.sent, `${name}: ${JSON.stringify(f.errors)}`);
    assert.equal(f.tokens, 2 * f.ok, `${name}: empty-content events are not tokens`);
    assert.ok(f.ttft_ms.min >= DELAY / 2, `${name}: ttft min ${f.ttft_ms.min} ms includes the ${DELAY} ms before content`);
  }
  // what went on the wire: the flow's key as a bearer token (none for an empty key), its model and limits
  const oai = seen['/v1/chat/completions'];
  const ol = seen['/api/chat'];
  assert.equal(oai.length, flow(r.report, 'sse').sent);
  assert.equal(ol.length, flow(r.report, 'nd').sent);
  for (const x of oai) {
    assert.equal(x.auth, 'Bearer k-sse');
    assert.equal(x.body.model, 'm1');
    assert.equal(x.body.max_tokens, 7);
    assert.equal(x.body.stream, true);
    assert.equal(x.body.stream_options.include_usage, true);
  }
  for (const x of ol) {
    assert.equal(x.auth, undefined);
    assert.equal(x.body.model, 'm2');
    assert.equal(x.body.options.num_predict, 7);
    assert.equal(x.body.stream, true);
  }
});

test('Ollama dialect, NDJSON streaming and not, counts eval_count tokens', async (t) => {
  const sim = await enginesim(t, 'ollama', ['llama3'], ['--max-seqs', '64', '--decode-ms', '2', '--default-tokens', '5']);
  const r = await gridload(['--target', sim.url, '--api', 'ollama', '--model', 'llama3', '--duration', '1.5', '--max-tokens', '5',
    '--flow', 'olstream::12', '--flow', 'olplain::8,stream=0']);
  assert.equal(r.code, 0, r.stderr);
  for (const name of ['olstream', 'olplain']) {
    const f = flow(r.report, name);
    assert.equal(f.api, 'ollama');
    assert.ok(f.sent > 0);
    assert.equal(f.ok, f.sent, `${name}: ${JSON.stringify(f.errors)}`);
    assert.equal(f.tokens, f.ok * 5);
    assert.equal(f.ttft_ms.n, f.ok);
  }
  assert.ok(flow(r.report, 'olstream').tpot_ms.n > 0);
});

test('errors are counted by status: an unknown model gives 404s, beside a healthy flow', async (t) => {
  const sim = await enginesim(t, 'vllm', ['llama3'], ['--max-seqs', '64', '--decode-ms', '1', '--default-tokens', '3']);
  const r = await gridload(['--target', sim.url, '--duration', '1.5', '--max-tokens', '3',
    '--flow', 'good::10', '--flow', 'lost::10,model=no-such-model', '--flow', 'lostplain::5,model=no-such-model,stream=0']);
  assert.equal(r.code, 0, r.stderr);
  const good = flow(r.report, 'good');
  assert.equal(good.ok, good.sent);
  for (const name of ['lost', 'lostplain']) {
    const f = flow(r.report, name);
    assert.ok(f.sent > 0);
    assert.equal(f.ok, 0);
    assert.equal(f.errors.status['404'], f.sent, `${name}: ${JSON.stringify(f.errors)}`);
    assert.equal(f.errors.total, f.sent);
    assert.equal(f.ttft_ms.n, 0);
    assert.equal(sum(f.windows, 'errors'), f.sent);
  }
  assert.match(r.stdout, /^lost\s.*404:\d+/m);
});

test('the warm-up is left out: same seed, same schedule, split at the warm-up boundary', async (t) => {
  const sim = await enginesim(t, 'vllm', ['llama3'], ['--max-seqs', '64', '--decode-ms', '1', '--default-tokens', '2']);
  const args = ['--target', sim.url, '--max-tokens', '2', '--seed', '7', '--flow', 'w::25'];
  const split = await gridload([...args, '--warmup', '2', '--duration', '1']);
  const whole = await gridload([...args, '--warmup', '0', '--duration', '3']);
  assert.equal(split.code, 0, split.stderr);
  assert.equal(whole.code, 0, whole.stderr);
  const s = flow(split.report, 'w');
  const w = flow(whole.report, 'w');
  assert.ok(s.warmup.sent > 0 && s.sent > 0);
  // Arrivals are scheduled from the seed, so the two runs send the same requests at the same offsets.
  assert.equal(s.sent + s.warmup.sent, w.sent);
  // The warm-up requests are exactly those of the windows marked warm-up.
  const warmWindows = s.windows.filter((x) => x.warmup);
  assert.equal(warmWindows.length, 2);
  assert.equal(sum(warmWindows, 'sent'), s.warmup.sent);
  assert.equal(sum(s.windows.filter((x) => !x.warmup), 'sent'), s.sent);
  // and the measured window matches the whole run's last second
  assert.equal(s.sent, w.windows[2].sent);
  assert.equal(s.ok, s.sent);
  assert.equal(s.ttft_ms.n, s.sent, 'latencies only from measured requests');
});

test('connect failures and timeouts are their own error classes', async (t) => {
  // a port that was just free: nothing listens there
  const port = await new Promise((resolve) => {
    const srv = net.createServer().listen(0, '127.0.0.1', () => {
      const p = srv.address().port;
      srv.close(() => resolve(p));
    });
  });
  const dead = await gridload(['--target', `http://127.0.0.1:${port}`, '--duration', '0.5', '--flow', 'd::20']);
  assert.equal(dead.code, 1, 'every request refused: exit 1');
  const d = flow(dead.report, 'd');
  assert.ok(d.sent > 0);
  assert.equal(d.errors.connect, d.sent);
  assert.match(dead.stderr, /unreachable/);

  const sim = await enginesim(t, 'vllm', ['llama3'], ['--max-seqs', '64', '--decode-ms', '200', '--default-tokens', '20']);
  const slow = await gridload(['--target', sim.url, '--duration', '0.5', '--timeout', '0.3', '--max-tokens', '20', '--flow', 's::10']);
  assert.equal(slow.code, 0, slow.stderr);
  const s = flow(slow.report, 's');
  assert.ok(s.sent > 0);
  assert.equal(s.errors.timeout, s.sent, JSON.stringify(s.errors));
});

test('queueing: 10 concurrent requests on a one-slot engine wait their turn (TTFT p99 >> solo service time)', async (t) => {
  const sim = await enginesim(t, 'vllm', ['llama3'], ['--max-seqs', '1', '--decode-ms', '20', '--default-tokens', '10']);
  const base = ['--target', sim.url, '--max-tokens', '10'];
  const solo = await gridload([...base, '--duration', '2', '--flow', 'solo::0,conc=1']);
  assert.equal(solo.code, 0, solo.stderr);
  const one = flow(solo.report, 'solo');
  assert.ok(one.ok >= 3, `solo run completed requests: ${one.ok}`);
  const service = one.e2e_ms.p50; // S: one request alone, about 10 x 20 ms

  // Poll the engine's queue gauge while the concurrent run is going.
  let polling = true;
  let maxWaiting = 0;
  let polls = 0;
  const poller = (async () => {
    while (polling && polls < 1000) {
      polls++;
      try {
        const m = await http('GET', `${sim.url}/metrics`);
        const line = m.body.split('\n').find((l) => l.startsWith('vllm:num_requests_waiting'));
        if (line) maxWaiting = Math.max(maxWaiting, Number(line.trim().split(/\s+/).pop()));
      } catch {}
      await sleep(50);
    }
  })();
  const busy = await gridload([...base, '--warmup', '1', '--duration', '3', '--flow', 'crowd::0,conc=10']);
  polling = false;
  await poller;
  assert.equal(busy.code, 0, busy.stderr);
  const crowd = flow(busy.report, 'crowd');
  assert.ok(crowd.ok >= 5, `concurrent run completed requests: ${crowd.ok}`);
  assert.equal(crowd.errors.total, 0);
  // Queueing predicts ~9 S for the 10th in line; 4 S leaves a wide margin for a noisy machine.
  assert.ok(crowd.ttft_ms.p99 > 4 * service, `crowd TTFT p99 ${crowd.ttft_ms.p99} ms > 4 x solo service ${service} ms`);
  assert.ok(crowd.ttft_ms.p99 > 4 * one.ttft_ms.p50, `crowd TTFT p99 ${crowd.ttft_ms.p99} ms > 4 x solo TTFT p50 ${one.ttft_ms.p50} ms`);
  assert.ok(maxWaiting > 0, `vllm:num_requests_waiting was > 0 at least once (max ${maxWaiting}, ${polls} polls)`);
});
