// gzip on the client leg, both ways (issue 9): compressed responses for clients that ask, gzip request bodies
// inflated within limits (a 10 GiB bomb refused with flat memory), SSE never held back by compression, and an
// engine behind a compressing proxy handled on the upstream leg.
import { test, before } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import nodeHttp from 'node:http';
import zlib from 'node:zlib';
import OpenAI from '../clients/node_modules/openai/index.mjs';
import { enginesim, gridgate, http, sseEvents, waitModels, writeConfig } from '../lib/harness.mjs';

const DIM = 1536;

/** A request with exactly the headers given (fetch would add Accept-Encoding); the body is not decoded. */
function rawHttp(url, { method = 'GET', headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = nodeHttp.request(url, { method, headers }, (res) => {
      const chunks = [];
      res.on('data', (d) => chunks.push(d));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, raw: Buffer.concat(chunks), reads: chunks }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}

const decode = (r) => (r.headers['content-encoding'] === 'gzip' ? zlib.gunzipSync(r.raw) : r.raw).toString();
const postJson = (url, obj, headers = {}) =>
  rawHttp(url, { method: 'POST', headers: { 'content-type': 'application/json', ...headers }, body: JSON.stringify(obj) });

/** A gzip stream that inflates to `gib` GiB of zeros: header, a 1-byte block, then one flushed 1 MiB block of
 * zeros repeated (each repeat refers only to zeros before it, so the stream stays valid as long as it goes on). */
function bomb(gib) {
  const flush = { finishFlush: zlib.constants.Z_SYNC_FLUSH, level: 9 };
  const head = Buffer.from([0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff]);
  const block = zlib.deflateRawSync(Buffer.alloc(1 << 20), flush);
  return Buffer.concat([head, ...Array(gib * 1024).fill(block)]);
}

const rssKiB = (pid) => Number(readFileSync(`/proc/${pid}/status`, 'utf8').match(/VmRSS:\s+(\d+)/)[1]);

let sim, gw;
before(async () => {
  sim = await enginesim('vllm', ['m1'], ['--embed-dim', String(DIM)]);
  const cfg = await writeConfig({ limits: { max_body_bytes: 16 << 20 }, compression: { min_bytes: 1024, level: 1 } });
  gw = await gridgate(['--config', cfg, '--threads', '1', '--backend', `${sim.url}#kind=vllm`]);
  await waitModels(gw, ['m1']);
});

test('the official openai client receives gzip embeddings and decodes them', async () => {
  const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'sk-test', maxRetries: 0 });
  // The SDK asks for base64 by default and decodes it itself; 'float' asks for JSON numbers.
  for (const encoding_format of ['float', undefined]) {
    const { data, response } = await client.embeddings.create({ model: 'm1', input: ['one', 'two'], encoding_format }).withResponse();
    assert.equal(response.headers.get('content-encoding'), 'gzip', encoding_format);
    assert.equal(data.data.length, 2);
    assert.equal(data.data[0].embedding.length, DIM);
    // the same vectors as a plain answer to a client that did not ask for gzip
    const plain = await postJson(`${gw.url}/v1/embeddings`, { model: 'm1', input: ['one', 'two'], encoding_format: 'float' });
    assert.equal(plain.headers['content-encoding'], undefined);
    const want = JSON.parse(plain.raw.toString()).data[0].embedding;
    assert.deepEqual(data.data[0].embedding, encoding_format === 'float' ? want : want.map(Math.fround));
  }
});

test('curl --compressed gets gzip with a Content-Length; a client that does not ask gets plain JSON', async () => {
  const body = JSON.stringify({ model: 'm1', input: 'hello' });
  const r = spawnSync('curl', ['-s', '--compressed', '-D', '-', '-H', 'content-type: application/json', '-d', body, `${gw.url}/v1/embeddings`], {
    encoding: 'utf8',
  });
  const [head, json] = r.stdout.split('\r\n\r\n');
  assert.match(head, /^content-encoding: gzip$/im);
  assert.match(head, /^vary: Accept-Encoding$/im);
  const wire = Number(head.match(/^content-length: (\d+)$/im)[1]);
  assert.equal(JSON.parse(json).data[0].embedding.length, DIM);
  assert.ok(wire < Buffer.byteLength(json) / 1.5, `gzip ${wire} bytes vs plain ${Buffer.byteLength(json)}`);

  const plain = await postJson(`${gw.url}/v1/embeddings`, { model: 'm1', input: 'hello' });
  assert.equal(plain.headers['content-encoding'], undefined);
  assert.equal(Number(plain.headers['content-length']), plain.raw.length);
  assert.equal(JSON.parse(plain.raw.toString()).data[0].embedding.length, DIM);
  // q=0 refuses gzip
  const refused = await postJson(`${gw.url}/v1/embeddings`, { model: 'm1', input: 'hello' }, { 'accept-encoding': 'gzip;q=0, br' });
  assert.equal(refused.headers['content-encoding'], undefined);

  // Ollama embeddings, /metrics: gzip when asked and large enough; a small listing stays plain.
  const oll = await postJson(`${gw.url}/api/embed`, { model: 'm1', input: 'hello' }, { 'accept-encoding': 'gzip' });
  assert.equal(oll.headers['content-encoding'], 'gzip');
  assert.equal(JSON.parse(decode(oll)).embeddings[0].length, DIM);
  const metrics = await rawHttp(`${gw.url}/metrics`, { headers: { 'accept-encoding': 'gzip' } });
  assert.equal(metrics.headers['content-encoding'], 'gzip');
  assert.match(decode(metrics), /gridgate_requests_total/);
  const models = await rawHttp(`${gw.url}/v1/models`, { headers: { 'accept-encoding': 'gzip' } });
  assert.ok(models.raw.length < 1024);
  assert.equal(models.headers['content-encoding'], undefined);
});

