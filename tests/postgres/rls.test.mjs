// Row-level security with the PostgreSQL store (run by tests/postgres/run.sh
// against its private cluster, whose roles anon, authenticated and
// service_role cluster.sh creates): REST runs each request under the token's
// role and claims as PostgREST does, so the database's own policies and
// privileges apply; policies are reloaded when they change; the helper
// objects rtsync creates; the change log's database identity.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { spawnSync, execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, createPgDatabase, psql } from '../interop/lib/server.mjs';
import { rawConnect } from '../interop/lib/raw.mjs';
import { scope, sleep, WebSocket } from '../interop/lib/util.mjs';

const require = createRequire(import.meta.url);
const { createClient } = require('../interop/node_modules/@supabase/supabase-js');

const A = '11111111-1111-4111-8111-111111111111';
const B = '22222222-2222-4222-8222-222222222222';

const SCHEMA = `
CREATE TABLE notes (id bigint PRIMARY KEY, owner uuid NOT NULL, body text);
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY own_select ON notes FOR SELECT TO authenticated USING (owner = auth.uid());
CREATE POLICY own_insert ON notes FOR INSERT TO authenticated WITH CHECK (owner = auth.uid());
CREATE POLICY own_update ON notes FOR UPDATE TO authenticated USING (owner = auth.uid());
CREATE POLICY own_delete ON notes FOR DELETE TO authenticated USING (owner = auth.uid());
CREATE POLICY public_read ON notes FOR SELECT TO anon USING (body = 'public');
CREATE TABLE tagged (id bigint PRIMARY KEY, tag text);
ALTER TABLE tagged ENABLE ROW LEVEL SECURITY;
CREATE POLICY by_claims ON tagged FOR SELECT
  USING (tag = current_setting('request.jwt.claims', true)::jsonb ->> 'team'
         OR tag = 'legacy:' || current_setting('request.jwt.claim.team', true)
         OR tag = 'method:' || current_setting('request.method', true));
CREATE TABLE cols (id bigint PRIMARY KEY, pub text, hidden text);
CREATE TABLE later (id bigint PRIMARY KEY, owner uuid);
ALTER TABLE later ENABLE ROW LEVEL SECURITY;
`;

