// Extra interop tests for either store (SQLite, or PostgreSQL under
// tests/postgres/run.sh): the REST data API as
// supabase-js' from() uses it (PostgREST semantics) and postgres_changes as
// realtime-js consumes it. Every test works on its own rows (a unique `grp`
// or unique ids), so tests do not see each other's data or changes.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, STORE } from './lib/server.mjs';
import { rawConnect } from './lib/raw.mjs';
import { Recorder, scope, withTimeout, sleep, supabaseClient } from './lib/util.mjs';


const SCHEMA = `
CREATE TABLE IF NOT EXISTS items (
  id bigint PRIMARY KEY,
  grp text NOT NULL,
  name text NOT NULL,
  email text UNIQUE,
  done boolean NOT NULL DEFAULT false,
  qty integer,
  price double precision,
  meta jsonb,
  tags json,
  note text
);
CREATE TABLE IF NOT EXISTS lists (id bigint PRIMARY KEY, title text, archived boolean DEFAULT false);
CREATE TABLE IF NOT EXISTS entries (
  id bigint PRIMARY KEY,
  list_id bigint NOT NULL REFERENCES lists(id),
  body text
);
`;

let server, dir;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rtsync-store-extra-'));
  const schemaPath = join(dir, 'schema.sql');
  writeFileSync(schemaPath, SCHEMA);
  server = await startServer({ args: ['--schema', schemaPath, '--db', join(dir, 'test.db')] });
});
after(async () => {
  if (server) await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

function supabase(sc, vsn = '2.0.0') {
  return supabaseClient(sc, server, { vsn });
}

let nextId = 10_000;
const newId = () => ++nextId;
let nextGrp = 0;
const newGrp = (p = 'g') => `${p}-${process.pid}-${++nextGrp}`;

/** Raw HTTP against the REST API with a valid token. */
async function rest(method, path, { body, headers = {} } = {}) {
  const key = server.token({ role: 'anon' });
  const res = await fetch(`${server.httpUrl}/rest/v1/${path}`, {
    method,
    headers: { apikey: key, Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', ...headers },
    body,
  });
  const text = await res.text();
  let json;
  try { json = text ? JSON.parse(text) : null; } catch { json = undefined; }
  return { status: res.status, headers: res.headers, text, json };
}

const ids = (r) => {
  assert.equal(r.error, null, `unexpected error ${JSON.stringify(r.error)}`);
  return r.data.map((x) => x.id);
};

/**
 * A channel with one recorder per postgres_changes binding; resolves once
 * SUBSCRIBED and the "Subscribed to PostgreSQL" system message arrived.
 */
async function listen(sb, topic, bindings) {
  const recs = bindings.map((b, i) => new Recorder(`${topic}[${i}] ${JSON.stringify(b)}`));
  const system = new Recorder(`system on ${topic}`);
  let ch = sb.channel(topic);
  bindings.forEach((b, i) => { ch = ch.on('postgres_changes', b, (p) => recs[i].push(p)); });
  ch.on('system', {}, (p) => system.push(p));
  await withTimeout(new Promise((resolve, reject) => ch.subscribe((s, err) => {
    if (s === 'SUBSCRIBED') resolve();
    else reject(new Error(`${topic}: ${s}${err ? `: ${err.message}` : ''}`));
  })), 12_000, `SUBSCRIBED on ${topic}`);
  const sys = await system.waitFor(() => true, 5000, 'postgres_changes system message');
  assert.equal(sys.status, 'ok', `system message: ${JSON.stringify(sys)}`);
  return { ch, recs, system };
}

const rowKey = (e) => (e.eventType === 'DELETE' ? e.old.id : e.new.id);

/** Seed rows for one group (all keys given, so no columns= surprises). */
async function seed(sb, grp, rows) {
  const full = rows.map((r) => ({
    id: newId(), grp, name: 'n', email: null, done: false, qty: null, price: null, meta: null, tags: null, note: null, ...r,
  }));
  const r = await sb.from('items').insert(full);
  assert.equal(r.error, null, `seed: ${JSON.stringify(r.error)}`);
  assert.equal(r.status, 201);
  return full;
}

// ------------------------------------------------------------------ REST reads

describe('REST reads through supabase-js', () => {
  it('select: column lists, aliases, * and spaces', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('sel');
    const [a] = await seed(sb, grp, [{ name: 'alpha', qty: 3, price: 2.5, meta: { k: [1, 2] } }]);
    let r = await sb.from('items').select('id, label:name, qty').eq('grp', grp);
    assert.equal(r.error, null);
    assert.equal(r.status, 200);
    assert.deepEqual(r.data, [{ id: a.id, label: 'alpha', qty: 3 }]);
    assert.deepEqual(Object.keys(r.data[0]), ['id', 'label', 'qty'], 'keys in select order');
    r = await sb.from('items').select('*').eq('grp', grp);
    assert.deepEqual(r.data, [{ ...a }]);
    assert.deepEqual(Object.keys(r.data[0]), ['id', 'grp', 'name', 'email', 'done', 'qty', 'price', 'meta', 'tags', 'note']);
    r = await sb.from('items').select('n:name,*').eq('grp', grp);
    assert.deepEqual(r.data, [{ n: 'alpha', ...a }]);
    r = await sb.from('items').select('price,meta,price2:price').eq('grp', grp);
    assert.deepEqual(r.data, [{ price: 2.5, meta: { k: [1, 2] }, price2: 2.5 }]);
    r = await sb.from('items').select('nope').eq('grp', grp);
    assert.equal(r.status, 400);
    assert.equal(r.error.code, '42703');
    assert.equal(r.data, null);
  });

  it('comparison filters: eq neq gt gte lt lte like ilike is in and not.*', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('cmp');
    const rows = await seed(sb, grp, [
      { name: 'Apple pie', qty: 1, price: 1.25, done: true, note: 'x' },
      { name: 'apple tart', qty: 2, price: 2.5, done: false, note: null },
      { name: 'Banana', qty: 3, price: -0.5, done: true, note: 'y' },
      { name: 'cherry', qty: null, price: null, done: false, note: null },
    ]);
    const [A, B, C, D] = rows.map((r) => r.id);
    const q = () => sb.from('items').select('id').eq('grp', grp).order('id');
    assert.deepEqual(ids(await q().eq('qty', 2)), [B]);
    assert.deepEqual(ids(await q().neq('qty', 2)), [A, C], 'neq excludes NULL like SQL');
    assert.deepEqual(ids(await q().gt('qty', 1)), [B, C]);
    assert.deepEqual(ids(await q().gte('qty', 2)), [B, C]);
    assert.deepEqual(ids(await q().lt('price', 1.25)), [C]);
    assert.deepEqual(ids(await q().lte('price', 1.25)), [A, C]);
    assert.deepEqual(ids(await q().gt('price', -1)), [A, B, C]);
    assert.deepEqual(ids(await q().eq('price', 2.5)), [B]);
    assert.deepEqual(ids(await q().like('name', 'apple%')), [B], 'like is case-sensitive');
    assert.deepEqual(ids(await q().like('name', '%e%')), [A, B, D]);
    assert.deepEqual(ids(await q().like('name', '_anana')), [C]);
    assert.deepEqual(ids(await q().ilike('name', 'APPLE%')), [A, B]);
    assert.deepEqual(ids(await q().ilike('name', '*PIE')), [A], 'PostgREST accepts * for %');
    assert.deepEqual(ids(await q().is('qty', null)), [D]);
    assert.deepEqual(ids(await q().is('done', true)), [A, C]);
    assert.deepEqual(ids(await q().is('done', false)), [B, D]);
    assert.deepEqual(ids(await q().eq('done', true)), [A, C]);
    assert.deepEqual(ids(await q().eq('done', false)), [B, D]);
    assert.deepEqual(ids(await q().in('qty', [1, 3, 99])), [A, C]);
    assert.deepEqual(ids(await q().in('name', ['Banana', 'cherry'])), [C, D]);
    assert.deepEqual(ids(await q().in('qty', [])), [], 'empty in-list matches nothing');
    assert.deepEqual(ids(await q().not('qty', 'in', '(1,3)')), [B]);
    assert.deepEqual(ids(await q().not('qty', 'is', null)), [A, B, C]);
    assert.deepEqual(ids(await q().not('name', 'like', '%a%')), [A, D]);
    assert.deepEqual(ids(await q().not('name', 'ilike', 'a%')), [C, D]);
    assert.deepEqual(ids(await q().not('qty', 'eq', 2)), [A, C]);
    assert.deepEqual(ids(await q().not('done', 'is', true)), [B, D]);
    assert.deepEqual(ids(await q().filter('qty', 'gte', 2)), [B, C]);
    assert.deepEqual(ids(await q().filter('name', 'in', '("Banana",cherry)')), [C, D]);
    assert.deepEqual(ids(await q().filter('note', 'not.is', 'null')), [A, C]);
    assert.deepEqual(ids(await q().match({ done: true, qty: 3 })), [C]);
    assert.deepEqual(ids(await q().match({ name: 'cherry' })), [D]);
    assert.deepEqual(ids(await q().gt('qty', 0).lt('qty', 3)), [A, B], 'several filters AND together');
  });

  it('or() with nested and(), not.or and quoted values', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('or');
    const rows = await seed(sb, grp, [
      { name: 'a,b', qty: 1, done: true },
      { name: 'c', qty: 5, done: false, price: 9.5 },
      { name: 'd', qty: 7, done: true, price: 0.5 },
      { name: 'e', qty: null, done: false },
    ]);
    const [A, B, C, D] = rows.map((r) => r.id);
    const q = () => sb.from('items').select('id').eq('grp', grp).order('id');
    assert.deepEqual(ids(await q().or('qty.eq.1,qty.eq.7')), [A, C]);
    assert.deepEqual(ids(await q().or('done.is.true,and(qty.gt.4,price.gt.5)')), [A, B, C]);
    assert.deepEqual(ids(await q().or('and(done.is.false,qty.is.null),and(done.is.true,price.lt.1)')), [C, D]);
    assert.deepEqual(ids(await q().or('name.eq."a,b",name.eq.e')), [A, D]);
    assert.deepEqual(ids(await q().or('name.in.("a,b",c)')), [A, B]);
    assert.deepEqual(ids(await q().or('qty.gte.5', {})), [B, C]);
    assert.deepEqual(ids(await q().not('qty', 'is', null).or('qty.lt.2,qty.gt.6')), [A, C]);
    assert.deepEqual(ids(await q().or('name.like.*b*,not.and(qty.lt.100,done.is.false)')), [A, C], 'not.and inside or');
    assert.deepEqual(ids(await q().or('qty.eq.1').or('qty.eq.1,qty.eq.5')), [A], 'two or= params AND together');
    const bad = await q().or('qty.eq.1,(');
    assert.equal(bad.status, 400);
    assert.equal(bad.error.code, 'PGRST100');
  });


  it('order asc/desc with nullsFirst/nullsLast and several columns; limit and range', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('ord');
    const rows = await seed(sb, grp, [
      { name: 'x', qty: 2, price: 1 },
      { name: 'y', qty: null, price: 2 },
      { name: 'x', qty: 1, price: 3 },
      { name: 'z', qty: 3, price: null },
      { name: 'y', qty: 2, price: 0 },
    ]);
    const [A, B, C, D, E] = rows.map((r) => r.id);
    const q = () => sb.from('items').select('id').eq('grp', grp);
    assert.deepEqual(ids(await q().order('qty').order('id')), [C, A, E, D, B], 'asc: nulls last');
    assert.deepEqual(ids(await q().order('qty', { ascending: false }).order('id')), [B, D, A, E, C], 'desc: nulls first');
    assert.deepEqual(ids(await q().order('qty', { nullsFirst: true }).order('id')), [B, C, A, E, D]);
    assert.deepEqual(ids(await q().order('qty', { ascending: false, nullsFirst: false }).order('id')), [D, A, E, C, B]);
    assert.deepEqual(ids(await q().order('name').order('price', { ascending: false })), [C, A, B, E, D]);
    assert.deepEqual(ids(await q().order('price', { ascending: false })), [D, C, B, A, E]);
    assert.deepEqual(ids(await q().order('id').limit(2)), [A, B]);
    assert.deepEqual(ids(await q().order('id').range(1, 3)), [B, C, D]);
    assert.deepEqual(ids(await q().order('id').range(4, 10)), [E]);
    assert.deepEqual(ids(await q().order('id').limit(0)), []);
  });

  it('count: exact with and without head, with limit/range, and the Content-Range header', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('cnt');
    const rows = await seed(sb, grp, [{ qty: 1 }, { qty: 2 }, { qty: 2 }, { qty: 3 }, { qty: null }]);
    let r = await sb.from('items').select('*', { count: 'exact', head: true }).eq('grp', grp);
    assert.equal(r.error, null);
    assert.equal(r.status, 200);
    assert.equal(r.data, null);
    assert.equal(r.count, 5);
    r = await sb.from('items').select('id', { count: 'exact' }).eq('grp', grp).order('id').range(1, 2);
    assert.equal(r.count, 5);
    assert.deepEqual(r.data.map((x) => x.id), [rows[1].id, rows[2].id]);
    r = await sb.from('items').select('id', { count: 'exact' }).eq('grp', grp).eq('qty', 2).limit(1);
    assert.equal(r.count, 2);
    assert.equal(r.data.length, 1);
    r = await sb.from('items').select('id', { count: 'exact' }).eq('grp', grp).eq('qty', 42);
    assert.equal(r.count, 0);
    assert.deepEqual(r.data, []);
    r = await sb.from('items').select('id', { count: 'exact', head: true }).eq('grp', grp).is('qty', null);
    assert.equal(r.count, 1);
    r = await sb.from('items').select('id').eq('grp', grp);
    assert.equal(r.count, null, 'no count unless asked');

    let raw = await rest('GET', `items?select=id&grp=eq.${grp}&order=id&offset=1&limit=2`, { headers: { Prefer: 'count=exact' } });
    assert.equal(raw.status, 206, 'a partial page with an exact count is 206, as PostgREST answers');
    assert.equal(raw.headers.get('content-range'), '1-2/5');
    raw = await rest('GET', `items?select=id&grp=eq.${grp}&order=id`, { headers: { Range: '0-1' } });
    assert.equal(raw.headers.get('content-range'), '0-1/*');
    assert.equal(raw.json.length, 2);
    raw = await rest('HEAD', `items?grp=eq.${grp}`, { headers: { Prefer: 'count=exact' } });
    assert.equal(raw.status, 200);
    assert.equal(raw.headers.get('content-range'), '0-4/5');
  });

  it('range past the end with count=exact is 416 PGRST103, as PostgREST answers', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('r416');
    await seed(sb, grp, [{}, {}, {}]);
    const r = await sb.from('items').select('id', { count: 'exact' }).eq('grp', grp).range(10, 19);
    assert.equal(r.status, 416, JSON.stringify(r));
    assert.equal(r.error?.code, 'PGRST103');
    assert.equal(r.data, null);
    // Without a count PostgREST cannot know: an empty page.
    const r2 = await sb.from('items').select('id').eq('grp', grp).range(10, 19);
    assert.equal(r2.status, 200);
    assert.deepEqual(r2.data, []);
  });

  it('a partial page with count=exact answers 206 Partial Content, a full one 200', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('r206');
    await seed(sb, grp, [{}, {}, {}]);
    let r = await sb.from('items').select('id', { count: 'exact' }).eq('grp', grp).order('id').range(0, 1);
    assert.deepEqual([r.status, r.count, r.data.length], [206, 3, 2]);
    r = await sb.from('items').select('id', { count: 'exact' }).eq('grp', grp).order('id');
    assert.deepEqual([r.status, r.count, r.data.length], [200, 3, 3]);
  });

  it('single() and maybeSingle() with 0, 1 and 2 rows', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('one');
    const [a] = await seed(sb, grp, [{ name: 'only', qty: 1 }, { name: 'twin', qty: 2 }, { name: 'twin', qty: 3 }]);
    let r = await sb.from('items').select('id,name').eq('grp', grp).eq('name', 'only').single();
    assert.deepEqual([r.status, r.error, r.data], [200, null, { id: a.id, name: 'only' }]);
    r = await sb.from('items').select('id').eq('grp', grp).eq('name', 'none').single();
    assert.equal(r.status, 406);
    assert.equal(r.data, null);
    assert.equal(r.error.code, 'PGRST116');
    assert.equal(r.error.details, 'The result contains 0 rows');
    r = await sb.from('items').select('id').eq('grp', grp).eq('name', 'twin').single();
    assert.equal(r.status, 406);
    assert.equal(r.error.code, 'PGRST116');
    assert.equal(r.error.details, 'The result contains 2 rows');
    r = await sb.from('items').select('id,name').eq('grp', grp).eq('name', 'only').maybeSingle();
    assert.deepEqual([r.status, r.error, r.data], [200, null, { id: a.id, name: 'only' }]);
    r = await sb.from('items').select('id').eq('grp', grp).eq('name', 'none').maybeSingle();
    assert.deepEqual([r.status, r.error, r.data], [200, null, null]);
    r = await sb.from('items').select('id').eq('grp', grp).eq('name', 'twin').maybeSingle();
    assert.equal(r.status, 406);
    assert.equal(r.error.code, 'PGRST116');
    assert.equal(r.data, null);
    // single() on a write
    const id = newId();
    r = await sb.from('items').insert({ id, grp, name: 'written' }).select('id,name,done').single();
    assert.deepEqual([r.status, r.error, r.data], [201, null, { id, name: 'written', done: false }]);
    r = await sb.from('items').update({ note: 'u' }).eq('id', id).select('note').single();
    assert.deepEqual([r.status, r.error, r.data], [200, null, { note: 'u' }]);
    r = await sb.from('items').update({ note: 'u' }).eq('id', -1).select('note').maybeSingle();
    assert.deepEqual([r.error, r.data], [null, null]);
  });

  it('values with commas, quotes, spaces, unicode, percent and other URL characters in eq, in, like', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('chars');
    const names = ['a,b', 'say "hi"', "it's", '  spaced  ', 'ünïcødé ✓ 日本 😀', '100%', 'a&b=c', 'x+y', '(paren)',
      'back\\slash', 'dot.dot.', 'semi;colon#hash?q', 'star*', 'under_score', 'eq.x', 'null', 'true', '1e3'];
    const rows = await seed(sb, grp, names.map((name) => ({ name })));
    const byName = Object.fromEntries(rows.map((r) => [r.name, r.id]));
    for (const n of names) {
      const r = await sb.from('items').select('id,name').eq('grp', grp).eq('name', n);
      assert.equal(r.error, null, `eq ${JSON.stringify(n)}: ${JSON.stringify(r.error)}`);
      assert.deepEqual(r.data, [{ id: byName[n], name: n }], `eq ${JSON.stringify(n)}`);
    }
    const r1 = await sb.from('items').select('id').eq('grp', grp).neq('name', 'a,b');
    assert.equal(r1.data.length, names.length - 1);
    const pick = ['a,b', '(paren)', 'say "hi"', "it's", 'ünïcødé ✓ 日本 😀', '100%', 'a&b=c', 'x+y', 'null', 'dot.dot.'];
    const r2 = await sb.from('items').select('id').eq('grp', grp).in('name', pick).order('id');
    assert.deepEqual(ids(r2), pick.map((n) => byName[n]).sort((x, y) => x - y), 'in list');
    const r3 = await sb.from('items').select('id').eq('grp', grp).not('name', 'in', `("a,b","(paren)",x+y,true)`).order('id');
    assert.equal(r3.data.length, names.length - 4, 'not.in with quoted values');
    const r4 = await sb.from('items').select('name').eq('grp', grp).like('name', '%\\%');
    assert.deepEqual(r4.data, [{ name: '100%' }], 'escaped % in like');
    const r5 = await sb.from('items').select('name').eq('grp', grp).like('name', '%日本%');
    assert.deepEqual(r5.data, [{ name: 'ünïcødé ✓ 日本 😀' }]);
    const r6 = await sb.from('items').select('name').eq('grp', grp).or('name.eq."a,b",name.eq."say \\"hi\\""').order('id');
    assert.deepEqual(r6.data, [{ name: 'a,b' }, { name: 'say "hi"' }], 'quoted values with escapes in or()');
    const r7 = await sb.from('items').select('name').eq('grp', grp).like('name', 'under\\_score');
    assert.deepEqual(r7.data, [{ name: 'under_score' }]);
  });

  it('ilike folds non-ASCII letters like Postgres does', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('uni');
    const [a] = await seed(sb, grp, [{ name: 'ÄRGER Über' }, { name: 'other' }]);
    const r = await sb.from('items').select('id').eq('grp', grp).ilike('name', '%ärger über%');
    assert.deepEqual(ids(r), [a.id]);
  });

  it('types: booleans, floats, big integers up to 2^53, json objects and arrays, nulls', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('types');
    const big = 2 ** 53;
    const row = {
      id: big, grp, name: 'typed', email: null, done: true, qty: -2147483648, price: 0.1 + 0.2,
      meta: { a: { b: [1, true, null, 's', 1.5] }, 'k,e y': 'v"' }, tags: [1, 'two', { three: 3 }, []], note: 'null',
    };
    const row2 = { ...row, id: big - 1, done: false, qty: 2147483647, price: -1e-7, meta: {}, tags: [], note: 'true' };
    const row3 = { ...row, id: big - 2, done: false, qty: 0, price: 123456789.12345679, meta: null, tags: null, note: null };
    sc.defer(() => sb.from('items').delete().eq('grp', grp));
    let r = await sb.from('items').insert([row, row2, row3]).select();
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.deepEqual(r.data, [row, row2, row3]);
    r = await sb.from('items').select().eq('grp', grp).order('id', { ascending: false });
    assert.deepEqual(r.data, [row, row2, row3], 'read back exactly');
    r = await sb.from('items').select('id').eq('id', big);
    assert.deepEqual(r.data, [{ id: big }]);
    r = await sb.from('items').select('id').eq('grp', grp).eq('price', 0.1 + 0.2);
    assert.deepEqual(r.data, [{ id: big }], 'float equality round-trips');
    r = await sb.from('items').select('id').eq('grp', grp).gt('price', 123456789.1234567).lt('price', 123456789.1234568);
    assert.deepEqual(r.data, [{ id: big - 2 }]);
    r = await sb.from('items').select('id').eq('grp', grp).is('meta', null);
    assert.deepEqual(r.data, [{ id: big - 2 }]);
    r = await sb.from('items').update({ done: false, meta: [1, { x: null }] }).eq('id', big).select('done,meta');
    assert.deepEqual(r.data, [{ done: false, meta: [1, { x: null }] }]);
  });

  it('json columns keep scalar JSON values (true, "42", "[1]") as sent', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('jscalar');
    const rows = [
      { id: newId(), grp, name: 'b', meta: true, tags: false },
      { id: newId(), grp, name: 's', meta: '42', tags: '[1]' },
      { id: newId(), grp, name: 'n', meta: 7, tags: 'hello' },
    ];
    const r = await sb.from('items').insert(rows).select('id,grp,name,meta,tags');
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.deepEqual(r.data, rows);
    const back = await sb.from('items').select('id,grp,name,meta,tags').eq('grp', grp).order('id');
    assert.deepEqual(back.data, rows);
  });
});

