// Self-registration: `gridctl agent` next to an engine heartbeats it into gridgate's main listener; auto and
// manual approval, a wrong token, missed heartbeats -> down (while the engine itself stays up), TTL -> removed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { enginesim, http, startProcess, bin, writeConfig, waitModels } from '../lib/harness.mjs';
import { ctl, gridctl, gridgateWithAdmin, until, backendState } from './ops_lib.mjs';

const reg = (extra = {}) => ({ token: 'regsecret', heartbeat_ms: 200, missed_beats: 2, ttl_ms: 60000, ...extra });
const agent = (gw, sim, name, token = 'regsecret', extra = []) =>
  startProcess(bin('gridctl'), ['agent', '--engine', sim.url, '--gateway', gw.url, '--token', token, '--name', name, ...extra],
    { ready: /registered (\S+) with/ });

test('an agent registers and heartbeats; killing it marks the backend down, its TTL removes it', async () => {
  const sim = await enginesim('ollama', ['llama3', 'qwen']);
  const cfg = await writeConfig({ registration: reg({ approve: 'auto', ttl_ms: 2500 }), health: { interval_ms: 100 } });
  const gw = await gridgateWithAdmin(['--config', cfg]);
  const a = await agent(gw, sim, 'box1');
  assert.match(a.output(), /registered box1 with .*: active, heartbeat every 200 ms/);

  // A registered backend looks like a configured one: same listing, same routing.
  const b = await until(async () => {
    const s = await backendState(gw, 'box1');
    return s?.state === 'up' && s;
  }, 'box1 up');
  assert.equal(b.kind, 'ollama');
  assert.equal(b.source, 'registered');
  assert.equal(b.url, sim.url);
  assert.equal(b.agent.state, 'active');
  assert.deepEqual(b.agent.models.map((m) => m.name).sort(), ['llama3:latest', 'qwen:latest']);
  assert.ok('gpu' in b.agent);
  await waitModels(gw, ['llama3', 'qwen']);
  const c = await http('POST', `${gw.url}/api/chat`, { body: { model: 'llama3', messages: [{ role: 'user', content: 'hi' }], stream: false } });
  assert.equal(c.status, 200, c.body);
  const beats0 = b.agent.beats;
  await until(async () => (await backendState(gw, 'box1')).agent.beats >= beats0 + 3, 'more heartbeats');
  let r = await ctl(gw, ['model', 'list']);
  assert.deepEqual(r.json.find((m) => m.name === 'llama3').served_by, ['box1']);

  // The engine stays up; only the agent dies. The backend goes down after the missed beats, and stays down.
  await a.stop('SIGKILL');
  await until(async () => (await backendState(gw, 'box1'))?.state === 'down', 'box1 down after missed beats', 5000);
  await gw.waitFor(/registration: box1: 2 heartbeats missed/);
  assert.equal((await http('GET', `${sim.url}/api/tags`)).status, 200);
  r = await ctl(gw, ['backend', 'list']);
  assert.equal(r.json.find((x) => x.name === 'box1').agent.state, 'missing');
  // ... and after the TTL it is gone.
  await until(async () => (await backendState(gw, 'box1')) === undefined, 'box1 removed after ttl', 8000);
});

test('manual approval: the agent waits until gridctl backend approve', async () => {
  const sim = await enginesim('vllm', ['m']);
  const cfg = await writeConfig({ registration: reg({ approve: 'manual' }), health: { interval_ms: 100 } });
  const gw = await gridgateWithAdmin(['--config', cfg]);
  const a = await agent(gw, sim, 'box2');
  assert.match(a.output(), /registered box2 with .*: pending/);
  assert.equal(await backendState(gw, 'box2'), undefined);
  let r = await ctl(gw, ['backend', 'approve', 'box2']);
  assert.equal(r.code, 0, r.stdout);
  await until(async () => (await backendState(gw, 'box2'))?.state === 'up', 'box2 up after approval');
  r = await ctl(gw, ['backend', 'approve', 'box2']);
  assert.equal(r.code, 6);
  await a.stop();
});

test('a wrong registration token is refused with a clear error', async () => {
  const sim = await enginesim('vllm', ['m']);
  const cfg = await writeConfig({ registration: reg({ approve: 'auto' }) });
  const gw = await gridgateWithAdmin(['--config', cfg]);
  let r = await gridctl(['agent', '--engine', sim.url, '--gateway', gw.url, '--token', 'wrong', '--name', 'x', '--once']);
  assert.equal(r.code, 4);
  assert.match(r.stderr, /refused the registration \(HTTP 401\): registration token missing or wrong/);
  r = await gridctl(['agent', '-j', '--engine', sim.url, '--gateway', gw.url, '--token', 'wrong', '--once']);
  assert.equal(r.code, 4);
  assert.equal(r.json.error.exit_code, 4);
  // On the wire: 401 with an OpenAI-style error; bad fields are 400s that name the field.
  let h = await http('POST', `${gw.url}/gridgate/v1/register`, { body: { url: sim.url } });
  assert.equal(h.status, 401);
  assert.equal(h.json.error.code, 'invalid_registration_token');
  const auth = { authorization: 'Bearer regsecret' };
  h = await http('POST', `${gw.url}/gridgate/v1/register`, { body: { url: 'ftp://x' }, headers: auth });
  assert.equal(h.status, 400);
  assert.match(h.json.error.message, /^url:/);
  h = await http('POST', `${gw.url}/gridgate/v1/register`, { body: { url: sim.url, kind: 'tpu' }, headers: auth });
  assert.equal(h.status, 400);
  assert.match(h.json.error.message, /^kind:/);
  h = await http('POST', `${gw.url}/gridgate/v1/register`, { body: { url: sim.url, models: [{ loaded: true }] }, headers: auth });
  assert.equal(h.status, 400);
  assert.match(h.json.error.message, /^models\[0\]:/);
  assert.equal((await ctl(gw, ['backend', 'list'])).json.length, 0);

  // A gateway without registration.token refuses every agent.
  const gw2 = await gridgateWithAdmin([]);
  r = await gridctl(['agent', '--engine', sim.url, '--gateway', gw2.url, '--token', 'any', '--once']);
  assert.equal(r.code, 4);
  assert.match(r.stderr, /registration is disabled/);
});