test('gzip request bodies are inflated and routed; corrupt gzip is a 400 in the caller dialect; other codings 415', async () => {
  const gz = (o) => zlib.gzipSync(JSON.stringify(o));
  const h = { 'content-type': 'application/json', 'content-encoding': 'gzip' };
  const oa = await rawHttp(`${gw.url}/v1/embeddings`, { method: 'POST', headers: h, body: gz({ model: 'm1', input: ['a', 'b', 'c'] }) });
  assert.equal(oa.status, 200, decode(oa));
  assert.equal(JSON.parse(decode(oa)).data.length, 3);
  // Ollama dialect, translated for the vLLM backend
  const ol = await rawHttp(`${gw.url}/api/chat`, {
    method: 'POST',
    headers: h,
    body: gz({ model: 'm1', stream: false, messages: [{ role: 'user', content: 'hi' }] }),
  });
  assert.equal(ol.status, 200, decode(ol));
  assert.equal(JSON.parse(decode(ol)).message.role, 'assistant');
  // an unknown model inside a gzip body is still found to be unknown: the body was read
  const nf = await rawHttp(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: h, body: gz({ model: 'ghost', messages: [] }) });
  assert.equal(nf.status, 404);

  const corrupt = Buffer.from(gz({ model: 'm1', input: 'x'.repeat(200) }));
  corrupt[20] ^= 0xff;
  const c1 = await rawHttp(`${gw.url}/v1/embeddings`, { method: 'POST', headers: h, body: corrupt });
  assert.equal(c1.status, 400);
  assert.equal(JSON.parse(c1.raw.toString()).error.code, 'invalid_gzip');
  const c2 = await rawHttp(`${gw.url}/api/embed`, { method: 'POST', headers: h, body: Buffer.from('not gzip at all') });
  assert.equal(c2.status, 400);
  assert.equal(typeof JSON.parse(c2.raw.toString()).error, 'string'); // Ollama's {"error": "..."}
  const br = await rawHttp(`${gw.url}/v1/embeddings`, { method: 'POST', headers: { ...h, 'content-encoding': 'br' }, body: 'x' });
  assert.equal(br.status, 415);
  // still serving
  assert.equal((await http('GET', `${gw.url}/health`)).status, 200);
});

test('a 10 GiB zip bomb gets 413 with flat memory, by ratio and by size', async () => {
  const b = bomb(10);
  assert.ok(b.length < 12 << 20, `${b.length} bytes on the wire`);
  const h = { 'content-type': 'application/json', 'content-encoding': 'gzip' };
  const before = rssKiB(gw.child.pid);
  for (const path of ['/v1/embeddings', '/api/embed']) {
    const r = await rawHttp(`${gw.url}${path}`, { method: 'POST', headers: h, body: b });
    assert.equal(r.status, 413);
    assert.match(r.raw.toString(), /expands more than 100 times/);
  }
  // Without a ratio limit the size limit stops it after 4 MiB of output.
  const cfg = await writeConfig({ limits: { max_body_bytes: 16 << 20 }, compression: { max_ratio: 0, max_inflated_bytes: 4 << 20 } });
  const gw2 = await gridgate(['--config', cfg, '--threads', '1', '--backend', `${sim.url}#kind=vllm`]);
  const before2 = rssKiB(gw2.child.pid);
  const r = await rawHttp(`${gw2.url}/v1/embeddings`, { method: 'POST', headers: h, body: b });
  assert.equal(r.status, 413);
  assert.match(r.raw.toString(), /inflates past 4194304 bytes/);
  // The compressed body itself (~10 MB, buffered by h2o) plus at most twice the limit; nowhere near 10 GiB.
  const grew = Math.max(rssKiB(gw.child.pid) - before, rssKiB(gw2.child.pid) - before2);
  assert.ok(grew < 96 * 1024, `RSS grew by ${grew} KiB`);
  await gw2.stop();
});

