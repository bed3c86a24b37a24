// Issue 5, 3(b): plain HTTP/1.1 SSE/NDJSON responses spliced backend -> client in-kernel (root only; skipped, and said
// so, otherwise). A real gridgate with --bpf on and bpf.splice_streams, real enginesim vllm and ollama flavours, and a
// raw keep-alive client that sees the exact bytes on the wire: streams are compared, de-chunked and with the engine's
// ids and timestamps masked, with the same request through a gridgate that does not splice.
// Everything runs inside a network namespace the file creates (tests/lib/netns.mjs) and always deletes: gridgate,
// enginesim, the raw backend and every client; maps are pinned under the namespace's bpffs. The clients (and their
// assertions) run in node processes inside the namespace: their source is sent with the helpers below (PRELUDE).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { ROOT, writeConfig } from '../lib/harness.mjs';
import { netns, netnsExists, isRoot } from '../lib/netns.mjs';

const root = isRoot;
const skip = root ? false : 'SKIPPED: needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN) to splice in-kernel';
if (!root) console.log(`# splice_stream: ${skip}`);

/** One client connection that sends requests one after another and returns each response as it came on the wire. */
class Conn {
  constructor(port) {
    this.sock = net.connect(port, '127.0.0.1');
    this.buf = Buffer.alloc(0);
    this.chunks = []; // received, not yet in buf: merged once per wake-up, not once per packet
    this.closed = false;
    this.waiter = null;
    this.sock.on('data', (d) => {
      this.chunks.push(d);
      this.wake();
    });
    this.sock.on('close', () => {
      this.closed = true;
      this.wake();
    });
    this.sock.on('error', () => {});
    this.ready = new Promise((r) => this.sock.once('connect', r));
  }
  wake() {
    const w = this.waiter;
    this.waiter = null;
    if (w) w();
  }
  merge() {
    if (this.chunks.length) this.buf = Buffer.concat([this.buf, ...this.chunks]);
    this.chunks = [];
  }
  more(ms = 20000) {
    if (this.chunks.length) {
      this.merge();
      return Promise.resolve(true);
    }
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('response timed out')), ms);
      this.waiter = () => {
        clearTimeout(t);
        this.merge();
        resolve(true);
      };
    });
  }
  send(pathName, body) {
    const b = Buffer.from(JSON.stringify(body));
    this.sock.write(`POST ${pathName} HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\nContent-Length: ${b.length}\r\n\r\n`);
    this.sock.write(b);
  }
  /** Reads one response: { status, headers, raw (body bytes as framed), body (de-chunked), complete }. */
  async response() {
    let end;
    while ((end = this.buf.indexOf('\r\n\r\n')) < 0) if (!(await this.more())) throw new Error('closed before a head');
    const head = this.buf.subarray(0, end).toString('latin1');
    this.buf = this.buf.subarray(end + 4);
    const lines = head.split('\r\n');
    const status = Number(lines[0].split(' ')[1]);
    const headers = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
    }
    const parts = [];
    let raw = 0;
    if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      while (this.buf.length < n) if (!(await this.more())) break;
      parts.push(this.buf.subarray(0, n));
      raw = Math.min(n, this.buf.length);
      this.buf = this.buf.subarray(n);
      return { status, headers, raw, body: Buffer.concat(parts).toString(), complete: raw === n };
    }
    if (/chunked/i.test(headers['transfer-encoding'] || '')) {
      for (;;) {
        let nl;
        while ((nl = this.buf.indexOf('\r\n')) < 0) if (!(await this.more())) return { status, headers, raw, body: Buffer.concat(parts).toString(), complete: false };
        const size = parseInt(this.buf.subarray(0, nl).toString(), 16);
        while (this.buf.length < nl + 2 + size + 2) if (!(await this.more())) return { status, headers, raw, body: Buffer.concat(parts).toString(), complete: false };
        parts.push(this.buf.subarray(nl + 2, nl + 2 + size));
        raw += nl + 2 + size + 2;
        this.buf = this.buf.subarray(nl + 2 + size + 2);
        if (size === 0) return { status, headers, raw, body: Buffer.concat(parts).toString(), complete: true };
      }
    }
    while (await this.more());
    raw = this.buf.length;
    const body = this.buf.toString();
    this.buf = Buffer.alloc(0);
    return { status, headers, raw, body, complete: true };
  }
  async request(pathName, body) {
    this.send(pathName, body);
    return this.response();
  }
  close() {
    this.sock.destroy();
  }
}

