// Kernel assist as an operator and a client meet it (root only; skipped visibly otherwise). Each root test runs
// gridgate, the engine simulator and its client inside a network namespace it creates (tests/lib/netns.mjs) and
// always deletes; maps are pinned under a bpffs mounted in a temp dir (ip netns exec hides /sys/fs/bpf) and read from
// outside with bpftool and gridctl. Covered: the pinned `backends` map shows live in-flight counts and a backend's
// death; pinned maps survive a restart and are recreated on an ABI mismatch; the `tenants` map counts exactly what
// two tenants' clients saw (one rate-limited into 429s); `gridctl map dump` prints named fields from BTF (-j too) and
// hex for a map without BTF; a WebSocket is spliced in-kernel; `--bpf off` and an unprivileged `--bpf auto` say so.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import { gridgate, sleep, writeConfig, bin, startProcess } from '../lib/harness.mjs';
import { netns, netnsExists, isRoot } from '../lib/netns.mjs';

const skip = isRoot ? false : 'SKIPPED: needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN) for BPF and network namespaces';
if (!isRoot) console.log(`# gateway_bpf: ${skip}`);

function dump(pin, name) {
  return JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', `${pin}/${name}`]).toString()).map((e) => e.formatted ?? e);
}

async function until(fn, what, tries = 200, ms = 50) {
  let last;
  for (let i = 0; i < tries; i++) {
    last = fn();
    if (last) return last;
    await sleep(ms);
  }
  assert.fail(`${what}: not reached`);
}

async function untilLog(proc, re, ms = 10000) {
  for (let i = 0; i < ms / 50; i++) {
    if (re.test(proc.output())) return true;
    await sleep(50);
  }
  return false;
}

