// ComfyUI behind gridgate: two comfyui enginesims; prompts, their history and their images stick to the backend
// that ran them; the WebSocket is tunnelled to the client's backend and carries its prompt's execution messages;
// bad workflows pass through; no backend gives 503; a dying backend closes the client's WebSocket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import { enginesim, gridgate, http, rawRequest, simStats, sleep } from '../lib/harness.mjs';

const WORKFLOW = (steps = 3) => ({
  3: { class_type: 'KSampler', inputs: { steps, seed: 1 } },
  9: { class_type: 'SaveImage', inputs: { images: ['3', 0] } },
});

/* --- a minimal WebSocket client (RFC 6455) over net: handshake, unmasked frames in, masked frames out ----------- */
function wsConnect(port, path, { timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const key = crypto.randomBytes(16).toString('base64');
    const sock = net.connect(port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    let ws = null;
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error(`no handshake answer for ${path}`));
    }, timeoutMs);
    sock.on('connect', () =>
      sock.write(
        `GET ${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      ),
    );
    sock.on('error', () => {});
    sock.on('close', () => {
      clearTimeout(timer);
      if (ws) return ws._closed();
      // refused upgrade: resolve with the HTTP answer
      const text = buf.toString('latin1');
      const status = Number(text.match(/^HTTP\/1\.1 (\d+)/)?.[1] || 0);
      resolve({ status, head: text.split('\r\n\r\n')[0], body: text.split('\r\n\r\n').slice(1).join('\r\n\r\n') });
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!ws) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString('latin1');
        const status = Number(head.match(/^HTTP\/1\.1 (\d+)/)?.[1] || 0);
        if (status !== 101) {
          const cl = Number(head.match(/content-length: *(\d+)/i)?.[1] ?? -1);
          if (cl >= 0 && buf.length >= end + 4 + cl) {
            clearTimeout(timer);
            sock.destroy();
            resolve({ status, head, body: buf.subarray(end + 4, end + 4 + cl).toString() });
          }
          return;
        }
        clearTimeout(timer);
        const accept = head.match(/sec-websocket-accept: *(\S+)/i)?.[1];
        const expected = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
        buf = buf.subarray(end + 4);
        ws = makeWs(sock, status, head, accept === expected);
        resolve(ws);
      }
      buf = ws._feed(buf);
    });
  });
}

function makeWs(sock, status, head, acceptOk) {
  const messages = [];
  const waiters = [];
  let closed = false;
  const wake = () => {
    while (waiters.length && (messages.length || closed)) waiters.shift()();
  };
  const ws = {
    status,
    head,
    acceptOk,
    get closed() {
      return closed;
    },
    _closed() {
      closed = true;
      wake();
    },
    _feed(b) {
      for (;;) {
        if (b.length < 2) return b;
        const op = b[0] & 0x0f;
        let len = b[1] & 0x7f;
        let off = 2;
        if (len === 126) {
          if (b.length < 4) return b;
          len = b.readUInt16BE(2);
          off = 4;
        } else if (len === 127) {
          if (b.length < 10) return b;
          len = Number(b.readBigUInt64BE(2));
          off = 10;
        }
        if (b[1] & 0x80) throw new Error('server frames must not be masked');
        if (b.length < off + len) return b;
        const payload = b.subarray(off, off + len);
        if (op === 1) messages.push(JSON.parse(payload.toString()));
        else if (op === 8) messages.push({ type: '__close__' });
        b = b.subarray(off + len);
        wake();
      }
    },
    /** The next message, or null once the connection closed (bounded by ms). */
    next(ms = 10000) {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('no WebSocket message in time')), ms);
        const take = () => {
          clearTimeout(t);
          resolve(messages.length ? messages.shift() : null);
        };
        if (messages.length || closed) take();
        else waiters.push(take);
      });
    },
    /** Resolves once the TCP connection is closed (rejects after ms). */
    waitClosed(ms = 10000) {
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => reject(new Error('WebSocket still open')), ms);
        if (closed) return resolve(clearTimeout(t));
        sock.once('close', () => resolve(clearTimeout(t)));
      });
    },
    send(op, text) {
      const payload = Buffer.from(text);
      const mask = crypto.randomBytes(4);
      const hdr = payload.length < 126 ? Buffer.from([0x80 | op, 0x80 | payload.length]) : null;
      if (!hdr) throw new Error('test frames are short');
      const masked = Buffer.from(payload.map((x, i) => x ^ mask[i % 4]));
      sock.write(Buffer.concat([hdr, mask, masked]));
    },
    destroy() {
      sock.destroy();
    },
  };
  return ws;
}

/** Messages of one prompt until execution_success (or close); bounded. */
async function messagesOf(ws, promptId) {
  const seen = [];
  for (let i = 0; i < 500; i++) {
    const m = await ws.next();
    if (m === null) break;
    if (m.data?.prompt_id !== promptId) continue;
    seen.push(m.type);
    if (m.type === 'execution_success') break;
  }
  return seen;
}

async function waitUp(gw, n) {
  for (let i = 0; i < 300; i++) {
    const r = await http('GET', `${gw.url}/health`).catch(() => null);
    if (r?.json?.backends_up === n) return;
    await sleep(50);
  }
  throw new Error(`gridgate did not see ${n} backends up:\n${gw.output()}`);
}

async function pathCount(sim, path) {
  return (await simStats(sim)).paths?.[path] ?? 0;
}

async function postPrompt(gw, body, path = '/prompt') {
  return http('POST', `${gw.url}${path}`, { body });
}

async function historyOf(gw, id) {
  for (let i = 0; i < 400; i++) {
    const r = await http('GET', `${gw.url}/history/${id}`);
    assert.equal(r.status, 200);
    if (r.json?.[id]?.status?.completed) return r.json[id];
    await sleep(25);
  }
  throw new Error(`prompt ${id} never completed`);
}

// Started at module level, not in a before() hook: the harness registers its teardown with after(), which inside a
// hook would run as soon as the hook ends.
const sims = [await enginesim('comfyui', ['sd_xl_base_1.0.safetensors']), await enginesim('comfyui', ['sd_xl_base_1.0.safetensors'])];
const gw = await gridgate(['--threads', '2', ...sims.flatMap((s) => ['--backend', `${s.url}#kind=comfyui`])]);
await waitUp(gw, 2);

test('prompt, history and view of each client land on the backend that ran the prompt', async () => {
  const owners = [0, 0];
  const runs = [];
  // new clients until both backends got some (each lands on either: bounded, fails with odds 2^-39)
  for (let i = 0; i < 40 && (owners[0] < 2 || owners[1] < 2); i++) {
    const before = await Promise.all(sims.map((s) => pathCount(s, '/prompt')));
    const r = await postPrompt(gw, { prompt: WORKFLOW(2), client_id: `hv-client-${i}` }, i % 2 ? '/api/prompt' : '/prompt');
    assert.equal(r.status, 200, r.body);
    assert.match(r.json.prompt_id, /^[0-9a-f-]{36}$/);
    const after = await Promise.all(sims.map((s) => pathCount(s, '/prompt')));
    const owner = after.findIndex((n, k) => n === before[k] + 1);
    assert.equal(after[0] + after[1], before[0] + before[1] + 1, 'exactly one backend got the prompt');
    owners[owner]++;
    runs.push({ id: r.json.prompt_id, owner, client: `hv-client-${i}` });
  }
  assert.ok(owners[0] >= 2 && owners[1] >= 2, `spread ${owners}`);

  for (const run of runs) {
    // the prompt's own backend knows it, the other does not
    const direct = await Promise.all(sims.map((s) => http('GET', `${s.url}/history/${run.id}`)));
    assert.deepEqual(direct.map((d) => Object.keys(d.json).length > 0), [run.owner === 0, run.owner === 1]);

    const hBefore = await Promise.all(sims.map((s) => pathCount(s, '/history/')));
    const h = await historyOf(gw, run.id);
    const hAfter = await Promise.all(sims.map((s) => pathCount(s, '/history/')));
    assert.ok(hAfter[run.owner] > hBefore[run.owner]);
    assert.equal(hAfter[1 - run.owner], hBefore[1 - run.owner], 'history went to the other backend');

    const img = h.outputs['9'].images[0];
    const vBefore = await Promise.all(sims.map((s) => pathCount(s, '/view')));
    const q = `filename=${encodeURIComponent(img.filename)}&subfolder=${img.subfolder}&type=${img.type}`;
    const res = await fetch(`${gw.url}/view?${q}`);
    const bytes = Buffer.from(await res.arrayBuffer());
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'image/png');
    const own = Buffer.from(await (await fetch(`${sims[run.owner].url}/view?${q}`)).arrayBuffer());
    assert.ok(bytes.equals(own), 'the image is the one of the backend that ran the prompt');
    const vAfter = await Promise.all(sims.map((s) => pathCount(s, '/view')));
    assert.equal(vAfter[1 - run.owner], vBefore[1 - run.owner], 'view went to the other backend');
  }

  // the next prompt of a known client goes where its earlier ones went
  const again = runs[0];
  const r = await postPrompt(gw, { prompt: WORKFLOW(1), client_id: again.client });
  await historyOf(gw, r.json.prompt_id);
  const d = await http('GET', `${sims[again.owner].url}/history/${r.json.prompt_id}`);
  assert.ok(d.json[r.json.prompt_id], 'a known client\'s next prompt runs on its backend');

  // merged listings: /history and /queue hold the prompts of both backends
  const all = await http('GET', `${gw.url}/history`); // (enginesim answers {} to /api/history without an id)
  assert.equal(all.status, 200);
  for (const run of runs) assert.ok(all.json[run.id], `merged history lacks ${run.id}`);
  const queue = await http('GET', `${gw.url}/queue`);
  assert.deepEqual(Object.keys(queue.json).sort(), ['queue_pending', 'queue_running']);

  // ComfyUI answers {} for a prompt it does not know; so does gridgate (after asking every backend)
  const unknown = await http('GET', `${gw.url}/history/00000000-0000-4000-8000-000000000000`);
  assert.equal(unknown.status, 200);
  assert.deepEqual(unknown.json, {});
  const noFile = await http('GET', `${gw.url}/view?filename=never_made.png&type=output`);
  assert.equal(noFile.status, 404);
});

test('the WebSocket carries the execution messages of prompts posted through gridgate, on both backends', async () => {
  const clients = [];
  const per = [0, 0];
  for (let i = 0; i < 40 && (per[0] < 2 || per[1] < 2); i++) {
    const before = await Promise.all(sims.map((s) => pathCount(s, '/ws')));
    const id = `ws-client-${i}-${crypto.randomUUID()}`;
    const ws = await wsConnect(gw.port, i % 2 ? `/ws?clientId=${id}` : `/api/ws?clientId=${id}`);
    assert.equal(ws.status, 101);
    assert.ok(ws.acceptOk, 'Sec-WebSocket-Accept matches the key');
    const first = await ws.next();
    assert.equal(first.type, 'status');
    assert.equal(first.data.sid, id);
    const after = await Promise.all(sims.map((s) => pathCount(s, '/ws')));
    const owner = after.findIndex((n, k) => n === before[k] + 1);
    assert.ok(owner >= 0);
    per[owner]++;
    clients.push({ id, ws, owner });
  }
  assert.ok(per[0] >= 2 && per[1] >= 2, `spread ${per}`);

  // all clients post at once; each hears its own prompt's whole run
  const results = await Promise.all(
    clients.map(async (c) => {
      const r = await postPrompt(gw, { prompt: WORKFLOW(3), client_id: c.id });
      assert.equal(r.status, 200, r.body);
      return { c, id: r.json.prompt_id, types: await messagesOf(c.ws, r.json.prompt_id) };
    }),
  );
  for (const { c, id, types } of results) {
    assert.deepEqual(
      types.filter((t) => t !== 'execution_cached'),
      ['execution_start', 'executing', 'progress', 'progress', 'progress', 'executing', 'executed', 'execution_success'],
      `client ${c.id} prompt ${id}`,
    );
    const direct = await http('GET', `${sims[c.owner].url}/history/${id}`);
    assert.ok(direct.json[id], 'the prompt ran on the backend of the client\'s WebSocket');
  }

  // client -> backend direction: a close frame goes through and the backend closes
  const c0 = clients[0].ws;
  c0.send(8, '');
  await c0.waitClosed();
  for (const c of clients.slice(1)) c.ws.destroy();

  const m = await http('GET', `${gw.url}/metrics`);
  const total = Number(m.body.match(/^gridgate_tunnels_total (\d+)/m)?.[1]);
  assert.ok(total >= clients.length, m.body);
});

test('a WebSocket without clientId gets an id from gridgate that routes its prompts', async () => {
  const ws = await wsConnect(gw.port, '/ws');
  assert.equal(ws.status, 101);
  const first = await ws.next();
  assert.equal(first.type, 'status');
  assert.match(first.data.sid, /^[0-9a-f]{32}$/);
  const r = await postPrompt(gw, { prompt: WORKFLOW(1), client_id: first.data.sid });
  assert.equal(r.status, 200);
  const types = await messagesOf(ws, r.json.prompt_id);
  assert.equal(types.at(-1), 'execution_success');
  ws.destroy();
});

test('POST /interrupt goes to the backend of the prompt it names, else to every backend', async () => {
  const r = await postPrompt(gw, { prompt: WORKFLOW(1), client_id: 'interrupter' });
  assert.equal(r.status, 200);
  await historyOf(gw, r.json.prompt_id);
  const owner = (await Promise.all(sims.map((s) => http('GET', `${s.url}/history/${r.json.prompt_id}`)))).findIndex(
    (d) => d.json[r.json.prompt_id],
  );
  assert.ok(owner >= 0);
  const before = await Promise.all(sims.map((s) => pathCount(s, '/interrupt')));
  const one = await http('POST', `${gw.url}/interrupt`, { body: { prompt_id: r.json.prompt_id } });
  assert.equal(one.status, 200);
  const mid = await Promise.all(sims.map((s) => pathCount(s, '/interrupt')));
  assert.deepEqual([mid[0] - before[0], mid[1] - before[1]], owner === 0 ? [1, 0] : [0, 1]);
  const all = await http('POST', `${gw.url}/api/interrupt`, { body: {} });
  assert.equal(all.status, 200);
  const after = await Promise.all(sims.map((s) => pathCount(s, '/interrupt')));
  assert.deepEqual([after[0] - mid[0], after[1] - mid[1]], [1, 1]);
});

test('uploads go to every backend (the prompt that uses the file may run on any)', async () => {
  const before = await Promise.all(sims.map((s) => pathCount(s, '(unknown)')));
  const form = new FormData();
  form.append('image', new Blob([Buffer.from('89504e470d0a1a0a', 'hex')], { type: 'image/png' }), 'in.png');
  const res = await fetch(`${gw.url}/upload/image`, { method: 'POST', body: form });
  await res.arrayBuffer();
  const after = await Promise.all(sims.map((s) => pathCount(s, '(unknown)')));
  // enginesim has no upload route: each backend counts one unknown request, and their 404 comes back
  assert.deepEqual([after[0] - before[0], after[1] - before[1]], [1, 1]);
  assert.equal(res.status, 404);
});

test('a bad workflow passes through with its status and node_errors', async () => {
  const r = await postPrompt(gw, { prompt: { 3: { class_type: 'KSampler' } }, client_id: 'bad' });
  assert.equal(r.status, 400);
  assert.equal(r.json.error.type, 'prompt_outputs_failed_validation');
  assert.ok(r.json.node_errors['3'].errors.length > 0);
  const empty = await postPrompt(gw, { prompt: {} }, '/api/prompt');
  assert.equal(empty.status, 400);
  assert.equal(empty.json.error.type, 'invalid_prompt');
});

test('/ws without an upgrade is refused, and wrong methods get 405', async () => {
  const r = await http('GET', `${gw.url}/ws?clientId=x`);
  assert.equal(r.status, 400);
  assert.equal(typeof r.json.error.message, 'string');
  const m = await http('DELETE', `${gw.url}/prompt`);
  assert.equal(m.status, 405);
});

test('no ComfyUI backend: 503 with Retry-After, for HTTP and for the WebSocket', async () => {
  const vllm = await enginesim('vllm', ['llama3']);
  const lone = await gridgate(['--backend', `${vllm.url}#kind=vllm`]);
  await waitUp(lone, 1);
  const r = await postPrompt(lone, { prompt: WORKFLOW(), client_id: 'x' });
  assert.equal(r.status, 503);
  assert.ok(Number(r.headers.get('retry-after')) >= 1);
  assert.equal(r.json.error.type, 'no_backend');
  const s = await http('GET', `${lone.url}/system_stats`);
  assert.equal(s.status, 503);
  const ws = await wsConnect(lone.port, '/ws?clientId=x');
  assert.equal(ws.status, 503);
  assert.match(ws.head, /retry-after: *\d+/i);
  await lone.stop();
  await vllm.stop();
});

test('killing the backend closes the client\'s WebSocket; a new one gets a clear error', async () => {
  const sim = await enginesim('comfyui', ['sd_xl_base_1.0.safetensors']);
  const g = await gridgate(['--backend', `${sim.url}#kind=comfyui`]);
  await waitUp(g, 1);
  const ws = await wsConnect(g.port, '/ws?clientId=doomed');
  assert.equal(ws.status, 101);
  assert.equal((await ws.next()).type, 'status');
  await sim.stop('SIGKILL');
  await ws.waitClosed();
  // whatever health thinks by now, the answer is an HTTP error, not a hang
  const again = await wsConnect(g.port, '/ws?clientId=doomed');
  assert.ok([502, 503].includes(again.status), `status ${again.status}`);
  const raw = await rawRequest(g.port, 'GET /system_stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', { timeoutMs: 10000 });
  assert.match(raw, /^HTTP\/1\.1 50[23] /);
  await g.stop();
});