/** Masks what differs between two runs of the same request on enginesim: ids, clocks and durations. */
const mask = (s) =>
  s
    .replace(/"id":"[^"]*"/g, '"id":"X"')
    .replace(/"created":\d+/g, '"created":0')
    .replace(/"created_at":"[^"]*"/g, '"created_at":"X"')
    .replace(/"(total|load|prompt_eval|eval)_duration":\d+/g, '"$1_duration":0');

const chat = (n, extra = {}) => ({ model: 'm1', stream: true, messages: [{ role: 'user', content: 'hi' }], max_tokens: n, ...extra });
const ochat = (n) => ({ model: 'llama3', stream: true, messages: [{ role: 'user', content: 'hi' }], options: { num_predict: n } });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** One HTTP request from inside the namespace: { status, body, json }. */
async function http(method, url, { body } = {}) {
  const r = await fetch(url, { method, headers: body ? { 'content-type': 'application/json' } : {}, body: body ? JSON.stringify(body) : undefined });
  const text = await r.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: r.status, body: text, json };
}

async function metric(gw, name) {
  const m = (await http('GET', `${gw.url}/metrics`)).body.match(new RegExp(`^${name} (\\d+)`, 'm'));
  return m ? Number(m[1]) : 0;
}

function accessLog(file) {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
}

async function waitModels(url, models, ms = 15000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await http('GET', `${url}/v1/models`);
      const ids = new Set((last.json?.data || []).map((m) => m.id));
      if (models.every((m) => ids.has(m))) return true;
    } catch {}
    await sleep(50);
  }
  throw new Error(`models ${models} not all listed in ${ms} ms; last: ${last?.body}`);
}

/** The raw backend's events: 100 bytes each. */
function event(i) {
  const s = `data: {"n":${i},"pad":"`;
  return s + 'x'.repeat(100 - s.length - 4) + '"}\n\n';
}

/** Polls `cond` (sync or async) until it holds or `ms` pass: the counters and the access log are written when gridgate
 * has drained a spliced stream, a little after the client read its last byte. */
