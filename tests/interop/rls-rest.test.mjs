// Row-level security through the REST API, driven with supabase-js as
// Supabase apps use it: the anon key as apikey and the user's token in
// Authorization. The schema (fixtures/rls-schema.sql) holds the tables and
// their policies in PostgreSQL's SQL; the embedded store enforces them
// itself, PostgreSQL (tests/postgres/run.sh, RTSYNC_SUITE=postgres) runs
// them. Every test works on its own ids, so tests do not see each other's
// rows; the service role checks what really is in the table.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { mkdtempSync, readFileSync, writeFileSync, rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, STORE, JWT_SECRET, mintToken, psql } from './lib/server.mjs';
import { WebSocket } from './lib/util.mjs';

const require = createRequire(import.meta.url);
const { createClient } = require('@supabase/supabase-js');

// `= ANY (<json array claim>)` is the embedded store's form; PostgreSQL
// needs the array spelt out.
const FIXTURE = readFileSync(new URL('./fixtures/rls-schema.sql', import.meta.url), 'utf8')
  .replace(/= ANY \(auth\.jwt\(\) -> 'teams'\)/g, STORE === 'postgres'
    ? "= ANY (ARRAY(SELECT jsonb_array_elements_text(auth.jwt() -> 'teams')))"
    : "= ANY (auth.jwt() -> 'teams')");

// SQLite only: a trigger whose body holds ';' (the schema is split by
// SQLite's own tokenizer) next to the policies.
const SQLITE_EXTRA = `
CREATE TABLE IF NOT EXISTS note_log (id integer PRIMARY KEY, note_id bigint, what text);
CREATE TRIGGER IF NOT EXISTS note_logged AFTER INSERT ON notes
BEGIN
  INSERT INTO note_log (note_id, what) VALUES (NEW.id, 'inserted; logged');
END;
`;

