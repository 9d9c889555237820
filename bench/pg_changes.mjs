// Benchmark: PostgreSQL changes end to end (commit → WebSocket client) through
// `rtsync serve --postgres`, beside the raw rate of `pg_recvlogical` (pgoutput,
// same publication) on the same machine. Run by bench/pg_changes.sh, which
// starts a private cluster; see bench/README.md for the figures.
//
//   node bench/pg_changes.mjs RTSYNC_BINARY [ROWS] [TXN_ROWS] [SUBSCRIBERS]
//
// Table bench(id bigint primary key, grp int, v text); row i has grp = i mod
// SUBSCRIBERS; subscriber k joins with the filter grp=eq.k, so every change
// goes to exactly one of them. Three measurements, each on ROWS new rows in
// transactions of TXN_ROWS:
//   raw       pg_recvlogical drains the backlog from its own slot (--endpos)
//   catch-up  rtsync was stopped during the load; from its start until every
//             subscriber (joined with resume_after) has every change
//   live      rtsync and the subscribers run while psql loads; from the load's
//             start to the last delivery, and the per-change latency
//             (delivery time − commit_timestamp, ms resolution)
// Prints one JSON line per measurement.

import { spawn, execFileSync } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const require = createRequire(new URL('../tests/interop/node_modules/', import.meta.url));
const WebSocket = require('ws');

const [bin, rowsArg = '200000', txnArg = '1000', subsArg = '10'] = process.argv.slice(2);
const ROWS = Number(rowsArg);
const TXN = Number(txnArg);
const SUBS = Number(subsArg);
const PG = process.env.RTSYNC_TEST_POSTGRES;
const SECRET = 'rtsync-bench-secret-0123456789abcdef0123456789';
if (!bin || !PG) {
  console.error('usage: RTSYNC_TEST_POSTGRES=postgres://… node bench/pg_changes.mjs RTSYNC_BINARY [ROWS] [TXN_ROWS] [SUBSCRIBERS]');
  process.exit(2);
}

const b64 = (x) => Buffer.from(x).toString('base64url');
function token() {
  const h = b64(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const p = b64(JSON.stringify({ role: 'service_role', exp: Math.floor(Date.now() / 1000) + 3600 }));
  return `${h}.${p}.${createHmac('sha256', SECRET).update(`${h}.${p}`).digest('base64url')}`;
}

const db = `bench_${process.pid}`;
const psql = (sql, d = db) => execFileSync('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', `${PG}/${d}`, '-c', sql], { encoding: 'utf8' }).trim();

/** Inserts ids first..first+ROWS-1 in transactions of TXN rows (psql in
 * autocommit: one transaction per statement); returns the elapsed ms. */
function load(first) {
  let sql = '';
  for (let a = first; a < first + ROWS; a += TXN) {
    const b = Math.min(a + TXN - 1, first + ROWS - 1);
    sql += `INSERT INTO bench SELECT g, g % ${SUBS}, 'value ' || g FROM generate_series(${a}, ${b}) g;\n`;
  }
  const t0 = performance.now();
  return new Promise((resolve, reject) => {
    const p = spawn('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', `${PG}/${db}`, '-f', '-'], { stdio: ['pipe', 'ignore', 'inherit'] });
    p.on('exit', (code) => (code ? reject(new Error(`psql exited ${code}`)) : resolve(performance.now() - t0)));
    p.stdin.end(sql);
  });
}

function startServer(dataDir) {
  const proc = spawn(bin, ['serve', '--listen', '127.0.0.1:0', '--jwt-secret', SECRET, '--data-dir', dataDir,
    '--postgres', `${PG}/${db}`, '--postgres-name', db, '--postgres-tables', 'bench', '--retain-changes', String(4 * ROWS),
    '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] });
  return new Promise((resolve, reject) => {
    let out = '';
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /rtsync listening on http:\/\/([\d.:]+)/.exec(out);
      if (m) resolve({ proc, url: `ws://${m[1]}/realtime/v1/websocket?vsn=2.0.0&apikey=${token()}` });
    });
    proc.on('exit', (code) => reject(new Error(`rtsync exited ${code}`)));
  });
}

async function stopServer(s) {
  const done = new Promise((r) => s.proc.on('exit', r));
  s.proc.kill('SIGTERM');
  await done;
}

