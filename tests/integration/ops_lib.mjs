// Helpers shared by the ops_*.test.mjs files: run build/gridctl (async, so the daemons' output keeps flowing),
// give each gridgate its own admin socket, and poll the admin API until a condition holds.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bin, gridgate, sleep } from '../lib/harness.mjs';

/** Runs gridctl with args; resolves {code, stdout, stderr, json (parsed stdout or undefined)}. */
export function gridctl(args, { env = {}, timeoutMs = 15000 } = {}) {
  return new Promise((resolve) => {
    execFile(bin('gridctl'), args, { env: { ...process.env, ...env }, timeout: timeoutMs }, (err, stdout, stderr) => {
      let json;
      try {
        json = JSON.parse(stdout);
      } catch {}
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr, json });
    });
  });
}

/** A fresh unix socket path for an admin listener. */
export function adminSocket() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gg-admin-'));
  return `unix:${path.join(dir, 'admin.sock')}`;
}

/** Starts gridgate with its own admin socket; returns the process with .admin set. */
export async function gridgateWithAdmin(args = [], opts = {}) {
  const admin = adminSocket();
  const gw = await gridgate(['--admin', admin, ...args], opts);
  await gw.waitFor(/admin API on /);
  gw.admin = admin;
  return gw;
}

/** gridctl -j against gw's admin socket. */
export const ctl = (gw, args, opts) => gridctl(['--admin', gw.admin, '-j', ...args], opts);

/** Polls fn() until it returns a truthy value; throws after ms with the last value. */
export async function until(fn, what, ms = 10000) {
  const deadline = Date.now() + ms;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) return last;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(last)}`);
}

/** The backend called name in `gridctl -j backend list`, or undefined. */
export async function backendState(gw, name) {
  const r = await ctl(gw, ['backend', 'list']);
  return r.json?.find((b) => b.name === name);
}