async function waitFor(cond, ms = 10000) {
  const deadline = Date.now() + ms;
  while (!(await cond()) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

function checkEvents(body, n) {
  let at = 0;
  for (let i = 0; i < n; i++) {
    const e = event(i);
    if (body.startsWith(e, at) === false) return false;
    at += e.length;
  }
  return body.length === at + 14 && body.endsWith('data: [DONE]\n\n');
}

/** What a client function sees: modules, then the helpers above, by source. */
const PRELUDE = [
  "const { default: net } = await import('node:net');",
  "const { default: fs } = await import('node:fs');",
  "const { default: assert } = await import('node:assert/strict');",
  Conn, `const mask = ${mask};`, `const chat = ${chat};`, `const ochat = ${ochat};`, `const sleep = ${sleep};`,
  http, metric, accessLog, waitModels, event, checkEvents, waitFor, markDesynced,
].map(String).join('\n');

let ns;
/** Runs `fn` (self-contained but for PRELUDE) in a node process inside the namespace; resolves to what it returns. */
const inNs = (fn, ...args) => ns.node(`async (...args) => {\n${PRELUDE}\nreturn (await (${fn})(...args)) ?? null;\n}`, ...args);

async function up(gw, models) {
  try {
    await inNs(waitModels, gw.url, models);
  } catch (e) {
    throw new Error(`${e.message}\n${gw.output()}`);
  }
}

/** A backend of our own for what enginesim does not do: close-delimited SSE, and a stream written as fast as TCP takes
 * it (to stall a client against). `user` in the request picks the answer: "close:N" or "chunked:N" events of 100 bytes,
 * then [DONE]. GET /_written says what it managed to hand to its socket so far. Runs as a node process in the
 * namespace (its source is sent, with event()). */
function rawBackendMain() {
  let written = 0;
  const server = net.createServer((sock) => {
    let buf = '';
    sock.on('error', () => {});
    sock.on('data', async (d) => {
      buf += d.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.slice(0, end);
      const len = Number((head.match(/content-length: *(\d+)/i) || [0, 0])[1]);
      if (buf.length < end + 4 + len) return;
      const body = buf.slice(end + 4, end + 4 + len);
      buf = buf.slice(end + 4 + len);
      if (head.startsWith('GET /v1/models')) {
        const j = JSON.stringify({ object: 'list', data: [{ id: 'big', object: 'model' }] });
        sock.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${j.length}\r\n\r\n${j}`);
        return;
      }
      if (head.startsWith('GET /_written')) {
        const j = JSON.stringify({ written });
        sock.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${j.length}\r\n\r\n${j}`);
        return;
      }
      if (head.startsWith('GET')) {
        sock.write('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n');
        return;
      }
      const [mode, n] = (JSON.parse(body).user || 'chunked:10').split(':');
      const chunked = mode === 'chunked';
      sock.write(`HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n${chunked ? 'transfer-encoding: chunked\r\n' : 'connection: close\r\n'}\r\n`);
      const put = async (s) => {
        const b = chunked ? `${s.length.toString(16)}\r\n${s}\r\n` : s;
        written += b.length;
        if (!sock.write(b)) await new Promise((r) => sock.once('drain', r));
      };
      for (let i = 0; i < Number(n); i += 64) {
        let s = '';
        for (let k = i; k < Math.min(i + 64, Number(n)); k++) s += event(k);
        await put(s);
        if (sock.destroyed) return;
      }
      await put('data: [DONE]\n\n');
      if (chunked) sock.write('0\r\n\r\n');
      else sock.end();
    });
  });
  server.listen(0, '127.0.0.1', () => console.log(`listening on http://127.0.0.1:${server.address().port}`));
}

const rawBackend = () =>
  ns.start(process.execPath, ['--input-type=module', '-e', `const { default: net } = await import('node:net');\n${event}\n(${rawBackendMain})();`]);

/** A gridgate in the namespace splicing streams from `backends`, its maps pinned under the namespace's bpffs. */
async function splicing(backends, pin, extra = [], bpf = {}, config = {}) {
  const gw = await ns.gridgate(['--config', await writeConfig({ ...config, backends, bpf: { splice_streams: true, ...bpf } }), '--bpf', 'on', '--pin-path', ns.pinPath(pin), ...extra]);
  assert.ok(fs.readdirSync(ns.pinPath(pin)).length > 0, `maps pinned under the namespace's bpffs (${ns.pinPath(pin)})`);
  return gw;
}

const where = (p) => ({ url: p.url, port: p.port });
let vllm, ollama, gwOn, gwOff, logOn, env, backends;
before(async () => {
  if (!root) return;
  ns = netns('sse');
  vllm = await ns.enginesim('vllm', ['m1'], ['--decode-ms', '1']);
  ollama = await ns.enginesim('ollama', ['llama3'], ['--decode-ms', '1', '--max-seqs', '64', '--max-queue', '0']);
  backends = [{ name: 'v', url: vllm.url, kind: 'vllm', max_inflight: 64 }, { name: 'o', url: ollama.url, kind: 'ollama', max_inflight: 64 }];
  logOn = path.join(fs.mkdtempSync('/tmp/gg-sse-'), 'access.log');
  gwOn = await splicing(backends, 'on', ['--access-log', logOn]);
  gwOff = await ns.gridgate(['--config', await writeConfig({ backends }), '--bpf', 'off']);
  await up(gwOn, ['m1', 'llama3']);
  await up(gwOff, ['m1', 'llama3']);
  env = { gwOn: where(gwOn), gwOff: where(gwOff), vllm: where(vllm), logOn };
});

after(async () => {
  if (!ns) return;
  const name = ns.name;
  await ns.remove(); // stops every process in it, unmounts its bpffs (and the pins), deletes it
  assert.equal(netnsExists(name), false, `namespace ${name} deleted`);
});

test('byte-exact: SSE and NDJSON, short and large, equal to the unspliced stream; keep-alive 2nd/3rd requests; counters', { skip }, async () => {
  await inNs(async ({ gwOn, gwOff, logOn }) => {
    const k0 = await metric(gwOn, 'gridgate_spliced_bytes_total');
    const s0 = await metric(gwOn, 'gridgate_spliced_streams_total');
    const logged0 = accessLog(logOn).length;
    const on = new Conn(gwOn.port);
    const off = new Conn(gwOff.port);
    await Promise.all([on.ready, off.ready]);
    const cases = [
      ['/v1/chat/completions', chat(40)],
      ['/v1/chat/completions', chat(3000, { ignore_eos: true })],
      ['/api/chat', ochat(40)],
      ['/api/chat', ochat(3000)],
      ['/v1/chat/completions', chat(200, { ignore_eos: true, stream_options: { include_usage: true } })],
    ];
    let raw = 0;
    const usage = [];
    for (const [p, body] of cases) {
      const a = await on.request(p, body);
      const b = await off.request(p, body);
      assert.equal(a.status, 200);
      assert.ok(a.complete, `${p}: the spliced stream ended with its last chunk`);
      assert.match(a.headers['transfer-encoding'], /chunked/, 'the backend framing is passed through');
      assert.equal(a.headers['content-type'], b.headers['content-type']);
      assert.equal(mask(a.body), mask(b.body), `${p} ${body.max_tokens ?? body.options.num_predict}: spliced == userspace`);
      raw += a.raw;
      const m = [...b.body.matchAll(/"(?:completion_tokens|eval_count)":(\d+)/g)].pop();
      usage.push(m ? Number(m[1]) : null);
    }
    // the same connection still serves a buffered answer after the spliced ones
    const j = await on.request('/v1/chat/completions', { ...chat(5), stream: false });
    assert.equal(j.status, 200);
    assert.equal(JSON.parse(j.body).object, 'chat.completion');
    on.close();
    off.close();
    await waitFor(async () => accessLog(logOn).slice(logged0).filter((e) => e.stream).length >= cases.length &&
      (await metric(gwOn, 'gridgate_spliced_streams_total')) - s0 >= cases.length);
    const lines = accessLog(logOn).slice(logged0).filter((e) => e.stream);
    assert.equal(lines.length, cases.length);
    assert.ok(lines.every((e) => e.spliced === true && !e.error), JSON.stringify(lines));
    assert.equal(lines.reduce((t, e) => t + e.bytes_out, 0), raw, 'bytes_out is every body byte the client got');
    const kernel = (await metric(gwOn, 'gridgate_spliced_bytes_total')) - k0;
    assert.equal(kernel, lines.reduce((t, e) => t + e.spliced_bytes, 0), 'counter == per-stream kernel bytes');
    assert.ok(kernel > raw / 2, `most bytes went in-kernel (${kernel} of ${raw})`);
    assert.equal((await metric(gwOn, 'gridgate_spliced_streams_total')) - s0, cases.length);
    // usage: the include_usage stream's final chunk is in the verdict's tail; the Ollama streams carry eval_count
    assert.equal(usage[4], 200);
    assert.equal(lines[4].tokens_out, usage[4]);
    assert.equal(lines[2].tokens_out, usage[2]);
    assert.equal(lines[3].tokens_out, usage[3]);
  }, env);
});

test('close-delimited SSE, backend FIN with data still queued in-kernel: every byte, then close', { skip }, async () => {
  const be = await rawBackend();
  const gw = await splicing([{ name: 'raw', url: be.url, kind: 'vllm' }], 'close');
  try {
    await up(gw, ['big']);
    await inNs(async (gw) => {
      const k0 = await metric(gw, 'gridgate_spliced_bytes_total');
      for (const n of [10, 80000]) {
        const c = new Conn(gw.port);
        await c.ready;
        const r = await c.request('/v1/chat/completions', { model: 'big', stream: true, messages: [{ role: 'user', content: 'x' }], user: `close:${n}` });
        assert.equal(r.status, 200);
        assert.equal(r.headers['transfer-encoding'], undefined, 'close-delimited passed through');
        assert.ok(checkEvents(r.body, n), `close:${n} exact (${r.body.length} bytes)`);
        c.close();
      }
      assert.ok((await metric(gw, 'gridgate_spliced_bytes_total')) - k0 > 4000000, 'the 8 MB stream went mostly in-kernel');
    }, where(gw));
  } finally {
    await gw.stop();
    await be.stop();
  }
});

test('stalled client: kernel memory stays bounded (stall fallback), then every byte arrives in order', { skip }, async () => {
  const be = await rawBackend();
  const log = path.join(fs.mkdtempSync('/tmp/gg-sse-'), 'access.log');
  const gw = await splicing([{ name: 'raw', url: be.url, kind: 'vllm' }], 'stall', ['--access-log', log]);
  try {
    await up(gw, ['big']);
    const inFlight = await inNs(async (gw, be) => {
      const n = 1000000; // 100 MB of events
      const c = new Conn(gw.port);
      await c.ready;
      c.send('/v1/chat/completions', { model: 'big', stream: true, messages: [{ role: 'user', content: 'x' }], user: `chunked:${n}` });
      while (c.buf.indexOf('\r\n\r\n') < 0) await c.more();
      c.sock.pause();
      await sleep(3000);
      const inFlight = (await http('GET', `${be.url}/_written`)).json.written;
      // what the backend could write while nobody read: socket buffers plus at most GG_BPF_STALL_LIMIT (16 MB) redirected
      assert.ok(inFlight < 48 * 1024 * 1024, `backend wrote ${inFlight} bytes into a stalled client`);
      c.sock.resume();
      const r = await c.response();
      // (h2o closes a keep-alive connection idle for 10 s: the next request goes first, the checks after)
      // the backend's health probes may have failed meanwhile on a busy machine: wait for it
      let again;
      for (let i = 0; i < 100; i++) {
        again = await c.request('/v1/chat/completions', { model: 'big', stream: true, messages: [{ role: 'user', content: 'x' }], user: 'chunked:50' });
        if (again.status !== 503) break;
        await sleep(100);
      }
      assert.ok(r.complete);
      assert.ok(checkEvents(r.body, n), 'exact after the stall');
      assert.ok(checkEvents(again.body, 50), `keep-alive after a stalled stream: ${again.status} ${again.complete} ${again.body.slice(0, 300)}`);
      c.close();
      return inFlight;
    }, where(gw), where(be));
    console.log(`# stalled client: backend wrote ${(inFlight / 1048576).toFixed(1)} MB of 100 MB before back-pressure`);
  } finally {
    await gw.stop();
    await be.stop();
  }
});

test('aborts: client abort mid-splice cancels the engine; backend reset mid-splice closes the client; both keep serving', { skip }, async () => {
  await inNs(async ({ gwOn, vllm, logOn }) => {
    const logged0 = accessLog(logOn).length;
    const st0 = (await http('GET', `${vllm.url}/_sim/stats`)).json;
    const c = new Conn(gwOn.port);
    await c.ready;
    c.send('/v1/chat/completions', chat(100000, { ignore_eos: true }));
    while (c.buf.length < 20000) await c.more();
    c.close();
    let cancelled = false;
    for (let i = 0; i < 100 && !cancelled; i++) {
      await sleep(50);
      cancelled = (await http('GET', `${vllm.url}/_sim/stats`)).json.cancelled > st0.cancelled;
    }
    assert.ok(cancelled, 'the engine saw the stream cancelled');

    await http('POST', `${vllm.url}/_sim/fault`, { body: { mode: 'reset_after', after_tokens: 300, count: 1 } });
    const d = new Conn(gwOn.port);
    await d.ready;
    const r = await d.request('/v1/chat/completions', chat(2000, { ignore_eos: true }));
    assert.equal(r.status, 200);
    assert.equal(r.complete, false, 'a stream the backend broke does not end with a last chunk');
    assert.ok(d.closed, 'and the client connection is closed');
    await http('POST', `${vllm.url}/_sim/fault`, { body: { mode: 'none' } });

    // the reset counts against the backend (as in userspace): wait for health to take it back
    const e = new Conn(gwOn.port);
    await e.ready;
    let ok;
    for (let i = 0; i < 100; i++) {
      ok = await e.request('/v1/chat/completions', chat(30));
      if (ok.status !== 503) break;
      await sleep(100);
    }
    assert.ok(ok.complete && ok.body.endsWith('data: [DONE]\n\n'), `after the aborts: ${ok.status} ${ok.complete} ${ok.body.slice(-200)}`);
    e.close();
    await waitFor(() => {
      const l = accessLog(logOn).slice(logged0);
      return l.some((x) => x.error === 'client went away' && x.spliced) && l.some((x) => /upstream/.test(x.error || '') && x.spliced);
    });
    const lines = accessLog(logOn).slice(logged0);
    assert.ok(lines.some((l) => l.error === 'client went away' && l.spliced), JSON.stringify(lines));
    assert.ok(lines.some((l) => /upstream/.test(l.error || '') && l.spliced), JSON.stringify(lines));
  }, env);
});

/** Marks the spliced SSE stream's flow desynced, as the verdict does when the kernel's byte accounting stops adding up
 * (struct gg_bpf_flow: kind at byte 112, desync at 144). Runs in the namespace; returns the flow's slot. */
async function markDesynced(pin) {
  const { execFileSync } = await import('node:child_process');
  const key = (i) => ['key', String(i & 255), String(i >> 8), '0', '0'];
  for (let i = 0; i < 4096; i++) {
    const v = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'lookup', 'pinned', `${pin}/flows`, ...key(i)])).value.map(Number);
    if (v[112] !== 2) continue; // GG_BPF_FLOW_SSE
    v[144] = 1; // GG_BPF_DESYNC_SEQ_AHEAD
    execFileSync('bpftool', ['map', 'update', 'pinned', `${pin}/flows`, ...key(i), 'value', ...v.map(String)]);
    return i;
  }
  throw new Error('no spliced SSE flow in the map');
}

