// `make run`'s script: it starts gridgate in front of four simulators and the curl lines it prints work.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { execFileSync } from 'node:child_process';
import { startProcess, ROOT, BUILD } from '../lib/harness.mjs';

test('run-demo prints curl lines that work against the gridgate it started', async () => {
  const port = 20000 + Math.floor(Math.random() * 20000);
  const demo = await startProcess(path.join(ROOT, 'tools/run-demo.sh'), [], {
    ready: /Ctrl-C stops everything/, timeoutMs: 20000, env: { GG_BUILD: BUILD, GG_DEMO_PORT: String(port) },
  });
  const out = demo.output();
  assert.match(out, new RegExp(`gridgate +http://127.0.0.1:${port}`));
  // The printed commands, continuation lines joined.
  const cmds = out.replace(/\\\n\s*/g, ' ').split('\n').map((l) => l.trim()).filter((l) => l.startsWith('curl '));
  assert.ok(cmds.length >= 4, out);
  for (const cmd of cmds) {
    const body = execFileSync('bash', ['-c', `${cmd} -sS --max-time 10 -w '\\n%{http_code}'`], { encoding: 'utf8' });
    assert.equal(body.trim().split('\n').at(-1), '200', `${cmd}\n${body}`);
  }
  const models = JSON.parse(execFileSync('curl', ['-s', `http://127.0.0.1:${port}/v1/models`], { encoding: 'utf8' }));
  const kinds = new Set(models.data.map((m) => m.id));
  for (const m of ['llama3', 'gemma-2-9b', 'meta-llama/Llama-3.1-8B-Instruct']) assert.ok(kinds.has(m), m);
  await demo.stop('SIGINT');
});
