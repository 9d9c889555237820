// postgres_changes across nodes (docs/cluster.md): three nodes on one
// PostgreSQL database and one redis-server; one node holds the replication
// (an advisory lock) and publishes each batch of changes to a Redis Stream;
// every node delivers to its own subscribers, with the same positions, so a
// client resumes on any node. SIGKILL of the leader while rows stream: another
// node takes over, nothing is lost or delivered twice. Needs
// $RTSYNC_TEST_POSTGRES (tests/cluster/run.sh starts a private cluster).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { createPgDatabase } from '../interop/lib/server.mjs';
import { rawConnect } from '../interop/lib/raw.mjs';
import { scope, sleep } from '../interop/lib/util.mjs';
import { startRedis, startNodes, getJson, metric, until } from './lib.mjs';

const run = promisify(execFile);
const PG = process.env.RTSYNC_TEST_POSTGRES;
const TTL_MS = 2000;

/** Inserts ids from..to, one transaction each (pausing pauseMs after each). */
function insertEach(db, from, to, pauseMs = 0) {
  const args = ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', `${PG}/${db}`];
  for (let i = from; i <= to; i++) {
    args.push('-c', `INSERT INTO seq VALUES (${i}, 'v')`);
    if (pauseMs) args.push('-c', `SELECT pg_sleep(${pauseMs / 1000})`);
  }
  return run('psql', args);
}

async function listen(sc, server, extra = {}) {
  const raw = await rawConnect(sc, server, { vsn: '2.0.0' });
  await raw.join('realtime:seq', { config: { postgres_changes: [{ event: 'INSERT', schema: 'public', table: 'seq' }], ...extra } });
  await raw.next((f) => f.event === 'system' && f.payload.status === 'ok', 10_000, 'subscribed');
  return raw;
}
const changes = (raw) => raw.frames.events.filter((f) => f.event === 'postgres_changes').map((f) => f.payload.data);
const ids = (raw) => changes(raw).map((c) => c.record.id);

function assertExactly(got, from, to, who) {
  assert.equal(new Set(got).size, got.length, `${who}: no change delivered twice`);
  assert.equal(got.length, to - from + 1, `${who}: every change from ${from} to ${to} delivered (got ${got.length})`);
  got.forEach((id, i) => assert.equal(id, from + i, `${who}: in commit order`));
}

async function leaderOf(nodes) {
  return until(async () => {
    const roles = [];
    for (const n of nodes) {
      if (n.exited) continue;
      const h = await getJson(n, '/healthz');
      if (h.body.cluster.changes === 'leader') roles.push(n);
    }
    return roles.length === 1 ? roles[0] : null;
  }, 15_000, 'exactly one leader');
}

