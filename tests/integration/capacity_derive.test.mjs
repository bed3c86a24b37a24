// The derived capacity of a batching engine (issue 4, admission): a vllm-flavour enginesim that decodes 4
// sequences at once (its TTFT rises, and its own queue forms, beyond 4 in flight) behind a gridgate with no
// max_inflight. Under a load of 12 clients (half streaming) the published cap starts at the default 8 and settles near 4.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { enginesim, gridgate, http, sleep, writeConfig, waitModels } from '../lib/harness.mjs';

const procs = [];
after(async () => {
  for (const p of procs) await p.stop();
});

function gauge(text, name) {
  const m = text.match(new RegExp(`^${name}\\{[^}]*backend="v"[^}]*\\} (\\d+)`, 'm'));
  return m ? Number(m[1]) : undefined;
}

test('vllm without max_inflight: the derived cap settles near the engine\'s 4 sequences under load', async () => {
  const sim = await enginesim('vllm', ['m'], ['--max-seqs', '4', '--decode-ms', '10', '--prefill-tps', '2000']);
  procs.push(sim);
  const cfg = await writeConfig({
    backends: [{ name: 'v', url: sim.url, kind: 'vllm' }],
    health: { interval_ms: 100 },
    routing: { queue_ms: 60000 },
  });
  const gw = await gridgate(['--config', cfg, '--threads', '2']);
  procs.push(gw);
  await waitModels(gw, ['m']);
  const metrics = async () => (await http('GET', `${gw.url}/metrics`)).body;
  assert.equal(gauge(await metrics(), 'gridgate_backend_capacity'), 8, 'the default before any load');

  let stop = false;
  const statuses = new Map();
  const client = async (i) => {
    while (!stop) {
      const r = await http('POST', `${gw.url}/v1/chat/completions`, {
        body: { model: 'm', stream: i % 2 === 0, messages: [{ role: 'user', content: 'Count slowly to twenty, please.' }], max_tokens: 24, ignore_eos: true },
      });
      statuses.set(r.status, (statuses.get(r.status) || 0) + 1);
    }
  };
  const clients = Array.from({ length: 12 }, (_, i) => client(i));

  // Bounded: at most 600 samples; done once 30 samples in a row were within [3, 5].
  const seen = [];
  let inRange = 0;
  for (let i = 0; i < 600 && inRange < 30; i++) {
    await sleep(100);
    const text = await metrics();
    const cap = gauge(text, 'gridgate_backend_capacity');
    seen.push(cap);
    inRange = cap >= 3 && cap <= 5 ? inRange + 1 : 0;
  }
  // Then it stays there: another 30 samples, all in range.
  const settled = [];
  for (let i = 0; i < 30; i++) {
    await sleep(100);
    settled.push(gauge(await metrics(), 'gridgate_backend_capacity'));
  }
  const ttft = gauge(await metrics(), 'gridgate_backend_ttft_ewma_us');
  stop = true;
  await Promise.all(clients);
  assert.ok(ttft > 0, 'the proxy reports the engine TTFT that feeds the estimator');
  assert.equal(inRange, 30, `cap never settled in [3, 5]: ${seen.join(',')}`);
  assert.ok(settled.every((c) => c >= 3 && c <= 5), `cap left [3, 5]: ${settled.join(',')}`);
  assert.ok(seen.some((c) => c === 4) || settled.some((c) => c === 4), 'it passes through 4');
  assert.deepEqual([...statuses.keys()], [200], `every request answered 200: ${JSON.stringify([...statuses])}`);
  // It came down from 8 on the engine's evidence, and logged why.
  const lines = gw.output().split('\n').filter((l) => l.includes('derived capacity'));
  console.log(`caps: ${seen.join(',')} | ${settled.join(',')}\n${lines.join('\n')}`);
  assert.match(lines[0] ?? '', /backend v: derived capacity 8 -> [345] /);
});