// PostgreSQL: Supabase's API roles and their table privileges (the
// service role bypasses RLS, as in Supabase).
const PG_EXTRA = `
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO anon, authenticated, service_role;
`;
function pgRoles() {
  for (const [role, extra] of [['anon', ''], ['authenticated', ''], ['service_role', ' BYPASSRLS']]) {
    psql('postgres', `DO $$ BEGIN CREATE ROLE ${role} NOLOGIN${extra}; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
  }
}

let server, dir;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rtsync-rls-rest-'));
  const schemaPath = join(dir, 'schema.sql');
  if (STORE === 'postgres') pgRoles();
  writeFileSync(schemaPath, FIXTURE + (STORE === 'postgres' ? PG_EXTRA : SQLITE_EXTRA));
  server = await startServer({ args: ['--schema', schemaPath, '--db', join(dir, 'test.db')] });
});
after(async () => {
  if (server) await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

let nextId = 1000;
const newId = () => ++nextId;

// ---- tokens and clients

const anonKey = () => server.token({ role: 'anon' });
const serviceKey = () => server.token({ role: 'service_role' });
const user = (teams = []) => {
  const id = randomUUID();
  return { id, token: server.token({ role: 'authenticated', claims: { sub: id, teams } }) };
};

const clientOpts = (headers = {}) => ({
  auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  realtime: { transport: WebSocket, logger: () => {} },
  global: { headers },
});
const clients = [];
function track(sb) {
  clients.push(sb);
  return sb;
}
after(async () => {
  for (const sb of clients) await sb.realtime.disconnect();
});
/** The realistic setup: the anon key as apikey, the user's token in Authorization. */
const asUser = (u) => track(createClient(server.httpUrl, anonKey(), clientOpts({ Authorization: `Bearer ${u.token}` })));
const asAnon = () => track(createClient(server.httpUrl, anonKey(), clientOpts()));
const asService = () => track(createClient(server.httpUrl, serviceKey(), clientOpts()));

/** Raw HTTP against the REST API. */
async function rest(method, path, { apikey = anonKey(), bearer, body, headers = {} } = {}) {
  const h = { apikey, 'Content-Type': 'application/json', ...headers };
  if (bearer) h.Authorization = `Bearer ${bearer}`;
  const res = await fetch(`${server.httpUrl}/rest/v1/${path}`, { method, headers: h, body: body && JSON.stringify(body) });
  const text = await res.text();
  let json;
  try { json = text ? JSON.parse(text) : null; } catch { json = undefined; }
  return { status: res.status, json, text };
}

const ok = (r, what = '') => {
  assert.equal(r.error, null, `${what}: unexpected error ${JSON.stringify(r.error)}`);
  return r.data;
};
const sortedIds = (rows) => rows.map((x) => x.id).sort((a, b) => a - b);
const RLS_MESSAGE = /^new row violates row-level security policy (\(USING expression\) )?for table "(\w+)"$/;

/** Asserts a PostgREST 42501 refusal for table. */
function refused(r, table, status) {
  assert.ok(r.error, `expected a refusal, got ${r.status} ${JSON.stringify(r.data)}`);
  assert.equal(r.error.code, '42501', JSON.stringify(r.error));
  const m = RLS_MESSAGE.exec(r.error.message);
  assert.ok(m, `message: ${r.error.message}`);
  assert.equal(m[2], table);
  assert.equal(r.status, status);
}

/** What the service role sees of table's rows with these ids. */
async function truth(table, ids) {
  const r = await asService().from(table).select('*').in('id', ids).order('id');
  return ok(r, 'service_role read');
}

/** Seeds rows as the service role (RLS does not apply to it). */
async function seed(table, rows) {
  const r = await asService().from(table).insert(rows);
  assert.equal(r.error, null, `seed ${table}: ${JSON.stringify(r.error)}`);
  return rows;
}

// ---------------------------------------------------------------- reads

describe('RLS reads', () => {
  it('each user reads its own notes and the public ones; anon only the public ones', { timeout: 20_000 }, async () => {
    const alice = user(), bob = user();
    const [a1, a2, b1, b2] = [newId(), newId(), newId(), newId()];
    await seed('notes', [
      { id: a1, owner: alice.id, body: 'a private', is_public: false },
      { id: a2, owner: alice.id, body: 'a public', is_public: true },
      { id: b1, owner: bob.id, body: 'b private', is_public: false },
      { id: b2, owner: bob.id, body: 'b public', is_public: true },
    ]);
    const ids = [a1, a2, b1, b2];
    assert.deepEqual(sortedIds(ok(await asUser(alice).from('notes').select('id').in('id', ids))), [a1, a2, b2]);
    assert.deepEqual(sortedIds(ok(await asUser(bob).from('notes').select('id').in('id', ids))), [a2, b1, b2]);
    assert.deepEqual(sortedIds(ok(await asAnon().from('notes').select('id').in('id', ids))), [a2, b2]);
    assert.deepEqual(sortedIds(ok(await asService().from('notes').select('id').in('id', ids))), ids);
    // single(): a hidden row is no row
    const r = await asUser(alice).from('notes').select('id').eq('id', b1).single();
    assert.equal(r.status, 406);
    assert.equal(r.error.code, 'PGRST116');
  });

  it('filters apply on top of the policies: asking for another user\'s rows gets []', { timeout: 20_000 }, async () => {
    const alice = user(), bob = user();
    const [b1, b2] = [newId(), newId()];
    await seed('notes', [
      { id: b1, owner: bob.id, body: 'secret', is_public: false },
      { id: b2, owner: bob.id, body: 'secret too', is_public: false },
    ]);
    const sb = asUser(alice);
    assert.deepEqual(ok(await sb.from('notes').select('*').eq('owner', bob.id)), []);
    assert.deepEqual(ok(await sb.from('notes').select('*').eq('id', b1)), []);
    assert.deepEqual(ok(await sb.from('notes').select('*').or(`owner.eq.${bob.id},id.eq.${b2}`)), []);
    assert.deepEqual(ok(await sb.from('notes').select('*').not('owner', 'eq', alice.id).in('id', [b1, b2])), []);
    // a filter on a column the policy names does not widen it
    assert.deepEqual(ok(await sb.from('notes').select('id').eq('is_public', false).in('id', [b1, b2])), []);
    assert.equal(ok(await asUser(bob).from('notes').select('id').in('id', [b1, b2])).length, 2);
  });

  it('count=exact counts visible rows only; limit and offset apply after the policy', { timeout: 20_000 }, async () => {
    const alice = user(), bob = user();
    const mine = [newId(), newId(), newId()];
    const theirs = [newId(), newId()];
    await seed('notes', [
      ...mine.map((id) => ({ id, owner: alice.id, body: 'm', is_public: false })),
      ...theirs.map((id) => ({ id, owner: bob.id, body: 't', is_public: false })),
    ]);
    const all = [...mine, ...theirs];
    const sb = asUser(alice);
    let r = await sb.from('notes').select('id', { count: 'exact' }).in('id', all).order('id');
    assert.equal(r.count, 3);
    assert.deepEqual(sortedIds(r.data), mine);
    r = await sb.from('notes').select('id', { count: 'exact' }).in('id', all).order('id').range(1, 1);
    assert.deepEqual([r.status, r.count, r.data], [206, 3, [{ id: mine[1] }]]);
    r = await sb.from('notes').select('id', { count: 'exact', head: true }).in('id', theirs);
    assert.deepEqual([r.error, r.count], [null, 0]);
    r = await asService().from('notes').select('id', { count: 'exact', head: true }).in('id', all);
    assert.equal(r.count, 5);
  });

  it('team claims (= ANY over a JSON array) and a restrictive policy', { timeout: 20_000 }, async () => {
    const red = `red-${newId()}`, blue = `blue-${newId()}`, green = `green-${newId()}`;
    const [d1, d2, d3, d4] = [newId(), newId(), newId(), newId()];
    await seed('docs', [
      { id: d1, team: red, title: 'r', archived: false },
      { id: d2, team: blue, title: 'b', archived: false },
      { id: d3, team: green, title: 'g', archived: false },
      { id: d4, team: red, title: 'old', archived: true },
    ]);
    const ids = [d1, d2, d3, d4];
    const member = user([red, blue]);
    let r = await asUser(member).from('docs').select('id', { count: 'exact' }).in('id', ids);
    assert.deepEqual(sortedIds(ok(r)), [d1, d2], 'both teams, not the archived one (restrictive)');
    assert.equal(r.count, 2);
    assert.deepEqual(ok(await asUser(user([])).from('docs').select('id').in('id', ids)), []);
    assert.deepEqual(ok(await asUser(user()).from('docs').select('id').in('id', ids)), []);
    assert.deepEqual(ok(await asAnon().from('docs').select('id').in('id', ids)), [], 'no policy for anon');
    // writing into a team of the token works, another team's is refused
    const d5 = newId();
    ok(await asUser(member).from('docs').insert({ id: d5, team: blue, title: 'new' }));
    refused(await asUser(member).from('docs').insert({ id: newId(), team: green, title: 'no' }), 'docs', 403);
    assert.deepEqual((await truth('docs', [d5])).map((x) => x.team), [blue]);
  });

  it('a table with RLS and no policy shows nothing and refuses writes; the service role passes', { timeout: 20_000 }, async () => {
    const s1 = newId();
    await seed('secrets', [{ id: s1, value: 'x' }]);
    const u = user();
    let r = await asUser(u).from('secrets').select('*', { count: 'exact' }).eq('id', s1);
    assert.deepEqual([r.error, r.data, r.count], [null, [], 0]);
    refused(await asUser(u).from('secrets').insert({ id: newId(), value: 'y' }), 'secrets', 403);
    refused(await asAnon().from('secrets').insert({ id: newId(), value: 'y' }), 'secrets', 401);
    r = await asUser(u).from('secrets').update({ value: 'changed' }).eq('id', s1).select();
    assert.deepEqual([r.error, r.data], [null, []]);
    r = await asUser(u).from('secrets').delete().eq('id', s1).select();
    assert.deepEqual([r.error, r.data], [null, []]);
    assert.deepEqual(await truth('secrets', [s1]), [{ id: s1, value: 'x' }]);
  });

  it('a table without RLS is open to every valid token', { timeout: 20_000 }, async () => {
    const id = newId();
    ok(await asAnon().from('open_board').insert({ id, msg: 'hi' }));
    assert.deepEqual(ok(await asUser(user()).from('open_board').select('*').eq('id', id)), [{ id, msg: 'hi' }]);
  });
});

// ---------------------------------------------------------------- inserts

describe('RLS inserts', () => {
  it('a row refused by WITH CHECK is 42501: 403 for a user, 401 for anon; nothing is inserted', { timeout: 20_000 }, async () => {
    const alice = user(), bob = user();
    const [x, y, z] = [newId(), newId(), newId()];
    refused(await asUser(alice).from('notes').insert({ id: x, owner: bob.id, body: 'forged' }), 'notes', 403);
    refused(await asUser(alice).from('notes').insert({ id: x, owner: bob.id, body: 'forged' }).select(), 'notes', 403);
    refused(await asAnon().from('notes').insert({ id: y, owner: alice.id, body: 'anon' }), 'notes', 401);
    // one bad row rolls back the whole insert
    refused(await asUser(alice).from('notes').insert([
      { id: y, owner: alice.id, body: 'fine' },
      { id: z, owner: bob.id, body: 'not fine' },
    ]), 'notes', 403);
    assert.deepEqual(await truth('notes', [x, y, z]), []);
    // raw: the PostgREST error body
    const raw = await rest('POST', 'notes', { bearer: alice.token, body: { id: x, owner: bob.id } });
    assert.equal(raw.status, 403);
    assert.equal(raw.json.code, '42501');
    assert.equal(raw.json.message, 'new row violates row-level security policy for table "notes"');
    // the own row goes in, and is read back
    const r = await asUser(alice).from('notes').insert({ id: x, owner: alice.id, body: 'mine' }).select();
    assert.deepEqual(ok(r), [{ id: x, owner: alice.id, body: 'mine', is_public: false }]);
    if (STORE === 'sqlite') {
      const log = server.sql(`SELECT what FROM note_log WHERE note_id IN (${x}, ${y}, ${z})`).trim().split("\n").pop();
      assert.equal(log, 'inserted; logged', 'the trigger ran for the inserted row only');
    }
  });

  it('WITH CHECK sees the row as stored, defaults included', { timeout: 20_000 }, async () => {
    const u = user();
    const [f1, f2] = [newId(), newId()];
    let r = await asUser(u).from('feedback').insert({ id: f1, author: u.id, body: 'default status' });
    assert.deepEqual([r.error, r.status], [null, 201]);
    refused(await asUser(u).from('feedback').insert({ id: f2, author: u.id, body: 'x', status: 'done' }), 'feedback', 403);
    assert.deepEqual((await truth('feedback', [f1, f2])).map((x) => [x.id, x.status]), [[f1, 'new']]);
  });

  it('return=minimal inserts where SELECT would hide the row; return=representation is refused', { timeout: 20_000 }, async () => {
    const u = user();
    const [f1, f2] = [newId(), newId()];
    let r = await asUser(u).from('feedback').insert({ id: f1, author: u.id, body: 'minimal' });
    assert.deepEqual([r.error, r.status, r.data], [null, 201, null]);
    refused(await asUser(u).from('feedback').insert({ id: f2, author: u.id, body: 'wants it back' }).select(), 'feedback', 403);
    assert.deepEqual(sortedIds(await truth('feedback', [f1, f2])), [f1], 'the refused insert left nothing');
    assert.deepEqual(ok(await asUser(u).from('feedback').select('*').eq('id', f1)), [], 'and nobody reads it back');
    refused(await asAnon().from('feedback').insert({ id: newId(), author: u.id }), 'feedback', 401);
  });
});

// ---------------------------------------------------------------- updates and deletes

describe('RLS updates, deletes and upserts', () => {
  it('updates and deletes of hidden rows change nothing and answer []', { timeout: 20_000 }, async () => {
    const alice = user(), bob = user();
    const [bPriv, bPub] = [newId(), newId()];
    await seed('notes', [
      { id: bPriv, owner: bob.id, body: 'b', is_public: false },
      { id: bPub, owner: bob.id, body: 'b pub', is_public: true },
    ]);
    const before = await truth('notes', [bPriv, bPub]);
    const sb = asUser(alice);
    let r = await sb.from('notes').update({ body: 'hacked' }).eq('id', bPriv).select();
    assert.deepEqual([r.error, r.status, r.data], [null, 200, []]);
    // visible to SELECT, not to UPDATE: still not updated
    r = await sb.from('notes').update({ body: 'hacked' }).eq('id', bPub).select();
    assert.deepEqual([r.error, r.data], [null, []]);
    r = await sb.from('notes').update({ body: 'hacked' }, { count: 'exact' }).in('id', [bPriv, bPub]);
    assert.deepEqual([r.error, r.count], [null, 0]);
    r = await sb.from('notes').delete().in('id', [bPriv, bPub]).select();
    assert.deepEqual([r.error, r.data], [null, []]);
    r = await sb.from('notes').delete({ count: 'exact' }).in('id', [bPriv, bPub]);
    assert.deepEqual([r.error, r.count], [null, 0]);
    r = await asAnon().from('notes').delete().eq('id', bPub).select();
    assert.deepEqual([r.error, r.data], [null, []]);
    assert.deepEqual(await truth('notes', [bPriv, bPub]), before);
    // the owner can
    r = await asUser(bob).from('notes').update({ body: 'edited' }).eq('id', bPriv).select('id, body');
    assert.deepEqual(ok(r), [{ id: bPriv, body: 'edited' }]);
    r = await asUser(bob).from('notes').delete().eq('id', bPub).select('id');
    assert.deepEqual(ok(r), [{ id: bPub }]);
    assert.deepEqual(sortedIds(await truth('notes', [bPriv, bPub])), [bPriv]);
  });

  it('an update that moves a row out of WITH CHECK is 42501 and changes nothing', { timeout: 20_000 }, async () => {
    const alice = user(), bob = user();
    const [a1, a2] = [newId(), newId()];
    await seed('notes', [
      { id: a1, owner: alice.id, body: 'one', is_public: false },
      { id: a2, owner: alice.id, body: 'two', is_public: false },
    ]);
    const before = await truth('notes', [a1, a2]);
    refused(await asUser(alice).from('notes').update({ owner: bob.id }).eq('id', a1).select(), 'notes', 403);
    refused(await asUser(alice).from('notes').update({ owner: bob.id }).in('id', [a1, a2]), 'notes', 403);
    assert.deepEqual(await truth('notes', [a1, a2]), before);
    // team docs: moving a doc to a team outside the token
    const red = `red-${newId()}`, other = `other-${newId()}`;
    const d = newId();
    await seed('docs', [{ id: d, team: red, title: 't' }]);
    refused(await asUser(user([red])).from('docs').update({ team: other }).eq('id', d), 'docs', 403);
    assert.equal((await truth('docs', [d]))[0].team, red);
  });

  it('an upsert onto a row the policies hide is 42501 and changes nothing', { timeout: 20_000 }, async () => {
    const alice = user(), bob = user();
    const [bPriv, bPub, fresh, mine] = [newId(), newId(), newId(), newId()];
    await seed('notes', [
      { id: bPriv, owner: bob.id, body: 'b', is_public: false },
      { id: bPub, owner: bob.id, body: 'b pub', is_public: true },
      { id: mine, owner: alice.id, body: 'a', is_public: false },
    ]);
    const before = await truth('notes', [bPriv, bPub]);
    const sb = asUser(alice);
    refused(await sb.from('notes').upsert({ id: bPriv, owner: alice.id, body: 'taken over' }), 'notes', 403);
    refused(await sb.from('notes').upsert({ id: bPub, owner: alice.id, body: 'taken over' }).select(), 'notes', 403);
    refused(await asAnon().from('notes').upsert({ id: bPub, owner: alice.id, body: 'anon' }), 'notes', 401);
    assert.deepEqual(await truth('notes', [bPriv, bPub]), before);
    // onto the own row and a new one: both work, in one request
    const r = await sb.from('notes').upsert([
      { id: mine, owner: alice.id, body: 'a2', is_public: false },
      { id: fresh, owner: alice.id, body: 'new', is_public: false },
    ]).select('id, body');
    assert.deepEqual(ok(r).sort((x, y) => x.id - y.id), [{ id: fresh, body: 'new' }, { id: mine, body: 'a2' }].sort((x, y) => x.id - y.id));
    // an upsert that would hand the own row to someone else
    refused(await sb.from('notes').upsert({ id: mine, owner: bob.id, body: 'gift' }), 'notes', 403);
    assert.equal((await truth('notes', [mine]))[0].owner, alice.id);
    // ignore-duplicates skips the hidden row without touching it
    const ig = await sb.from('notes').upsert({ id: bPriv, owner: alice.id, body: 'x' }, { ignoreDuplicates: true });
    assert.equal(ig.error, null);
    assert.deepEqual(await truth('notes', [bPriv, bPub]), before);
  });

  it('a write with Rtsync-Base on a hidden row is as on a row that is gone', { timeout: 20_000 }, async () => {
    const alice = user(), bob = user();
    const [b1, a1] = [newId(), newId()];
    await seed('notes', [
      { id: b1, owner: bob.id, body: 'bob secret', is_public: false },
      { id: a1, owner: alice.id, body: 'mine', is_public: false },
    ]);
    let raw = await rest('PATCH', `notes?id=eq.${b1}`, {
      bearer: alice.token, body: { body: 'x' }, headers: { 'Rtsync-Base': JSON.stringify({ body: 'bob secret' }) },
    });
    assert.equal(raw.status, 409, raw.text);
    assert.equal(raw.json.current, null, 'nothing of the hidden row is shown');
    assert.ok(!raw.text.includes('bob secret'));
    raw = await rest('DELETE', `notes?id=eq.${b1}`, {
      bearer: alice.token, headers: { 'Rtsync-Base': JSON.stringify({ body: 'bob secret' }), 'Rtsync-Strategy': 'lww' },
    });
    assert.ok(raw.status < 300, raw.text);
    assert.equal((await truth('notes', [b1])).length, 1, 'still there');
    raw = await rest('PATCH', `notes?id=eq.${a1}`, {
      bearer: alice.token, body: { owner: bob.id }, headers: { 'Rtsync-Base': JSON.stringify({ body: 'mine' }) },
    });
    assert.deepEqual([raw.status, raw.json?.code], [403, '42501'], raw.text);
    raw = await rest('PATCH', `notes?id=eq.${a1}`, {
      bearer: alice.token, body: { body: 'edited' }, headers: { 'Rtsync-Base': JSON.stringify({ body: 'mine' }), Prefer: 'return=representation' },
    });
    assert.equal(raw.status, 200, raw.text);
    assert.deepEqual(raw.json, [{ id: a1, owner: alice.id, body: 'edited', is_public: false }]);
  });

  it('the service role bypasses RLS on every path', { timeout: 20_000 }, async () => {
    const bob = user();
    const [n1, n2] = [newId(), newId()];
    const sb = asService();
    ok(await sb.from('notes').insert({ id: n1, owner: bob.id, body: 'by service' }));
    ok(await sb.from('notes').upsert({ id: n2, owner: bob.id, body: 'upserted' }));
    assert.deepEqual(ok(await sb.from('notes').update({ body: 'changed' }).eq('id', n1).select('id, body')), [{ id: n1, body: 'changed' }]);
    ok(await sb.from('feedback').insert({ id: n1, author: bob.id, status: 'done' }).select());
    assert.equal(ok(await sb.from('feedback').select('id').eq('id', n1)).length, 1);
    assert.deepEqual(ok(await sb.from('notes').delete().in('id', [n1, n2]).select('id')).length, 2);
  });
});

// ---------------------------------------------------------------- tokens

describe('RLS and tokens', () => {
  it('Authorization wins over the apikey; the apikey applies without it', { timeout: 20_000 }, async () => {
    const alice = user();
    const id = newId();
    await seed('notes', [{ id, owner: alice.id, body: 'a', is_public: false }]);
    let raw = await rest('GET', `notes?id=eq.${id}&select=id`, { bearer: alice.token });
    assert.deepEqual([raw.status, raw.json], [200, [{ id }]]);
    raw = await rest('GET', `notes?id=eq.${id}&select=id`);
    assert.deepEqual([raw.status, raw.json], [200, []], 'anon key alone: anon');
    raw = await rest('GET', `notes?id=eq.${id}&select=id`, { apikey: alice.token });
    assert.deepEqual([raw.status, raw.json], [200, [{ id }]], 'the user token as apikey');
    raw = await rest('GET', `notes?id=eq.${id}&select=id`, { apikey: serviceKey(), bearer: anonKey() });
    assert.deepEqual([raw.status, raw.json], [200, []], 'a service apikey does not lift an anon bearer');
  });

  it('forged tokens are 401: bad signature, a user claiming service_role, alg none', { timeout: 20_000 }, async () => {
    const alice = user();
    const id = newId();
    await seed('secrets', [{ id, value: 'top' }]);
    const forged = mintToken({ role: 'service_role', secret: `${JWT_SECRET}-wrong` });
    for (const bearer of [
      forged,
      mintToken({ role: 'authenticated', secret: 'not-the-secret', claims: { sub: alice.id } }),
      // the user's own token with its role claim changed, signature kept
      (() => {
        const [h, p, s] = alice.token.split('.');
        const claims = JSON.parse(Buffer.from(p, 'base64url').toString());
        claims.role = 'service_role';
        return `${h}.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.${s}`;
      })(),
      `${Buffer.from('{"alg":"none","typ":"JWT"}').toString('base64url')}.${Buffer.from(JSON.stringify({ role: 'service_role', exp: Math.floor(Date.now() / 1000) + 60 })).toString('base64url')}.`,
    ]) {
      const raw = await rest('GET', `secrets?id=eq.${id}`, { bearer });
      assert.equal(raw.status, 401, `token ${bearer.slice(0, 40)}…: ${raw.text}`);
      assert.ok(!raw.text.includes('top'));
      const r = await track(createClient(server.httpUrl, anonKey(), clientOpts({ Authorization: `Bearer ${bearer}` })))
        .from('secrets').insert({ id: newId(), value: 'forged' });
      assert.equal(r.status, 401);
    }
    // a forged apikey alone
    const raw = await rest('GET', `secrets?id=eq.${id}`, { apikey: forged });
    assert.equal(raw.status, 401);
    assert.deepEqual(await truth('secrets', [id]), [{ id, value: 'top' }]);
  });

  it('an idempotency key replays only for the requester that used it', { timeout: 20_000 }, async () => {
    const alice = user(), bob = user();
    const id = newId();
    const key = `k-${id}`;
    const body = { id, owner: alice.id, body: 'once' };
    const headers = { 'Idempotency-Key': key, Prefer: 'return=representation' };
    let raw = await rest('POST', 'notes', { bearer: alice.token, body, headers });
    assert.equal(raw.status, 201, raw.text);
    raw = await rest('POST', 'notes', { bearer: alice.token, body, headers });
    assert.equal(raw.status, 201, raw.text);
    assert.deepEqual(raw.json, [{ id, owner: alice.id, body: 'once', is_public: false }]);
    raw = await rest('POST', 'notes', { bearer: bob.token, body, headers });
    assert.notEqual(raw.status, 201, `another user must not get the recorded rows: ${raw.text}`);
    assert.ok(!raw.text.includes('"once"'));
  });
});

// ---------------------------------------------------------------- start

/** Runs `rtsync serve` with schema; resolves with its exit code and output. */
function serveWith(schema) {
  const d = mkdtempSync(join(tmpdir(), 'rtsync-rls-bad-'));
  const path = join(d, 'schema.sql');
  writeFileSync(path, schema);
  return new Promise((resolve) => {
    execFile(process.env.RTSYNC_BIN, ['serve', '--listen', '127.0.0.1:0', '--jwt-secret', JWT_SECRET,
      '--data-dir', d, '--schema', path], { timeout: 15_000 }, (err, stdout, stderr) => {
      rmSync(d, { recursive: true, force: true });
      resolve({ code: err ? err.code : 0, out: `${stdout}${stderr}` });
    });
  });
}

describe('RLS at start (embedded store)', { skip: STORE !== 'sqlite' && 'the database itself checks policies' }, () => {
  it('an unsupported policy expression refuses start with the policy name and its line:column', { timeout: 20_000 }, async () => {
    const { code, out } = await serveWith(`CREATE TABLE IF NOT EXISTS t (id bigint PRIMARY KEY, at text);
ALTER TABLE t ENABLE ROW LEVEL SECURITY;
-- the next one compares with a function rtsync does not evaluate
CREATE POLICY "too clever" ON t
  FOR SELECT USING (at > now());
`);
    assert.notEqual(code, 0, out);
    assert.match(out, /too clever/);
    assert.match(out, /schema line (4|5):\d+:/, out);
  });

  it('a policy naming a column that does not exist refuses start', { timeout: 20_000 }, async () => {
    const { code, out } = await serveWith(`CREATE TABLE IF NOT EXISTS t (id bigint PRIMARY KEY, owner text);
CREATE POLICY "own" ON t USING (ownr = auth.uid());
`);
    assert.notEqual(code, 0, out);
    assert.match(out, /own/);
    assert.match(out, /ownr/);
  });

  it('a policy on a table that does not exist refuses start', { timeout: 20_000 }, async () => {
    const { code, out } = await serveWith(`CREATE TABLE IF NOT EXISTS t (id bigint PRIMARY KEY);
CREATE POLICY "ghost" ON missing USING (owner = auth.uid());
`);
    assert.notEqual(code, 0, out);
    assert.match(out, /ghost/);
    assert.match(out, /relation "missing" does not exist/);
  });

  it('a bad statement refuses start with its line:column', { timeout: 20_000 }, async () => {
    const { code, out } = await serveWith(`CREATE TABLE IF NOT EXISTS t (id bigint PRIMARY KEY);

  CREATE TABLE broken (;
`);
    assert.notEqual(code, 0, out);
    assert.match(out, /schema line 3:3: /, out);
  });
});