/* Clients run inside the namespace: these functions are sent as source, so they import what they use. */
async function chatClient(url, key, n, stream) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const r = await fetch(`${url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: JSON.stringify({ model: 'm1', max_tokens: 20, stream, messages: [{ role: 'user', content: `hello number ${i}` }] }),
    });
    const text = await r.text();
    let usage = null;
    try {
      usage = JSON.parse(text).usage ?? null;
    } catch {}
    out.push({ status: r.status, usage });
  }
  return out;
}

async function parallelChats(url, n) {
  const one = () => fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm1', max_tokens: 20, stream: true, messages: [{ role: 'user', content: 'hi' }] }),
  }).then((r) => r.text().then(() => r.status));
  return Promise.all(Array.from({ length: n }, one));
}

async function waitUp(url, model) {
  for (let i = 0; i < 300; i++) {
    try {
      const j = await (await fetch(`${url}/v1/models`)).json();
      if (j.data.some((m) => m.id === model)) return true;
    } catch {}
    await new Promise((r) => setTimeout(r, 50));
  }
  return false;
}

test('backends map in a netns: named fields, live in-flight, a dead backend turns down; restart reuses pins; ABI mismatch recreates',
  { skip }, async () => {
    const ns = netns('backends');
    const pin = ns.pinPath();
    const sim = await ns.enginesim('vllm', ['m1'], ['--decode-ms', '200']);
    const cfg = await writeConfig({ health: { interval_ms: 200 }, backends: [{ name: 'sim1', url: sim.url }] });
    let gw = await ns.gridgate(['--config', cfg, '--bpf', 'on', '--pin-path', pin]);
    assert.ok(await ns.node(waitUp, gw.url, 'm1'));
    const sim1 = () => dump(pin, 'backends').find((e) => e.value.name === 'sim1')?.value;
    const v = await until(() => sim1()?.state === 1 && sim1(), 'sim1 up');
    assert.equal(v.kind, 2, 'vllm');
    assert.equal(v.seq % 2, 0);
    assert.ok(dump(pin, 'models').map((e) => e.key.name).includes('m1'));

    // two slow streams: the data plane's in-flight count is the map's own field, seen live and back to 0
    const clients = ns.node(parallelChats, gw.url, 2);
    await until(() => sim1().inflight === 2, 'in-flight 2 in the backends map');
    assert.deepEqual(await clients, [200, 200]);
    await until(() => sim1().inflight === 0, 'in-flight back to 0');

    await sim.stop('SIGKILL');
    await until(() => sim1().state === 2, 'the backends map shows the backend down');

    // a tenants entry written by hand survives a restart with the same ABI
    const key = Buffer.alloc(64);
    key.write('marker');
    const val = Buffer.alloc(104);
    const hex = (b) => [...b].map((x) => x.toString(16).padStart(2, '0'));
    execFileSync('bpftool', ['map', 'update', 'pinned', `${pin}/tenants`, 'key', 'hex', ...hex(key), 'value', 'hex', ...hex(val)]);
    await gw.stop();
    gw = await ns.gridgate(['--config', cfg, '--bpf', 'on', '--pin-path', pin]);
    assert.ok(await untilLog(gw, /maps reused from/));
    assert.ok(dump(pin, 'tenants').some((e) => e.key.name === 'marker'), 'pinned maps survived the restart');

    // another ABI version in meta: the next start recreates the maps
    const meta = Buffer.alloc(16);
    meta.writeUInt32LE(999, 0);
    execFileSync('bpftool', ['map', 'update', 'pinned', `${pin}/meta`, 'key', 'hex', '00', '00', '00', '00', 'value', 'hex', ...hex(meta)]);
    await gw.stop();
    gw = await ns.gridgate(['--config', cfg, '--bpf', 'on', '--pin-path', pin]);
    assert.ok(await untilLog(gw, /ABI version 999, this build uses \d+: recreating/));
    assert.ok(!dump(pin, 'tenants').some((e) => e.key.name === 'marker'));
    const name = ns.name;
    await ns.remove();
    assert.ok(!netnsExists(name), 'the namespace is gone');
  });

test('tenants map in a netns: per-tenant counters equal what two clients saw, one limited into 429s', { skip }, async () => {
  const ns = netns('tenants');
  const pin = ns.pinPath();
  const sim = await ns.enginesim('vllm', ['m1']);
  const cfg = await writeConfig({
    health: { interval_ms: 200 },
    backends: [{ name: 'sim1', url: sim.url }],
    tenants: [
      { name: 'alice', keys: ['key-alice'] },
      { name: 'bob', keys: ['key-bob'], rate: { requests_per_s: 0.2, burst: 2 } },
    ],
  });
  const gw = await ns.gridgate(['--config', cfg, '--bpf', 'on', '--pin-path', pin]);
  assert.ok(await ns.node(waitUp, gw.url, 'm1'));
  const [alice, bob] = await Promise.all([ns.node(chatClient, gw.url, 'key-alice', 5, false),
    ns.node(chatClient, gw.url, 'key-bob', 6, false)]);
  const seen = (rs) => ({
    requests: rs.length,
    admitted: rs.filter((r) => r.status === 200).length,
    rejected_rate: rs.filter((r) => r.status === 429).length,
    tokens_in: rs.reduce((s, r) => s + (r.usage?.prompt_tokens ?? 0), 0),
    tokens_out: rs.reduce((s, r) => s + (r.usage?.completion_tokens ?? 0), 0),
  });
  const want = { alice: seen(alice), bob: seen(bob) };
  assert.equal(want.alice.admitted, 5);
  assert.ok(want.bob.rejected_rate >= 3, `bob saw ${want.bob.rejected_rate} 429s`);
  assert.equal(want.bob.admitted + want.bob.rejected_rate, 6);
  assert.ok(want.alice.tokens_out > 0);
  const entry = (n) => dump(pin, 'tenants').find((e) => e.key.name === n)?.value;
  const pick = (v) => v && { requests: v.requests, admitted: v.admitted, rejected_rate: v.rejected_rate, tokens_in: v.tokens_in, tokens_out: v.tokens_out };
  // control publishes every health round (200 ms here): wait for the counters to arrive, then compare exactly
  await until(() => entry('bob')?.requests === 6 && entry('alice')?.requests === 5, 'tenant counters published');
  assert.deepEqual(pick(entry('alice')), want.alice);
  assert.deepEqual(pick(entry('bob')), want.bob);
  const b = entry('bob');
  assert.equal(b.limits, 1, 'bob has a request limit only');
  assert.equal(b.inflight, 0);
  assert.ok(b.request_bucket_milli >= 0 && b.request_bucket_milli <= 2000, `bob's bucket ${b.request_bucket_milli}`);
  assert.equal(entry('alice').limits, 0);
  assert.equal(entry('alice').rejected_quota, 0);
  await ns.remove();
});

