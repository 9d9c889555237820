// postgres_changes and the REST data API with either store (SQLite, or
// PostgreSQL under tests/postgres/run.sh), driven by supabase-js (from() and
// channel().on('postgres_changes')), the database's own shell (sqlite3 or
// psql) as an outside writer, and a raw socket for resume positions.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from './lib/server.mjs';
import { rawConnect } from './lib/raw.mjs';
import { Recorder, scope, sleep, supabaseClient, VSNS } from './lib/util.mjs';


const SCHEMA = `
CREATE TABLE IF NOT EXISTS todos (
  id bigint PRIMARY KEY,
  title text NOT NULL,
  done boolean NOT NULL DEFAULT false,
  priority integer,
  score double precision,
  meta jsonb,
  owner text
);
CREATE TABLE IF NOT EXISTS notes (id bigint PRIMARY KEY, body text);
`;

let server, dir, dbPath;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rtsync-pgc-'));
  const schemaPath = join(dir, 'schema.sql');
  writeFileSync(schemaPath, SCHEMA);
  dbPath = join(dir, 'test.db');
  server = await startServer({ args: ['--schema', schemaPath, '--db', dbPath, '--retain-changes', '50'] });
});
after(async () => {
  if (server) await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

function supabase(sc, vsn = '2.0.0', key = server.token({ role: 'anon' })) {
  return supabaseClient(sc, server, { vsn, key });
}

let nextId = 1000;
const newId = () => ++nextId;

/** Subscribes with postgres_changes bindings; resolves {events, system} once SUBSCRIBED
 *  and the "Subscribed to PostgreSQL" system message arrived. */
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
  return { ch, events, system, sys };
}

for (const vsn of VSNS) {
  describe(`postgres_changes with supabase-js, vsn ${vsn}`, () => {
    it('INSERT, UPDATE and DELETE through from() reach a subscriber, field by field', { timeout: 30_000 }, async (t) => {
      const sc = scope(t);
      const sb = supabase(sc, vsn);
      const { events, sys } = await listen(sb, `pgc-all-${vsn}`, [{ event: '*', schema: 'public', table: 'todos' }]);
      assert.equal(sys.status, 'ok');
      assert.equal(sys.message, 'Subscribed to PostgreSQL');

      const id = newId();
      const ins = await sb.from('todos').insert({ id, title: 'write spec', priority: 2, score: 1.5, meta: { a: 1 } }).select();
      assert.equal(ins.error, null, JSON.stringify(ins.error));
      assert.deepEqual(ins.data, [{ id, title: 'write spec', done: false, priority: 2, score: 1.5, meta: { a: 1 }, owner: null }]);
      const e1 = await events.waitFor((e) => e.eventType === 'INSERT' && e.new.id === id, 5000, 'INSERT');
      assert.equal(e1.schema, 'public');
      assert.equal(e1.table, 'todos');
      assert.deepEqual(e1.new, { id, title: 'write spec', done: false, priority: 2, score: 1.5, meta: { a: 1 }, owner: null });
      assert.deepEqual(e1.old, {});
      assert.equal(e1.errors, null);
      assert.match(e1.commit_timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);

      const upd = await sb.from('todos').update({ done: true }).eq('id', id).select();
      assert.equal(upd.error, null);
      assert.equal(upd.data[0].done, true);
      const e2 = await events.waitFor((e) => e.eventType === 'UPDATE' && e.new.id === id, 5000, 'UPDATE');
      assert.equal(e2.new.done, true);
      assert.equal(e2.old.done, false, 'old record carries the previous values');

      const del = await sb.from('todos').delete().eq('id', id);
      assert.equal(del.error, null);
      const e3 = await events.waitFor((e) => e.eventType === 'DELETE' && e.old.id === id, 5000, 'DELETE');
      assert.deepEqual(e3.new, {});
      assert.equal(e3.old.title, 'write spec');
    });

    it('filters: eq, in, gt on INSERT; a DELETE filter on the old row', { timeout: 30_000 }, async (t) => {
      const sc = scope(t);
      const sb = supabase(sc, vsn);
      const owner = `o-${vsn}-${newId()}`;
      const eq = await listen(sb, `pgc-eq-${vsn}`, [{ event: 'INSERT', schema: 'public', table: 'todos', filter: `owner=eq.${owner}` }]);
      const inl = await listen(sb, `pgc-in-${vsn}`, [{ event: 'INSERT', schema: 'public', table: 'todos', filter: 'priority=in.(7,9)' }]);
      const gt = await listen(sb, `pgc-gt-${vsn}`, [{ event: '*', schema: 'public', table: 'todos', filter: 'score=gt.100' }]);
      const delf = await listen(sb, `pgc-del-${vsn}`, [{ event: 'DELETE', schema: 'public', table: 'todos', filter: `owner=eq.${owner}` }]);

      const a = newId(), b = newId(), c = newId();
      const r = await sb.from('todos').insert([
        { id: a, title: 'a', owner, priority: 1, score: 5 },
        { id: b, title: 'b', owner: 'someone-else', priority: 9, score: 500 },
        { id: c, title: 'c', owner, priority: 7, score: 50 },
      ]);
      assert.equal(r.error, null, JSON.stringify(r.error));
      await eq.events.waitFor(() => eq.events.events.length >= 2, 5000, 'two eq matches');
      await inl.events.waitFor(() => inl.events.events.length >= 2, 5000, 'two in matches');
      await gt.events.waitFor(() => gt.events.events.length >= 1, 5000, 'one gt match');
      await sb.from('todos').delete().in('id', [a, b, c]);
      await delf.events.waitFor(() => delf.events.events.length >= 2, 5000, 'two DELETE matches');
      await sleep(300); // anything else would have arrived by now
      assert.deepEqual(eq.events.events.map((e) => e.new.id).sort(), [a, c].sort());
      assert.deepEqual(inl.events.events.map((e) => e.new.id).sort(), [b, c].sort());
      assert.deepEqual(gt.events.events.map((e) => [e.eventType, (e.new.id ?? e.old.id)]), [['INSERT', b], ['DELETE', b]]);
      assert.deepEqual(delf.events.events.map((e) => e.old.id).sort(), [a, c].sort());
      assert.ok(delf.events.events.every((e) => e.eventType === 'DELETE'));
    });
  });
}

describe('postgres_changes: outside writers, errors, resume', () => {
  it('a write from the database shell (sqlite3 or psql) is delivered', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const { events } = await listen(sb, 'pgc-shell', [{ event: 'INSERT', schema: 'public', table: 'notes' }]);
    const id = newId();
    server.sql(`INSERT INTO notes (id, body) VALUES (${id}, 'from the shell');`);
    const e = await events.waitFor((x) => x.new.id === id, 5000, 'shell insert');
    assert.equal(e.new.body, 'from the shell');
  });

  it('bad filters, unknown tables and unknown columns get Supabase\'s system errors', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const cases = [
      [{ event: '*', schema: 'public', table: 'nope' }, /^Unable to subscribe to changes with given parameters\. Please check Realtime is enabled/],
      [{ event: '*', schema: 'public', table: 'todos', filter: 'id=wat.1' }, /^Error parsing `filter` params/],
      [{ event: '*', schema: 'public', table: 'todos', filter: 'notacolumn=eq.1' }, /invalid column for filter notacolumn/],
      [{ event: '*', schema: 'public', table: 'todos', filter: 'id=in.1,2' }, /`in` filter value must be wrapped by parentheses/],
    ];
    for (const [i, [binding, re]] of cases.entries()) {
      const { sys } = await listen(sb, `pgc-err-${i}`, [binding]);
      assert.equal(sys.status, 'error');
      assert.match(sys.message, re);
    }
  });

  it('REST errors come in PostgREST\'s shape', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    let r = await sb.from('nope').select();
    assert.equal(r.status, 404);
    assert.equal(r.error.code, 'PGRST205');
    r = await sb.from('todos').select('nocol');
    assert.equal(r.status, 400);
    assert.equal(r.error.code, '42703');
    const id = newId();
    await sb.from('todos').insert({ id, title: 'x' });
    r = await sb.from('todos').insert({ id, title: 'dup' });
    assert.equal(r.status, 409);
    assert.equal(r.error.code, '23505');
    r = await sb.from('todos').select('id,title').eq('id', id).single();
    assert.deepEqual(r.data, { id, title: 'x' });
    r = await sb.from('todos').select('*', { count: 'exact', head: true }).eq('id', id);
    assert.equal(r.count, 1);
    const up = await sb.from('todos').upsert({ id, title: 'upserted' }).select();
    assert.equal(up.error, null, JSON.stringify(up.error));
    assert.equal(up.data[0].title, 'upserted');
  });

  it('resume: a subscriber that reconnects gets exactly the changes it missed, then live ones', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    const topic = 'realtime:pgc-resume';
    const binding = { event: 'INSERT', schema: 'public', table: 'notes' };
    const join = (raw, extra = {}) => raw.join(topic, { config: { postgres_changes: [binding], ...extra } });
    const inserts = (frames) => frames.events.filter((f) => f.event === 'postgres_changes').map((f) => f.payload.data);

    const raw1 = await rawConnect(sc, server, { vsn: '2.0.0' });
    await join(raw1);
    const first = newId();
    await sb.from('notes').insert({ id: first, body: 'seen' });
    const seen = await raw1.next((f) => f.event === 'postgres_changes', 5000, 'first change');
    const pos = seen.payload.data.position;
    assert.match(pos, /^\d+$/, 'deliveries carry a position');
    await raw1.close();

    const missed = [newId(), newId(), newId()];
    for (const id of missed) await sb.from('notes').insert({ id, body: 'missed' });

    const raw2 = await rawConnect(sc, server, { vsn: '2.0.0' });
    await join(raw2, { rtsync: { resume_after: pos } });
    const live = newId();
    await sleep(100);
    await sb.from('notes').insert({ id: live, body: 'live' });
    await raw2.frames.waitFor(() => inserts(raw2.frames).some((d) => d.record.id === live), 5000, 'live change');
    await sleep(300);
    const got = inserts(raw2.frames).map((d) => d.record.id);
    assert.deepEqual(got, [...missed, live], 'missed changes in order, no duplicates, then live');
    const positions = inserts(raw2.frames).map((d) => BigInt(d.position));
    assert.ok(positions.every((p, i) => i === 0 || p > positions[i - 1]), 'positions increase');
  });

  it('resume in waves (a reconnect storm): each client gets exactly what it missed, filtered, in order', { timeout: 60_000 }, async (t) => {
    // Waves that land together share the feed's catch-up cache: the first
    // builds it, the second reuses it after the log grew, the third reaches
    // further back than the cache and rebuilds it.
    const sc = scope(t);
    const sb = supabase(sc);
    const all = { event: 'INSERT', schema: 'public', table: 'notes' };
    const onlyA = { ...all, filter: 'body=eq.a' };
    const watcher = await rawConnect(sc, server, { vsn: '2.0.0' });
    await watcher.join('realtime:pgc-waves-watch', { config: { postgres_changes: [all] } });
    const inserts = (frames) => frames.events.filter((f) => f.event === 'postgres_changes').map((f) => f.payload.data);
    const rows = [];
    const write = async (n) => {
      for (let i = 0; i < n; i++) {
        const row = { id: newId(), body: i % 2 ? 'b' : 'a' };
        await sb.from('notes').insert(row);
        rows.push(row);
      }
      const lastId = rows[rows.length - 1].id;
      await watcher.frames.waitFor(() => inserts(watcher.frames).some((d) => d.record.id === lastId), 5000, 'watcher');
      const pos = new Map(inserts(watcher.frames).map((d) => [d.record.id, BigInt(d.position)]));
      for (const r of rows) r.pos = pos.get(r.id);
    };
    await write(16);
    const wave = (froms, binding) => Promise.all(froms.map(async (from) => {
      const raw = await rawConnect(sc, server, { vsn: '2.0.0' });
      await raw.join(`realtime:pgc-wave-${Math.random().toString(36).slice(2)}`, {
        config: { postgres_changes: [binding], rtsync: { resume_after: String(from) } } });
      return { raw, from, binding };
    }));
    const check = async (clients) => {
      for (const { raw, from, binding } of clients) {
        const want = rows.filter((r) => r.pos > from && (!binding.filter || r.body === 'a')).map((r) => r.id);
        if (!want.length) continue;
        const lastWant = want[want.length - 1];
        await raw.frames.waitFor(() => inserts(raw.frames).some((d) => d.record.id === lastWant), 5000, `resume from ${from}`);
      }
      await sleep(200);
      for (const { raw, from, binding } of clients) {
        const want = rows.filter((r) => r.pos > from && (!binding.filter || r.body === 'a')).map((r) => r.id);
        assert.deepEqual(inserts(raw.frames).map((d) => d.record.id), want, `resume from ${from} ${binding.filter ?? ''}`);
      }
    };
    const w1 = await wave(rows.slice(10, 15).map((r) => r.pos), all);
    await check(w1);
    await write(4); // the log grows: the next wave extends the cache
    const w2 = await wave(rows.slice(11, 19).map((r) => r.pos), onlyA);
    await check([...w1, ...w2]);
    const w3 = await wave(rows.slice(2, 8).map((r) => r.pos), all); // further back: rebuilt
    await write(2); // live ones after the catch-up, once each
    await check([...w1, ...w2, ...w3]);
  });

  it('resume from a position outside the retained window gets the resync message', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const sb = supabase(sc);
    // --retain-changes 50: push the window well past position 1, then wait for a prune.
    const rows = Array.from({ length: 120 }, () => ({ id: newId(), body: 'filler' }));
    await sb.from('notes').insert(rows);
    await sleep(11_000); // the change log is pruned every 10 s
    const raw = await rawConnect(sc, server, { vsn: '1.0.0' });
    await raw.join('realtime:pgc-resync', { config: { postgres_changes: [{ event: '*', schema: 'public', table: 'notes' }], rtsync: { resume_after: '1' } } });
    const sys = await raw.next((f) => f.event === 'system' && f.payload.resync_required === true, 5000, 'resync system message');
    assert.equal(sys.payload.status, 'error');
    assert.equal(sys.payload.extension, 'postgres_changes');
  });
});
