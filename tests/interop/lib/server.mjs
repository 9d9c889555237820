// Server harness for the rtsync interop tests.
//
// startServer() launches `rtsync serve` on an ephemeral port with a fresh data
// directory, waits for the "rtsync listening on ..." line and returns a handle.
// handle.stop() sends SIGTERM, waits for the process and throws unless it
// exited with status 0 (an AddressSanitizer leak report makes it non-zero).
// Every server still running when the test process exits is SIGKILLed, and
// every pid is also written to $RTSYNC_INTEROP_PIDDIR so run.sh can reap
// leftovers if the test process itself was killed.

import { spawn, execFileSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const JWT_SECRET = 'rtsync-interop-secret-0123456789abcdef0123456789';

const LISTEN_RE = /^rtsync listening on (https?:\/\/127\.0\.0\.1:(\d+))\s*$/;
const START_TIMEOUT_MS = 10_000;
const STOP_TIMEOUT_MS = 15_000;

const running = new Set();

process.on('exit', () => {
  for (const s of running) {
    try { s.proc.kill('SIGKILL'); } catch { /* already gone */ }
  }
});

function binaryPath() {
  const bin = process.env.RTSYNC_BIN;
  if (!bin) throw new Error('RTSYNC_BIN is not set (run the suite through tests/interop/run.sh <rtsync-binary>)');
  return bin;
}

function b64url(buf) {
  return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}

/** Current unix time in seconds. */
export function nowSec() {
  return Math.floor(Date.now() / 1000);
}

/**
 * Mint an HS256 JWT.
 *   role       claim `role` (default 'anon'; pass null to omit it)
 *   expIn      seconds from now for `exp` (default 3600; negative = already expired)
 *   exp        absolute `exp` (overrides expIn; pass null to omit it)
 *   secret     signing secret (default the server's secret)
 *   claims     extra claims
 */
export function mintToken({ role = 'anon', expIn = 3600, exp, secret = JWT_SECRET, claims = {} } = {}) {
  const now = nowSec();
  const body = { iat: now, ...claims };
  if (role !== null) body.role = role;
  const expVal = exp === undefined ? now + expIn : exp;
  if (expVal !== null) body.exp = expVal;
  const header = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const payload = b64url(JSON.stringify(body));
  const sig = b64url(createHmac('sha256', secret).update(`${header}.${payload}`).digest());
  return `${header}.${payload}.${sig}`;
}

// The store under test: SQLite (the default) or, when $RTSYNC_TEST_POSTGRES
// holds a server URL (tests/postgres/run.sh sets it), PostgreSQL with a fresh
// database per server.
export const STORE = process.env.RTSYNC_TEST_POSTGRES ? 'postgres' : 'sqlite';

/** Runs SQL in a PostgreSQL database of the test cluster (psql, stops on the first error). */
export function psql(db, sql) {
  return execFileSync('psql', ['-X', '-q', '-At', '-v', 'ON_ERROR_STOP=1', '-d', `${process.env.RTSYNC_TEST_POSTGRES}/${db}`, '-c', sql],
    { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

/** Creates a fresh database in the test cluster; returns its name. */
export function createPgDatabase() {
  const name = `rt_${process.pid}_${randomBytes(4).toString('hex')}`;
  psql('postgres', `CREATE DATABASE ${name}`);
  return name;
}

// SQLite hands out whole old rows; PostgreSQL only with REPLICA IDENTITY FULL,
// so the shared suite's tables get it (the default identity has its own tests).
function pgSchemaOf(path, dir) {
  const sql = readFileSync(path, 'utf8');
  const tables = [...sql.matchAll(/CREATE\s+TABLE\s+(?:IF\s+NOT\s+EXISTS\s+)?("?[A-Za-z_][A-Za-z0-9_]*"?)/gi)].map((m) => m[1]);
  const out = join(dir, 'schema.pg.sql');
  writeFileSync(out, sql + tables.map((t) => `\nALTER TABLE ${t} REPLICA IDENTITY FULL;`).join(''));
  return out;
}

/**
 * Start a server. Options:
 *   idleTimeoutMs  --idle-timeout-ms
 *   workers        --workers
 *   logLevel       --log-level (default: $RTSYNC_LOG_LEVEL or 'warn')
 *   args           extra CLI arguments
 *   dataDir        an existing data directory to use (kept after stop)
 *   pgDatabase     with PostgreSQL: an existing database to serve (default: a new one)
 *   pgSchemaAsIs   with PostgreSQL: apply --schema unchanged (no REPLICA IDENTITY FULL)
 *   store          'sqlite' or 'postgres' (default: STORE), e.g. to compare both in one test
 * The handle's sql(statement) writes as an outside client (the sqlite3 shell
 * or psql) and its store says which one the server runs.
 */
export async function startServer({ idleTimeoutMs, workers, logLevel, args = [], dataDir: keepDir, pgDatabase, pgSchemaAsIs, store = STORE } = {}) {
  const dataDir = keepDir || mkdtempSync(join(tmpdir(), 'rtsync-interop-'));
  if (keepDir) mkdirSync(keepDir, { recursive: true });
  args = [...args];
  let dbPath = join(dataDir, 'rtsync.db');
  let pgDb = null;
  const dbAt = args.indexOf('--db');
  if (dbAt >= 0) dbPath = args[dbAt + 1];
  if (store === 'postgres' && !args.includes('--postgres')) {
    if (dbAt >= 0) args.splice(dbAt, 2);
    const schemaAt = args.indexOf('--schema');
    if (schemaAt >= 0 && !pgSchemaAsIs) args[schemaAt + 1] = pgSchemaOf(args[schemaAt + 1], dataDir);
    pgDb = pgDatabase || createPgDatabase();
    args.push('--postgres', `${process.env.RTSYNC_TEST_POSTGRES}/${pgDb}`, '--postgres-name', pgDb);
  }
  const argv = ['serve', '--listen', '127.0.0.1:0', '--jwt-secret', JWT_SECRET, '--data-dir', dataDir,
    '--log-level', logLevel || process.env.RTSYNC_LOG_LEVEL || 'warn'];
  if (idleTimeoutMs !== undefined) argv.push('--idle-timeout-ms', String(idleTimeoutMs));
  if (workers !== undefined) argv.push('--workers', String(workers));
  argv.push(...args);

  const proc = spawn(binaryPath(), argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  const server = {
    proc,
    dataDir,
    secret: JWT_SECRET,
    stderr: '',
    stdout: '',
    exited: null, // {code, signal} once the process is gone
    store,
    pgDatabase: pgDb,
    dbPath: store === 'sqlite' ? dbPath : null,
  };
  /** Runs SQL as a writer outside rtsync. */
  server.sql = (statement) => (store === 'postgres'
    ? psql(pgDb, statement)
    : execFileSync('sqlite3', [dbPath, `PRAGMA busy_timeout=5000; ${statement}`], { encoding: 'utf8' }));
  const pidDir = process.env.RTSYNC_INTEROP_PIDDIR;
  const pidFile = pidDir && proc.pid ? join(pidDir, String(proc.pid)) : null;
  if (pidFile) {
    try { writeFileSync(pidFile, binaryPath()); } catch { /* best effort */ }
  }
  running.add(server);

  let startupHook = null; // set while waiting for the listening line
  const exitPromise = new Promise((resolve) => {
    proc.on('exit', (code, signal) => {
      server.exited = { code, signal };
      running.delete(server);
      if (pidFile) { try { unlinkSync(pidFile); } catch { /* ignore */ } }
      resolve(server.exited);
      if (startupHook) startupHook(new Error(`rtsync exited before listening (code ${code}, signal ${signal})`));
    });
  });
  server.exitPromise = exitPromise;

  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => {
    server.stderr += d;
    if (server.stderr.length > 1_000_000) server.stderr = server.stderr.slice(-500_000);
    if (process.env.RTSYNC_INTEROP_VERBOSE) process.stderr.write(d);
  });

  let url;
  try {
    url = await new Promise((resolve, reject) => {
      let buf = '';
      const timer = setTimeout(() => {
        startupHook(new Error(`rtsync did not print its listening line within ${START_TIMEOUT_MS} ms`));
      }, START_TIMEOUT_MS);
      startupHook = (err) => {
        startupHook = null;
        clearTimeout(timer);
        reject(err);
      };
      proc.on('error', (e) => startupHook && startupHook(new Error(`cannot spawn ${binaryPath()}: ${e.message}`)));
      proc.stdout.setEncoding('utf8');
      proc.stdout.on('data', (d) => {
        server.stdout += d;
        if (!startupHook) return;
        buf += d;
        let nl;
        while ((nl = buf.indexOf('\n')) >= 0) {
          const line = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          const m = LISTEN_RE.exec(line);
          if (m) {
            startupHook = null;
            clearTimeout(timer);
            resolve(m[1]);
            return;
          }
        }
      });
    });
  } catch (err) {
    if (!server.exited) { try { proc.kill('SIGKILL'); } catch { /* ignore */ } }
    await Promise.race([exitPromise, new Promise((r) => setTimeout(r, 2000))]);
    try { rmSync(dataDir, { recursive: true, force: true }); } catch { /* ignore */ }
    err.message += `\n--- rtsync stdout ---\n${server.stdout}\n--- rtsync stderr (tail) ---\n${server.stderr.slice(-4000)}`;
    throw err;
  }

  server.httpUrl = url;                                   // http(s)://127.0.0.1:PORT
  server.port = Number(new URL(url).port);
  server.wsUrl = url.replace(/^http/, 'ws');              // ws(s)://127.0.0.1:PORT
  server.realtimeUrl = `${server.wsUrl}/realtime/v1`;     // realtime-js endpoint (appends /websocket)
  server.socketUrl = `${server.wsUrl}/socket`;            // phoenix endpoint (appends /websocket)

  /** SIGTERM, wait, and throw unless the exit status is 0. Idempotent. */
  server.stop = async () => {
    if (server._stopped) return server._stopped;
    server._stopped = (async () => {
      if (!server.exited) {
        proc.kill('SIGTERM');
        let timer;
        const res = await Promise.race([
          exitPromise,
          new Promise((r) => { timer = setTimeout(() => r(null), STOP_TIMEOUT_MS); }),
        ]);
        clearTimeout(timer);
        if (!res) {
          proc.kill('SIGKILL');
          await exitPromise;
          cleanupDir();
          throw new Error(`rtsync did not exit within ${STOP_TIMEOUT_MS} ms of SIGTERM (killed)\n` +
            `--- rtsync stderr (tail) ---\n${server.stderr.slice(-4000)}`);
        }
      }
      await exitPromise;
      cleanupDir();
      const { code, signal } = server.exited;
      if (code !== 0) {
        throw new Error(`rtsync exited with code ${code} signal ${signal} (expected 0)\n` +
          `--- rtsync stderr (tail) ---\n${server.stderr.slice(-8000)}`);
      }
      return server.exited;
    })();
    return server._stopped;
  };

  /** SIGKILL without checks (used after a failure). */
  server.kill = async () => {
    if (!server.exited) {
      proc.kill('SIGKILL');
      await exitPromise;
    }
    cleanupDir();
  };

  function cleanupDir() {
    if (keepDir) return;
    try { rmSync(dataDir, { recursive: true, force: true }); } catch { /* ignore */ }
  }

  /** Convenience: tokens for this server. */
  server.token = (opts = {}) => mintToken({ secret: JWT_SECRET, ...opts });

  return server;
}