test('gridctl map dump decodes BTF into named fields (text and -j), hex for a map without BTF', { skip }, async () => {
  const ns = netns('gridctl');
  const pin = ns.pinPath();
  const sim = await ns.enginesim('ollama', ['m1']);
  const gw = await ns.gridgate(['--backend', `${sim.url}#name=simx`, '--bpf', 'on', '--pin-path', pin, '--config',
    await writeConfig({ health: { interval_ms: 200 }, tenants: [{ name: 'carol', keys: ['k'] }] })]);
  assert.ok(await ns.node(waitUp, gw.url, 'm1'));
  const gridctl = (...a) => execFileSync(bin('gridctl'), a, { env: { ...process.env, GRIDCTL_PIN_PATH: pin } }).toString();
  const j = await until(() => {
    const d = JSON.parse(gridctl('-j', 'map', 'dump', 'backends'));
    return d.find((e) => e.value.name === 'simx' && e.value.state === 1) && d;
  }, 'simx up in gridctl -j map dump backends');
  const e = j.find((x) => x.value.name === 'simx');
  assert.equal(typeof e.key, 'number');
  assert.equal(e.value.kind, 1, 'ollama');
  assert.equal(e.value.port, Number(new URL(sim.url).port));
  // the same values bpftool decodes
  const b = dump(pin, 'backends').find((x) => x.value.name === 'simx').value;
  for (const f of ['id', 'state', 'kind', 'weight', 'capacity', 'port', 'name']) assert.equal(e.value[f], b[f], f);
  const text = gridctl('map', 'dump', 'backends');
  assert.match(text, /name: "simx"/);
  assert.match(text, /state: 1/);
  const models = JSON.parse(gridctl('-j', 'map', 'dump', 'models'));
  const m1 = models.find((x) => x.key.name === 'm1');
  assert.ok(m1, 'models entry');
  assert.equal(m1.value.n_served, 1);
  assert.equal(m1.value.served.length, 4, 'arrays decode as arrays');
  const tenants = JSON.parse(gridctl('-j', 'map', 'dump', 'tenants'));
  assert.ok(tenants.some((x) => x.key.name === 'carol'));
  const stats = JSON.parse(gridctl('-j', 'map', 'dump', 'stats'));
  assert.ok(Array.isArray(stats) && stats.length > 0 && Array.isArray(stats[0].values), 'per-CPU values listed per CPU');
  // a map without BTF: hex, as bpftool prints it
  execFileSync('bpftool', ['map', 'create', `${pin}/nobtf`, 'type', 'hash', 'key', '4', 'value', '8', 'entries', '4', 'name', 'nobtf']);
  execFileSync('bpftool', ['map', 'update', 'pinned', `${pin}/nobtf`, 'key', 'hex', '01', '00', '00', '00', 'value', 'hex',
    '2a', '00', '00', '00', '00', '00', '00', '00']);
  assert.match(gridctl('map', 'dump', 'nobtf'), /key: 01 00 00 00\s+value: 2a 00 00 00 00 00 00 00/);
  const nj = JSON.parse(gridctl('-j', 'map', 'dump', 'nobtf'));
  assert.deepEqual(nj, [{ key: ['0x01', '0x00', '0x00', '0x00'], value: ['0x2a', '0x00', '0x00', '0x00', '0x00', '0x00', '0x00', '0x00'] }]);
  fs.rmSync(`${pin}/nobtf`);
  await ns.remove();
});

