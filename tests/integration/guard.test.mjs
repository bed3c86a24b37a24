// The ingress guard end to end (root only; skipped otherwise). Two network namespaces joined by a veth pair, gridgate
// in one with the XDP guard on its veth and its maps pinned on a bpffs mounted in a temp dir (ip netns exec hides
// /sys/fs/bpf), real TCP connects from the other, each check from its own source address: a denied source's connects
// are dropped and get through after `gridctl guard remove`; the per-source bucket admits the burst, then one per
// interval; N authentication failures get a source denied. Then, on loopback, the sk_reuseport pick: with workers
// preloaded unevenly by held connections, new connections go to the least-loaded worker.
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { bin, sleep, startProcess, writeConfig } from '../lib/harness.mjs';

const root = process.getuid && process.getuid() === 0;
const skip = root ? false : 'SKIPPED: needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN) to create namespaces and attach XDP';
if (!root) console.log(`# guard.test.mjs ${skip}`);
const client = path.join(path.dirname(fileURLToPath(import.meta.url)), 'guard_client.mjs');

const id = process.pid % 100000;
const nsS = `ggs${id}`, nsC = `ggc${id}`, vS = `gvs${id}`, vC = `gvc${id}`;
const net3 = `10.${200 + (id % 50)}.${id % 250}`;
const SERVER = `${net3}.1`, SRC_DENY = `${net3}.2`, SRC_BUCKET = `${net3}.3`, SRC_AUTH = `${net3}.4`, SRC_OTHER = `${net3}.5`;
const SYN_BURST = 5, SYN_RATE = 0.5, AUTH_LIMIT = 3, DENY_S = 600;
let dir, pin, adminSock, gw;

const sh = (cmd, args) => execFileSync(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] }).toString();
const inC = (args) => JSON.parse(sh('ip', ['netns', 'exec', nsC, process.execPath, client, ...args]));
const connects = (src, n, timeoutMs = 400) => inC(['connect', src, SERVER, String(gw.port), String(n), String(timeoutMs)]);
const gridctl = (...args) => sh(bin('gridctl'), ['--admin', `unix:${adminSock}`, ...args]);
const gridctlJ = (...args) => JSON.parse(gridctl('-j', ...args));
const counters = () => gridctlJ('guard', 'stats').counters;