test('desync: a spliced stream whose byte accounting breaks is reset, not cut short; gridgate keeps serving', { skip }, async () => {
  await inNs(async ({ gwOn, logOn, pin }) => {
    const d0 = await metric(gwOn, 'gridgate_splice_desyncs_total');
    const logged0 = accessLog(logOn).length;
    const c = new Conn(gwOn.port);
    await c.ready;
    c.send('/v1/chat/completions', chat(100000, { ignore_eos: true }));
    while (c.buf.length < 20000) await c.more();
    // TCP resets sent in this namespace: gridgate resets the client and the engine connection. (The client may see
    // the reset as ECONNRESET or, when it lands behind data already read, as EOF.)
    const resets = () => Number(fs.readFileSync('/proc/net/snmp', 'utf8').split('\n').filter((l) => l.startsWith('Tcp:'))
      .map((l) => l.trim().split(/\s+/)).reduce((names, values) => values[names.indexOf('OutRsts')]));
    const rst0 = resets();
    await markDesynced(pin);
    while (await c.more());
    assert.ok(c.closed, 'the client connection is closed');
    assert.ok(!c.buf.toString('latin1').endsWith('0\r\n\r\n'), 'no last chunk');
    assert.ok(resets() - rst0 >= 2, `by resets, so no client takes the stream for complete (${resets() - rst0} sent)`);
    assert.equal(await metric(gwOn, 'gridgate_splice_desyncs_total'), d0 + 1);
    await waitFor(() => accessLog(logOn).slice(logged0).some((l) => /^splice desync/.test(l.error || '')));
    const e = new Conn(gwOn.port);
    await e.ready;
    const ok = await e.request('/v1/chat/completions', chat(30));
    assert.ok(ok.complete && ok.body.endsWith('data: [DONE]\n\n'), `after the reset: ${ok.status} ${ok.body.slice(-200)}`);
    e.close();
  }, { ...env, pin: ns.pinPath('on') });
});

