// postgres_changes under row-level security, with supabase-js / realtime-js
// and a raw socket, on either store (SQLite, or PostgreSQL under
// tests/postgres/run.sh with RTSYNC_SUITE=postgres): the schema file's
// policies decide which subscriber gets which change — INSERT and UPDATE by
// the new row, DELETE by the old row — for users, anon and service_role; the
// realistic setup (anon apikey, then realtime.setAuth(userToken)); filters
// that reach for other users' rows; forged and refreshed tokens; resume.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, STORE } from './lib/server.mjs';
import { rawConnect } from './lib/raw.mjs';
import { Recorder, scope, sleep, supabaseClient } from './lib/util.mjs';

// auth.jwt() ->> 'sub' compares as text on both stores (auth.uid() is a uuid
// on PostgreSQL; the unit tests cover it on the embedded store).
const SCHEMA = `
CREATE TABLE IF NOT EXISTS notes (id bigint PRIMARY KEY, owner text NOT NULL, body text);
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY "own notes" ON notes FOR SELECT TO authenticated USING (owner = (auth.jwt() ->> 'sub'));
CREATE POLICY "own inserts" ON notes FOR INSERT TO authenticated WITH CHECK (owner = (auth.jwt() ->> 'sub'));
` + (STORE === 'postgres' // the API roles' table privileges, as Supabase grants them
  ? 'GRANT SELECT, INSERT, UPDATE, DELETE ON notes TO anon, authenticated, service_role;\n' : '');

