// The status page on the main listener (config status_page.main_listener): /ui and its read-only status JSON are
// served there without a token, nothing else of the admin API is, no secret leaks, and it is off by default.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { enginesim, gridgate, http, sleep, writeConfig } from '../lib/harness.mjs';

test('status page on the main listener: page + JSON, read-only, no secrets, off by default', async () => {
  const sim = await enginesim('ollama', ['llama3']);
  const conf = {
    admin: { listen: '127.0.0.1:0', token: 'admintoken-secret' },
    registration: { token: 'regtoken-secret' },
    status_page: { main_listener: true },
    tenants: [{ name: 'alice', keys: ['alice-key-secret'] }],
    backends: [{ name: 'box', url: sim.url }],
  };
  const gw = await gridgate(['--config', await writeConfig(conf)]);
  let ok = 0;
  for (let i = 0; i < 200 && ok < 3; i++) {
    const r = await http('POST', `${gw.url}/api/generate`,
      { body: { model: 'llama3', prompt: 'hi', stream: false }, headers: { authorization: 'Bearer alice-key-secret' } });
    if (r.status === 200) ok++;
    else await sleep(50); // until the backend's models are known
  }
  assert.equal(ok, 3);

  const page = await http('GET', `${gw.url}/ui`);
  assert.equal(page.status, 200);
  assert.match(page.headers.get('content-type'), /text\/html/);
  assert.match(page.body, /<title>gridgate status<\/title>/);

  // The JSON is rendered once a second by the admin thread: wait for one that counts alice's requests.
  let s;
  for (let i = 0; i < 100; i++) {
    const r = await http('GET', `${gw.url}/admin/v1/status`);
    if (r.status === 200) {
      s = JSON.parse(r.body);
      const alice = s.tenants.find((t) => t.name === 'alice');
      if (alice && alice.metrics.requests_total >= 3) break;
    }
    await sleep(100);
  }
  assert.ok(s, 'status JSON served on the main listener');
  assert.deepEqual(s.backends.map((b) => [b.name, b.state]), [['box', 'up']]);
  assert.ok(s.tenants.find((t) => t.name === 'alice').metrics.requests_total >= 3, JSON.stringify(s.tenants));
  const raw = JSON.stringify(s);
  for (const secret of ['admintoken-secret', 'regtoken-secret', 'alice-key-secret']) assert.ok(!raw.includes(secret), secret);

  // Read-only: the rest of the admin API is not there, and the status endpoint takes no writes.
  for (const p of ['/admin/v1/config', '/admin/v1/tenants', '/admin/v1/backends']) {
    assert.equal((await http('GET', `${gw.url}${p}`)).status, 404, p);
  }
  assert.notEqual((await http('POST', `${gw.url}/admin/v1/backends`, { body: { url: sim.url } })).status, 200);
  assert.notEqual((await http('POST', `${gw.url}/admin/v1/status`, { body: {} })).status, 200);
  const after = await http('GET', `${gw.url}/admin/v1/status`);
  assert.equal(JSON.parse(after.body).backends.length, 1);
  await gw.stop();

  // Off by default.
  const gw2 = await gridgate(['--config', await writeConfig({ ...conf, status_page: undefined, admin: { listen: '127.0.0.1:0', token: 't' } })]);
  assert.equal((await http('GET', `${gw2.url}/ui`)).status, 404);
  assert.equal((await http('GET', `${gw2.url}/admin/v1/status`)).status, 404);
  await gw2.stop();
  await sim.stop();
});