async function wsPingPong(port, count, size) {
  const net = await import('node:net');
  const crypto = await import('node:crypto');
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const key = crypto.randomBytes(16).toString('base64');
    let buf = Buffer.alloc(0), upgraded = false, pongs = 0, bad = 0;
    const payload = (i) => Buffer.from(crypto.createHash('sha256').update(String(i)).digest('hex').repeat(4).slice(0, size));
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`only ${pongs} pongs`)); }, 20000);
    sock.on('error', reject);
    sock.on('connect', () => sock.write(`GET /ws?clientId=bpf HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`));
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!upgraded) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        if (!/^HTTP\/1\.1 101/.test(buf.toString('latin1', 0, 12))) return reject(new Error(buf.toString()));
        upgraded = true;
        buf = buf.subarray(end + 4);
        for (let i = 0; i < count; i++) {
          const p = payload(i), mask = crypto.randomBytes(4);
          const f = Buffer.concat([Buffer.from([0x89, 0x80 | p.length]), mask, Buffer.from(p.map((b, k) => b ^ mask[k & 3]))]);
          sock.write(f);
        }
      }
      while (buf.length >= 2) {
        const len = buf[1] & 0x7f;
        if (len >= 126 || buf.length < 2 + len) { if (len >= 126 && buf.length >= 4 + buf.readUInt16BE(2)) { buf = buf.subarray(4 + buf.readUInt16BE(2)); continue; } break; }
        if ((buf[0] & 0x0f) === 0x0a) {
          if (!buf.subarray(2, 2 + len).equals(payload(pongs))) bad++;
          pongs++;
        }
        buf = buf.subarray(2 + len);
      }
      if (pongs === count) {
        clearTimeout(timer);
        sock.end();
        resolve({ pongs, bad });
      }
    });
  });
}

async function metricsWhen(url, re) {
  let m = '';
  for (let i = 0; i < 100; i++) {
    m = await (await fetch(`${url}/metrics`)).text();
    if (new RegExp(re).test(m)) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  return m;
}

async function waitComfy(url) {
  for (let i = 0; i < 100; i++) {
    try {
      if ((await fetch(`${url}/system_stats`)).status === 200) return true;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  return false;
}

test('a WebSocket through gridgate --bpf on in a netns is spliced with bpf.splice_tunnels, relayed in userspace without', { skip }, async () => {
  const ns = netns('ws');
  const pin = ns.pinPath();
  const sim = await ns.enginesim('comfyui', ['sd']);
  const args = ['--backend', `${sim.url}#kind=comfyui`, '--bpf', 'on', '--pin-path', pin];
  let gw = await ns.gridgate(args);
  assert.ok(await ns.node(waitComfy, gw.url));
  const plain = await ns.node(wsPingPong, gw.port, 50, 100);
  assert.equal(plain.pongs, 50);
  assert.equal(plain.bad, 0);
  assert.match(await ns.node(metricsWhen, gw.url, 'gridgate_tunnels_total 1\\b'), /gridgate_spliced_streams_total 0\b/);
  await gw.stop();
  gw = await ns.gridgate([...args, '--config', await writeConfig({ bpf: { splice_tunnels: true } })]);
  assert.ok(await ns.node(waitComfy, gw.url));
  const r = await ns.node(wsPingPong, gw.port, 500, 100);
  assert.equal(r.pongs, 500);
  assert.equal(r.bad, 0);
  const m = await ns.node(metricsWhen, gw.url, 'gridgate_spliced_streams_total 1\\b');
  assert.match(m, /gridgate_spliced_streams_total 1\b/);
  const bytes = Number(m.match(/gridgate_spliced_bytes_total (\d+)/)[1]);
  assert.ok(bytes > 500 * 100, `spliced bytes ${bytes}`);
  await ns.remove();
});

test('--bpf off and an unprivileged --bpf auto run in userspace and say so once', async () => {
  const gw = await gridgate(['--bpf', 'off']);
  assert.equal((gw.output().match(/bpf: /g) || []).length, 1);
  assert.match(gw.output(), /bpf: off/);
  await gw.stop();
  if (!isRoot) return;
  const pin = `/sys/fs/bpf/gg-it-${process.pid}-nobody`;
  // setpriv drops every capability: auto must fall back, not fail
  const p = await startProcess('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all',
    '--bounding-set=-all', bin('gridgate'), '--listen', '127.0.0.1:0', '--bpf', 'auto', '--pin-path', `${pin}/gg`,
    '--admin', '127.0.0.1:0']);
  assert.match(p.output(), /bpf: kernel assist unavailable/);
  assert.equal((p.output().match(/bpf: /g) || []).length, 1);
  await p.stop();
  fs.rmSync(pin, { recursive: true, force: true });
});