describe('postgres_changes over three nodes', { skip: !PG && 'needs RTSYNC_TEST_POSTGRES' }, () => {
  let redis, dir, schema, db;
  let nodes = [];
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'rtsync-cluster-pg-'));
    schema = join(dir, 'schema.sql');
    writeFileSync(schema, 'CREATE TABLE IF NOT EXISTS seq (id bigint PRIMARY KEY, v text);');
    db = createPgDatabase();
    redis = await startRedis();
    nodes = await startNodes(3, redis.url, { ttlMs: TTL_MS, store: 'postgres', pgDatabase: db, args: ['--schema', schema] });
  });
  after(async () => {
    // the survivors stop cleanly: exit status 0, so no sanitizer report
    try {
      for (const n of nodes) if (!n.exited) await n.stop();
    } finally {
      for (const n of nodes) await n.kill();
      if (redis) await redis.stop();
    }
    rmSync(dir, { recursive: true, force: true });
  });

  it('one leader; changes reach subscribers on every node once, with the same positions', { timeout: 60_000 }, async (t) => {
    const sc = scope(t);
    const leader = await leaderOf(nodes);
    assert.equal(await metric(leader, 'rtsync_cluster_changes_leader'), 1);
    const raws = [];
    for (const n of nodes) raws.push(await listen(sc, n));
    await insertEach(db, 1, 100);
    for (const [i, r] of raws.entries())
      await until(() => ids(r).length >= 100, 20_000, `node ${i + 1}: 100 changes (has ${ids(r).length})`);
    await sleep(300);
    for (const [i, r] of raws.entries()) assertExactly(ids(r), 1, 100, `node ${i + 1}`);
    const pos = (r) => changes(r).map((c) => c.position).join();
    assert.equal(pos(raws[1]), pos(raws[0]), 'same positions on every node');
    assert.equal(pos(raws[2]), pos(raws[0]), 'same positions on every node');
    for (const r of raws) await r.close();
  });

  it('a client resumes on another node from its last position', { timeout: 60_000 }, async (t) => {
    const sc = scope(t);
    const a = await listen(sc, nodes[0]);
    await insertEach(db, 101, 120);
    await until(() => ids(a).length >= 20, 20_000, '20 changes on node 1');
    const last = changes(a)[19].position;
    await a.close();
    await insertEach(db, 121, 140); // while away
    const b = await listen(sc, nodes[2], { rtsync: { resume_after: last } });
    await insertEach(db, 141, 150); // live after the catch-up
    await until(() => ids(b).length >= 30, 20_000, `the catch-up and live ones on node 3 (has ${ids(b).length})`);
    await sleep(300);
    assertExactly(ids(b), 121, 150, 'resumed on node 3');
    await b.close();
  });

  it('live queries: maintained on a follower; resumed on another node: a marked fresh result', { timeout: 60_000 }, async (t) => {
    const sc = scope(t);
    const leader = await leaderOf(nodes);
    const [f1, f2] = nodes.filter((n) => n !== leader);
    const queries = [{ id: 'top', table: 'seq', query: 'select=id&order=id.desc&limit=3' }];
    const apikey = f1.token({ role: 'service_role' });
    const topic = 'realtime:cluster-live';
    const a = await rawConnect(sc, f1, { vsn: '2.0.0', apikey });
    await a.join(topic, { config: { rtsync: { live: { queries } } } });
    const first = await a.next((f) => f.event === 'live_query', 10_000, 'first result on a follower');
    assert.equal(first.payload.queries[0].kind, 'result');
    await insertEach(db, 2001, 2003);
    const enters = (raw) => raw.frames.events.filter((f) => f.event === 'live_query')
      .flatMap((f) => f.payload.queries.flatMap((q) => (q.kind === 'diff' ? q.ops : [])))
      .filter((op) => op.op === 'enter').map((op) => op.row.id);
    await until(() => enters(a).includes(2003), 20_000, `the follower's live query sees the inserts (${enters(a)})`);
    const frames = a.frames.events.filter((f) => f.event === 'live_query');
    const pos = frames[frames.length - 1].payload.position;
    await a.close();
    // while away; resumed once the other node's log has them (a live query
    // resumed on a node whose log lags the database's snapshot: docs/cluster.md)
    const watch = await listen(sc, f2);
    await insertEach(db, 2004, 2005);
    await until(() => ids(watch).includes(2005), 20_000, 'the other node has the missed inserts');
    const b = await rawConnect(sc, f2, { vsn: '2.0.0', apikey });
    await b.join(topic, { config: { rtsync: { live: { queries, resume_after: pos } } } });
    const resumed = await b.next((f) => f.event === 'live_query', 10_000, 'resumed on the other follower');
    // that node does not hold the definition's history from before the
    // position: a fresh result, marked resync (never a silent gap), with the
    // rows written while away
    const q = resumed.payload.queries[0];
    assert.equal(q.kind, 'result', JSON.stringify(resumed.payload));
    assert.equal(q.resync, true);
    assert.deepEqual(q.rows.map((r) => r.id), [2005, 2004, 2003]);
    assert.ok(BigInt(resumed.payload.position) > BigInt(pos));
    await b.close();
  });

  it('Redis SIGKILLed while rows stream: the leader serves its own, the others catch up once', { timeout: 120_000 }, async (t) => {
    const sc = scope(t);
    const leader = await leaderOf(nodes);
    const raws = [];
    for (const n of nodes) raws.push(await listen(sc, n));
    const at = raws.map((r) => ids(r).length);
    const writing = insertEach(db, 3001, 3300, 4);
    await until(() => ids(raws[0]).length - at[0] >= 50, 30_000, 'the stream under way');
    await redis.kill();
    // the leader's own subscribers keep receiving while Redis is down
    const li = nodes.indexOf(leader);
    const before = ids(raws[li]).length;
    await until(() => ids(raws[li]).length >= before + 50, 30_000, 'the leader delivers while Redis is down');
    await redis.start();
    await writing;
    for (const [i, r] of raws.entries())
      await until(() => ids(r).length - at[i] >= 300, 60_000, `node ${i + 1}: 300 changes (has ${ids(r).length - at[i]})`);
    await sleep(500);
    for (const [i, r] of raws.entries()) assertExactly(ids(r).slice(at[i]), 3001, 3300, `node ${i + 1}`);
    for (const n of nodes)
      await until(async () => (await getJson(n, '/healthz')).body.status === 'ok', 15_000, 'every node recovered');
    for (const r of raws) await r.close();
  });

  it('SIGKILL of the leader while rows stream: another node leads, nothing lost or twice', { timeout: 120_000 }, async (t) => {
    const sc = scope(t);
    const leader = await leaderOf(nodes);
    const others = nodes.filter((n) => n !== leader);
    const raws = [];
    for (const n of others) raws.push(await listen(sc, n));
    let isWriting = true;
    const writing = insertEach(db, 1001, 1600, 4).finally(() => { isWriting = false; });
    await until(() => ids(raws[0]).length >= 100, 30_000, 'the stream under way');
    await leader.kill();
    const atKill = ids(raws[0]).length;
    assert.ok(isWriting && atKill < 600, `killed mid-stream (${atKill} of 600 delivered, writer running: ${isWriting})`);
    await writing;
    const next = await leaderOf(others);
    assert.ok(others.includes(next));
    for (const [i, r] of raws.entries())
      await until(() => ids(r).length >= 600, 60_000, `survivor ${i + 1}: 600 changes (has ${ids(r).length})`);
    await sleep(500);
    for (const [i, r] of raws.entries()) assertExactly(ids(r), 1001, 1600, `survivor ${i + 1}`);
    // and the new leader streams what comes next
    await insertEach(db, 1601, 1610);
    for (const [i, r] of raws.entries())
      await until(() => ids(r).length >= 610, 20_000, `survivor ${i + 1}: after the takeover`);
    for (const r of raws) await r.close();
  });
});