/** What the gridgate that does not splice answers to each of 96 streamed requests, as [path, body, masked answer]
 * in a JSON file (too big for a command line); returns its path. */
const references = () =>
  inNs(async ({ gwOff }, file) => {
    const ref = new Conn(gwOff.port);
    await ref.ready;
    const out = [];
    for (let n = 1; n <= 48; n++) {
      for (const [p, b] of [['/v1/chat/completions', chat(n, { ignore_eos: true })], ['/api/chat', ochat(n)]]) out.push([p, b, mask((await ref.request(p, b)).body)]);
    }
    ref.close();
    (await import('node:fs')).writeFileSync(file, JSON.stringify(out));
    return file;
  }, env, path.join(fs.mkdtempSync('/tmp/gg-sse-refs-'), 'refs.json'));

/** `total` requests from `refs` through the splicing gridgate `gw` (with access log `log`) over 32 parallel keep-alive
 * connections, every answer checked against its reference; asserts none was corrupted, broken or reset for a desync,
 * and nearly all were spliced. */
async function stress(total, refs, gw = env.gwOn, log = env.logOn) {
  const r = await inNs(async (gw, log, total, refsFile) => {
    const refs = JSON.parse((await import('node:fs')).readFileSync(refsFile, 'utf8'));
    const s0 = await metric(gw, 'gridgate_spliced_streams_total');
    const d0 = await metric(gw, 'gridgate_splice_desyncs_total');
    let next = 0, ok = 0, bad = 0;
    const why = [];
    const logged0 = accessLog(log).length;
    const worker = async (w) => {
      let c = new Conn(gw.port);
      await c.ready;
      while (next < total) {
        const i = next++;
        const [p, b, expect] = refs[(i * 7 + w) % refs.length];
        let r;
        try {
          r = await c.request(p, b);
        } catch (e) {
          r = { status: 0, error: e.message };
        }
        if (r.status === 200 && r.complete && mask(r.body) === expect) ok++;
        else {
          bad++;
          why.push(`#${i} ${p} ${r.status} ${r.error || ''} complete=${r.complete} ${(r.body || '').slice(0, 120)}`);
          c.close();
          c = new Conn(gw.port);
          await c.ready;
          continue;
        }
        if (i % 97 === 0) {
          c.close(); // fresh connections too
          c = new Conn(gw.port);
          await c.ready;
        }
      }
      c.close();
    };
    await Promise.all(Array.from({ length: 32 }, (_, w) => worker(w)));
    const errs = accessLog(log).slice(logged0).filter((l) => l.error);
    const spliced = (await metric(gw, 'gridgate_spliced_streams_total')) - s0;
    const desyncs = (await metric(gw, 'gridgate_splice_desyncs_total')) - d0;
    return { ok, bad, why: why.slice(0, 5), errs: errs.slice(0, 5), spliced, desyncs };
  }, gw, log, total, refs);
  assert.equal(r.desyncs, 0, 'no stream was reset for a desync');
  assert.equal(r.bad, 0, `${r.bad} corrupted or broken of ${total}: ${r.why.join(' | ')}; access log errors: ${JSON.stringify(r.errs)}`);
  assert.equal(r.ok, total);
  assert.ok(r.spliced > total * 0.9, `${r.spliced} of ${total} went through the kernel`);
}

