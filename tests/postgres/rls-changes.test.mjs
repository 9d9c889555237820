// postgres_changes under a policy the compiler leaves to the database (a
// subquery on another table): the PostgreSQL store evaluates it for all the
// subscribers of a change in one call (rtsync.visible), counted in /metrics
// as rtsync_rls_database_checks_total; INSERT by the new row, DELETE by the
// old row, which is no longer in the table. Run by tests/postgres/run.sh.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, createPgDatabase } from '../interop/lib/server.mjs';
import { Recorder, scope, sleep, supabaseClient } from '../interop/lib/util.mjs';

const SCHEMA = `
CREATE TABLE members (team text, sub text, PRIMARY KEY (team, sub));
CREATE TABLE docs (id bigint PRIMARY KEY, team text NOT NULL, body text);
ALTER TABLE docs REPLICA IDENTITY FULL;
ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
CREATE POLICY team_docs ON docs FOR SELECT TO authenticated
  USING (EXISTS (SELECT 1 FROM members m WHERE m.team = docs.team AND m.sub = auth.jwt() ->> 'sub'));
INSERT INTO members VALUES ('red', 'user-a'), ('blue', 'user-b');
`;

let server, dir, db;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rtsync-pg-rlsc-'));
  writeFileSync(join(dir, 'schema.sql'), SCHEMA);
  db = createPgDatabase();
  server = await startServer({ pgDatabase: db, pgSchemaAsIs: true, args: ['--schema', join(dir, 'schema.sql')] });
});
after(async () => {
  if (server) await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

async function metric(name) {
  const text = await (await fetch(`${server.httpUrl}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

async function listen(sc, sub, topic) {
  const sb = supabaseClient(sc, server, { key: server.token({ role: 'anon' }) });
  await sb.realtime.setAuth(server.token({ role: 'authenticated', claims: { sub } }));
  const events = new Recorder(`changes on ${topic}`);
  const system = new Recorder(`system on ${topic}`);
  const ch = sb.channel(topic).on('postgres_changes', { event: '*', schema: 'public', table: 'docs' }, (p) => events.push(p));
  ch.on('system', {}, (p) => system.push(p));
  await new Promise((resolve, reject) => ch.subscribe((s, err) => (s === 'SUBSCRIBED' ? resolve() : reject(new Error(`${s} ${err?.message ?? ''}`)))));
  const sys = await system.waitFor(() => true, 5000, 'postgres_changes system message');
  assert.equal(sys.status, 'ok', JSON.stringify(sys));
  return events;
}
const summary = (ev) => ev.events.map((e) => `${e.eventType}:${(e.eventType === 'DELETE' ? e.old : e.new).id}`);

describe('opaque policies on the change path (PostgreSQL)', () => {
  it('a subquery policy is evaluated by the database, one check per change for all subscribers', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    assert.ok(await metric('rtsync_rls_opaque_policies') >= 1, 'the subquery policy is opaque');
    const a1 = await listen(sc, 'user-a', 'docs-a1');
    const a2 = await listen(sc, 'user-a', 'docs-a2');
    const b = await listen(sc, 'user-b', 'docs-b');
    const before = await metric('rtsync_rls_database_checks_total');
    server.sql("INSERT INTO docs VALUES (1, 'red', 'for red'), (2, 'blue', 'for blue')");
    server.sql('DELETE FROM docs WHERE id = 1');
    await a1.waitFor(() => a1.events.length >= 2, 10_000, 'A gets the red insert and delete');
    await a2.waitFor(() => a2.events.length >= 2, 10_000, "A's second channel too");
    await b.waitFor(() => b.events.length >= 1, 10_000, 'B gets the blue insert');
    await sleep(300);
    assert.deepEqual(summary(a1), ['INSERT:1', 'DELETE:1']);
    assert.deepEqual(summary(a2), ['INSERT:1', 'DELETE:1']);
    assert.deepEqual(summary(b), ['INSERT:2'], 'B sees neither the red row nor its delete');
    assert.equal(a1.events[1].old.team, 'red', 'the delete was checked on the whole old row');
    const checks = await metric('rtsync_rls_database_checks_total') - before;
    assert.ok(checks >= 1 && checks <= 3, `one database check per change, not per subscriber (${checks})`);
  });
});
