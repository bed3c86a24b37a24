// Issue 5, 3(b): plain HTTP/1.1 SSE/NDJSON responses spliced backend -> client in-kernel (root only; skipped, and said
// so, otherwise). A real gridgate with --bpf on and bpf.splice_streams, real enginesim vllm and ollama flavours, and a
// raw keep-alive client that sees the exact bytes on the wire: streams are compared, de-chunked and with the engine's
// ids and timestamps masked, with the same request through a gridgate that does not splice.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { ROOT, enginesim, gridgate, http, sleep, writeConfig, waitModels } from '../lib/harness.mjs';

const root = process.getuid && process.getuid() === 0;
const skip = root ? false : 'SKIPPED: needs root (CAP_BPF, CAP_NET_ADMIN, CAP_SYS_ADMIN) to splice in-kernel';
if (!root) console.log(`# splice_stream: ${skip}`);
const pins = [];
let pinSeq = 0;
const pinPath = () => {
  const p = `/sys/fs/bpf/gg-sse-${process.pid}-${pinSeq++}`;
  pins.push(p);
  return p;
};

/** One client connection that sends requests one after another and returns each response as it came on the wire. */
class Conn {
  constructor(port) {
    this.sock = net.connect(port, '127.0.0.1');
    this.buf = Buffer.alloc(0);
    this.closed = false;
    this.waiter = null;
    this.sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
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
  more(ms = 20000) {
    if (this.closed) return Promise.resolve(false);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error('response timed out')), ms);
      this.waiter = () => {
        clearTimeout(t);
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

async function metric(gw, name) {
  const m = (await http('GET', `${gw.url}/metrics`)).body.match(new RegExp(`^${name} (\\d+)`, 'm'));
  return m ? Number(m[1]) : 0;
}

function accessLog(file) {
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
}

let vllm, ollama, gwOn, gwOff, logOn;
before(async () => {
  if (!root) return;
  vllm = await enginesim('vllm', ['m1'], ['--decode-ms', '1']);
  ollama = await enginesim('ollama', ['llama3'], ['--decode-ms', '1', '--max-seqs', '64', '--max-queue', '0']);
  const backends = [{ name: 'v', url: vllm.url, kind: 'vllm', max_inflight: 64 }, { name: 'o', url: ollama.url, kind: 'ollama', max_inflight: 64 }];
  logOn = path.join(fs.mkdtempSync('/tmp/gg-sse-'), 'access.log');
  gwOn = await gridgate(['--config', await writeConfig({ backends, bpf: { splice_streams: true } }), '--bpf', 'on', '--pin-path', pinPath(), '--access-log', logOn]);
  gwOff = await gridgate(['--config', await writeConfig({ backends }), '--bpf', 'off']);
  await waitModels(gwOn, ['m1', 'llama3']);
  await waitModels(gwOff, ['m1', 'llama3']);
});

after(async () => {
  for (const p of [gwOn, gwOff, vllm, ollama]) if (p) await p.stop();
  for (const p of pins) fs.rmSync(p, { recursive: true, force: true });
});

test('byte-exact: SSE and NDJSON, short and large, equal to the unspliced stream; keep-alive 2nd/3rd requests; counters', { skip }, async () => {
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
  await sleep(300);
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
});