/** SUBS sockets, subscriber k on grp=eq.k; resolves once all joined. */
async function subscribe(url, resumeAfter) {
  const subs = [];
  for (let k = 0; k < SUBS; k++) {
    const ws = new WebSocket(url);
    const s = { ws, n: 0, lat: [], last: 0, joined: null };
    s.joined = new Promise((resolve) => {
      ws.on('message', (data) => {
        const [, , , event, payload] = JSON.parse(data);
        if (event === 'phx_reply') resolve();
        if (event !== 'postgres_changes') return;
        const now = Date.now();
        s.n++;
        s.last = performance.now();
        s.lat.push(now - Date.parse(payload.data.commit_timestamp));
      });
    });
    await new Promise((r) => ws.on('open', r));
    const config = { postgres_changes: [{ event: 'INSERT', schema: 'public', table: 'bench', filter: `grp=eq.${k}` }] };
    if (resumeAfter !== undefined) config.rtsync = { resume_after: String(resumeAfter) };
    ws.send(JSON.stringify(['1', '1', `realtime:bench-${k}`, 'phx_join', { config }]));
    subs.push(s);
  }
  await Promise.all(subs.map((s) => s.joined));
  return subs;
}

async function allDelivered(subs, want, timeoutMs = 600_000) {
  const t0 = performance.now();
  while (subs.reduce((a, s) => a + s.n, 0) < want) {
    if (performance.now() - t0 > timeoutMs) throw new Error(`only ${subs.reduce((a, s) => a + s.n, 0)} of ${want} delivered`);
    await new Promise((r) => setTimeout(r, 5));
  }
  return Math.max(...subs.map((s) => s.last));
}

function pct(xs, p) {
  const a = [...xs].sort((x, y) => x - y);
  return a[Math.min(a.length - 1, Math.floor((p / 100) * a.length))];
}

const report = (o) => console.log(JSON.stringify({ rows: ROWS, txn_rows: TXN, subscribers: SUBS, ...o }));

const dataDir = mkdtempSync(join(tmpdir(), 'rtsync-bench-pg-'));
try {
  psql(`CREATE DATABASE ${db}`, 'postgres');
  psql('CREATE TABLE bench (id bigint PRIMARY KEY, grp int NOT NULL, v text)');

  // rtsync creates its publication and slot, then stops: the load piles up
  let s = await startServer(dataDir);
  await stopServer(s);
  psql(`SELECT pg_create_logical_replication_slot('${db}_raw', 'pgoutput')`);
  const loadMs = await load(1);
  const endLsn = psql('SELECT pg_current_wal_lsn()');

  // raw: pg_recvlogical drains the same backlog
  let t0 = performance.now();
  execFileSync(join(process.env.PGBIN || '', 'pg_recvlogical'), ['-d', `${PG}/${db}`, '-S', `${db}_raw`, '--start',
    '--endpos', endLsn, '-o', 'proto_version=1', '-o', `publication_names=${db}`, '-f', '/dev/null', '--no-loop'], { stdio: 'inherit' });
  const rawMs = performance.now() - t0;
  psql(`SELECT pg_drop_replication_slot('${db}_raw')`);
  report({ what: 'raw pg_recvlogical (backlog)', ms: Math.round(rawMs), changes_per_s: Math.round(ROWS / (rawMs / 1000)), load_ms: Math.round(loadMs) });

  // catch-up: rtsync starts on the backlog, subscribers resume from position 0
  t0 = performance.now();
  s = await startServer(dataDir);
  let subs = await subscribe(s.url, 0);
  let end = await allDelivered(subs, ROWS);
  report({ what: 'rtsync catch-up (backlog, commit → clients)', ms: Math.round(end - t0), changes_per_s: Math.round(ROWS / ((end - t0) / 1000)) });
  for (const x of subs) x.ws.close();

  // live: the load runs while rtsync streams
  subs = await subscribe(s.url);
  t0 = performance.now();
  const liveLoadMs = await load(ROWS + 1);
  end = await allDelivered(subs, ROWS);
  const lat = subs.flatMap((x) => x.lat);
  report({
    what: 'rtsync live (load → last delivery)', ms: Math.round(end - t0), changes_per_s: Math.round(ROWS / ((end - t0) / 1000)),
    load_ms: Math.round(liveLoadMs), latency_ms: { p50: pct(lat, 50), p99: pct(lat, 99), max: pct(lat, 100) },
  });
  for (const x of subs) x.ws.close();
  await stopServer(s);
} finally {
  rmSync(dataDir, { recursive: true, force: true });
}
