// Routing choices among backends that serve the same model: session affinity, preferring the backend
// that has the model loaded, and spreading load when nothing else decides.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { enginesim, gridgate, http, sleep, writeConfig, waitModels, simStats } from '../lib/harness.mjs';

const chat = (extra = {}) => ({ model: 'm', messages: [{ role: 'user', content: 'hi' }], max_tokens: 2, ...extra });
const served = async (sim, p) => (await simStats(sim)).paths[p] || 0;

async function pair(flavor, routing = {}) {
  const a = await enginesim(flavor, ['m'], ['--max-seqs', '8']);
  const b = await enginesim(flavor, ['m'], ['--max-seqs', '8']);
  const cfg = await writeConfig({
    backends: [{ name: 'a', url: a.url, max_inflight: 8 }, { name: 'b', url: b.url, max_inflight: 8 }],
    health: { interval_ms: 100 }, routing,
  });
  const gw = await gridgate(['--config', cfg]);
  await waitModels(gw, ['m']);
  return { a, b, gw };
}

test('the same X-Session-ID sticks to one backend; different sessions spread over both', async () => {
  const { a, b, gw } = await pair('vllm');
  const p = '/v1/chat/completions';
  const a0 = await served(a, p), b0 = await served(b, p);
  for (let i = 0; i < 12; i++) {
    const r = await http('POST', `${gw.url}${p}`, { body: chat(), headers: { 'x-session-id': 'conversation-42' } });
    assert.equal(r.status, 200);
  }
  const da = (await served(a, p)) - a0, db = (await served(b, p)) - b0;
  assert.ok((da === 12 && db === 0) || (da === 0 && db === 12), `sticky: a=${da} b=${db}`);

  const a1 = await served(a, p), b1 = await served(b, p);
  for (let i = 0; i < 40; i++) await http('POST', `${gw.url}${p}`, { body: chat({ user: `user-${i}` }) });
  assert.ok((await served(a, p)) - a1 > 0 && (await served(b, p)) - b1 > 0, 'different users spread');
});

test('with routing.affinity off, one session spreads like any traffic', async () => {
  const { a, b, gw } = await pair('vllm', { affinity: false });
  const p = '/v1/chat/completions';
  const a0 = await served(a, p), b0 = await served(b, p);
  for (let i = 0; i < 40; i++) await http('POST', `${gw.url}${p}`, { body: chat(), headers: { 'x-session-id': 's' } });
  assert.ok((await served(a, p)) - a0 > 0 && (await served(b, p)) - b0 > 0);
});

test('a backend that has the model loaded is preferred over one that would have to load it', async () => {
  const { a, b, gw } = await pair('ollama');
  // Load m on b only (an Ollama load: generate with no prompt), then wait for health to see it loaded.
  assert.equal((await http('POST', `${b.url}/api/generate`, { body: { model: 'm' } })).status, 200);
  for (let i = 0; i < 100; i++) {
    const tags = await http('GET', `${gw.url}/v1/models`);
    if ((tags.json.data.find((x) => x.id === 'm')?.loaded_on || []).includes('b')) break;
    await sleep(50);
  }
  const p = '/api/chat';
  const a0 = await served(a, p), b0 = await served(b, p);
  for (let i = 0; i < 10; i++) {
    const r = await http('POST', `${gw.url}${p}`, { body: { ...chat(), stream: false } });
    assert.equal(r.status, 200, r.body);
  }
  assert.equal((await served(a, p)) - a0, 0, 'a never had to load the model');
  assert.equal((await served(b, p)) - b0, 10);
});
