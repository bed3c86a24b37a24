// Kernel assist as an operator and a client meet it (root only; skipped otherwise): the pinned `backends` map shows a
// backend's death, pinned maps survive a restart and are recreated on an ABI mismatch, `--bpf off` and an unprivileged
// `--bpf auto` say so in one line, and a WebSocket through gridgate --bpf on is spliced in-kernel (pings answered by
// the engine's pongs, byte-exact) and counted on /metrics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import { enginesim, gridgate, http, sleep, writeConfig, bin, startProcess } from '../lib/harness.mjs';

const root = process.getuid && process.getuid() === 0;
const skip = root ? false : 'needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN)';
const pin = `/sys/fs/bpf/gg-it-${process.pid}`;

function dump(name) {
  return JSON.parse(execFileSync('bpftool', ['-j', 'map', 'dump', 'pinned', `${pin}/${name}`]).toString());
}

async function untilLog(proc, re, ms = 10000) {
  for (let i = 0; i < ms / 50; i++) {
    if (re.test(proc.output())) return true;
    await sleep(50);
  }
  return false;
}

function removePins() {
  for (const m of ['meta', 'backends', 'models', 'tenants', 'flows', 'stats']) fs.rmSync(`${pin}/${m}`, { force: true });
  fs.rmSync(pin, { recursive: true, force: true });
}

test('backends map: named fields, a dead backend turns down; pinned maps survive a restart; ABI mismatch recreates', { skip }, async () => {
  removePins();
  const sim = await enginesim('vllm', ['m1']);
  const cfg = await writeConfig({ health: { interval_ms: 200 }, backends: [{ name: 'sim1', url: sim.url }] });
  let gw = await gridgate(['--config', cfg, '--bpf', 'on', '--pin-path', pin]);
  let slot;
  for (let i = 0; i < 100; i++) {
    slot = dump('backends').find((e) => e.formatted?.value?.name === 'sim1' || e.value?.name === 'sim1');
    if (slot && (slot.formatted?.value ?? slot.value).state === 1) break;
    await sleep(100);
  }
  const v = slot.formatted?.value ?? slot.value;
  assert.equal(v.state, 1, 'up');
  assert.equal(v.kind, 2, 'vllm');
  const models = dump('models').map((e) => (e.formatted ?? e).key.name);
  assert.ok(models.includes('m1'));

  await sim.stop('SIGKILL');
  let down = false;
  for (let i = 0; i < 100 && !down; i++) {
    const s = dump('backends').find((e) => (e.formatted?.value ?? e.value).name === 'sim1');
    down = (s.formatted?.value ?? s.value).state === 2;
    if (!down) await sleep(50);
  }
  assert.ok(down, 'the backends map shows the backend down');

  // a tenants entry written by hand survives a restart with the same ABI
  const key = Buffer.alloc(64);
  key.write('marker');
  const val = Buffer.alloc(56);
  val.writeUInt32LE(7, 16);
  const hex = (b) => [...b].map((x) => x.toString(16).padStart(2, '0'));
  execFileSync('bpftool', ['map', 'update', 'pinned', `${pin}/tenants`, 'key', 'hex', ...hex(key), 'value', 'hex', ...hex(val)]);
  await gw.stop();
  gw = await gridgate(['--config', cfg, '--bpf', 'on', '--pin-path', pin]);
  assert.ok(await untilLog(gw, /maps reused from/));
  assert.equal(dump('tenants').length, 1, 'pinned maps survived the restart');

  // another ABI version in meta: the next start recreates the maps
  const meta = Buffer.alloc(16);
  meta.writeUInt32LE(999, 0);
  execFileSync('bpftool', ['map', 'update', 'pinned', `${pin}/meta`, 'key', 'hex', '00', '00', '00', '00', 'value', 'hex', ...hex(meta)]);
  await gw.stop();
  gw = await gridgate(['--config', cfg, '--bpf', 'on', '--pin-path', pin]);
  assert.ok(await untilLog(gw, /ABI version 999, this build uses \d+: recreating/));
  assert.equal(dump('tenants').length, 0);
  await gw.stop();
  removePins();
});

test('--bpf off and an unprivileged --bpf auto run in userspace and say so once', async () => {
  const gw = await gridgate(['--bpf', 'off']);
  assert.equal((gw.output().match(/bpf: /g) || []).length, 1);
  assert.match(gw.output(), /bpf: off/);
  await gw.stop();
  if (!root) return;
  // setpriv drops every capability: auto must fall back, not fail
  const p = await startProcess('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '--inh-caps=-all',
    '--bounding-set=-all', bin('gridgate'), '--listen', '127.0.0.1:0', '--bpf', 'auto', '--pin-path', `${pin}-nobody/gg`,
    '--admin', '127.0.0.1:0']);
  assert.match(p.output(), /bpf: kernel assist unavailable/);
  assert.equal((p.output().match(/bpf: /g) || []).length, 1);
  await p.stop();
});

/* A raw WebSocket over net: handshake, then masked pings; the engine (wslay) answers each with a pong. */
function wsPingPong(port, count, size) {
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

test('a WebSocket through gridgate --bpf on is spliced: every ping answered in order, counted on /metrics', { skip }, async () => {
  removePins();
  const sim = await enginesim('comfyui', ['sd']);
  const gw = await gridgate(['--backend', `${sim.url}#kind=comfyui`, '--bpf', 'on', '--pin-path', pin]);
  for (let i = 0; i < 100; i++) {
    const h = await http('GET', `${gw.url}/system_stats`);
    if (h.status === 200) break;
    await sleep(100);
  }
  const r = await wsPingPong(gw.port, 500, 100);
  assert.equal(r.pongs, 500);
  assert.equal(r.bad, 0);
  let m = '';
  for (let i = 0; i < 100; i++) {
    m = (await http('GET', `${gw.url}/metrics`)).body;
    if (/gridgate_spliced_streams_total 1\b/.test(m)) break;
    await sleep(50);
  }
  assert.match(m, /gridgate_spliced_streams_total 1\b/);
  const bytes = Number(m.match(/gridgate_spliced_bytes_total (\d+)/)[1]);
  assert.ok(bytes > 500 * 100, `spliced bytes ${bytes}`);
  await gw.stop();
  await sim.stop();
  removePins();
});
