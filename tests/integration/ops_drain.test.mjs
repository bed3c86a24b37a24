// Drain through the admin API: a slow stream that is in flight on the drained backend finishes whole, while
// every new request goes to the other backend; undrain brings the first one back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { enginesim, http, sseEvents, simStats, waitModels } from '../lib/harness.mjs';
import { ctl, gridgateWithAdmin, until, backendState } from './ops_lib.mjs';

test('draining lets an in-flight stream complete while new requests go elsewhere', async () => {
  // 30 tokens at ~60 ms per step: a stream that lasts long enough to drain under it.
  const slow = await enginesim('vllm', ['m'], ['--decode-ms', '60']);
  const gw = await gridgateWithAdmin(['--backend', `${slow.url}#name=slow`]);
  await waitModels(gw, ['m']);

  const body = { model: 'm', stream: true, max_tokens: 30, ignore_eos: true, messages: [{ role: 'user', content: 'go' }] };
  const res = await fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body) });
  assert.equal(res.status, 200);
  const reader = res.body.getReader();
  const dec = new TextDecoder();
  let text = '';
  // Wait for the first chunk: the stream is on `slow` now.
  while (!text.includes('data:')) {
    const { value, done } = await reader.read();
    assert.ok(!done, 'stream ended before its first chunk');
    text += dec.decode(value, { stream: true });
  }

  const fast = await enginesim('vllm', ['m']);
  let r = await ctl(gw, ['backend', 'add', fast.url, 'name', 'fast']);
  assert.equal(r.code, 0);
  await until(async () => (await backendState(gw, 'fast'))?.state === 'up', 'fast up');
  r = await ctl(gw, ['backend', 'drain', 'slow']);
  assert.equal(r.code, 0);
  assert.equal(r.json.state, 'draining');
  const during = await backendState(gw, 'slow');
  assert.equal(during.state, 'draining');
  assert.equal(during.inflight, 1);

  const before = (await simStats(slow)).requests_total;
  for (let i = 0; i < 4; i++) {
    const c = await http('POST', `${gw.url}/v1/chat/completions`, { body: { model: 'm', max_tokens: 2, messages: [{ role: 'user', content: 'x' }] } });
    assert.equal(c.status, 200, c.body);
  }
  assert.equal((await simStats(slow)).requests_total, before, 'no new request reached the drained backend');
  assert.ok((await simStats(fast)).requests_total >= 4);

  // The stream that was in flight finishes whole.
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    text += dec.decode(value, { stream: true });
  }
  const events = sseEvents(text);
  assert.equal(events.at(-1), '[DONE]');
  const content = events.filter((e) => e !== '[DONE]').map((e) => e.choices?.[0]?.delta?.content || '').join('');
  assert.ok(content.length > 0);
  const usageTokens = events.filter((e) => e !== '[DONE]').filter((e) => e.choices?.[0]?.delta?.content).length;
  assert.equal(usageTokens, 30);
  await until(async () => (await backendState(gw, 'slow')).inflight === 0, 'slow idle');

  r = await ctl(gw, ['backend', 'undrain', 'slow']);
  assert.equal(r.code, 0);
  await until(async () => (await backendState(gw, 'slow'))?.state === 'up', 'slow up again');
});