let server, dir, db;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rtsync-pg-rls-'));
  writeFileSync(join(dir, 'schema.sql'), SCHEMA);
  db = createPgDatabase();
  server = await startServer({ pgDatabase: db, pgSchemaAsIs: true, logLevel: 'info', args: ['--schema', join(dir, 'schema.sql')] });
  psql(db, `INSERT INTO notes VALUES (1, '${A}', 'a1'), (2, '${A}', 'public'), (3, '${B}', 'b1'), (4, '${B}', 'b2'), (5, '${B}', 'b3');
            INSERT INTO tagged VALUES (1, 'red'), (2, 'blue'), (3, 'legacy:red'), (4, 'method:GET');
            INSERT INTO cols VALUES (1, 'p', 'h')`);
});
after(async () => {
  if (server) await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

const anonKey = () => server.token({ role: 'anon' });
const userToken = (sub, claims = {}) => server.token({ role: 'authenticated', claims: { sub, ...claims } });
/** supabase-js as an app uses it: the anon apikey, the user's token in Authorization. */
function client(token) {
  return createClient(server.httpUrl, anonKey(), {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    global: token ? { headers: { Authorization: `Bearer ${token}` } } : {},
    realtime: { transport: WebSocket },
  });
}
async function metric(name) {
  const text = await (await fetch(`${server.httpUrl}/metrics`)).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

/** Runs `rtsync serve` that must refuse to start (startServer would remove
 * the data directory after a failed start); returns its stderr. */
function refusedStart(dataDir, database, extra = []) {
  const r = spawnSync(process.env.RTSYNC_BIN, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dataDir,
    '--postgres', `${process.env.RTSYNC_TEST_POSTGRES}/${database}`, '--postgres-name', database, ...extra],
  { encoding: 'utf8', timeout: 20_000 });
  assert.notEqual(r.status, 0, `refused (${r.status}): ${r.stderr}`);
  return r.stderr;
}

describe('row-level security with the PostgreSQL store', () => {
  it('reads: each user sees their rows, anon the public ones, service_role all; count=exact counts visible rows', async () => {
    const a = await client(userToken(A)).from('notes').select('id', { count: 'exact' }).order('id');
    assert.equal(a.error, null);
    assert.deepEqual(a.data.map((r) => r.id), [1, 2]);
    assert.equal(a.count, 2);
    const b = await client(userToken(B)).from('notes').select('id', { count: 'exact' }).order('id');
    assert.deepEqual(b.data.map((r) => r.id), [3, 4, 5]);
    assert.equal(b.count, 3);
    // filters on top of the policy cannot reach another user's rows
    const reach = await client(userToken(B)).from('notes').select('id').eq('owner', A);
    assert.deepEqual(reach.data, []);
    const anon = await client().from('notes').select('id');
    assert.deepEqual(anon.data.map((r) => r.id), [2]);
    const svc = await client(server.token({ role: 'service_role' })).from('notes').select('id', { count: 'exact' });
    assert.equal(svc.count, 5);
  });

  it('inserts: WITH CHECK refuses with 42501, HTTP 403 for a user and 401 for anon; own rows go in', async () => {
    const bad = await client(userToken(B)).from('notes').insert({ id: 10, owner: A, body: 'forged' });
    assert.equal(bad.status, 403);
    assert.equal(bad.error.code, '42501');
    assert.equal(bad.error.message, 'new row violates row-level security policy for table "notes"');
    const anon = await client().from('notes').insert({ id: 11, owner: A, body: 'x' });
    assert.equal(anon.status, 401);
    assert.equal(anon.error.code, '42501');
    assert.equal(psql(db, 'SELECT count(*) FROM notes WHERE id IN (10, 11)').trim(), '0');
    const ok = await client(userToken(B)).from('notes').insert({ id: 12, owner: B, body: 'mine' }).select();
    assert.equal(ok.error, null);
    assert.deepEqual(ok.data, [{ id: 12, owner: B, body: 'mine' }]);
    // return=minimal: the row is not read back, so only WITH CHECK applies
    const minimal = await client(userToken(B)).from('notes').insert({ id: 13, owner: B, body: 'min' });
    assert.equal(minimal.error, null);
    assert.equal(minimal.status, 201);
  });

  it('updates and deletes: rows USING hides are left alone (200 with [])', async () => {
    const upd = await client(userToken(B)).from('notes').update({ body: 'hacked' }).eq('id', 1).select();
    assert.equal(upd.error, null);
    assert.deepEqual(upd.data, []);
    const del = await client(userToken(B)).from('notes').delete().eq('id', 1).select();
    assert.deepEqual(del.data, []);
    assert.equal(psql(db, 'SELECT body FROM notes WHERE id = 1').trim(), 'a1');
    const own = await client(userToken(A)).from('notes').update({ body: 'a1 edited' }).eq('id', 1).select('body');
    assert.deepEqual(own.data, [{ body: 'a1 edited' }]);
  });

  it('the request context: request.jwt.claims, the legacy request.jwt.claim.<name> and request.method', async () => {
    const red = await client(userToken(A, { team: 'red' })).from('tagged').select('id').order('id');
    assert.equal(red.error, null);
    assert.deepEqual(red.data.map((r) => r.id), [1, 3, 4]);
    const blue = await client(userToken(A, { team: 'blue' })).from('tagged').select('id').order('id');
    assert.deepEqual(blue.data.map((r) => r.id), [2, 4]);
    // rtsync's own bookkeeping (the idempotency keys of rtsync.idempotency)
    // runs as the connection role: API roles have no rights on it
    const key = `k-${Date.now()}`;
    const headers = { apikey: anonKey(), authorization: `Bearer ${userToken(B)}`, 'content-type': 'application/json', 'idempotency-key': key };
    const w1 = await fetch(`${server.httpUrl}/rest/v1/notes`, { method: 'POST', headers, body: JSON.stringify({ id: 20, owner: B, body: 'idem' }) });
    assert.equal(w1.status, 201, await w1.text());
    const w2 = await fetch(`${server.httpUrl}/rest/v1/notes`, { method: 'POST', headers, body: JSON.stringify({ id: 20, owner: B, body: 'idem' }) });
    assert.equal(w2.status, 201, 'replayed, not a duplicate key');
    assert.equal(psql(db, "SELECT has_table_privilege('authenticated', 'rtsync.idempotency', 'SELECT')").trim(), 'f');
  });

  it('a JWT role that does not exist: 22023 with HTTP 401, as PostgREST', async () => {
    const r = await fetch(`${server.httpUrl}/rest/v1/notes`, { headers: { apikey: server.token({ role: 'nosuchrole' }) } });
    assert.equal(r.status, 401);
    const body = await r.json();
    assert.equal(body.code, '22023');
    assert.equal(body.message, 'role "nosuchrole" does not exist');
    // "none" would reset to the connection role: refused the same way
    const none = await fetch(`${server.httpUrl}/rest/v1/notes`, { headers: { apikey: server.token({ role: 'none' }) } });
    assert.equal(none.status, 401);
    assert.equal((await none.json()).code, '22023');
  });

  it('column privileges: a column the role may not select fails as PostgreSQL says', async () => {
    psql(db, 'REVOKE SELECT ON cols FROM authenticated; GRANT SELECT (id, pub) ON cols TO authenticated');
    const ok = await client(userToken(A)).from('cols').select('id,pub');
    assert.equal(ok.error, null);
    assert.deepEqual(ok.data, [{ id: 1, pub: 'p' }]);
    const hidden = await client(userToken(A)).from('cols').select('hidden');
    assert.equal(hidden.status, 403);
    assert.equal(hidden.error.code, '42501');
    assert.equal(hidden.error.message, 'permission denied for table cols');
  });

  it('policies changed at runtime: REST sees them at once, the store reloads them within seconds', { timeout: 20_000 }, async () => {
    const before = await metric('rtsync_rls_reloads_total');
    assert.ok(before >= 1, `loaded at start (${before})`);
    const count = () => Number(psql(db, "SELECT count(*) FROM pg_policies WHERE schemaname IN ('public', 'realtime')").trim());
    assert.equal(await metric('rtsync_rls_policies'), count(),
      psql(db, "SELECT string_agg(tablename || '.' || policyname, ',') FROM pg_policies"));
    psql(db, `INSERT INTO later VALUES (1, '${A}'), (2, '${B}')`);
    assert.deepEqual((await client(userToken(A)).from('later').select('id')).data, []);
    psql(db, 'CREATE POLICY own ON later FOR SELECT TO authenticated USING (owner = auth.uid())');
    assert.deepEqual((await client(userToken(A)).from('later').select('id')).data, [{ id: 1 }]);
    const until = Date.now() + 10_000;
    while (await metric('rtsync_rls_policies') !== count() && Date.now() < until) await sleep(200);
    assert.equal(await metric('rtsync_rls_policies'), count(), 'the new policy is loaded');
    assert.ok(await metric('rtsync_rls_reloads_total') > before, 'reloaded');
    assert.match(server.stderr, /row-level security loaded: \d+ policies/);
    // privileges alone change the fingerprint too
    const mid = await metric('rtsync_rls_reloads_total');
    psql(db, 'GRANT SELECT (hidden) ON cols TO authenticated');
    const until2 = Date.now() + 10_000;
    while (await metric('rtsync_rls_reloads_total') === mid && Date.now() < until2) await sleep(200);
    assert.ok(await metric('rtsync_rls_reloads_total') > mid, 'reloaded after GRANT');
  });

  it('the objects rtsync creates: auth.uid() and friends, realtime.messages and realtime.topic()', () => {
    const out = psql(db, `BEGIN; SELECT set_config('request.jwt.claims', '{"sub":"${A}","role":"authenticated","email":"a@x.io"}', true);
      SELECT auth.uid(), auth.role(), auth.email(), auth.jwt() ->> 'email'; SELECT set_config('realtime.topic', 'room:1', true);
      SELECT realtime.topic(); COMMIT;`).trim().split('\n');
    assert.ok(out.includes(`${A}|authenticated|a@x.io|a@x.io`), out.join('\n'));
    assert.equal(out[out.length - 1], 'room:1');
    assert.equal(psql(db, `SELECT string_agg(column_name || ':' || data_type, ',' ORDER BY ordinal_position)
      FROM information_schema.columns WHERE table_schema = 'realtime' AND table_name = 'messages'`).trim(),
    'topic:text,extension:text,payload:jsonb,event:text,private:boolean,updated_at:timestamp without time zone,'
      + 'inserted_at:timestamp without time zone,id:uuid');
    assert.equal(psql(db, "SELECT relrowsecurity FROM pg_class WHERE oid = 'realtime.messages'::regclass").trim(), 't');
    // no sub: NULL, not an error
    assert.equal(psql(db, 'SELECT auth.uid() IS NULL').trim(), 't');
  });

  it('opaque policies: rtsync.visible() answers for many requesters in one call, on a row that is gone too', () => {
    const auths = JSON.stringify([
      { role: 'authenticated', claims: { sub: A } }, { role: 'authenticated', claims: { sub: B } },
      { role: 'anon', claims: {} }, { role: 'service_role', claims: {} }, { role: 'nosuchrole', claims: {} },
    ]);
    // row 99 is not in the table (a DELETE's old row): evaluated on the record itself
    const out = psql(db, `SELECT rtsync.visible('notes', '{"id":99,"owner":"${A}","body":"public"}', '${auths}'); SELECT current_user`).trim().split('\n');
    assert.deepEqual(out, ['{t,f,t,t,f}', 'postgres']);
    const b = psql(db, `SELECT rtsync.visible('notes', '{"id":99,"owner":"${B}","body":"x"}', '${auths}')`).trim();
    assert.equal(b, '{f,t,f,t,f}');
  });

  it('a data directory reused with another database: start refuses, --postgres-new-log starts a new log', { timeout: 60_000 }, async (t) => {
    const sc = scope(t);
    const dataDir = join(dir, 'reused');
    const schema = join(dir, 'seq.sql');
    writeFileSync(schema, 'CREATE TABLE IF NOT EXISTS seq (id bigint PRIMARY KEY, v text); ALTER TABLE seq REPLICA IDENTITY FULL;');
    const db1 = createPgDatabase();
    const logDb = join(dataDir, 'pg-changes.db');
    const logSql = (q) => execFileSync('sqlite3', [logDb, q], { encoding: 'utf8' }).trim();
    const first = await startServer({ dataDir, pgDatabase: db1, args: ['--schema', schema] });
    first.sql("INSERT INTO seq VALUES (1, 'a'), (2, 'b'), (3, 'c')");
    for (const until = Date.now() + 10_000; logSql('SELECT count(*) FROM changes') !== '3' && Date.now() < until;) await sleep(100);
    const oldMax = Number(logSql('SELECT max(pos) FROM changes'));
    assert.ok(oldMax >= 3, `the first database's changes are logged (${oldMax})`);
    await first.stop();
    const db2 = createPgDatabase();
    const msg = refusedStart(dataDir, db2);
    assert.match(msg, /the change log .* belongs to another database/);
    assert.match(msg, new RegExp(`written for database "${db1}", this is "${db2}"`));
    assert.match(msg, /--postgres-new-log/);
    assert.equal(psql(db2, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = '${db2}'`).trim(), '0',
      'a refused start creates no slot');
    const second = await startServer({ dataDir, pgDatabase: db2, args: ['--schema', schema, '--postgres-new-log'] });
    sc.defer(() => second.stop());
    const raw = await rawConnect(sc, second, { vsn: '2.0.0' });
    await raw.join('realtime:seq', { config: { postgres_changes: [{ event: 'INSERT', schema: 'public', table: 'seq' }] } });
    await raw.next((f) => f.event === 'system' && f.payload.status === 'ok', 5000, 'subscribed');
    second.sql("INSERT INTO seq VALUES (1, 'new log')");
    const f = await raw.next((x) => x.event === 'postgres_changes', 10_000, 'the change on the new log');
    assert.equal(f.payload.data.record.v, 'new log');
    // the old changes are gone; positions go on above them, past a gap
    assert.equal(logSql("SELECT count(*) FROM changes WHERE tbl = 'seq'"), '1');
    assert.ok(Number(logSql("SELECT min(pos) FROM changes WHERE tbl = 'seq'")) > oldMax + 1);
    // and the new identity sticks: a plain restart is fine
    await second.stop();
    const third = await startServer({ dataDir, pgDatabase: db2, args: ['--schema', schema] });
    await third.stop();
    // the slot dropped under a log that had streamed: refused, and again on
    // the next try (a refused start creates no slot that would hide the gap)
    psql(db2, `SELECT pg_drop_replication_slot('${db2}')`);
    for (let i = 0; i < 2; i++) {
      assert.match(refusedStart(dataDir, db2), /streamed from a replication slot ".*" that no longer exists/);
    }
    assert.equal(psql(db2, `SELECT count(*) FROM pg_replication_slots WHERE slot_name = '${db2}'`).trim(), '0');
  });

  it('a slot name taken by another database of the cluster: start refuses and says which', () => {
    // slots belong to the cluster: db's server holds the slot named db
    const other = createPgDatabase();
    const r = spawnSync(process.env.RTSYNC_BIN, ['serve', '--listen', '127.0.0.1:0',
      '--data-dir', join(dir, 'taken'), '--postgres', `${process.env.RTSYNC_TEST_POSTGRES}/${other}`,
      '--postgres-name', db], { encoding: 'utf8', timeout: 20_000 });
    assert.notEqual(r.status, 0, `refused: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`replication slot "${db}" belongs to database "${db}".*not to "${other}"`));
    assert.match(r.stderr, /--postgres-name/);
    assert.equal(psql(other, `SELECT count(*) FROM pg_publication WHERE pubname = '${db}'`).trim(), '0',
      'a refused start creates no publication');
  });
});
