// The admin API through build/gridctl against a running gridgate: every verb with its exit code and -j output,
// live add/remove making models routable or not, reload, and who may call the admin API at all.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs/promises';
import { statSync } from 'node:fs';
import { enginesim, gridgate, http, writeConfig, waitModels } from '../lib/harness.mjs';
import { ctl, gridctl, gridgateWithAdmin, until, backendState } from './ops_lib.mjs';

const chat = (model) => ({ model, messages: [{ role: 'user', content: 'hi' }] });

test('gridctl backend/model/health/stats/config/tenant verbs, exit codes and -j output', async () => {
  const sim1 = await enginesim('vllm', ['a']);
  const sim2 = await enginesim('vllm', ['fresh']);
  const conf = { health: { interval_ms: 100 }, registration: { token: 'regsecret' },
    tenants: [{ name: 'alice', keys: ['alice-key'], weight: 2, priority: 1 }] };
  const cfgPath = await writeConfig(conf);
  const gw = await gridgateWithAdmin(['--config', cfgPath, '--backend', `${sim1.url}#name=s1`]);
  await waitModels(gw, ['a']);
  const auth = { authorization: 'Bearer alice-key' };

  // The socket is the operator's only: mode 0600.
  assert.equal(statSync(gw.admin.slice(5)).mode & 0o777, 0o600);

  let r = await ctl(gw, ['backend', 'list']);
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.json.map((b) => [b.name, b.source, b.state]), [['s1', 'config', 'up']]);
  // Human output is a table with a header.
  r = await gridctl(['--admin', gw.admin, 'b', 'l']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^NAME\s+STATE\s+KIND/);
  assert.match(r.stdout, /\ns1\s+up\s+vllm\s+config/);

  r = await ctl(gw, ['backend', 'show', 's1']);
  assert.equal(r.code, 0);
  assert.equal(r.json.url, sim1.url);
  r = await ctl(gw, ['backend', 'show', 'nope']);
  assert.equal(r.code, 3);
  assert.match(r.json.error.message, /nope not found/);

  // Adding a backend live makes its models routable; removing it takes them away again.
  let c = await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('fresh'), headers: auth });
  assert.equal(c.status, 404);
  r = await ctl(gw, ['backend', 'add', sim2.url, 'name', 's2', 'kind', 'vllm', 'weight', '3']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(r.json.name, 's2');
  await until(async () => (await backendState(gw, 's2'))?.state === 'up', 's2 up');
  c = await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('fresh'), headers: auth });
  assert.equal(c.status, 200, c.body);
  assert.equal((await backendState(gw, 's2')).source, 'admin');

  r = await ctl(gw, ['backend', 'add', sim2.url, 'name', 's2']);
  assert.equal(r.code, 6);
  assert.equal(r.json.error.status, 409);
  // Validation errors are 400s that name the field.
  for (const [args, field] of [[['ftp://x'], 'url'], [[sim2.url, 'name', 'z', 'kind', 'tpu'], 'kind'],
    [[sim2.url, 'name', 'z', 'weight', '0'], 'weight']]) {
    r = await ctl(gw, ['backend', 'add', ...args]);
    assert.equal(r.code, 1, JSON.stringify(r.json));
    assert.equal(r.json.error.status, 400);
    assert.equal(r.json.error.field, field);
    assert.match(r.json.error.message, new RegExp(`^${field}:`));
  }

  r = await ctl(gw, ['backend', 'weight', 's2', '7']);
  assert.equal(r.code, 0);
  assert.equal((await backendState(gw, 's2')).weight, 7);
  r = await ctl(gw, ['backend', 'weight', 'nope', '7']);
  assert.equal(r.code, 3);
  r = await gridctl(['--admin', gw.admin, 'backend', 'weight', 's2', 'x']);
  assert.equal(r.code, 2);

  r = await ctl(gw, ['backend', 'drain', 's2']);
  assert.equal(r.code, 0);
  assert.equal(r.json.state, 'draining');
  r = await ctl(gw, ['backend', 'undrain', 's2']);
  assert.equal(r.code, 0);
  assert.notEqual(r.json.state, 'draining');
  r = await ctl(gw, ['backend', 'approve', 'nobody']);
  assert.equal(r.code, 3);

  r = await ctl(gw, ['model', 'list']);
  assert.equal(r.code, 0);
  const byName = Object.fromEntries(r.json.map((m) => [m.name, m]));
  assert.deepEqual(byName.a.served_by, ['s1']);
  assert.deepEqual(byName.fresh.served_by, ['s2']);
  assert.deepEqual(byName.fresh.loaded_on, ['s2']);

  r = await ctl(gw, ['backend', 'remove', 's2']);
  assert.equal(r.code, 0);
  assert.equal(await backendState(gw, 's2'), undefined);
  c = await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('fresh'), headers: auth });
  assert.equal(c.status, 404);
  r = await ctl(gw, ['backend', 'remove', 's2']);
  assert.equal(r.code, 3);

  r = await ctl(gw, ['health']);
  assert.equal(r.code, 0);
  assert.equal(r.json.status, 'ok');
  assert.equal(r.json.backends_up, 1);

  c = await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('a'), headers: auth });
  assert.equal(c.status, 200);
  r = await ctl(gw, ['stats']);
  assert.equal(r.code, 0);
  assert.equal(r.json.backends[0].name, 's1');
  assert.ok(r.json.backends[0].requests >= 1);
  for (const k of ['requests_per_s', 'tokens_per_s', 'queue', 'gateway_queue', 'ttft_ms']) assert.ok(k in r.json.backends[0], k);
  const aliceStats = r.json.tenants.find((x) => x.name === 'alice');
  for (const k of ['requests_per_s', 'rejected_per_s', 'tokens_per_s', 'inflight', 'queued']) assert.ok(k in aliceStats, k);
  assert.equal(aliceStats.metrics.requests_total, 2);
  r = await ctl(gw, ['stats', 'watch', 'interval', '0.2', 'count', '2']);
  assert.equal(r.code, 0);
  const frames = r.stdout.trim().split('\n').map((l) => JSON.parse(l));
  assert.equal(frames.length, 2);
  r = await gridctl(['--admin', gw.admin, 'top', 'count', '1']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /BACKEND\s+STATE\s+INFLIGHT\s+QUEUE\s+ENGINE_QUEUE\s+REQ\/S/);
  assert.match(r.stdout, /TENANT/);

  r = await ctl(gw, ['tenant', 'list']);
  assert.equal(r.code, 0);
  const alice = r.json.find((t) => t.name === 'alice');
  assert.equal(alice.weight, 2);
  assert.equal(alice.priority, 1);
  r = await ctl(gw, ['tenant', 'show', 'nobody']);
  assert.equal(r.code, 3);
  assert.equal((await ctl(gw, ['tenant', 'update', 'nobody', 'weight', '3'])).code, 3);
  r = await ctl(gw, ['tenant', 'update', 'alice', 'priority', '12']);
  assert.equal(r.code, 1);
  assert.equal(r.json.error.field, 'priority');
  // Limits apply live: a tenant without a rate limit gets one (burst 2, then refused for ~10 s).
  r = await ctl(gw, ['tenant', 'update', 'alice', 'weight', '5', 'requests_per_s', '0.1', 'burst', '2']);
  assert.equal(r.code, 0, r.stdout);
  assert.equal(r.json.weight, 5);
  assert.equal(r.json.requests_per_s_limit, 0.1);
  const codes = [];
  for (let i = 0; i < 3; i++) codes.push((await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('a'), headers: auth })).status);
  assert.deepEqual(codes, [200, 200, 429]);
  r = await ctl(gw, ['tenant', 'show', 'alice']);
  assert.equal(r.json.weight, 5);
  assert.ok(r.json.metrics.rejected_total >= 1, JSON.stringify(r.json));
  // Tenants and keys are added live: bob's key works at once, his limits apply, a removed key gets 401.
  const bobAuth = { authorization: 'Bearer bob-key' };
  assert.equal((await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('a'), headers: bobAuth })).status, 401);
  r = await ctl(gw, ['tenant', 'add', 'bob', 'requests_per_s', '0.1', 'burst', '1', 'priority', '2']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(r.json.name, 'bob');
  assert.equal(r.json.priority, 2);
  assert.equal(r.json.keys, 0);
  r = await ctl(gw, ['tenant', 'add', 'bob']);
  assert.equal(r.code, 6);
  assert.match(r.json.error.message, /already exists/);
  r = await ctl(gw, ['tenant', 'add', 'bad name']);
  assert.equal(r.code, 1);
  assert.equal(r.json.error.field, 'name');
  r = await ctl(gw, ['tenant', 'key', 'add', 'bob', 'bob-key']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  assert.equal(r.json.keys, 1);
  r = await ctl(gw, ['tenant', 'key', 'add', 'bob', 'alice-key']);
  assert.equal(r.code, 6);
  assert.match(r.json.error.message, /already belongs/);
  const bobCodes = [];
  for (let i = 0; i < 2; i++) bobCodes.push((await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('a'), headers: bobAuth })).status);
  assert.deepEqual(bobCodes, [200, 429]);
  r = await ctl(gw, ['tenant', 'show', 'bob']);
  assert.equal(r.json.keys, 1);
  assert.equal(r.json.metrics.requests_total, 2, JSON.stringify(r.json));
  r = await ctl(gw, ['tenant', 'key', 'remove', 'bob', 'bob-key']);
  assert.equal(r.code, 0, r.stdout + r.stderr);
  r = await ctl(gw, ['tenant', 'key', 'remove', 'bob', 'bob-key']);
  assert.equal(r.code, 3);
  assert.equal((await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('a'), headers: bobAuth })).status, 401);
  // alice's key still authenticates after the key table was swapped twice.
  assert.notEqual((await http('POST', `${gw.url}/v1/chat/completions`, { body: chat('a'), headers: auth })).status, 401);

  r = await ctl(gw, ['config', 'show']);
  assert.equal(r.code, 0);
  assert.equal(r.json.path, cfgPath);
  assert.equal(r.json.file.registration.token, '(hidden)');
  assert.equal(r.json.file.tenants[0].keys, '(hidden)');

  // Reload applies the file live; a broken file is refused with FILE:LINE: KEY and keeps the running config.
  await fs.writeFile(cfgPath, JSON.stringify({ ...conf, backends: [{ name: 's3', url: sim2.url }] }));
  r = await ctl(gw, ['config', 'reload']);
  assert.equal(r.code, 0, r.stdout);
  await until(async () => (await backendState(gw, 's3'))?.state === 'up', 's3 up after reload');
  await fs.writeFile(cfgPath, JSON.stringify({ ...conf, health: { interval_ms: 1 } }));
  r = await ctl(gw, ['config', 'reload']);
  assert.equal(r.code, 1);
  assert.equal(r.json.error.field, 'config');
  assert.match(r.json.error.message, /health\.interval_ms/);

  // map: a map that is not pinned is a clear "not found".
  r = await ctl(gw, ['map', 'dump', 'backends', 'pin', '/tmp/gg-no-such-pin-dir']);
  assert.equal(r.code, 3);
  assert.match(r.json.error.message, /not pinned under \/tmp\/gg-no-such-pin-dir/);

  // Command tables: prefixes, ambiguity, unknown words, help at every level.
  assert.equal((await ctl(gw, ['mo', 'l'])).code, 0);
  r = await ctl(gw, ['t', 'list']);
  assert.equal(r.code, 2);
  assert.match(r.json.error.message, /ambiguous/);
  r = await ctl(gw, ['frobnicate']);
  assert.equal(r.code, 2);
  assert.match(r.json.error.message, /not a command/);
  for (const noun of ['backend', 'model', 'tenant', 'stats', 'map', 'health', 'config', 'agent']) {
    r = await gridctl([noun, 'help']);
    assert.equal(r.code, 0, noun);
    assert.match(r.stdout, new RegExp(`Usage: gridctl ${noun}`), noun);
  }
  r = await gridctl(['help']);
  assert.equal(r.code, 0);
  assert.match(r.stdout, /Exit codes/);

  // No daemon behind the address: exit 5, and -j still prints JSON.
  r = await gridctl(['--admin', 'unix:/tmp/gg-nothing-here.sock', '-j', 'backend', 'list']);
  assert.equal(r.code, 5);
  assert.match(r.json.error.message, /cannot reach the admin API/);
});

