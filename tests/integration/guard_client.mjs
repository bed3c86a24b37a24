// A client for guard.test.mjs, run inside the test's client network namespace (ip netns exec): connects or sends
// requests one after another from a given source address and prints what happened as one JSON line. Not a test.
//   node guard_client.mjs connect SRC HOST PORT COUNT TIMEOUT_MS   -> [true|false, ...]  (connected within the timeout)
//   node guard_client.mjs refill SRC HOST PORT COUNT TIMEOUT_MS    -> like connect, but stops one attempt after the first
//                                                                     success (the attempts run back to back)
//   node guard_client.mjs http SRC HOST PORT COUNT KEY             -> [status|0, ...]    (POST /v1/chat/completions)
import net from 'node:net';

const [op, src, host, portS, countS, arg] = process.argv.slice(2);
const port = Number(portS), count = Math.min(Number(countS), 1000);

function connectOnce(timeoutMs) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port, localAddress: src });
    const t = setTimeout(() => { s.destroy(); resolve(false); }, timeoutMs);
    s.on('connect', () => { clearTimeout(t); s.destroy(); resolve(true); });
    s.on('error', () => { clearTimeout(t); s.destroy(); resolve(false); });
  });
}

function httpOnce(key) {
  return new Promise((resolve) => {
    const body = JSON.stringify({ model: 'm1', messages: [{ role: 'user', content: 'hi' }] });
    const s = net.connect({ host, port, localAddress: src });
    let data = '';
    const t = setTimeout(() => { s.destroy(); resolve(0); }, 3000);
    s.on('connect', () => s.write(`POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${key}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`));
    s.on('data', (d) => (data += d));
    const done = () => { clearTimeout(t); resolve(Number((data.match(/^HTTP\/1\.1 (\d+)/) || [0, 0])[1])); };
    s.on('close', done);
    s.on('error', () => {});
  });
}

const out = [];
for (let i = 0; i < count; i++) {
  out.push(op === 'http' ? await httpOnce(arg) : await connectOnce(Number(arg)));
  if (op === 'refill' && out.at(-1) === true) {
    out.push(await connectOnce(Number(arg)));
    break;
  }
}
console.log(JSON.stringify(out));
