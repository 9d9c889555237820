// Cluster test helpers: a private redis-server on a free loopback port (its
// own directory, no persistence), nodes of rtsync pointed at it, and small
// HTTP helpers. Every process started here is killed when the test process
// exits; run.sh reaps what a killed test process left.

import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, unlinkSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from '../interop/lib/server.mjs';
import { sleep } from '../interop/lib/util.mjs';

const redises = new Set();
process.on('exit', () => {
  for (const r of redises) { try { r.proc.kill('SIGKILL'); } catch { /* gone */ } }
});

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });
}

function redisCli(port, ...args) {
  return execFileSync('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/**
 * Starts redis-server; the handle's kill() SIGKILLs it, start() starts it
 * again on the same port, stop() ends it and removes its directory.
 */
export async function startRedis() {
  const dir = mkdtempSync(join(tmpdir(), 'rtsync-redis-'));
  const port = await freePort();
  const r = { dir, port, url: `redis://127.0.0.1:${port}`, proc: null };
  r.cli = (...args) => redisCli(port, ...args);
  r.start = async () => {
    const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir,
      '--save', '', '--appendonly', 'no', '--protected-mode', 'no'], { stdio: ['ignore', 'pipe', 'pipe'] });
    r.proc = proc;
    r.exited = new Promise((resolve) => proc.on('exit', resolve));
    redises.add(r);
    const pidDir = process.env.RTSYNC_INTEROP_PIDDIR;
    if (pidDir) { try { writeFileSync(join(pidDir, `redis-${proc.pid}`), ''); } catch { /* best effort */ } }
    for (let i = 0; i < 100; i++) {
      try { if (r.cli('PING').trim() === 'PONG') return r; } catch { /* not yet */ }
      await sleep(50);
    }
    throw new Error(`redis-server did not answer on port ${port}`);
  };
  r.kill = async () => {
    if (!r.proc) return;
    const proc = r.proc;
    r.proc = null;
    proc.kill('SIGKILL');
    await r.exited;
    redises.delete(r);
    const pidDir = process.env.RTSYNC_INTEROP_PIDDIR;
    if (pidDir) { try { unlinkSync(join(pidDir, `redis-${proc.pid}`)); } catch { /* ignore */ } }
  };
  r.stop = async () => {
    await r.kill();
    rmSync(dir, { recursive: true, force: true });
  };
  await r.start();
  return r;
}

/** Starts n nodes on the Redis at url; extra server options in opts. */
export async function startNodes(n, url, { ttlMs = 2000, args = [], ...opts } = {}) {
  const nodes = [];
  for (let i = 0; i < n; i++) {
    nodes.push(await startServer({
      ...opts,
      args: ['--redis', url, '--cluster-node', `node${i + 1}-${process.pid}`, '--cluster-ttl-ms', String(ttlMs), ...args],
    }));
  }
  return nodes;
}

export async function getJson(server, path) {
  const res = await fetch(`${server.httpUrl}${path}`);
  return { status: res.status, body: await res.json() };
}

/** One value of the Prometheus text at /metrics (a line "NAME VALUE"). */
export async function metric(server, name) {
  const text = await (await fetch(`${server.httpUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
}

/** Waits until fn() resolves truthy, polling; throws after ms. */
export async function until(fn, ms, what) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}