/** Streams one chat completion and reports, per socket read, how many SSE events had decoded so far. */
async function streamReads(url, acceptGzip) {
  const r = await postJson(
    `${url}/v1/chat/completions`,
    { model: 'm1', stream: true, max_tokens: 12, messages: [{ role: 'user', content: 'hi' }] },
    acceptGzip ? { 'accept-encoding': 'gzip' } : {},
  );
  const counts = [];
  let acc = Buffer.alloc(0);
  for (const chunk of r.reads) {
    acc = Buffer.concat([acc, chunk]);
    const text = r.headers['content-encoding'] === 'gzip' ? zlib.gunzipSync(acc, { finishFlush: zlib.constants.Z_SYNC_FLUSH }).toString() : acc.toString();
    counts.push(sseEvents(text.slice(0, text.lastIndexOf('\n\n') + 2)).length);
  }
  return { r, counts, events: sseEvents(decode(r)) };
}

test('SSE is never delayed by compression: off by default, and every event flushed when it is on', async () => {
  const slow = await enginesim('vllm', ['m1'], ['--decode-ms', '50']);
  const cfg = await writeConfig({ compression: { stream: true } });
  const gzgw = await gridgate(['--config', cfg, '--threads', '1', '--backend', `${slow.url}#kind=vllm`]);
  const plaingw = await gridgate(['--threads', '1', '--backend', `${slow.url}#kind=vllm`]);
  await waitModels(gzgw, ['m1']);
  await waitModels(plaingw, ['m1']);

  const off = await streamReads(plaingw.url, true);
  assert.equal(off.r.headers['content-encoding'], undefined);
  assert.equal(off.events.at(-1), '[DONE]');

  const on = await streamReads(gzgw.url, true);
  assert.equal(on.r.headers['content-encoding'], 'gzip');
  assert.equal(on.events.at(-1), '[DONE]');
  const content = on.events.slice(0, -1).map((e) => e.choices[0]?.delta?.content ?? '').join('');
  assert.equal(content, off.events.slice(0, -1).map((e) => e.choices[0]?.delta?.content ?? '').join(''));
  // Events arrive spread over separate reads, each decodable on arrival: the count grows read after read.
  const grew = on.counts.filter((n, i) => n > (i ? on.counts[i - 1] : 0)).length;
  assert.ok(grew >= 10, `events decoded at ${grew} separate reads: ${on.counts}`);
  // A client without Accept-Encoding gets a plain stream from the same gateway.
  const plain = await streamReads(gzgw.url, false);
  assert.equal(plain.r.headers['content-encoding'], undefined);
  assert.equal(plain.events.at(-1), '[DONE]');
  await gzgw.stop();
  await plaingw.stop();
  await slow.stop();
});

/** An engine behind a compressing reverse proxy: GETs plain (what the control plane probes), every POST answer
 * gzip whatever the request said; a chat stream is gzip SSE flushed per event. */