test('stress: thousands of spliced responses over parallel keep-alive connections, every byte checked', { skip }, async () => {
  await stress(Number(process.env.GG_SPLICE_STRESS || 2000), await references());
});

test('stress over a lossy loopback (one TCP segment in 20 dropped): retransmits reach the verdict, every byte checked', { skip }, async () => {
  const refs = await references(); // before the loss: the reference gateway's probes would time out too
  // A gateway set up for a lossy network: a lost SYN is resent after 1 s and again 2 s later, past the default probe
  // (1 s) and connect (2 s) timeouts, and either would take the only backend of a model out.
  const log = path.join(fs.mkdtempSync('/tmp/gg-sse-lossy-'), 'access.log');
  const lossy = { health: { timeout_ms: 8000, fail_threshold: 3 }, timeouts: { connect_ms: 16000 } };
  const gw = await splicing(backends, 'lossy', ['--access-log', log], {}, lossy);
  await up(gw, ['m1', 'llama3']);
  const table = ['inet', 'gg_lossy'];
  const retrans = () => {
    const [names, values] = ns.run('cat', ['/proc/net/snmp']).split('\n').filter((l) => l.startsWith('Tcp:')).map((l) => l.split(/\s+/));
    return Number(values[names.indexOf('RetransSegs')]);
  };
  ns.run('nft', ['add', 'table', ...table]);
  ns.run('nft', ['add', 'chain', ...table, 'in', '{ type filter hook input priority 0; }']);
  ns.run('nft', ['add', 'rule', ...table, 'in', 'meta', 'l4proto', 'tcp', 'numgen', 'random', 'mod', '20', '0', 'drop']);
  const before = retrans();
  try {
    await stress(500, refs, where(gw), log);
  } finally {
    ns.run('nft', ['delete', 'table', ...table]);
  }
  // GG_BPF_STAT_REPEAT_BYTES (8), summed over CPUs: how much of what was resent the verdict cut off (often none here:
  // most resent segments repeat only bytes TCP already has, and TCP drops those itself)
  const cut = JSON.parse(execFileSync('bpftool', ['-j', 'map', 'lookup', 'pinned', path.join(ns.pinPath('lossy'), 'stats'), 'key', '8', '0', '0', '0']))
    .formatted.values.reduce((sum, v) => sum + Number(v.value.value), 0);
  console.log(`lossy stress: ${retrans() - before} segments resent, ${cut} repeated bytes cut by the verdict`);
  await gw.stop();
  assert.ok(retrans() > before, 'segments were lost and resent');
});

