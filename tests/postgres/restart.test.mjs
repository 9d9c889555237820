// Restarts with the PostgreSQL store: PostgreSQL killed (immediate stop)
// while rtsync streams a big transaction, and rtsync stopped while writes go
// on. Neither loses nor repeats a change. tests/postgres/run.sh runs this file
// alone, after the others, since it restarts the shared cluster.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, createPgDatabase, psql } from '../interop/lib/server.mjs';
import { rawConnect } from '../interop/lib/raw.mjs';
import { scope, sleep } from '../interop/lib/util.mjs';

let dir, db, dataDir, schema;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'rtsync-pg-restart-'));
  dataDir = join(dir, 'data');
  schema = join(dir, 'schema.sql');
  writeFileSync(schema, 'CREATE TABLE IF NOT EXISTS seq (id bigint PRIMARY KEY, v text);');
  db = createPgDatabase();
});
after(() => rmSync(dir, { recursive: true, force: true }));

function pgCtl(...args) {
  const cmd = [join(process.env.PGBIN, 'pg_ctl'), '-D', join(process.env.PGDIR, 'data'), ...args];
  const asRoot = process.getuid && process.getuid() === 0;
  execFileSync(asRoot ? 'runuser' : cmd[0], asRoot ? ['-u', 'postgres', '--', ...cmd] : cmd.slice(1), { stdio: 'ignore' });
}

/** Inserts ids from..to, one transaction each, durably (synchronous_commit on). */
function insertEach(from, to) {
  const args = ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', `${process.env.RTSYNC_TEST_POSTGRES}/${db}`, '-c', 'SET synchronous_commit = on'];
  for (let i = from; i <= to; i++) args.push('-c', `INSERT INTO seq VALUES (${i}, 'one')`);
  execFileSync('psql', args, { stdio: 'ignore' });
}

async function listen(sc, server, extra = {}) {
  const raw = await rawConnect(sc, server, { vsn: '2.0.0' });
  await raw.join('realtime:seq', { config: { postgres_changes: [{ event: 'INSERT', schema: 'public', table: 'seq' }], ...extra } });
  await raw.next((f) => f.event === 'system' && f.payload.status === 'ok', 5000, 'subscribed');
  return raw;
}
const ids = (raw) => raw.frames.filter((f) => f.event === 'postgres_changes').map((f) => f.payload.data.record.id);
/** Waits until n changes arrived, counting as frames come (not rescanning them). */
function waitCount(raw, n, ms, what) {
  let seen = 0;
  return raw.frames.waitFor((f) => f.event === 'postgres_changes' && ++seen >= n, ms, what);
}

function assertExactly(got, from, to) {
  assert.equal(new Set(got).size, got.length, 'no change delivered twice');
  assert.equal(got.length, to - from + 1, `every change from ${from} to ${to} delivered`);
  got.forEach((id, i) => assert.equal(id, from + i, 'in commit order'));
}

describe('restarts with the PostgreSQL store', () => {
  it('PostgreSQL killed while a 30k-row transaction streams: no loss, no duplicate', { timeout: 120_000 }, async (t) => {
    const sc = scope(t);
    const server = await startServer({ dataDir, pgDatabase: db, args: ['--schema', schema] });
    sc.defer(() => server.kill());
    const raw = await listen(sc, server);
    insertEach(1, 50);
    execFileSync('psql', ['-X', '-q', '-d', `${process.env.RTSYNC_TEST_POSTGRES}/${db}`, '-c', 'SET synchronous_commit = on',
      '-c', "INSERT INTO seq SELECT g, 'bulk' FROM generate_series(51, 30050) g"], { stdio: 'ignore' });
    // the 50 small transactions are through: the big one, next in commit
    // order, is streaming now; crash PostgreSQL in the middle of it
    await waitCount(raw, 50, 20_000, 'the small transactions');
    pgCtl('-m', 'immediate', '-w', 'stop');
    const seenAtCrash = ids(raw).length;
    // REST answers while PostgreSQL is away, with a PostgREST-style error
    const key = server.token({ role: 'service_role' });
    const headers = { apikey: key, authorization: `Bearer ${key}`, 'content-type': 'application/json' };
    const down = await fetch(`${server.httpUrl}/rest/v1/seq?id=eq.1`, { headers });
    assert.equal(down.status, 503);
    assert.match((await down.json()).code, /^PGRST00[01]$/);
    await sleep(500);
    pgCtl('-l', join(process.env.PGDIR, 'server.log'), '-w', 'start');
    insertEach(30051, 30100);
    // the pool reconnects: a REST write works again
    const up = await fetch(`${server.httpUrl}/rest/v1/seq`, { method: 'POST', headers, body: JSON.stringify({ id: 30101, v: 'rest' }) });
    assert.equal(up.status, 201, await up.text());
    await waitCount(raw, 30101, 90_000, 'every row after the restart');
    await sleep(500);
    assertExactly(ids(raw), 1, 30101);
    t.diagnostic(`${seenAtCrash} of 30050 changes had arrived when PostgreSQL was killed`);
    assert.ok(seenAtCrash < 30050, 'PostgreSQL was killed before the big transaction was through');
    await server.stop();
  });

  it('rtsync stopped while writes go on: a resuming client gets exactly what it missed', { timeout: 60_000 }, async (t) => {
    const sc = scope(t);
    let server = await startServer({ dataDir, pgDatabase: db, args: ['--schema', schema] });
    sc.defer(() => server.kill());
    const raw1 = await listen(sc, server);
    insertEach(40001, 40005);
    await waitCount(raw1, 5, 10_000, 'before the stop');
    const last = raw1.frames.filter((f) => f.event === 'postgres_changes').at(-1).payload.data.position;
    await raw1.close();
    await server.stop();
    insertEach(40006, 40020); // while rtsync is down
    server = await startServer({ dataDir, pgDatabase: db, args: ['--schema', schema] });
    const raw2 = await listen(sc, server, { rtsync: { resume_after: last } });
    insertEach(40021, 40025);
    await waitCount(raw2, 20, 20_000, 'missed and live changes');
    await sleep(500);
    assertExactly(ids(raw2), 40006, 40025);
    const pos = raw2.frames.filter((f) => f.event === 'postgres_changes').map((f) => BigInt(f.payload.data.position));
    assert.ok(pos[0] > BigInt(last) && pos.every((p, i) => i === 0 || p > pos[i - 1]), 'positions keep growing across the restart');
    await server.stop();
  });
});
