// enginesim: each flavour's wire surface (paths, status codes, content types, fields, SSE/NDJSON framing),
// robustness (bad JSON, wrong method, oversized body, unknown path), and ComfyUI's prompt/history/view/WebSocket.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import crypto from 'node:crypto';
import { enginesim, http, rawRequest, sseEvents, ndjson } from '../lib/harness.mjs';

const chatBody = (model, extra = {}) => ({ model, messages: [{ role: 'user', content: 'Tell me about gateways' }], ...extra });

async function stillServing(url) {
  const r = await http('GET', `${url}/_sim/stats`);
  assert.equal(r.status, 200);
  return r.json;
}

test('vllm: OpenAI chat, stream deltas equal non-stream content, usage chunk, [DONE]', async () => {
  const sim = await enginesim('vllm', ['m1', 'm2']);
  const models = await http('GET', `${sim.url}/v1/models`);
  assert.equal(models.status, 200);
  assert.deepEqual(models.json.data.map((m) => m.id), ['m1', 'm2']);
  assert.equal(models.json.object, 'list');

  const full = await http('POST', `${sim.url}/v1/chat/completions`, { body: chatBody('m1', { seed: 7 }) });
  assert.equal(full.status, 200);
  assert.match(full.headers.get('content-type'), /application\/json/);
  assert.equal(full.json.object, 'chat.completion');
  assert.equal(full.json.choices[0].message.role, 'assistant');
  assert.equal(full.json.choices[0].finish_reason, 'stop');
  assert.equal(full.json.usage.completion_tokens, 16);
  assert.equal(full.json.usage.prompt_tokens, Math.ceil('Tell me about gateways'.length / 4));
  assert.equal(full.json.usage.total_tokens, full.json.usage.prompt_tokens + 16);

  const st = await http('POST', `${sim.url}/v1/chat/completions`, {
    body: chatBody('m1', { seed: 7, stream: true, stream_options: { include_usage: true } }),
  });
  assert.equal(st.status, 200);
  assert.match(st.headers.get('content-type'), /text\/event-stream/);
  assert.ok(st.body.endsWith('data: [DONE]\n\n'));
  const ev = sseEvents(st.body);
  assert.equal(ev.at(-1), '[DONE]');
  assert.deepEqual(ev[0].choices[0].delta, { role: 'assistant', content: '' });
  const usage = ev.at(-2);
  assert.deepEqual(usage.choices, []);
  assert.equal(usage.usage.completion_tokens, 16);
  const finish = ev.at(-3);
  assert.equal(finish.choices[0].finish_reason, 'stop');
  const content = ev.slice(1, -3).map((e) => e.choices[0].delta.content).join('');
  assert.equal(content, full.json.choices[0].message.content);
  assert.equal(ev.slice(1, -3).length, 16, 'one SSE event per token');
  for (const e of ev.slice(0, -1)) assert.equal(e.object, 'chat.completion.chunk');

  // another seed gives other content; same seed again the same
  const other = await http('POST', `${sim.url}/v1/chat/completions`, { body: chatBody('m1', { seed: 8 }) });
  assert.notEqual(other.json.choices[0].message.content, full.json.choices[0].message.content);

  // max_tokens cuts with finish_reason length; max_completion_tokens too
  const cut = await http('POST', `${sim.url}/v1/chat/completions`, { body: chatBody('m1', { max_tokens: 3 }) });
  assert.equal(cut.json.choices[0].finish_reason, 'length');
  assert.equal(cut.json.usage.completion_tokens, 3);
  const cut2 = await http('POST', `${sim.url}/v1/chat/completions`, { body: chatBody('m1', { max_completion_tokens: 5 }) });
  assert.equal(cut2.json.usage.completion_tokens, 5);
  const long = await http('POST', `${sim.url}/v1/chat/completions`, { body: chatBody('m1', { max_tokens: 40, ignore_eos: true }) });
  assert.equal(long.json.usage.completion_tokens, 40);
});

