// The status page in headless Chromium: the embedded page polls /admin/v1/status and renders backends, models,
// tenants, agents, rate charts and splice counters from live data; a screenshot is taken too.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { enginesim, gridgate, http, sleep, writeConfig, waitModels, startProcess, bin } from '../lib/harness.mjs';

const chromiumBin = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];

function chromium(args) {
  return new Promise(async (resolve) => {
    let exe;
    for (const c of chromiumBin) if (await fs.access(c).then(() => true, () => false)) exe = c;
    if (!exe) return resolve({ missing: true });
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gg-chromium-'));
    execFile(exe, ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update',
      '--disable-sync', '--no-first-run', '--disable-dev-shm-usage', `--user-data-dir=${dir}`, ...args],
    { timeout: 60000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      fs.rm(dir, { recursive: true, force: true }).finally(() => resolve({ err, stdout, stderr }));
    });
  });
}

test('the status page renders live data in headless Chromium', async (t) => {
  const sim = await enginesim('ollama', ['llama3', 'phi3']);
  const sim2 = await enginesim('vllm', ['mistral']);
  const cfg = await writeConfig({
    admin: { listen: '127.0.0.1:0', token: 'pagetoken' },
    health: { interval_ms: 100 },
    registration: { token: 'reg', approve: 'auto', heartbeat_ms: 300 },
    tenants: [{ name: 'alice', keys: ['ka'], priority: 2, weight: 3, rate: { requests_per_s: 50 } }],
    backends: [{ name: 'ollama-box', url: sim.url }],
  });
  const gw = await gridgate(['--config', cfg]);
  const m = await gw.waitFor(/admin API on (http:\/\/127\.0\.0\.1:\d+)/);
  const admin = m[1];
  const agent = await startProcess(bin('gridctl'), ['agent', '--engine', sim2.url, '--gateway', gw.url, '--token', 'reg', '--name', 'vllm-agent'],
    { ready: /registered/ });
  await waitModels(gw, ['llama3', 'mistral']);
  for (let i = 0; i < 5; i++) {
    const r = await http('POST', `${gw.url}/api/generate`, { body: { model: 'llama3', prompt: 'hi', stream: false }, headers: { authorization: 'Bearer ka' } });
    assert.equal(r.status, 200, r.body);
  }
  await sleep(2500); // a few 1 s samples for the charts

  // Without the token the page itself is refused.
  assert.equal((await http('GET', `${admin}/ui`)).status, 401);
  const page = await http('GET', `${admin}/ui?token=pagetoken`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type'), /text\/html/);
  assert.match(page.body, /<title>gridgate status<\/title>/);

  const url = `${admin}/ui?token=pagetoken`;
  const dom = await chromium(['--virtual-time-budget=5000', '--dump-dom', url]);
  if (dom.missing) return t.skip('chromium is not installed (tools/deps.sh ensure test installs it)');
  assert.ok(!dom.err, `chromium failed: ${dom.err}\n${dom.stderr}`);
  const html = dom.stdout;
  // Rendered by the page's script from /admin/v1/status (none of this is in the static HTML).
  assert.match(html, /<body data-loaded="yes">/);
  assert.match(html, /<tr data-backend="ollama-box"><td>ollama-box<\/td><td><span class="state st-up">up<\/span><\/td><td>ollama<\/td><td>config<\/td>/);
  assert.match(html, /<tr data-backend="vllm-agent"><td>vllm-agent<\/td><td><span class="state st-up">up<\/span><\/td><td>vllm<\/td><td>registered<\/td>/);
  assert.match(html, /llama3:latest/);
  assert.match(html, /<span class="loaded">mistral<\/span>/);
  assert.match(html, /<tr data-tenant="alice"><td>alice<\/td><td class="num">2<\/td><td class="num">3<\/td><td class="num">[\d.]+<\/td><td class="num">5<\/td><td class="num">0<\/td>/);
  assert.match(html, /<tr data-agent="vllm-agent"><td>vllm-agent<\/td><td>active<\/td>/);
  assert.match(html, /<svg id="chart-rps"[^>]*><polyline/);
  assert.match(html, /<svg id="chart-tps"[^>]*><polyline/);
  assert.match(html, /id="health">ok \(2\/2 up\)</);
  assert.match(html, /id="version">0\.1\.0</);
  // The splice table shows counters when kernel splicing runs, else says it is off.
  assert.match(html, /<table id="splice">[\s\S]*(kernel splicing is off|<td class="num">\d)/);

  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gg-shot-'));
  const png = path.join(dir, 'status.png');
  const shot = await chromium(['--virtual-time-budget=5000', '--hide-scrollbars', '--window-size=1280,900', `--screenshot=${png}`, url]);
  assert.ok(!shot.err, `chromium screenshot failed: ${shot.err}\n${shot.stderr}`);
  const bytes = await fs.readFile(png);
  assert.deepEqual([...bytes.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.ok(bytes.length > 10000, `screenshot is only ${bytes.length} bytes`);
  if (process.env.GG_KEEP_SCREENSHOT) await fs.copyFile(png, process.env.GG_KEEP_SCREENSHOT);
  await fs.rm(dir, { recursive: true, force: true });
  await agent.stop();
});
