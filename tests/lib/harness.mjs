// Test harness: starts real gridgate / enginesim processes on loopback, waits until they are ready,
// and always tears them down. Servers are started on port 0 and report the port they bound with a
// log line "listening on http://HOST:PORT" (the contract every server binary of this project keeps).
import { spawn } from 'node:child_process';
import { after } from 'node:test';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
export const BUILD = path.resolve(ROOT, process.env.GG_BUILD || 'build');
export const bin = (name) => path.join(BUILD, name);

const live = new Set();
// Registered at import, so it belongs to the file's root: every process started anywhere in the file
// is stopped once all of the file's tests are done (an after() called inside a before() hook would
// run as soon as that hook ends).
after(() => Promise.all([...live].map((p) => p.stop())));

/** Starts `file args`, resolves once a line matches `ready` (default: the listening line). */
export function startProcess(file, args, { ready = /listening on http:\/\/([\d.]+):(\d+)/, timeoutMs = 10000, env } = {}) {
  // Under SAN=1, LeakSanitizer runs at exit; libh2o's own thread-local caches are suppressed (tests/lsan.supp).
  const lsan = { LSAN_OPTIONS: process.env.LSAN_OPTIONS || `suppressions=${path.join(ROOT, 'tests/lsan.supp')}` };
  const child = spawn(file, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...lsan, ...env } });
  let output = '';
  const p = {
    child,
    output: () => output,
    exited: new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal }))),
    async stop(signal = 'SIGTERM') {
      live.delete(p);
      if (child.exitCode !== null || child.signalCode !== null) return p.exited;
      child.kill(signal);
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      const r = await p.exited;
      clearTimeout(t);
      return r;
    },
    /** Resolves when a line matching re appears in the output (from now or earlier). */
    waitFor(re, ms = 5000) {
      return new Promise((resolve, reject) => {
        const tick = () => {
          const m = output.match(re);
          if (m) return resolve(m);
          if (Date.now() > deadline) return reject(new Error(`timed out waiting for ${re}; output:\n${output}`));
          setTimeout(tick, 20);
        };
        const deadline = Date.now() + ms;
        tick();
      });
    },
  };
  live.add(p);
  const onData = (d) => {
    output += d.toString();
    if (process.env.GG_VERBOSE) process.stderr.write(d);
  };
  child.stdout.on('data', onData);
  child.stderr.on('data', onData);
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${path.basename(file)} not ready in ${timeoutMs} ms; output:\n${output}`)), timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`${path.basename(file)} exited with ${code} before ready; output:\n${output}`));
    });
    const check = () => {
      const m = output.match(ready);
      if (!m) return;
      clearTimeout(timer);
      child.stdout.off('data', check);
      child.stderr.off('data', check);
      if (m[2]) {
        p.host = m[1];
        p.port = Number(m[2]);
        p.url = `http://${m[1]}:${m[2]}`;
      }
      resolve(p);
    };
    child.stdout.on('data', check);
    child.stderr.on('data', check);
  });
}

/** Starts build/enginesim with a flavour and models on a free loopback port. */
export function enginesim(flavor, models = ['llama3'], extra = []) {
  return startProcess(bin('enginesim'), ['--listen', '127.0.0.1:0', '--flavor', flavor, '--models', models.join(','), ...extra]);
}

/** Starts build/gridgate on a free loopback port with the given extra arguments. With GG_BPF set, each daemon gets
 * its own --pin-path (one gridgate per pin path), removed when it stops. */
let pinSeq = 0;
export async function gridgate(args = [], opts = {}) {
  const pin = process.env.GG_BPF && !args.includes('--pin-path') ? `/sys/fs/bpf/gg-test-${process.pid}-${pinSeq++}` : null;
  const p = await startProcess(bin('gridgate'),
    ['--listen', '127.0.0.1:0', '--bpf', process.env.GG_BPF || 'off', ...(pin ? ['--pin-path', pin] : []), ...args], opts);
  if (pin) {
    const stop = p.stop.bind(p);
    p.stop = async (...a) => {
      const r = await stop(...a);
      fs.rmSync(pin, { recursive: true, force: true });
      return r;
    };
  }
  return p;
}

/** One HTTP request; resolves {status, headers, body (string), json (parsed or undefined)}. */
export async function http(method, url, { body, headers = {}, signal } = {}) {
  const init = { method, headers: { ...headers }, signal };
  if (body !== undefined) {
    init.body = typeof body === 'string' || body instanceof Uint8Array ? body : JSON.stringify(body);
    if (typeof body === 'object' && !(body instanceof Uint8Array) && !init.headers['content-type'])
      init.headers['content-type'] = 'application/json';
  }
  const res = await fetch(url, init);
  const text = await res.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {}
  return { status: res.status, headers: res.headers, body: text, json };
}

/** Sends raw bytes on a fresh TCP connection and collects everything until close or timeout. */
export function rawRequest(port, bytes, { timeoutMs = 3000, host = '127.0.0.1' } = {}) {
  return new Promise((resolve) => {
    const sock = net.connect(port, host);
    let data = '';
    const done = () => {
      clearTimeout(t);
      sock.destroy();
      resolve(data);
    };
    const t = setTimeout(done, timeoutMs);
    sock.on('connect', () => sock.write(bytes));
    sock.on('data', (d) => (data += d.toString('latin1')));
    sock.on('close', done);
    sock.on('error', done);
  });
}

/** Parses an SSE body into the JSON of each data: line (and the string '[DONE]'). */
export function sseEvents(text) {
  return text
    .split('\n\n')
    .map((e) => e.trim())
    .filter((e) => e.startsWith('data:'))
    .map((e) => {
      const d = e.slice(5).trim();
      return d === '[DONE]' ? d : JSON.parse(d);
    });
}

/** Parses an NDJSON body into objects. */
export const ndjson = (text) => text.split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l));

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Writes `config` (an object) to a temporary JSON file and returns its path. */
export async function writeConfig(config) {
  const fs = await import('node:fs/promises');
  const os = await import('node:os');
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'gg-'));
  const file = path.join(dir, 'gridgate.json');
  await fs.writeFile(file, JSON.stringify(config, null, 2));
  return file;
}

/** Polls gridgate's /v1/models until every model in `models` is listed (health has found the backends). */
export async function waitModels(gw, models, ms = 15000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    try {
      last = await http('GET', `${gw.url}/v1/models`);
      const ids = new Set((last.json?.data || []).map((m) => m.id));
      if (models.every((m) => ids.has(m))) return last.json;
    } catch {}
    await sleep(50);
  }
  throw new Error(`models ${models} not all listed in ${ms} ms; last: ${last?.body}\n${gw.output()}`);
}

/** Counters of a running enginesim (GET /_sim/stats). */
export async function simStats(sim) {
  return (await http('GET', `${sim.url}/_sim/stats`)).json;
}

/** Sets an enginesim fault (POST /_sim/fault). */
export async function simFault(sim, fault) {
  const r = await http('POST', `${sim.url}/_sim/fault`, { body: fault });
  if (r.status !== 200) throw new Error(`fault ${JSON.stringify(fault)}: ${r.status} ${r.body}`);
}