test('vllm: completions, embeddings float and base64, metrics, health, version', async () => {
  const sim = await enginesim('vllm', ['m1']);
  const c = await http('POST', `${sim.url}/v1/completions`, { body: { model: 'm1', prompt: 'Once upon a time', max_tokens: 4 } });
  assert.equal(c.status, 200);
  assert.equal(c.json.object, 'text_completion');
  assert.equal(c.json.usage.completion_tokens, 4);
  const cs = await http('POST', `${sim.url}/v1/completions`, { body: { model: 'm1', prompt: 'Once upon a time', max_tokens: 4, stream: true } });
  const ev = sseEvents(cs.body);
  assert.equal(ev.at(-1), '[DONE]');
  assert.equal(ev.slice(0, -2).map((e) => e.choices[0].text).join(''), c.json.choices[0].text);
  assert.equal(ev.at(-2).choices[0].finish_reason, 'length');

  const f = await http('POST', `${sim.url}/v1/embeddings`, { body: { model: 'm1', input: ['alpha', 'beta'] } });
  assert.equal(f.status, 200);
  assert.equal(f.json.data.length, 2);
  assert.equal(f.json.data[0].embedding.length, 384);
  const b = await http('POST', `${sim.url}/v1/embeddings`, { body: { model: 'm1', input: ['alpha', 'beta'], encoding_format: 'base64' } });
  for (let i = 0; i < 2; i++) {
    const buf = Buffer.from(b.json.data[i].embedding, 'base64');
    const floats = new Float32Array(buf.buffer, buf.byteOffset, buf.length / 4);
    assert.equal(floats.length, 384);
    assert.deepEqual(Array.from(floats), f.json.data[i].embedding.map(Math.fround));
  }
  assert.notDeepEqual(f.json.data[0].embedding, f.json.data[1].embedding);
  const bad = await http('POST', `${sim.url}/v1/embeddings`, { body: { model: 'm1', input: 'x', encoding_format: 'hex' } });
  assert.equal(bad.status, 400);

  const health = await http('GET', `${sim.url}/health`);
  assert.equal(health.status, 200);
  assert.equal((await http('GET', `${sim.url}/version`)).json.version.length > 0, true);
  const m = await http('GET', `${sim.url}/metrics`);
  assert.match(m.headers.get('content-type'), /text\/plain/);
  for (const name of ['vllm:num_requests_running', 'vllm:num_requests_waiting', 'vllm:kv_cache_usage_perc', 'vllm:time_to_first_token_seconds_bucket'])
    assert.ok(m.body.includes(name), name);
  const count = Number(m.body.match(/vllm:time_to_first_token_seconds_count\{[^}]*\} (\d+)/)[1]);
  assert.equal(count, 2, 'one observed TTFT per generation request');
});

test('robustness: bad JSON 400, wrong method 405, unknown path 404, oversized 413, unknown model 404, still serving', async () => {
  const sim = await enginesim('vllm', ['m1'], ['--max-body-mb', '1']);
  const bad = await http('POST', `${sim.url}/v1/chat/completions`, { body: '{"model": "m1", "messages": [', headers: { 'content-type': 'application/json' } });
  assert.equal(bad.status, 400);
  assert.equal(typeof bad.json.error.message, 'string');
  assert.ok('type' in bad.json.error && 'param' in bad.json.error && 'code' in bad.json.error);
  await stillServing(sim.url);
  const wm = await http('GET', `${sim.url}/v1/chat/completions`);
  assert.equal(wm.status, 405);
  assert.ok(wm.json.error);
  const nf = await http('GET', `${sim.url}/nope`);
  assert.equal(nf.status, 404);
  assert.ok(nf.json.error);
  const um = await http('POST', `${sim.url}/v1/chat/completions`, { body: chatBody('ghost') });
  assert.equal(um.status, 404);
  assert.match(um.json.error.message, /ghost/);
  const empty = await http('POST', `${sim.url}/v1/chat/completions`, { body: { model: 'm1', messages: [] } });
  assert.equal(empty.status, 400);
  // Declared over the limit, and no body sent: the answer comes from the length alone, and no unread body bytes
  // can turn the server's close into a reset that races the 413 to the client.
  const big = await rawRequest(new URL(sim.url).port,
    `POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${2 << 20}\r\n\r\n`);
  assert.match(big, /^HTTP\/1\.1 413 /);
  const st = await stillServing(sim.url);
  assert.equal(st.completed, 0);
  const ok = await http('POST', `${sim.url}/v1/chat/completions`, { body: chatBody('m1') });
  assert.equal(ok.status, 200);
});