// ----------------------------------------------------------------- REST writes

describe('REST writes through supabase-js', () => {
  it('insert an object and arrays with different key sets (columns=)', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('ins');
    const a = newId();
    let r = await sb.from('items').insert({ id: a, grp, name: 'obj' });
    assert.deepEqual([r.status, r.error, r.data, r.count], [201, null, null, null]);
    r = await sb.from('items').select().eq('id', a).single();
    assert.deepEqual(r.data, { id: a, grp, name: 'obj', email: null, done: false, qty: null, price: null, meta: null, tags: null, note: null },
      'defaults for the columns not sent');
    const b = newId(), c = newId();
    r = await sb.from('items').insert([
      { id: b, grp, name: 'first', qty: 5 },
      { id: c, grp, name: 'second', price: 1.5, note: 'n' },
    ], { count: 'exact' }).select('id,qty,price,note,done');
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.equal(r.status, 201);
    assert.equal(r.count, 2);
    assert.deepEqual(r.data, [
      { id: b, qty: 5, price: null, note: null, done: false },
      { id: c, qty: null, price: 1.5, note: 'n', done: false },
    ]);
    r = await sb.from('items').insert([]).select();
    assert.deepEqual([r.status, r.error, r.data], [201, null, []], 'empty array insert');
    r = await sb.from('items').insert([]);
    assert.deepEqual([r.status, r.error], [201, null]);
  });

  it('insert with defaultToNull: false (Prefer: missing=default) uses column defaults for missing keys', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('missing');
    const a = newId(), b = newId();
    const r = await sb.from('items').insert([
      { id: a, grp, name: 'with done', done: true },
      { id: b, grp, name: 'without done' },
    ], { defaultToNull: false }).select('id,done');
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.deepEqual(r.data, [{ id: a, done: true }, { id: b, done: false }]);
  });

  it('a missing key in a columns= insert becomes NULL (without missing=default): not-null violation', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('nulls');
    const a = newId(), b = newId();
    const r = await sb.from('items').insert([
      { id: a, grp, name: 'with done', done: true },
      { id: b, grp, name: 'without done' },
    ]).select('id,done');
    assert.equal(r.status, 400);
    assert.equal(r.error.code, '23502');
    const left = await sb.from('items').select('id').eq('grp', grp);
    assert.deepEqual(left.data, [], 'the whole insert is rolled back');
  });

  it('upsert on a unique non-PK column (onConflict), merge and ignoreDuplicates', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('ups');
    const e1 = `${grp}-1@x`, e2 = `${grp}-2@x`, e3 = `${grp}-3@x`;
    const X = newId(), Y = newId(), Z = newId();
    let r = await sb.from('items').insert({ id: X, grp, name: 'old', email: e1, qty: 1 });
    assert.equal(r.error, null);
    r = await sb.from('items').upsert([
      { id: X, grp, name: 'merged', email: e1 },
      { id: Y, grp, name: 'fresh', email: e2 },
    ], { onConflict: 'email' }).select('id,name,email,qty');
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.equal(r.status, 201);
    assert.deepEqual(r.data, [
      { id: X, name: 'merged', email: e1, qty: 1 },
      { id: Y, name: 'fresh', email: e2, qty: null },
    ]);
    r = await sb.from('items').upsert([
      { id: X, grp, name: 'ignored', email: e1 },
      { id: Z, grp, name: 'z', email: e3 },
    ], { onConflict: 'email', ignoreDuplicates: true }).select('id,name');
    assert.equal(r.error, null, JSON.stringify(r.error));
    assert.deepEqual(r.data, [{ id: Z, name: 'z' }], 'only the inserted row is returned');
    r = await sb.from('items').select('id,name').eq('grp', grp).order('id');
    assert.deepEqual(r.data, [{ id: X, name: 'merged' }, { id: Y, name: 'fresh' }, { id: Z, name: 'z' }]);
    // default conflict target: the primary key
    r = await sb.from('items').upsert({ id: Z, grp, name: 'pk-merged', email: e3 }).select('id,name');
    assert.deepEqual(r.data, [{ id: Z, name: 'pk-merged' }]);
    r = await sb.from('items').upsert({ id: Z, grp, name: 'pk-ignored', email: e3 }, { ignoreDuplicates: true }).select('id,name');
    assert.deepEqual([r.error, r.data], [null, []]);
    // a conflict on another unique column than the target is a duplicate key error
    r = await sb.from('items').upsert({ id: newId(), grp, name: 'dup', email: e1 }).select();
    assert.equal(r.status, 409);
    assert.equal(r.error.code, '23505');
  });

  it('upsert with an onConflict column that has no unique constraint is a 400 (42P10)', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('ups42');
    const r = await sb.from('items').upsert({ id: newId(), grp, name: 'x' }, { onConflict: 'name' });
    assert.equal(r.status, 400, JSON.stringify(r));
    assert.equal(r.error.code, '42P10');
  });

  it('update with filters hitting 0, 1 and many rows; delete returning rows', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('upd');
    const rows = await seed(sb, grp, [{ name: 'a', qty: 1 }, { name: 'b', qty: 2 }, { name: 'c', qty: 2 }]);
    const [A, B, C] = rows.map((r) => r.id);
    let r = await sb.from('items').update({ note: 'none' }, { count: 'exact' }).eq('grp', grp).eq('qty', 99).select();
    assert.deepEqual([r.status, r.error, r.data, r.count], [200, null, [], 0]);
    r = await sb.from('items').update({ note: 'one' }).eq('id', A).select('id,note');
    assert.deepEqual([r.status, r.data], [200, [{ id: A, note: 'one' }]]);
    r = await sb.from('items').update({ done: true, price: 2.25 }, { count: 'exact' }).eq('grp', grp).eq('qty', 2).select('id,done,price').order('id');
    assert.deepEqual([r.status, r.count, r.data], [200, 2, [{ id: B, done: true, price: 2.25 }, { id: C, done: true, price: 2.25 }]]);
    r = await sb.from('items').update({ note: null }).eq('grp', grp);
    assert.deepEqual([r.status, r.error, r.data], [204, null, null]);
    r = await sb.from('items').select('id,note').eq('grp', grp).not('note', 'is', null);
    assert.deepEqual(r.data, []);

    r = await sb.from('items').delete().eq('id', A).select('id,name');
    assert.deepEqual([r.status, r.error, r.data], [200, null, [{ id: A, name: 'a' }]]);
    r = await sb.from('items').delete().eq('id', A).select();
    assert.deepEqual([r.status, r.error, r.data], [200, null, []]);
    r = await sb.from('items').delete({ count: 'exact' }).eq('grp', grp);
    assert.deepEqual([r.status, r.error, r.data, r.count], [204, null, null, 2]);
    r = await sb.from('items').select('id', { count: 'exact', head: true }).eq('grp', grp);
    assert.equal(r.count, 0);
  });

  it('a write with single() that affects 2 rows fails with 406 and changes nothing', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('wsingle');
    await seed(sb, grp, [{ name: 'a' }, { name: 'b' }]);
    let r = await sb.from('items').update({ note: 'changed' }).eq('grp', grp).select().single();
    assert.equal(r.status, 406);
    assert.equal(r.error.code, 'PGRST116');
    r = await sb.from('items').select('note').eq('grp', grp);
    assert.deepEqual(r.data, [{ note: null }, { note: null }], 'PostgREST rolls the update back');
    r = await sb.from('items').delete().eq('grp', grp).select().single();
    assert.equal(r.status, 406);
    r = await sb.from('items').select('id', { count: 'exact', head: true }).eq('grp', grp);
    assert.equal(r.count, 2, 'PostgREST rolls the delete back');
  });

  it('constraint errors: not-null, duplicate key, foreign key (insert and parent delete)', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('cons');
    let r = await sb.from('items').insert({ id: newId(), grp });
    assert.deepEqual([r.status, r.error?.code, r.data], [400, '23502', null]);
    r = await sb.from('items').insert({ id: newId(), grp, name: null });
    assert.deepEqual([r.status, r.error?.code], [400, '23502']);
    const id = newId();
    r = await sb.from('items').insert({ id, grp, name: 'x' });
    assert.equal(r.error, null);
    r = await sb.from('items').update({ name: null }).eq('id', id);
    assert.deepEqual([r.status, r.error?.code], [400, '23502']);
    r = await sb.from('items').insert([{ id: newId(), grp, name: 'ok' }, { id, grp, name: 'dup' }]);
    assert.deepEqual([r.status, r.error?.code], [409, '23505']);
    r = await sb.from('items').select('id', { count: 'exact', head: true }).eq('grp', grp);
    assert.equal(r.count, 1, 'a failing multi-row insert inserts nothing');

    const list = newId();
    r = await sb.from('entries').insert({ id: newId(), list_id: list, body: 'orphan' });
    assert.deepEqual([r.status, r.error?.code], [409, '23503']);
    r = await sb.from('lists').insert({ id: list, title: 'L' });
    assert.equal(r.error, null);
    const e = newId();
    r = await sb.from('entries').insert({ id: e, list_id: list, body: 'child' }).select();
    assert.deepEqual(r.data, [{ id: e, list_id: list, body: 'child' }]);
    r = await sb.from('entries').update({ list_id: list + 1_000_000 }).eq('id', e);
    assert.deepEqual([r.status, r.error?.code], [409, '23503']);
    r = await sb.from('lists').delete().eq('id', list);
    assert.deepEqual([r.status, r.error?.code], [409, '23503']);
    r = await sb.from('lists').select('id').eq('id', list);
    assert.deepEqual(r.data, [{ id: list }]);
    await sb.from('entries').delete().eq('id', e);
    await sb.from('lists').delete().eq('id', list);
  });

  it('a primary key column cannot be NULL (insert without id)', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('nopk');
    const r = await sb.from('items').insert({ grp, name: 'no id' }).select();
    await sb.from('items').delete().eq('grp', grp);
    assert.equal(r.status, 400, JSON.stringify(r));
    assert.equal(r.error?.code, '23502');
  });

  it('error messages name the column and constraint as Postgres does', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('msg');
    let r = await sb.from('items').insert({ id: newId(), grp });
    assert.match(r.error.message, /null value in column "name" of relation "items" violates not-null constraint/);
    const id = newId();
    await sb.from('items').insert({ id, grp, name: 'x' });
    r = await sb.from('items').insert({ id, grp, name: 'x' });
    assert.match(r.error.message, /^duplicate key value violates unique constraint "items_pkey"$/);
    assert.equal(r.error.details, `Key (id)=(${id}) already exists.`);
  });

  it('bad bodies: invalid JSON, unknown column, wrong JSON shape', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('body');
    let raw = await rest('POST', 'items', { body: '{"id": 1,' });
    assert.equal(raw.status, 400);
    assert.equal(raw.json.code, 'PGRST102');
    raw = await rest('PATCH', `items?grp=eq.${grp}`, { body: 'nope' });
    assert.equal(raw.status, 400);
    assert.equal(raw.json.code, 'PGRST102');
    raw = await rest('POST', 'items', { body: '[1,2]' });
    assert.equal(raw.status, 400);
    assert.equal(raw.json.code, 'PGRST102');
    let r = await sb.from('items').insert({ id: newId(), grp, name: 'x', nosuch: 1 });
    assert.equal(r.status, 400);
    assert.equal(r.error.code, 'PGRST204', `PostgREST 12: ${JSON.stringify(r.error)}`);
    r = await sb.from('items').update({ nosuch: 1 }).eq('grp', grp);
    assert.equal(r.status, 400);
    assert.equal(r.error.code, 'PGRST204');
  });

  it('writes with unknown column in filter or select fail without side effects', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('wfilt');
    const [a] = await seed(sb, grp, [{ name: 'keep' }]);
    let r = await sb.from('items').update({ note: 'x' }).eq('nosuch', 1);
    assert.equal(r.status, 400);
    assert.equal(r.error.code, '42703');
    r = await sb.from('items').insert({ id: newId(), grp, name: 'y' }).select('nosuch');
    assert.equal(r.status, 400);
    assert.equal(r.error.code, '42703');
    r = await sb.from('items').select('id').eq('grp', grp);
    assert.deepEqual(r.data, [{ id: a.id }], 'the insert with a bad select did not happen');
  });
});