function cleanup() {
  for (const ns of [nsS, nsC]) {
    try {
      sh('ip', ['netns', 'del', ns]);
    } catch {}
  }
  if (dir) {
    try {
      sh('umount', [path.join(dir, 'bpf')]);
    } catch {}
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

before(async () => {
  if (!root) return;
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gg-guard-'));
  fs.mkdirSync(path.join(dir, 'bpf'));
  sh('mount', ['-t', 'bpf', 'bpf', path.join(dir, 'bpf')]);
  pin = path.join(dir, 'bpf', 'pins');
  adminSock = path.join(dir, 'admin.sock');
  sh('ip', ['netns', 'add', nsS]);
  sh('ip', ['netns', 'add', nsC]);
  sh('ip', ['link', 'add', vS, 'netns', nsS, 'type', 'veth', 'peer', 'name', vC, 'netns', nsC]);
  sh('ip', ['-n', nsS, 'addr', 'add', `${SERVER}/24`, 'dev', vS]);
  for (const a of [SRC_DENY, SRC_BUCKET, SRC_AUTH, SRC_OTHER]) sh('ip', ['-n', nsC, 'addr', 'add', `${a}/24`, 'dev', vC]);
  for (const [ns, v] of [[nsS, vS], [nsC, vC]]) {
    sh('ip', ['-n', ns, 'link', 'set', v, 'up']);
    sh('ip', ['-n', ns, 'link', 'set', 'lo', 'up']);
  }
  const cfg = await writeConfig({
    tenants: [{ name: 't1', keys: ['good-key'] }],
    bpf: {
      xdp: { interfaces: [vS, 'lo'], syn_rate: SYN_RATE, syn_burst: SYN_BURST, auth_fail_limit: AUTH_LIMIT, auth_fail_window_s: 60,
        deny_seconds: DENY_S },
    },
  });
  gw = await startProcess('ip', ['netns', 'exec', nsS, bin('gridgate'), '--config', cfg, '--listen', `${SERVER}:0`,
    '--threads', '2', '--bpf', 'on', '--pin-path', pin, '--admin', `unix:${adminSock}`]);
  // veth has native XDP; lo has none, so the guard falls back to generic there
  await gw.waitFor(/guard: XDP on gv\S+ in native mode/);
  await gw.waitFor(/guard: XDP on lo in generic mode \(native: /);
});

after(async () => {
  if (gw) await gw.stop();
  cleanup();
});

test('a denied source cannot connect; after removal it can; the deny list and counters say so', { skip }, async () => {
  assert.deepEqual(connects(SRC_DENY, 1), [true], 'connects before the deny');
  const before = counters();
  assert.match(gridctl('guard', 'deny', `${SRC_DENY}/32`), /denied/);
  assert.deepEqual(gridctlJ('guard', 'stats').interfaces, [{ name: vS, mode: 'native' }, { name: 'lo', mode: 'generic' }]);
  const list = gridctlJ('guard', 'list');
  assert.deepEqual(list.deny, [{ prefix: SRC_DENY, seconds_left: null }]);
  assert.deepEqual(connects(SRC_DENY, 3), [false, false, false], 'SYNs dropped at XDP');
  assert.deepEqual(connects(SRC_OTHER, 1), [true], 'another source still connects');
  const mid = counters();
  assert.equal(mid.denied - before.denied, 3, 'one drop per connect attempt (no SYN retransmits within the timeout)');
  assert.match(gridctl('guard', 'remove', SRC_DENY), /removed/);
  assert.deepEqual(connects(SRC_DENY, 1), [true], 'connects after removal');
  assert.equal(counters().denied, mid.denied);
  // a timed deny shows its time left; bad prefixes are refused with the field named; removing twice is not found
  gridctl('guard', 'deny', '192.0.2.0/24', '--for', '120');
  const d = gridctlJ('guard', 'list').deny.find((e) => e.prefix === '192.0.2.0/24');
  assert.ok(d.seconds_left > 100 && d.seconds_left <= 120, JSON.stringify(d));
  for (const bad of ['10.0.0.1/33', 'nope', '1.2.3.4/', '::1/200']) {
    let err;
    try {
      gridctl('-j', 'guard', 'deny', bad);
    } catch (e) {
      err = e;
    }
    assert.equal(err?.status, 1, `gridctl guard deny ${bad} exits 1`);
    assert.equal(JSON.parse(err.stdout.toString()).error.field, 'prefix');
  }
  gridctl('guard', 'remove', '192.0.2.0/24');
  assert.throws(() => gridctl('guard', 'remove', '192.0.2.0/24'), (e) => e.status === 3);
  const metrics = sh('ip', ['netns', 'exec', nsS, process.execPath, '-e',
    `fetch('http://${SERVER}:${gw.port}/metrics').then((r) => r.text()).then((t) => process.stdout.write(t))`]);
  assert.match(metrics, new RegExp(`gridgate_guard_drops_total\\{reason="denied"\\} ${mid.denied}\\n`));
});

test('the per-source bucket admits the burst, then one connect per interval', { skip }, async () => {
  const before = counters();
  // a fresh source; two failed attempts (0.8 s) stay well inside the 2 s refill interval
  const burst = connects(SRC_BUCKET, SYN_BURST + 2);
  assert.deepEqual(burst, [...Array(SYN_BURST).fill(true), false, false], JSON.stringify(burst));
  assert.equal(counters().rate_limited - before.rate_limited, 2);
  // then the rate: back-to-back attempts fail until one interval (2 s) has refilled one token; the one right after fails
  const r = inC(['refill', SRC_BUCKET, SERVER, String(gw.port), '25', '400']);
  assert.ok(r.length >= 2 && r.at(-2) === true, `a connect got through once the bucket refilled: ${r}`);
  assert.equal(r.at(-1), false, 'one token per interval, not another burst');
  assert.ok(r.slice(0, -2).every((x) => x === false));
  // the bucket map dumps with named fields
  const dump = JSON.parse(sh('bpftool', ['-j', 'map', 'dump', 'pinned', `${pin}/guard_bucket`]));
  const mine = dump.map((e) => e.formatted ?? e).find((e) => e.key.addr.slice(12).join('.') === SRC_BUCKET);
  assert.ok(mine && mine.value.passed === SYN_BURST + 1, JSON.stringify(mine));
});

test(`${AUTH_LIMIT} authentication failures get a source denied`, { skip }, async () => {
  const statuses = inC(['http', SRC_AUTH, SERVER, String(gw.port), String(AUTH_LIMIT), 'wrong-key']);
  assert.deepEqual(statuses, Array(AUTH_LIMIT).fill(401));
  await gw.waitFor(new RegExp(`guard: ${SRC_AUTH.replaceAll('.', '\\.')} denied for ${DENY_S} s after ${AUTH_LIMIT} authentication failures`));
  const d = gridctlJ('guard', 'list').deny.find((e) => e.prefix === SRC_AUTH);
  assert.ok(d && d.seconds_left > DENY_S - 60 && d.seconds_left <= DENY_S, JSON.stringify(d));
  const before = counters();
  assert.deepEqual(connects(SRC_AUTH, 2), [false, false]);
  assert.equal(counters().denied - before.denied, 2);
  gridctl('guard', 'remove', SRC_AUTH);
  assert.deepEqual(connects(SRC_AUTH, 1), [true]);
});

// --- reuseport, on loopback -------------------------------------------------------------------------------------
function adminGet(sock, p) {
  return new Promise((resolve, reject) => {
    http.get({ socketPath: sock, path: p }, (r) => {
      let b = '';
      r.on('data', (c) => (b += c));
      r.on('end', () => resolve(JSON.parse(b)));
    }).on('error', reject);
  });
}

test('reuseport: new connections go to the least-loaded worker', { skip }, async () => {
  const rpPin = `/sys/fs/bpf/gg-test-${process.pid}-rp`;
  const sock = path.join(dir, 'admin-rp.sock');
  const W = 3, PER = 4;
  const g = await startProcess(bin('gridgate'), ['--listen', '127.0.0.1:0', '--threads', String(W), '--bpf', 'on', '--pin-path', rpPin,
    '--admin', `unix:${sock}`]);
  const held = [];
  try {
    await g.waitFor(/least-loaded of 3 workers/);
    const loads = async () => (await adminGet(sock, '/admin/v1/guard/stats')).worker_connections;
    // opens one connection and learns which worker accepted it from the per-worker counts
    const open = async () => {
      const was = await loads();
      const s = net.connect(g.port, '127.0.0.1');
      await new Promise((r, j) => s.on('connect', r).on('error', j));
      for (let i = 0; i < 200; i++) {
        const now = await loads();
        const w = now.findIndex((n, k) => n === was[k] + 1);
        if (now.reduce((a, b) => a + b) === was.reduce((a, b) => a + b) + 1 && w >= 0) {
          held.push({ s, w });
          return w;
        }
        await sleep(10);
      }
      throw new Error('the connection was never counted');
    };
    const first = [];
    for (let i = 0; i < W * PER; i++) first.push(await open());
    assert.deepEqual(await loads(), Array(W).fill(PER), `balanced while preloading: ${first}`);
    // unload the last worker: close what it holds
    for (const h of held.filter((h) => h.w === W - 1)) h.s.destroy();
    for (let i = 0; i < 200 && (await loads())[W - 1] !== 0; i++) await sleep(10);
    assert.deepEqual(await loads(), [...Array(W - 1).fill(PER), 0]);
    const next = [];
    for (let i = 0; i < PER; i++) next.push(await open());
    assert.deepEqual(next, Array(PER).fill(W - 1), 'every new connection went to the idle worker');
    // the gauge is on /metrics too
    const m = await fetch(`http://127.0.0.1:${g.port}/metrics`).then((r) => r.text());
    assert.match(m, /gridgate_worker_connections\{worker="2"\} \d+/);
  } finally {
    for (const h of held) h.s.destroy();
    await g.stop();
    fs.rmSync(rpPin, { recursive: true, force: true });
  }
});