test('the admin API refuses unauthenticated TCP callers; a TCP admin listener needs a token', async () => {
  const sim = await enginesim('vllm', ['a']);
  const cfg = await writeConfig({ admin: { listen: '127.0.0.1:0', token: 's3cret' }, backends: [{ name: 's1', url: sim.url }] });
  const gw = await gridgate(['--config', cfg]);
  const m = await gw.waitFor(/admin API on http:\/\/127\.0\.0\.1:(\d+) \(token required\)/);
  const admin = `http://127.0.0.1:${m[1]}`;

  let r = await http('GET', `${admin}/admin/v1/backends`);
  assert.equal(r.status, 401);
  assert.equal(r.json.error.code, 'unauthorized');
  r = await http('GET', `${admin}/admin/v1/backends`, { headers: { authorization: 'Bearer wrong' } });
  assert.equal(r.status, 401);
  r = await http('POST', `${admin}/admin/v1/backends`, { body: { url: sim.url, name: 'x' } });
  assert.equal(r.status, 401);
  r = await http('GET', `${admin}/`);
  assert.equal(r.status, 401);
  r = await http('GET', `${admin}/admin/v1/backends`, { headers: { authorization: 'Bearer s3cret' } });
  assert.equal(r.status, 200);
  assert.equal(r.json[0].name, 's1');
  r = await http('POST', `${admin}/admin/v1/backends`, { body: '[1]', headers: { authorization: 'Bearer s3cret' } });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.field, 'body');

  const addr = `127.0.0.1:${m[1]}`;
  r = await gridctl(['--admin', addr, '-j', 'backend', 'list']);
  assert.equal(r.code, 4);
  assert.equal(r.json.error.status, 401);
  r = await gridctl(['--admin', addr, '--token', 's3cret', '-j', 'backend', 'list']);
  assert.equal(r.code, 0);
  r = await gridctl(['-j', 'backend', 'list'], { env: { GRIDCTL_ADMIN: addr, GRIDCTL_TOKEN: 's3cret' } });
  assert.equal(r.code, 0);
  assert.equal(r.json[0].name, 's1');

  // TCP without a token is refused at start-up.
  const cfg2 = await writeConfig({ admin: '127.0.0.1:0' });
  const bad = await gridgate(['--config', cfg2]).catch((e) => e);
  const output = bad instanceof Error ? bad.message : (await bad.exited, bad.output());
  if (!(bad instanceof Error)) assert.equal((await bad.exited).code, 1);
  assert.match(output, /requires admin\.token/);
});