// ------------------------------------------------------------ postgres_changes

const ITEM_COLUMNS = [
  { name: 'id', type: 'int8' }, { name: 'grp', type: 'text' }, { name: 'name', type: 'text' },
  { name: 'email', type: 'text' }, { name: 'done', type: 'bool' },
  // `integer` is int4 in PostgreSQL; SQLite's INTEGER is 64-bit
  { name: 'qty', type: STORE === 'postgres' ? 'int4' : 'int8' },
  { name: 'price', type: 'float8' }, { name: 'meta', type: 'jsonb' }, { name: 'tags', type: 'json' },
  { name: 'note', type: 'text' },
];

describe('postgres_changes with supabase-js', () => {
  it('several bindings on one channel: each listener fires exactly once per matching change', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('multi');
    const list = newId();
    await sb.from('lists').insert({ id: list, title: 'before' });
    const { recs: [ins, upd, star] } = await listen(sb, `multi-${grp}`, [
      { event: 'INSERT', schema: 'public', table: 'items', filter: `grp=eq.${grp}` },
      { event: 'UPDATE', schema: 'public', table: 'lists', filter: `id=eq.${list}` },
      { event: '*', schema: 'public', table: 'items', filter: `name=eq.${grp}-star` },
    ]);
    const a = newId(), b = newId();
    await sb.from('items').insert({ id: a, grp, name: 'plain' });
    await sb.from('items').insert({ id: b, grp, name: `${grp}-star` });
    await sb.from('lists').update({ title: 'after' }).eq('id', list);
    await sb.from('items').update({ qty: 1 }).eq('id', b);
    await sb.from('items').delete().eq('id', b);
    await sb.from('lists').insert({ id: newId(), title: 'other list' }); // matches nothing
    await star.waitFor((e) => e.eventType === 'DELETE', 5000, 'DELETE on star');
    await upd.waitFor(() => true, 5000, 'UPDATE on lists');
    await ins.waitFor(() => ins.events.length >= 2, 5000, 'two INSERTs');
    await sleep(400);
    assert.deepEqual(ins.events.map((e) => [e.eventType, e.table, e.new.id]), [['INSERT', 'items', a], ['INSERT', 'items', b]]);
    assert.deepEqual(upd.events.map((e) => [e.eventType, e.table, e.new.id, e.new.title, e.old.title]), [['UPDATE', 'lists', list, 'after', 'before']]);
    assert.deepEqual(star.events.map((e) => [e.eventType, rowKey(e)]), [['INSERT', b], ['UPDATE', b], ['DELETE', b]]);
  });

  it('two channels on one socket with the same binding each get every change once', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('twoch');
    const binding = { event: '*', schema: 'public', table: 'items', filter: `grp=eq.${grp}` };
    const one = await listen(sb, `twoch-1-${grp}`, [binding]);
    const two = await listen(sb, `twoch-2-${grp}`, [binding]);
    assert.equal(sb.realtime.getChannels().length, 2);
    const id = newId();
    await sb.from('items').insert({ id, grp, name: 'x' });
    await sb.from('items').update({ name: 'y' }).eq('id', id);
    for (const { recs: [r] } of [one, two]) await r.waitFor(() => r.events.length >= 2, 5000, 'two changes');
    await sleep(400);
    for (const { recs: [r] } of [one, two]) {
      assert.deepEqual(r.events.map((e) => [e.eventType, e.new.id, e.new.name]), [['INSERT', id, 'x'], ['UPDATE', id, 'y']]);
    }
  });

  it('event * with schema public and no table gets every table', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const { recs: [all] } = await listen(sb, `alltables-${newGrp()}`, [{ event: '*', schema: 'public' }]);
    const item = newId(), list = newId();
    await sb.from('items').insert({ id: item, grp: newGrp('all'), name: 'x' });
    await sb.from('lists').insert({ id: list, title: 't' });
    await sb.from('lists').delete().eq('id', list);
    await all.waitFor((e) => e.eventType === 'DELETE' && e.old.id === list, 5000, 'lists DELETE');
    const mine = all.events.filter((e) => rowKey(e) === item || rowKey(e) === list);
    assert.deepEqual(mine.map((e) => [e.table, e.eventType, rowKey(e)]), [['items', 'INSERT', item], ['lists', 'INSERT', list], ['lists', 'DELETE', list]]);
    assert.ok(mine.every((e) => e.schema === 'public'));
  });

  it('select in a binding: only the selected and primary-key columns', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('selb');
    const raw = await rawConnect(sc, server, { vsn: '2.0.0' });
    const topic = `realtime:selb-${grp}`;
    const binding = { event: '*', schema: 'public', table: 'items', filter: `grp=eq.${grp}`, select: ['name', 'done'] };
    const { reply } = await raw.join(topic, { config: { postgres_changes: [binding] } });
    assert.equal(reply.payload.status, 'ok');
    const { recs: [r] } = await listen(sb, `selb-js-${grp}`, [binding]);
    const id = newId();
    await sb.from('items').insert({ id, grp, name: 'x', qty: 5, meta: { a: 1 } });
    await sb.from('items').update({ name: 'y', qty: 6 }).eq('id', id);
    await sb.from('items').delete().eq('id', id);
    await r.waitFor((e) => e.eventType === 'DELETE', 5000, 'DELETE');
    assert.deepEqual(r.events.map((e) => [e.eventType, e.new, e.old]), [
      ['INSERT', { id, name: 'x', done: false }, {}],
      ['UPDATE', { id, name: 'y', done: false }, { id, name: 'x', done: false }],
      ['DELETE', {}, { id, name: 'y', done: false }],
    ]);
    const frame = await raw.next((f) => f.event === 'postgres_changes', 5000, 'raw delivery');
    assert.deepEqual(frame.payload.data.columns, [{ name: 'id', type: 'int8' }, { name: 'name', type: 'text' }, { name: 'done', type: 'bool' }]);
    assert.deepEqual(frame.payload.data.record, { id, name: 'x', done: false });
  });

  it('filters on bool, float and text columns: eq neq not.in like is.null', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('filt');
    const f = (x) => `grp=eq.${grp},${x}`;
    const bindings = [
      { event: 'INSERT', schema: 'public', table: 'items', filter: f('done=eq.true') },
      { event: 'INSERT', schema: 'public', table: 'items', filter: f('price=gt.1.5') },
      { event: 'INSERT', schema: 'public', table: 'items', filter: f('name=neq.skip') },
      { event: 'INSERT', schema: 'public', table: 'items', filter: f('qty=not.in.(1,2)') },
      { event: 'INSERT', schema: 'public', table: 'items', filter: f('name=like.ap%') },
      { event: '*', schema: 'public', table: 'items', filter: f('note=is.null') },
      { event: 'INSERT', schema: 'public', table: 'items', filter: f('done=is.false') },
      { event: 'INSERT', schema: 'public', table: 'items', filter: f('price=lte.0.5') },
      { event: 'INSERT', schema: 'public', table: 'items', filter: f('name=in.(banana,"a,b")') },
      { event: 'INSERT', schema: 'public', table: 'items', filter: f('name=not.like.%a%') },
      { event: 'INSERT', schema: 'public', table: 'items', filter: f('price=neq.0.25') },
      { event: 'INSERT', schema: 'public', table: 'items', filter: f('done=neq.true') },
    ];
    const { recs } = await listen(sb, `filt-${grp}`, bindings);
    const [r1, r2, r3, r4] = [newId(), newId(), newId(), newId()];
    const r = await sb.from('items').insert([
      { id: r1, grp, name: 'apple', done: true, price: 2.0, qty: 1, note: null },
      { id: r2, grp, name: 'skip', done: false, price: 0.5, qty: 3, note: 'n' },
      { id: r3, grp, name: 'banana', done: false, price: 1.5, qty: null, note: null },
      { id: r4, grp, name: 'apricot', done: true, price: 0.25, qty: 2, note: 'x' },
    ]);
    assert.equal(r.error, null);
    const expected = [
      [r1, r4], [r1], [r1, r3, r4], [r2], [r1, r4], [r1, r3], [r2, r3], [r2, r4], [r3], [r2], [r1, r2, r3], [r2, r3],
    ];
    await recs[2].waitFor(() => recs[2].events.length >= 3, 5000, 'neq');
    await sleep(500);
    recs.forEach((rec, i) => {
      assert.deepEqual(rec.events.map((e) => e.new.id), expected[i], `binding ${i}: ${bindings[i].filter}`);
    });
  });

  it('a multi-row REST write delivers its changes in write order', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('order');
    const { recs: [r] } = await listen(sb, `order-${grp}`, [{ event: '*', schema: 'public', table: 'items', filter: `grp=eq.${grp}` }]);
    const base = newId();
    for (let i = 0; i < 40; i++) newId();
    const order = Array.from({ length: 40 }, (_, i) => base + ((i * 17) % 40)); // not sorted
    const res = await sb.from('items').insert(order.map((id, i) => ({ id, grp, name: `n${i}` })));
    assert.equal(res.error, null);
    await sb.from('items').update({ done: true }).eq('grp', grp);
    await sb.from('items').delete().eq('grp', grp);
    await r.waitFor(() => r.events.length >= 120, 10_000, '120 changes');
    await sleep(300);
    assert.equal(r.events.length, 120);
    assert.deepEqual(r.events.slice(0, 40).map((e) => [e.eventType, e.new.id]), order.map((id) => ['INSERT', id]));
    assert.ok(r.events.slice(40, 80).every((e) => e.eventType === 'UPDATE' && e.new.done === true && e.old.done === false));
    assert.deepEqual(new Set(r.events.slice(40, 80).map((e) => e.new.id)), new Set(order));
    assert.ok(r.events.slice(80).every((e) => e.eventType === 'DELETE'));
    assert.deepEqual(new Set(r.events.slice(80).map((e) => e.old.id)), new Set(order));
    const ts = r.events.map((e) => Date.parse(e.commit_timestamp));
    assert.ok(ts.every((x, i) => i === 0 || x >= ts[i - 1]), 'commit timestamps do not go back');
  });

  it('unsubscribe() stops deliveries; a later subscriber gets no replay', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('unsub');
    const binding = { event: 'INSERT', schema: 'public', table: 'items', filter: `grp=eq.${grp}` };
    const first = await listen(sb, `unsub-1-${grp}`, [binding]);
    const other = await listen(sb, `unsub-2-${grp}`, [binding]);
    const a = newId(), b = newId(), c = newId();
    await sb.from('items').insert({ id: a, grp, name: 'a' });
    await first.recs[0].waitFor((e) => e.new.id === a, 5000, 'a on first');
    assert.equal(await first.ch.unsubscribe(), 'ok');
    await sb.from('items').insert({ id: b, grp, name: 'b' });
    await other.recs[0].waitFor((e) => e.new.id === b, 5000, 'b on other');
    const late = await listen(sb, `unsub-3-${grp}`, [binding]);
    await sb.from('items').insert({ id: c, grp, name: 'c' });
    await late.recs[0].waitFor((e) => e.new.id === c, 5000, 'c on late');
    await sleep(400);
    assert.deepEqual(first.recs[0].events.map((e) => e.new.id), [a], 'nothing after unsubscribe');
    assert.deepEqual(other.recs[0].events.map((e) => e.new.id), [a, b, c]);
    assert.deepEqual(late.recs[0].events.map((e) => e.new.id), [c], 'no replay without resume');
  });

  it('UPDATE and DELETE carry the old row; new values are typed (bool, json, float, big int)', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('typed');
    const raw = await rawConnect(sc, server, { vsn: '1.0.0' });
    const binding = { event: '*', schema: 'public', table: 'items', filter: `grp=eq.${grp}` };
    await raw.join(`realtime:typed-raw-${grp}`, { config: { postgres_changes: [binding] } });
    const { recs: [r] } = await listen(sb, `typed-${grp}`, [binding]);
    const id = 2 ** 53 - 10;
    const v1 = { id, grp, name: 'v1', email: null, done: true, qty: 7, price: 2.5, meta: { a: { b: [1, 'x', null, false] } }, tags: ['t', 1], note: null };
    await sb.from('items').insert(v1);
    const v2 = { ...v1, done: false, qty: null, price: -0.125, meta: [], tags: { k: 'v' }, note: 'n' };
    await sb.from('items').update({ done: false, qty: null, price: -0.125, meta: [], tags: { k: 'v' }, note: 'n' }).eq('id', id);
    await sb.from('items').delete().eq('id', id);
    await r.waitFor((e) => e.eventType === 'DELETE', 5000, 'DELETE');
    const [ins, upd, del] = r.events;
    assert.deepEqual([ins.eventType, ins.new, ins.old, ins.errors, ins.table, ins.schema], ['INSERT', v1, {}, null, 'items', 'public']);
    assert.deepEqual([upd.eventType, upd.new, upd.old], ['UPDATE', v2, v1]);
    assert.deepEqual([del.eventType, del.new, del.old], ['DELETE', {}, v2]);
    const frames = await raw.frames.waitFor(() => raw.frames.events.filter((f) => f.event === 'postgres_changes').length >= 3, 5000, 'raw frames')
      .then(() => raw.frames.events.filter((f) => f.event === 'postgres_changes'));
    const [fi, fu, fd] = frames.map((f) => f.payload.data);
    assert.deepEqual(fi.columns, ITEM_COLUMNS);
    assert.deepEqual(fi.record, v1);
    assert.equal('old_record' in fi, false);
    assert.deepEqual([fu.record, fu.old_record], [v2, v1]);
    assert.deepEqual(fd.old_record, v2);
    assert.equal('record' in fd, false);
    assert.equal(typeof fi.record.done, 'boolean');
  });

  it('floats keep full precision in change payloads and eq filters on floats match', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('fprec');
    const x = 0.1 + 0.2; // 0.30000000000000004
    const { recs: [all] } = await listen(sb, `fprec-${grp}`, [
      { event: 'INSERT', schema: 'public', table: 'items', filter: `grp=eq.${grp}` },
    ]);
    const a = newId(), b = newId();
    await sb.from('items').insert([{ id: a, grp, name: 'a', price: x }, { id: b, grp, name: 'b', price: 123456789.12345679 }]);
    await all.waitFor(() => all.events.length >= 2, 5000, 'two inserts');
    const rest_ = await sb.from('items').select('id,price').eq('grp', grp).order('id');
    assert.deepEqual(rest_.data, [{ id: a, price: x }, { id: b, price: 123456789.12345679 }], 'REST keeps precision');
    assert.deepEqual(all.events.map((e) => e.new.price), [x, 123456789.12345679], 'postgres_changes keeps precision');
  });

  it('an eq filter on a float column matches a row with exactly that value', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('feq');
    const x = 0.1 + 0.2; // 0.30000000000000004
    const { recs: [eq, ne] } = await listen(sb, `feq-${grp}`, [
      { event: 'INSERT', schema: 'public', table: 'items', filter: `price=eq.${x}` },
      { event: 'INSERT', schema: 'public', table: 'items', filter: `grp=eq.${grp},price=eq.0.3` },
    ]);
    const a = newId(), b = newId();
    await sb.from('items').insert([{ id: a, grp, name: 'a', price: x }, { id: b, grp, name: 'b', price: 0.3 }]);
    await sleep(600);
    await sb.from('items').delete().eq('grp', grp);
    assert.deepEqual(eq.events.map((e) => e.new.id), [a], 'price=eq.0.30000000000000004');
    assert.deepEqual(ne.events.map((e) => e.new.id), [b], 'price=eq.0.3');
  });

  it('an eq filter on a big integer does not match its double-rounded neighbour', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('bigeq');
    const { recs: [r] } = await listen(sb, `bigeq-${grp}`, [
      { event: 'INSERT', schema: 'public', table: 'items', filter: 'id=eq.9007199254740993' },
    ]);
    await sb.from('items').insert({ id: 2 ** 53, grp, name: 'neighbour' }); // 9007199254740992
    await sleep(600);
    await sb.from('items').delete().eq('id', 2 ** 53);
    assert.deepEqual(r.events.map((e) => e.new.id), [], '9007199254740992 != 9007199254740993');
  });

  it('identical bindings: SUBSCRIBED, the listener fires once per change; a raw join with a duplicate entry gets one frame per change', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('dup');
    const binding = { event: 'INSERT', schema: 'public', table: 'items', filter: `grp=eq.${grp}` };
    const { recs: [r1, r2] } = await listen(sb, `dup-${grp}`, [binding, { ...binding }]);
    const raw = await rawConnect(sc, server, { vsn: '2.0.0' });
    const { reply } = await raw.join(`realtime:dup-raw-${grp}`, { config: { postgres_changes: [binding, { ...binding }] } });
    assert.equal(reply.payload.status, 'ok');
    const pcs = reply.payload.response.postgres_changes;
    assert.equal(pcs.length, 2);
    assert.equal(pcs[0].id, pcs[1].id, 'identical params get identical ids');
    assert.ok(Number.isInteger(pcs[0].id));
    const id = newId();
    await sb.from('items').insert({ id, grp, name: 'x' });
    await r1.waitFor((e) => e.new.id === id, 5000, 'insert');
    await raw.next((f) => f.event === 'postgres_changes', 5000, 'raw insert');
    await sleep(500);
    assert.equal(r1.events.length, 1, 'the listener fires once');
    assert.equal(r2.events.length, 0, 'realtime-js drops the duplicate registration');
    const frames = raw.frames.events.filter((f) => f.event === 'postgres_changes');
    assert.equal(frames.length, 1, `one delivery per change, got ${frames.length}`);
    assert.deepEqual(frames[0].payload.ids, [pcs[0].id]);
  });

  it('overlapping (non-identical) bindings on one channel: one frame per change, listing every matching id', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const grp = newGrp('overlap');
    const sb = supabase(sc);
    const raw = await rawConnect(sc, server, { vsn: '2.0.0' });
    const b1 = { event: 'INSERT', schema: 'public', table: 'items', filter: `grp=eq.${grp}` };
    const b2 = { event: '*', schema: 'public', table: 'items', filter: `grp=eq.${grp}` };
    const { reply } = await raw.join(`realtime:overlap-${grp}`, { config: { postgres_changes: [b1, b2] } });
    const [id1, id2] = reply.payload.response.postgres_changes.map((x) => x.id);
    assert.notEqual(id1, id2);
    const id = newId();
    await sb.from('items').insert({ id, grp, name: 'x' });
    await raw.next((f) => f.event === 'postgres_changes', 5000, 'delivery');
    await sleep(500);
    const frames = raw.frames.events.filter((f) => f.event === 'postgres_changes');
    // Supabase sends one message whose ids lists every matching subscription.
    assert.equal(frames.length, 1, `frames: ${JSON.stringify(frames.map((f) => f.payload.ids))}`);
    assert.deepEqual([...frames[0].payload.ids].sort(), [id1, id2].sort());
  });

  it('join reply ids make realtime-js reach SUBSCRIBED for every binding shape', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const grp = newGrp('shapes');
    const shapes = [
      { event: '*', schema: 'public' },
      { event: '*', schema: '*' },
      { event: 'INSERT', schema: 'public', table: '*' },
      { event: 'UPDATE', schema: 'public', table: 'items' },
      { event: 'DELETE', schema: 'public', table: 'lists', filter: 'id=gt.0' },
      { event: '*', schema: 'public', table: 'items', filter: `grp=eq.${grp}` },
      { event: '*', schema: 'public', table: 'items', filter: `name=in.("a,b",c)` },
      { event: 'INSERT', schema: 'public', table: 'items', filter: `grp=eq.${grp}`, select: ['name'] },
      { event: '*', schema: 'public', table: 'items', filter: 'note=is.null' },
      { event: '*', schema: 'public', table: 'items', filter: 'name=eq.ünï code 😀' },
    ];
    for (const [i, s] of shapes.entries()) {
      await listen(sb, `shape-${i}-${grp}`, [s]);
    }
    await listen(sb, `shape-all-${grp}`, shapes);
  });
});
