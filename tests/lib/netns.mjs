// Network namespaces for root tests: a fresh netns (only `lo`, up) per call, named with the test's pid, plus a bpffs
// mounted in a temporary directory. `ip netns exec` remounts /sys, which hides /sys/fs/bpf, so daemons inside pin
// their maps under that bpffs instead, and the test (outside) reads the same pins there with bpftool or gridctl.
// Everything it makes is removed by remove(), which an after() hook also calls, even when a test fails.
import { execFileSync, spawn } from 'node:child_process';
import { after } from 'node:test';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { bin, startProcess } from './harness.mjs';

export const isRoot = process.getuid && process.getuid() === 0;

const made = new Set();
after(async () => {
  for (const ns of [...made]) await ns.remove();
});

let seq = 0;

/**
 * Creates netns `gg-PID-N` with lo up and a bpffs at a temp dir. Returns
 * { name, bpffs, pinPath(sub), start(file, args, opts), gridgate(args), enginesim(flavor, models, extra),
 *   run(file, args), node(fn, ...args), remove() }.
 */
export function netns(tag = 't') {
  const name = `gg-${process.pid}-${tag}-${seq++}`;
  execFileSync('ip', ['netns', 'add', name]);
  const procs = new Set();
  let bpffs = null;
  const ns = {
    name,
    /** A pin path under the namespace's bpffs (gridgate --pin-path). */
    pinPath: (sub = 'gg') => path.join(bpffs, sub),
    /** Starts `file args` inside the namespace (ip netns exec execs it: the pid and signals are the program's). */
    async start(file, args, opts) {
      const p = await startProcess('ip', ['netns', 'exec', name, file, ...args], opts);
      procs.add(p);
      return p;
    },
    /** gridgate inside the namespace, on 127.0.0.1:0 of its own loopback. */
    gridgate(args = []) {
      return ns.start(bin('gridgate'), ['--listen', '127.0.0.1:0', ...args]);
    },
    enginesim(flavor, models = ['llama3'], extra = []) {
      return ns.start(bin('enginesim'), ['--listen', '127.0.0.1:0', '--flavor', flavor, '--models', models.join(','), ...extra]);
    },
    /** Runs a command inside the namespace to completion; returns its stdout. */
    run(file, args, opts = {}) {
      return execFileSync('ip', ['netns', 'exec', name, file, ...args], { ...opts }).toString();
    },
    /**
     * Runs `fn` (a self-contained async function; its source is sent, not its closure) in a node process inside the
     * namespace with JSON-serialisable args, and resolves to what it returns (JSON round trip).
     */
    node(fn, ...args) {
      const code = `const fn = ${fn.toString()};\n` +
        `fn(...${JSON.stringify(args)}).then((r) => process.stdout.write(JSON.stringify(r)), ` +
        `(e) => { process.stderr.write(String(e && e.stack || e)); process.exit(1); });`;
      return new Promise((resolve, reject) => {
        const child = spawn('ip', ['netns', 'exec', name, process.execPath, '--input-type=module', '-e', code],
          { stdio: ['ignore', 'pipe', 'pipe'] });
        let out = '', err = '';
        child.stdout.on('data', (d) => (out += d));
        child.stderr.on('data', (d) => (err += d));
        child.on('exit', (code) => {
          if (code !== 0) return reject(new Error(`client in ${name} exited ${code}: ${err}`));
          try {
            resolve(JSON.parse(out));
          } catch (e) {
            reject(new Error(`client in ${name}: bad output ${out} ${err}`));
          }
        });
      });
    },
    /** Stops what it started, unmounts the bpffs and deletes the namespace (idempotent). */
    async remove() {
      if (!made.has(ns)) return;
      made.delete(ns);
      for (const p of procs) await p.stop();
      if (bpffs) {
        try {
          execFileSync('umount', ['-l', bpffs]);
        } catch {}
        fs.rmSync(bpffs, { recursive: true, force: true });
      }
      try {
        execFileSync('ip', ['netns', 'del', name]);
      } catch {}
    },
  };
  made.add(ns);
  try {
    execFileSync('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
    bpffs = fs.mkdtempSync(path.join(os.tmpdir(), `gg-bpffs-${process.pid}-`));
    execFileSync('mount', ['-t', 'bpf', 'bpf', bpffs]);
  } catch (e) {
    ns.remove();
    throw e;
  }
  return ns;
}

/** Whether namespace `name` exists (tests check their cleanup). */
export function netnsExists(name) {
  return execFileSync('ip', ['netns', 'list']).toString().split('\n').some((l) => l.split(' ')[0] === name);
}