test('ollama: root, version, tags, NDJSON chat and generate, durations, load/unload, ps, show, pull, embed', async () => {
  const sim = await enginesim('ollama', ['llama3', 'qwen2:7b']);
  const root = await http('GET', `${sim.url}/`);
  assert.equal(root.body, 'Ollama is running');
  assert.match((await http('GET', `${sim.url}/api/version`)).json.version, /^\d+\.\d+\.\d+$/);
  const tags = await http('GET', `${sim.url}/api/tags`);
  assert.deepEqual(tags.json.models.map((m) => m.name), ['llama3:latest', 'qwen2:7b']);
  assert.ok(tags.json.models[0].details.quantization_level);

  assert.deepEqual((await http('GET', `${sim.url}/api/ps`)).json.models, [], 'nothing loaded before first use');
  const chat = await http('POST', `${sim.url}/api/chat`, { body: { model: 'llama3', messages: [{ role: 'user', content: 'hi there' }] } });
  assert.equal(chat.status, 200);
  assert.equal(chat.headers.get('content-type'), 'application/x-ndjson');
  const lines = ndjson(chat.body);
  const last = lines.at(-1);
  assert.equal(last.done, true);
  assert.equal(last.done_reason, 'stop');
  assert.equal(last.eval_count, 16);
  assert.equal(last.prompt_eval_count, 2);
  for (const k of ['total_duration', 'load_duration', 'prompt_eval_duration', 'eval_duration']) assert.equal(typeof last[k], 'number', k);
  assert.ok(lines.slice(0, -1).every((l) => l.done === false && l.message.role === 'assistant'));
  const streamed = lines.map((l) => l.message.content).join('');
  const nons = await http('POST', `${sim.url}/api/chat`, { body: { model: 'llama3', stream: false, messages: [{ role: 'user', content: 'hi there' }] } });
  assert.match(nons.headers.get('content-type'), /application\/json/);
  assert.equal(nons.json.message.content, streamed);
  assert.equal(nons.json.done, true);

  const gen = await http('POST', `${sim.url}/api/generate`, { body: { model: 'llama3', prompt: 'why?', options: { num_predict: 5 } } });
  const gl = ndjson(gen.body);
  assert.equal(gl.at(-1).done_reason, 'length');
  assert.equal(gl.at(-1).eval_count, 5);
  assert.equal(gl.slice(0, -1).length, 5);
  assert.ok(Array.isArray(gl.at(-1).context));

  const ps = await http('GET', `${sim.url}/api/ps`);
  assert.deepEqual(ps.json.models.map((m) => m.name), ['llama3:latest']);
  assert.ok(ps.json.models[0].size_vram > 0);
  assert.ok(Date.parse(ps.json.models[0].expires_at) > Date.now());

  // empty prompt loads, keep_alive 0 unloads
  const load = await http('POST', `${sim.url}/api/generate`, { body: { model: 'qwen2:7b' } });
  assert.equal(load.json.done, true);
  assert.equal(load.json.done_reason, 'load');
  assert.equal((await http('GET', `${sim.url}/api/ps`)).json.models.length, 2);
  const unload = await http('POST', `${sim.url}/api/chat`, { body: { model: 'qwen2:7b', messages: [], keep_alive: 0 } });
  assert.equal(unload.json.done_reason, 'unload');
  assert.deepEqual((await http('GET', `${sim.url}/api/ps`)).json.models.map((m) => m.name), ['llama3:latest']);

  const show = await http('POST', `${sim.url}/api/show`, { body: { model: 'llama3' } });
  assert.equal(show.status, 200);
  assert.ok(show.json.details && show.json.model_info);
  assert.equal((await http('POST', `${sim.url}/api/show`, { body: { model: 'nope' } })).status, 404);
  const pull = await http('POST', `${sim.url}/api/pull`, { body: { model: 'phi3' } });
  const pl = ndjson(pull.body);
  assert.equal(pl[0].status, 'pulling manifest');
  assert.equal(pl.at(-1).status, 'success');
  assert.ok((await http('GET', `${sim.url}/api/tags`)).json.models.some((m) => m.name === 'phi3:latest'));

  const emb = await http('POST', `${sim.url}/api/embed`, { body: { model: 'llama3', input: ['a', 'b'] } });
  assert.equal(emb.json.embeddings.length, 2);
  assert.equal(emb.json.embeddings[0].length, 384);
  const emb1 = await http('POST', `${sim.url}/api/embeddings`, { body: { model: 'llama3', prompt: 'a' } });
  assert.deepEqual(emb1.json.embedding, emb.json.embeddings[0]);

  const um = await http('POST', `${sim.url}/api/chat`, { body: { model: 'ghost', messages: [{ role: 'user', content: 'x' }] } });
  assert.equal(um.status, 404);
  assert.equal(typeof um.json.error, 'string');
  const bad = await http('POST', `${sim.url}/api/generate`, { body: '{"model":', headers: { 'content-type': 'application/json' } });
  assert.equal(bad.status, 400);
  assert.equal(typeof bad.json.error, 'string');
  assert.equal((await http('GET', `${sim.url}/api/chat`)).status, 405);
  // the OpenAI shim on ollama
  const shim = await http('POST', `${sim.url}/v1/chat/completions`, { body: { model: 'llama3', messages: [{ role: 'user', content: 'hi there' }] } });
  assert.equal(shim.json.choices[0].message.content, nons.json.message.content);
  assert.ok((await http('GET', `${sim.url}/v1/models`)).json.data.some((m) => m.id === 'llama3:latest'));
});

