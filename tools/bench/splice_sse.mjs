// make bench-splice, SSE arm: CPU per relayed 100-byte SSE event for BENCH_STREAMS concurrent streams at BENCH_RATE
// events/s through a real gridgate, userspace relay (bpf.splice_streams off) against spliced (on), side by side in one
// run. The backend and the clients live in this node process (the same in both arms); gridgate's own CPU comes from
// /proc/PID/stat and the machine's from /proc/stat. Also: the cost of membership for what is never spliced (buffered
// chat answers with the backend connections in the sockmap or not). Not a test: numbers only. Needs root.
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { spawn } from 'node:child_process';

const BUILD = process.env.GG_BUILD || 'build';
const STREAMS = Number(process.env.BENCH_STREAMS || 500);
const RATE = Number(process.env.BENCH_RATE || 50);
const SECONDS = Number(process.env.BENCH_SECONDS || 5);
const ROUNDS = Number(process.env.BENCH_ROUNDS || 2);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const EVENT = 'data: {"choices":[{"delta":{"content":"' + 'x'.repeat(100 - 44) + '"}}]}\n\n';
const CHUNK = `${EVENT.length.toString(16)}\r\n${EVENT}\r\n`;
const JSON_ANSWER = JSON.stringify({ id: 'x', object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }], usage: { prompt_tokens: 1, completion_tokens: 1, total_tokens: 2 } });

// backend: streams EVENT every 1000/RATE ms, for as long as the request's max_tokens says (events)
function backend() {
  const server = net.createServer((sock) => {
    let buf = '';
    sock.setNoDelay(true);
    sock.on('error', () => {});
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      for (;;) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.slice(0, end);
        const len = Number((head.match(/content-length: *(\d+)/i) || [0, 0])[1]);
        if (buf.length < end + 4 + len) return;
        const body = buf.slice(end + 4, end + 4 + len);
        buf = buf.slice(end + 4 + len);
        if (head.startsWith('GET /v1/models')) {
          const j = JSON.stringify({ object: 'list', data: [{ id: 'b', object: 'model' }] });
          sock.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${j.length}\r\n\r\n${j}`);
          continue;
        }
        if (head.startsWith('GET')) {
          sock.write('HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n');
          continue;
        }
        const req = JSON.parse(body);
        if (!req.stream) {
          sock.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${JSON_ANSWER.length}\r\n\r\n${JSON_ANSWER}`);
          continue;
        }
        sock.write('HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n');
        let left = req.max_tokens;
        const t = setInterval(() => {
          if (sock.destroyed) return clearInterval(t);
          if (left-- > 0) return sock.write(CHUNK);
          clearInterval(t);
          sock.write('e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n');
        }, 1000 / RATE);
      }
    });
  });
  return new Promise((r) => server.listen(0, '127.0.0.1', () => r({ port: server.address().port, close: () => server.close() })));
}

function startGridgate(args) {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(BUILD, 'gridgate'), ['--listen', '127.0.0.1:0', '--threads', '1', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const on = (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/[\d.]+:(\d+)/);
      if (m) resolve({ child, port: Number(m[1]), out: () => out });
    };
    child.stdout.on('data', on);
    child.stderr.on('data', on);
    child.on('exit', () => reject(new Error(`gridgate exited: ${out}`)));
  });
}

const procCpu = (pid) => {
  const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) * 10000; // utime + stime, ticks (100 Hz) -> us
};
const machineBusy = () => {
  const f = fs.readFileSync('/proc/stat', 'utf8').split('\n')[0].split(/\s+/).slice(1).map(Number);
  const idle = f[3] + f[4];
  return (f.reduce((a, b) => a + b, 0) - idle) * 10000; // us of CPU (all cores)
};