test('gridctl map list/dump reads the pinned BPF maps of a running gridgate', async (t) => {
  const sim = await enginesim('vllm', ['a']);
  const pin = `/sys/fs/bpf/gg-ops-${process.pid}`;
  const admin = (await import('./ops_lib.mjs')).adminSocket();
  let gw;
  try {
    gw = await gridgate(['--bpf', 'on', '--pin-path', pin, '--admin', admin, '--backend', `${sim.url}#name=mapped-backend`]);
  } catch (e) {
    return t.skip(`kernel assist unavailable here: ${e.message.split('\n')[0]}`);
  }
  try {
    await waitModels(gw, ['a']);
    let r = await gridctl(['-j', 'map', 'list', 'pin', pin]);
    assert.equal(r.code, 0, r.stderr);
    const byName = Object.fromEntries(r.json.map((m) => [m.name, m]));
    assert.equal(byName.backends?.type, 'array');
    assert.equal(byName.meta?.max_entries, 1);
    r = await gridctl(['-j', 'map', 'dump', 'backends'], { env: { GRIDCTL_PIN_PATH: pin } });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.json.length, byName.backends.max_entries);
    // The registry's slot 0 carries the backend's name, decoded from the map's BTF.
    await until(async () => {
      const d = await gridctl(['-j', 'map', 'dump', 'backends', 'pin', pin]);
      return d.json?.some((e) => e.key === 0 && e.value.name === 'mapped-backend');
    }, 'backend name in the pinned backends map');
    r = await gridctl(['map', 'dump', 'meta', 'pin', pin]);
    assert.equal(r.code, 0);
    assert.match(r.stdout, /^key: 0\nvalue:\n    abi_version: \d+\n/);
    assert.match(r.stdout, /Found 1 element\n$/);
    r = await gridctl(['-j', 'map', 'dump', 'nosuchmap', 'pin', pin]);
    assert.equal(r.code, 3);
    assert.match(r.json.error.message, /map nosuchmap is not pinned/);
  } finally {
    await gw.stop();
    const fs2 = await import('node:fs/promises');
    for (const f of await fs2.readdir(pin).catch(() => [])) await fs2.unlink(`${pin}/${f}`).catch(() => {});
    await fs2.rmdir(pin).catch(() => {});
  }
});

test('dist/gridgate.example.json starts gridgate and the unit runs it with that file', async () => {
  const root = new URL('../../', import.meta.url).pathname;
  const gw = await gridgateWithAdmin(['--config', `${root}dist/gridgate.example.json`, '--access-log', '-']);
  const r = await ctl(gw, ['backend', 'list']);
  assert.equal(r.code, 0);
  assert.deepEqual(r.json.map((b) => b.name), ['gpu1-ollama', 'gpu2-vllm', 'mac-mlx']);
  const t = await ctl(gw, ['tenant', 'list']);
  assert.deepEqual(t.json.map((x) => x.name), ['team-a', 'batch', 'default']);
  const unit = await fs.readFile(`${root}dist/gridgate.service`, 'utf8');
  assert.match(unit, /^ExecStart=\/usr\/local\/bin\/gridgate --config \/etc\/gridgate\/gridgate\.json$/m);
  assert.match(unit, /^ExecReload=\/bin\/kill -HUP \$MAINPID$/m);
  assert.match(unit, /^RuntimeDirectory=gridgate$/m);
});