test('sglang, llamacpp, lmstudio, mlx: their own routes', async () => {
  const sg = await enginesim('sglang', ['qwen']);
  assert.equal((await http('GET', `${sg.url}/health`)).status, 200);
  assert.equal((await http('GET', `${sg.url}/get_model_info`)).json.model_path, 'qwen');
  assert.equal((await http('GET', `${sg.url}/get_server_info`)).status, 200);
  assert.equal((await http('GET', `${sg.url}/server_info`)).status, 200);
  const sm = (await http('GET', `${sg.url}/metrics`)).body;
  for (const n of ['sglang:num_running_reqs', 'sglang:num_queue_reqs', 'sglang:token_usage']) assert.ok(sm.includes(n), n);
  assert.equal((await http('POST', `${sg.url}/v1/chat/completions`, { body: chatBody('qwen') })).status, 200);

  const lc = await enginesim('llamacpp', ['gguf'], ['--load-ms', '400']);
  const h1 = await http('GET', `${lc.url}/health`);
  assert.equal(h1.status, 503);
  assert.equal(h1.json.error.message, 'Loading model');
  let h2;
  for (let i = 0; i < 100; i++) {
    h2 = await http('GET', `${lc.url}/health`);
    if (h2.status === 200) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.deepEqual(h2.json, { status: 'ok' });
  const props = await http('GET', `${lc.url}/props`);
  assert.equal(props.json.total_slots, 8);
  const slots = await http('GET', `${lc.url}/slots`);
  assert.equal(slots.json.length, 8);
  assert.ok(slots.json.every((s) => s.is_processing === false));
  const lm = (await http('GET', `${lc.url}/metrics`)).body;
  for (const n of ['llamacpp:requests_processing', 'llamacpp:requests_deferred', 'llamacpp:kv_cache_usage_ratio']) assert.ok(lm.includes(n), n);

  const ls = await enginesim('lmstudio', ['a', 'b']);
  let v0 = await http('GET', `${ls.url}/api/v0/models`);
  assert.deepEqual(v0.json.data.map((m) => m.state), ['not-loaded', 'not-loaded']);
  await http('POST', `${ls.url}/v1/chat/completions`, { body: chatBody('b') });
  v0 = await http('GET', `${ls.url}/api/v0/models`);
  assert.deepEqual(v0.json.data.map((m) => m.state), ['not-loaded', 'loaded']);

  const mlx = await enginesim('mlx', ['mlx-m']);
  assert.equal((await http('GET', `${mlx.url}/health`)).status, 200);
  assert.equal((await http('GET', `${mlx.url}/v1/models`)).json.data[0].id, 'mlx-m');
  assert.equal((await http('POST', `${mlx.url}/v1/completions`, { body: { model: 'mlx-m', prompt: 'x' } })).status, 200);
  assert.equal((await http('POST', `${mlx.url}/v1/embeddings`, { body: { model: 'mlx-m', input: 'x' } })).status, 404);
});

/** Minimal WebSocket client (node 20 has none): handshake, then collects text frames as parsed JSON. */
function wsConnect(port, path) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const key = crypto.randomBytes(16).toString('base64');
    let buf = Buffer.alloc(0);
    let open = false;
    const messages = [];
    const waiters = [];
    const check = () => {
      for (let i = waiters.length - 1; i >= 0; i--) if (waiters[i].pred(messages)) waiters.splice(i, 1)[0].resolve(messages);
    };
    sock.on('connect', () =>
      sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: ${key}\r\nSec-WebSocket-Version: 13\r\n\r\n`));
    sock.on('error', reject);
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      if (!open) {
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = buf.subarray(0, end).toString();
        if (!/^HTTP\/1\.1 101/.test(head)) return reject(new Error(head));
        const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
        assert.match(head, new RegExp(`sec-websocket-accept: ${accept.replace(/[+/]/g, '\\$&')}`, 'i'));
        buf = buf.subarray(end + 4);
        open = true;
        resolve(ws);
      }
      while (buf.length >= 2) {
        let len = buf[1] & 0x7f;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) return;
          len = buf.readUInt16BE(2);
          off = 4;
        } else if (len === 127) {
          if (buf.length < 10) return;
          len = Number(buf.readBigUInt64BE(2));
          off = 10;
        }
        if (buf.length < off + len) return;
        const op = buf[0] & 0x0f;
        if (op === 1) messages.push(JSON.parse(buf.subarray(off, off + len).toString()));
        buf = buf.subarray(off + len);
      }
      check();
    });
    const ws = {
      messages,
      until(pred, ms = 5000) {
        return new Promise((res, rej) => {
          const w = { pred, resolve: res };
          waiters.push(w);
          check();
          setTimeout(() => rej(new Error(`ws timeout; got ${JSON.stringify(messages.map((m) => m.type))}`)), ms).unref();
        });
      },
      close: () => sock.destroy(),
    };
  });
}

const workflow = {
  3: { class_type: 'KSampler', inputs: { steps: 5, seed: 1, model: ['4', 0] } },
  4: { class_type: 'CheckpointLoaderSimple', inputs: { ckpt_name: 'sd.safetensors' } },
  9: { class_type: 'SaveImage', inputs: { images: ['3', 0], filename_prefix: 'x' } },
};

test('comfyui: prompt, WebSocket messages, history, view, queue, system_stats, /api prefix, bad workflow', async () => {
  const sim = await enginesim('comfyui', ['sd.safetensors']);
  const ws = await wsConnect(sim.port, '/ws?clientId=c1');
  await ws.until((m) => m.some((x) => x.type === 'status' && x.data.sid === 'c1'));
  const other = await wsConnect(sim.port, '/ws?clientId=c2');

  const r = await http('POST', `${sim.url}/prompt`, { body: { prompt: workflow, client_id: 'c1' } });
  assert.equal(r.status, 200);
  assert.match(r.json.prompt_id, /^[0-9a-f-]{36}$/);
  assert.equal(typeof r.json.number, 'number');
  const id = r.json.prompt_id;
  await ws.until((m) => m.some((x) => x.type === 'execution_success' && x.data.prompt_id === id));
  const types = ws.messages.map((m) => m.type);
  for (const t of ['status', 'execution_start', 'executing', 'progress', 'executed', 'execution_success']) assert.ok(types.includes(t), t);
  assert.ok(types.indexOf('execution_start') < types.indexOf('progress'));
  assert.ok(types.indexOf('executed') < types.indexOf('execution_success'));
  const progress = ws.messages.filter((m) => m.type === 'progress');
  assert.deepEqual(progress.map((p) => p.data.value), [1, 2, 3, 4, 5]);
  assert.ok(progress.every((p) => p.data.max === 5 && p.data.prompt_id === id));
  const executed = ws.messages.find((m) => m.type === 'executed');
  assert.equal(executed.data.node, '9');
  const img = executed.data.output.images[0];
  assert.ok(!other.messages.some((m) => m.type === 'progress'), "another client's socket gets no progress");

  const hist = await http('GET', `${sim.url}/history/${id}`);
  assert.equal(hist.json[id].status.status_str, 'success');
  assert.equal(hist.json[id].status.completed, true);
  assert.deepEqual(hist.json[id].outputs['9'].images[0], img);
  const hist2 = await http('GET', `${sim.url}/api/history/${id}`);
  assert.deepEqual(hist2.json, hist.json);
  assert.deepEqual((await http('GET', `${sim.url}/history/unknown`)).json, {});
  assert.ok(id in (await http('GET', `${sim.url}/history`)).json, 'the whole history lists the prompt');
  assert.ok(id in (await http('GET', `${sim.url}/api/history`)).json, 'also under /api');

  const view = await fetch(`${sim.url}/view?filename=${encodeURIComponent(img.filename)}&subfolder=&type=output`);
  assert.equal(view.status, 200);
  assert.equal(view.headers.get('content-type'), 'image/png');
  const png = Buffer.from(await view.arrayBuffer());
  assert.deepEqual([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  assert.equal((await fetch(`${sim.url}/view?filename=nope.png`)).status, 404);

  const q = await http('GET', `${sim.url}/api/queue`);
  assert.deepEqual(q.json, { queue_running: [], queue_pending: [] });
  const ss = await http('GET', `${sim.url}/system_stats`);
  assert.ok(ss.json.system && Array.isArray(ss.json.devices));

  const bad = await http('POST', `${sim.url}/prompt`, { body: { prompt: { 1: { class_type: 'KSampler', inputs: {} } } } });
  assert.equal(bad.status, 400);
  assert.equal(bad.json.error.type, 'prompt_no_outputs');
  assert.ok('node_errors' in bad.json);
  const bad2 = await http('POST', `${sim.url}/api/prompt`, { body: { prompt: { 1: { inputs: {} }, 2: { class_type: 'SaveImage', inputs: {} } } } });
  assert.equal(bad2.status, 400);
  assert.ok(bad2.json.node_errors['1']);
  assert.equal((await http('POST', `${sim.url}/prompt`, { body: '{', headers: { 'content-type': 'application/json' } })).status, 400);
  assert.equal((await http('POST', `${sim.url}/interrupt`)).status, 200);
  ws.close();
  other.close();
  await stillServing(sim.url);
});

test('comfyui: interrupt stops the running prompt', async () => {
  const sim = await enginesim('comfyui', ['sd'], ['--decode-ms', '50']);
  const ws = await wsConnect(sim.port, '/ws?clientId=me');
  const wf = { ...workflow, 3: { class_type: 'KSampler', inputs: { steps: 1000 } } };
  const r = await http('POST', `${sim.url}/prompt`, { body: { prompt: wf, client_id: 'me' } });
  await ws.until((m) => m.some((x) => x.type === 'progress'));
  assert.equal((await http('GET', `${sim.url}/queue`)).json.queue_running.length, 1);
  await http('POST', `${sim.url}/interrupt`);
  await ws.until((m) => m.some((x) => x.type === 'execution_interrupted'));
  const hist = await http('GET', `${sim.url}/history/${r.json.prompt_id}`);
  assert.equal(hist.json[r.json.prompt_id].status.status_str, 'error');
  ws.close();
});