async function streamArm(gwPort) {
  let events = 0;
  const socks = [];
  const body = JSON.stringify({ model: 'b', stream: true, messages: [{ role: 'user', content: 'x' }], max_tokens: RATE * (SECONDS + 3) });
  const req = `POST /v1/chat/completions HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  for (let i = 0; i < STREAMS; i++) {
    const s = net.connect(gwPort, '127.0.0.1');
    s.on('error', () => {});
    // counting event boundaries is enough: the tests check the bytes
    s.on('data', (d) => {
      for (let k = d.indexOf('\n\n'); k >= 0; k = d.indexOf('\n\n', k + 2)) events++;
    });
    s.on('connect', () => s.write(req));
    socks.push(s);
    if (i % 50 === 49) await sleep(20);
  }
  await sleep(1500); // all streams running
  const e0 = events, c0 = machineBusy();
  const g0 = procCpu(gwPid);
  await sleep(SECONDS * 1000);
  const e1 = events, c1 = machineBusy(), g1 = procCpu(gwPid);
  for (const s of socks) s.destroy();
  await sleep(500);
  const n = e1 - e0;
  return { events: n, gw: (g1 - g0) / n, machine: (c1 - c0) / n };
}

async function bufferedArm(gwPort, total = Number(process.env.BENCH_BUFFERED || 10000)) {
  const body = JSON.stringify({ model: 'b', stream: false, messages: [{ role: 'user', content: 'x' }] });
  const req = `POST /v1/chat/completions HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`;
  const g0 = procCpu(gwPid);
  let done = 0;
  await Promise.all(
    Array.from({ length: 8 }, () => new Promise((resolve) => {
      const s = net.connect(gwPort, '127.0.0.1');
      let buf = '';
      s.on('connect', () => s.write(req));
      s.on('data', (d) => {
        buf += d.toString();
        const k = buf.indexOf('\r\n\r\n');
        const len = k >= 0 ? Number((buf.slice(0, k).match(/content-length: *(\d+)/i) || [0, 0])[1]) : -1;
        if (k >= 0 && buf.length >= k + 4 + len) {
          buf = buf.slice(k + 4 + len);
          if (++done >= total) return s.destroy(), resolve();
          s.write(req);
        }
      });
      s.on('close', resolve);
    })),
  );
  return (procCpu(gwPid) - g0) / done;
}

let gwPid;
const be = await backend();
const pin = fs.mkdtempSync('/sys/fs/bpf/gg-bench-sse-');
const rows = { user: [], spliced: [] }, buffered = { out: [], member: [] };
for (let round = 0; round < ROUNDS; round++) {
  for (const arm of ['user', 'spliced']) {
    const cfg = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'gg-bench-')), 'gg.json');
    fs.writeFileSync(cfg, JSON.stringify({ backends: [{ name: 'b', url: `http://127.0.0.1:${be.port}`, kind: 'vllm', max_inflight: STREAMS * 2 }], limits: { max_queue: STREAMS * 4 }, bpf: { splice_streams: arm === 'spliced' } }));
    const gw = await startGridgate(['--config', cfg, '--bpf', 'on', '--pin-path', path.join(pin, arm)]);
    gwPid = gw.child.pid;
    await sleep(1500);

    const r = await streamArm(gw.port);

    rows[arm].push(r);
    buffered[arm === 'spliced' ? 'member' : 'out'].push(await bufferedArm(gw.port));
    gw.child.removeAllListeners('exit');
    gw.child.kill('SIGTERM');
    await new Promise((res) => gw.child.on('exit', res));
  }
}
be.close();
fs.rmSync(pin, { recursive: true, force: true });
const fmt = (xs, k) => xs.map((x) => x[k].toFixed(1)).join(' / ');
console.log(`SSE: ${STREAMS} streams x ${RATE} events/s of ${EVENT.length} B, ${SECONDS} s measured, ${ROUNDS} rounds (per-round values)`);
console.log(`  events relayed per round      user: ${rows.user.map((x) => x.events).join(' / ')}   spliced: ${rows.spliced.map((x) => x.events).join(' / ')}`);
console.log(`  gridgate CPU-us per event     user: ${fmt(rows.user, 'gw')}   spliced: ${fmt(rows.spliced, 'gw')}`);
console.log(`  machine CPU-us per event      user: ${fmt(rows.user, 'machine')}   spliced: ${fmt(rows.spliced, 'machine')}`);
const avg = (xs, k) => xs.reduce((a, x) => a + x[k], 0) / xs.length;
console.log(`  ratio spliced/user: gridgate ${(avg(rows.spliced, 'gw') / avg(rows.user, 'gw')).toFixed(2)}x, machine ${(avg(rows.spliced, 'machine') / avg(rows.user, 'machine')).toFixed(2)}x`);
console.log(`Membership cost: gridgate CPU-us per buffered chat answer, backend connections out of / in the sockmap: ${buffered.out.map((x) => x.toFixed(1)).join(' / ')} vs ${buffered.member.map((x) => x.toFixed(1)).join(' / ')}`);
