// Failover under load: a backend killed with SIGKILL while gridload streams through gridgate. Requests
// that had not started must all succeed elsewhere; streams that had started end with a clear error event.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';
import { enginesim, gridgate, bin, sleep, writeConfig, waitModels, simStats } from '../lib/harness.mjs';

for (const api of ['openai', 'ollama']) {
  test(`kill -9 a backend under load (${api} dialect): no failure before the first byte, clear errors after`, async () => {
    const a = await enginesim('vllm', ['m'], ['--decode-ms', '5', '--max-seqs', '64']);
    const b = await enginesim('vllm', ['m'], ['--decode-ms', '5', '--max-seqs', '64']);
    const cfg = await writeConfig({
      backends: [{ name: 'a', url: a.url }, { name: 'b', url: b.url }],
      health: { interval_ms: 200 },
    });
    const gw = await gridgate(['--config', cfg, '--threads', '2']);
    await waitModels(gw, ['m']);
    const out = path.join(await fs.mkdtemp(path.join(os.tmpdir(), 'gg-fo-')), 'load.json');
    const load = spawn(bin('gridload'), ['--target', gw.url, '--model', 'm', '--api', api, '--max-tokens', '20',
      '--duration', '4', '--timeout', '10', '--json', out, '--quiet', '--flow', 'f::60'], { stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    load.stderr.on('data', (d) => (stderr += d));
    const exited = new Promise((resolve) => load.on('exit', resolve));
    await sleep(1500);
    const servedByA = (await simStats(a)).completed;
    await a.stop('SIGKILL');
    assert.equal(await exited, 0, stderr);
    const f = JSON.parse(await fs.readFile(out, 'utf8')).flows[0];
    assert.ok(f.sent >= 150, `sent ${f.sent}`);
    assert.ok(servedByA > 0, 'backend a took part before it died');
    const e = f.errors;
    assert.deepEqual(e.status, {}, `no HTTP error status: ${JSON.stringify(e)}`);
    assert.equal(e.connect, 0);
    assert.equal(e.timeout, 0);
    assert.equal(e.io, 0, `no broken responses: ${JSON.stringify(e)}`);
    // Only the streams that were running on a when it died may fail, each with an error event.
    assert.ok(e.stream <= 20, `stream errors ${e.stream}`);
    assert.equal(f.ok + e.total, f.sent);
    assert.ok(f.ok >= f.sent - 20);
  });
}