test('the official openai client streams through a spliced path', { skip }, async () => {
  // imported by absolute path: the client runs from no directory of the project
  const openai = path.join(ROOT, 'tests/clients/node_modules/openai/index.mjs');
  await inNs(async ({ gwOn }, openai) => {
    const { default: OpenAI } = await import(openai);
    const s0 = await metric(gwOn, 'gridgate_spliced_streams_total');
    const client = new OpenAI({ baseURL: `${gwOn.url}/v1`, apiKey: 'x' });
    for (let k = 0; k < 3; k++) {
      const stream = await client.chat.completions.create({ model: 'm1', stream: true, max_tokens: 64, ignore_eos: true, messages: [{ role: 'user', content: 'hi' }] });
      let text = '', chunks = 0;
      for await (const ch of stream) {
        chunks++;
        text += ch.choices[0]?.delta?.content || '';
      }
      assert.ok(chunks >= 64 && text.length > 0, `stream ${k}: ${chunks} chunks`);
    }
    await waitFor(async () => (await metric(gwOn, 'gridgate_spliced_streams_total')) - s0 >= 3);
    assert.equal((await metric(gwOn, 'gridgate_spliced_streams_total')) - s0, 3);
  }, env, openai);
});

test('bpf.splice_paths switches splicing per route: only the routes named are spliced', { skip }, async () => {
  const log = path.join(fs.mkdtempSync('/tmp/gg-sse-'), 'access.log');
  const gw = await splicing(backends, 'paths', ['--access-log', log], { splice_paths: ['/api/chat'] });
  await up(gw, ['m1', 'llama3']);
  const r = await inNs(async ({ gw }) => {
    const c = new Conn(gw.port);
    await c.ready;
    const a = await c.request('/v1/chat/completions', chat(20));
    const b = await c.request('/api/chat', ochat(20));
    const d = await c.request('/api/generate', { model: 'llama3', prompt: 'hi', stream: true, options: { num_predict: 20 } });
    c.close();
    return [a, b, d].map((x) => ({ status: x.status, complete: x.complete }));
  }, { gw: where(gw) });
  assert.deepEqual(r, [{ status: 200, complete: true }, { status: 200, complete: true }, { status: 200, complete: true }]);
  await waitFor(() => accessLog(log).filter((e) => e.stream).length >= 3);
  const lines = accessLog(log).filter((e) => e.stream);
  assert.deepEqual(lines.map((e) => [e.path, e.spliced]), [['/v1/chat/completions', false], ['/api/chat', true], ['/api/generate', false]]);
});