async function gzipEngine() {
  const seen = [];
  let last = null;
  let mode = 'ok'; // 'corrupt': a broken gzip body; 'notjson': valid gzip of something that is not JSON
  const server = nodeHttp.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      if (req.method === 'GET') {
        const answers = {
          '/version': { version: '0.9.0' },
          '/health': {},
          '/v1/models': { object: 'list', data: [{ id: 'gz-model', object: 'model', owned_by: 'x' }] },
        };
        if (req.url === '/metrics') return res.end('vllm:num_requests_running 0\n');
        if (!answers[req.url]) return res.writeHead(404).end();
        return res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(answers[req.url]));
      }
      const j = JSON.parse(body);
      seen.push({ path: req.url, acceptEncoding: req.headers['accept-encoding'] ?? null, contentEncoding: req.headers['content-encoding'] ?? null });
      if (mode !== 'ok') {
        const bad = mode === 'corrupt' ? Buffer.from('\x1f\x8b\x08 broken') : zlib.gzipSync('<html>proxy error</html>');
        return res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip' }).end(bad);
      }
      if (j.stream) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': 'gzip' });
        const z = zlib.createGzip();
        z.pipe(res);
        const words = ['alpha ', 'beta ', 'gamma'];
        words.forEach((w, i) => {
          const fin = i === words.length - 1 ? 'stop' : null;
          z.write(`data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', model: 'gz-model', choices: [{ index: 0, delta: { content: w }, finish_reason: fin }] })}\n\n`);
          z.flush();
        });
        z.write(`data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', model: 'gz-model', choices: [], usage: { prompt_tokens: 4, completion_tokens: 3, total_tokens: 7 } })}\n\n`);
        z.end('data: [DONE]\n\n');
        return;
      }
      let out;
      if (req.url === '/v1/embeddings') {
        const inputs = Array.isArray(j.input) ? j.input : [j.input];
        out = { object: 'list', model: 'gz-model', data: inputs.map((_, i) => ({ object: 'embedding', index: i, embedding: Array.from({ length: 64 }, (_, k) => (k - 32) / 64) })), usage: { prompt_tokens: 2, total_tokens: 2 } };
      } else {
        out = { id: 'c2', object: 'chat.completion', model: 'gz-model', choices: [{ index: 0, message: { role: 'assistant', content: 'zipped hello' }, finish_reason: 'stop' }], usage: { prompt_tokens: 5, completion_tokens: 9, total_tokens: 14 } };
      }
      last = zlib.gzipSync(JSON.stringify(out));
      res.writeHead(200, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'content-length': last.length }).end(last);
    });
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${server.address().port}`, seen, last: () => last, setMode: (v) => (mode = v) };
}

test('upstream gzip: passed through unchanged to a client that takes gzip, inflated otherwise and to translate', async () => {
  const eng = await gzipEngine();
  const g = await gridgate(['--threads', '1', '--backend', `${eng.url}#kind=vllm`]);
  try {
    await waitModels(g, ['gz-model']);
    const req = { model: 'gz-model', input: ['x', 'y'] };
    const pass = await postJson(`${g.url}/v1/embeddings`, req, { 'accept-encoding': 'gzip' });
    assert.equal(pass.status, 200);
    assert.equal(pass.headers['content-encoding'], 'gzip');
    assert.ok(pass.raw.equals(eng.last()), 'the engine gzip bytes, unchanged');
    assert.equal(eng.seen.at(-1).acceptEncoding, 'gzip'); // asked for, since it could go through as is

    const plain = await postJson(`${g.url}/v1/embeddings`, req);
    assert.equal(plain.headers['content-encoding'], undefined);
    assert.equal(JSON.parse(plain.raw.toString()).data.length, 2);
    assert.equal(eng.seen.at(-1).acceptEncoding, null);

    // Ollama dialect: gridgate must read the gzip answer to translate it.
    const oll = await postJson(`${g.url}/api/chat`, { model: 'gz-model', stream: false, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(oll.status, 200, oll.raw.toString());
    const oj = JSON.parse(oll.raw.toString());
    assert.equal(oj.message.content, 'zipped hello');
    assert.equal(oj.eval_count, 9);

    // A gzip SSE stream is inflated for a client that did not ask for gzip, and its usage counted.
    const st = await postJson(`${g.url}/v1/chat/completions`, { model: 'gz-model', stream: true, messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(st.headers['content-encoding'], undefined);
    const ev = sseEvents(st.raw.toString());
    assert.equal(ev.at(-1), '[DONE]');
    assert.equal(ev.slice(0, -1).map((e) => e.choices[0]?.delta?.content ?? '').join(''), 'alpha beta gamma');
    // ... and translated to Ollama NDJSON.
    const ost = await postJson(`${g.url}/api/chat`, { model: 'gz-model', messages: [{ role: 'user', content: 'hi' }] });
    const lines = ost.raw.toString().trim().split('\n').map((l) => JSON.parse(l));
    assert.equal(lines.map((l) => l.message?.content ?? '').join(''), 'alpha beta gamma');
    assert.equal(lines.at(-1).done, true);

    // Tokens were counted from the inflated bodies (pass-through included: 9 out from the two chats, 3+3 from streams).
    const m = (await http('GET', `${g.url}/metrics`)).body;
    const out = m.split('\n').filter((l) => l.startsWith('gridgate_tokens_total') && l.includes('gz-model') && l.includes('"out"'));
    assert.equal(out.reduce((s, l) => s + Number(l.split(' ').at(-1)), 0), 9 + 3 + 3);

    eng.setMode('corrupt');
    const bad = await postJson(`${g.url}/v1/chat/completions`, { model: 'gz-model', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(bad.status, 502);
    assert.match(bad.raw.toString(), /gzip/);
    // Valid gzip of a body that is not JSON is not passed through either, even to a client that takes gzip.
    eng.setMode('notjson');
    const nj = await postJson(`${g.url}/v1/embeddings`, req, { 'accept-encoding': 'gzip' });
    assert.equal(nj.status, 502);
    assert.match(decode(nj), /not valid JSON/);
  } finally {
    await g.stop();
    eng.server.close();
  }
});