const A = 'user-a', B = 'user-b';
let server, dir;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rtsync-rlsc-'));
  const schemaPath = join(dir, 'schema.sql');
  writeFileSync(schemaPath, SCHEMA);
  server = await startServer({ args: ['--schema', schemaPath] });
});
after(async () => {
  if (server) await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

const userToken = (sub) => server.token({ role: 'authenticated', claims: { sub } });
let nextId = 5000;
const newId = () => ++nextId;
/** A write as the database owner (outside rtsync, no RLS). */
const sql = (s) => server.sql(s);

/** supabase-js as apps use it: the anon key, then the user's token on the socket. */
async function userClient(sc, sub) {
  const sb = supabaseClient(sc, server, { key: server.token({ role: 'anon' }) });
  if (sub) await sb.realtime.setAuth(userToken(sub));
  return sb;
}

async function listen(sb, topic, bindings) {
  const events = new Recorder(`changes on ${topic}`);
  const system = new Recorder(`system on ${topic}`);
  let ch = sb.channel(topic);
  for (const b of bindings) ch = ch.on('postgres_changes', b, (p) => events.push(p));
  ch.on('system', {}, (p) => system.push(p));
  await new Promise((resolve, reject) => ch.subscribe((s, err) => {
    if (s === 'SUBSCRIBED') resolve();
    else reject(new Error(`${s}${err ? `: ${err.message}` : ''}`));
  }));
  const sys = await system.waitFor(() => true, 5000, 'postgres_changes system message');
  assert.equal(sys.status, 'ok', JSON.stringify(sys));
  return { ch, events, system, sys };
}

const ALL = { event: '*', schema: 'public', table: 'notes' };
const summary = (events) => events.events.map((e) => `${e.eventType}:${(e.eventType === 'DELETE' ? e.old : e.new).id}`);

describe('postgres_changes under row-level security', () => {
  it('each user gets only its rows (DELETE by the old row); anon nothing; service_role all', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const la = await listen(await userClient(sc, A), 'rls-a', [ALL]);
    const lb = await listen(await userClient(sc, B), 'rls-b', [ALL]);
    const ln = await listen(await userClient(sc, null), 'rls-anon', [ALL]);
    const ls = await listen(supabaseClient(sc, server, { key: server.token({ role: 'service_role' }) }), 'rls-svc', [ALL]);
    const ia = newId(), ib = newId();
    sql(`INSERT INTO notes (id, owner, body) VALUES (${ia}, '${A}', 'a1')`);
    sql(`INSERT INTO notes (id, owner, body) VALUES (${ib}, '${B}', 'b1')`);
    sql(`UPDATE notes SET body = 'a2' WHERE id = ${ia}`);
    sql(`DELETE FROM notes WHERE id = ${ia}`);
    await ls.events.waitFor(() => ls.events.events.length >= 4, 5000, 'service_role gets all four');
    await la.events.waitFor(() => la.events.events.length >= 3, 5000, 'A gets its three');
    await sleep(300);
    assert.deepEqual(summary(la.events), [`INSERT:${ia}`, `UPDATE:${ia}`, `DELETE:${ia}`]);
    assert.deepEqual(summary(lb.events), [`INSERT:${ib}`], "B never sees A's rows, nor A's delete");
    assert.deepEqual(summary(ln.events), [], 'anon sees nothing of a table with RLS');
    assert.deepEqual(summary(ls.events), [`INSERT:${ia}`, `INSERT:${ib}`, `UPDATE:${ia}`, `DELETE:${ia}`]);
    const del = la.events.events[2];
    assert.equal(del.old.owner, A, 'the whole old row');
  });

  it('a filter reaching for another user\'s rows gets nothing', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const spy = await listen(await userClient(sc, B), 'rls-spy', [{ ...ALL, filter: `owner=eq.${A}` }]);
    const own = await listen(await userClient(sc, A), 'rls-own', [{ ...ALL, filter: `owner=eq.${A}` }]);
    const id = newId();
    sql(`INSERT INTO notes (id, owner, body) VALUES (${id}, '${A}', 'secret')`);
    await own.events.waitFor((e) => e.new.id === id, 5000, 'the owner gets it');
    await sleep(300);
    assert.deepEqual(spy.events.events, []);
  });

  it('REST inserts through the user\'s token reach the user (WITH CHECK on the way in)', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const sbA = supabaseClient(sc, server, { key: userToken(A) });
    const la = await listen(sbA, 'rls-rest', [ALL]);
    const lb = await listen(await userClient(sc, B), 'rls-rest-b', [ALL]);
    const id = newId();
    const ok = await sbA.from('notes').insert({ id, owner: A, body: 'mine' });
    assert.equal(ok.error, null, JSON.stringify(ok.error));
    const bad = await sbA.from('notes').insert({ id: newId(), owner: B, body: 'forged' });
    assert.equal(bad.error?.code, '42501', JSON.stringify(bad));
    await la.events.waitFor((e) => e.new.id === id, 5000, 'own insert');
    await sleep(300);
    assert.deepEqual(summary(lb.events), []);
  });

  it('an access_token with a forged signature (another user, service_role) closes the channel', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    for (const forged of [
      server.token({ role: 'authenticated', claims: { sub: B }, secret: 'not-the-server-secret-0123456789abcdef' }),
      server.token({ role: 'service_role', secret: 'not-the-server-secret-0123456789abcdef' }),
    ]) {
      const raw = await rawConnect(sc, server, { vsn: '2.0.0' });
      const topic = `realtime:rls-forge-${newId()}`;
      const { joinRef, reply } = await raw.join(topic, { config: { postgres_changes: [ALL] }, access_token: userToken(A) });
      assert.equal(reply.payload.status, 'ok');
      raw.send({ join_ref: joinRef, topic, event: 'access_token', payload: { access_token: forged } });
      const sys = await raw.next((f) => f.event === 'system' && f.payload.status === 'error', 5000, 'system error');
      assert.equal(sys.payload.extension, 'system');
      await raw.next((f) => f.event === 'phx_close' && f.topic === topic, 5000, 'phx_close');
      const id = newId();
      sql(`INSERT INTO notes (id, owner, body) VALUES (${id}, '${B}', 'b')`);
      await sleep(400);
      assert.ok(!raw.frames.events.some((f) => f.event === 'postgres_changes'), 'nothing after the refusal');
    }
  });

  it('a refresh to another valid user changes what arrives, without loss or repeats', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const sb = await userClient(sc, A);
    const l = await listen(sb, 'rls-refresh', [ALL]);
    const a1 = newId();
    sql(`INSERT INTO notes (id, owner, body) VALUES (${a1}, '${A}', 'a')`);
    await l.events.waitFor((e) => e.new.id === a1, 5000, "A's row as A");
    await sb.realtime.setAuth(userToken(B));
    await sleep(400);
    const a2 = newId(), b2 = newId();
    sql(`INSERT INTO notes (id, owner, body) VALUES (${a2}, '${A}', 'a')`);
    sql(`INSERT INTO notes (id, owner, body) VALUES (${b2}, '${B}', 'b')`);
    await l.events.waitFor((e) => e.new.id === b2, 5000, "B's row after the refresh");
    await sleep(300);
    assert.deepEqual(summary(l.events), [`INSERT:${a1}`, `INSERT:${b2}`]);
  });

  it('resume after a reconnect is filtered by the same policies', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const topic = 'realtime:rls-resume';
    const cfg = { postgres_changes: [ALL] };
    const raw1 = await rawConnect(sc, server, { vsn: '2.0.0' });
    await raw1.join(topic, { config: cfg, access_token: userToken(A) });
    const sys = await raw1.next((f) => f.event === 'system' && f.payload.extension === 'postgres_changes', 5000, 'subscribed');
    const pos = sys.payload.position;
    await raw1.close();
    const ids = [newId(), newId(), newId(), newId()];
    const owners = [A, B, A, B];
    ids.forEach((id, i) => sql(`INSERT INTO notes (id, owner, body) VALUES (${id}, '${owners[i]}', 'x')`));
    const raw2 = await rawConnect(sc, server, { vsn: '2.0.0' });
    await raw2.join(topic, { config: { ...cfg, rtsync: { resume_after: pos } }, access_token: userToken(A) });
    const got = () => raw2.frames.events.filter((f) => f.event === 'postgres_changes').map((f) => f.payload.data.record.id);
    await raw2.frames.waitFor(() => got().includes(ids[2]), 5000, "A's missed rows");
    await sleep(300);
    assert.deepEqual(got(), [ids[0], ids[2]]);
  });

  it('a policy change at runtime changes what arrives, without repeats (PostgreSQL)', { skip: STORE !== 'postgres' && 'policies of the schema file are fixed', timeout: 40_000 }, async (t) => {
    const sc = scope(t);
    const l = await listen(await userClient(sc, A), 'rls-runtime', [ALL]);
    sql(`CREATE POLICY "b shared" ON notes FOR SELECT TO authenticated USING (owner = '${B}')`);
    t.after(() => sql('DROP POLICY IF EXISTS "b shared" ON notes'));
    let got = null;
    for (let i = 0; i < 60 && !got; i++) { // the store notices within seconds
      sql(`INSERT INTO notes (id, owner, body) VALUES (${newId()}, '${B}', 'shared')`);
      await sleep(250);
      got = l.events.events.find((e) => e.new?.owner === B);
    }
    assert.ok(got, "B's rows reach A once the new policy is in force");
    const a = newId();
    sql(`INSERT INTO notes (id, owner, body) VALUES (${a}, '${A}', 'a')`);
    await l.events.waitFor((e) => e.new?.id === a, 5000, "A's own row still");
    await sleep(300);
    const ids = l.events.events.map((e) => e.new.id);
    assert.equal(new Set(ids).size, ids.length, `no change twice: ${ids}`);
  });
});
