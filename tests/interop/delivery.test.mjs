// Delivery controls of postgres_changes entries (docs/protocol.md, "Delivery
// controls"): throttle_ms through supabase-js (a burst of 1,000 updates to 10
// rows arrives as at most 3 flushes with the rows' final values), debounce_ms
// with max_wait_ms, batch messages with the phoenix client, validation, and
// resume across batches and across a window still open on a shared group
// (nothing missed, nothing repeated).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Socket } from 'phoenix';
import { startServer } from './lib/server.mjs';
import { rawConnect } from './lib/raw.mjs';
import { Recorder, scope, sleep, supabaseClient, uniqueTopic, WebSocket } from './lib/util.mjs';

let server, dir;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rtsync-delivery-'));
  const schemaPath = join(dir, 'schema.sql');
  writeFileSync(schemaPath, 'CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, v text, n integer);\n');
  server = await startServer({ args: ['--schema', schemaPath, '--db', join(dir, 'test.db')] });
});
after(async () => {
  if (server) await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

let nextBase = 0;
/** Ten fresh row ids for one test. */
const rowIds = (n = 10) => { const b = (nextBase += 1000); return Array.from({ length: n }, (_, i) => b + i); };

async function rest(method, query, body, prefer) {
  const key = server.token({ role: 'service_role' });
  const headers = { apikey: key, Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' };
  if (prefer) headers.Prefer = prefer;
  const r = await fetch(`${server.httpUrl}/rest/v1/items${query}`, { method, headers, body: body && JSON.stringify(body) });
  const text = await r.text();
  assert.ok(r.status < 300, `${method} ${query}: ${r.status} ${text}`);
  return text ? JSON.parse(text) : null;
}
const upsert = (rows) => rest('POST', '', rows, 'resolution=merge-duplicates,return=minimal');
const insert = (rows) => rest('POST', '', rows, 'return=minimal');
const patch = (id, vals) => rest('PATCH', `?id=eq.${id}`, vals, 'return=minimal');
const del = (id) => rest('DELETE', `?id=eq.${id}`, undefined, 'return=minimal');

/** Groups arrival times into flushes: a gap over `gap` ms starts a new one. */
function flushesOf(events, gap = 200) {
  const out = [];
  for (const e of events) {
    if (!out.length || e.at - out[out.length - 1].at > gap) out.push({ at: e.at, events: [e] });
    else { out[out.length - 1].events.push(e); out[out.length - 1].at = e.at; }
  }
  return out;
}

async function listenSupabase(sc, topic, binding) {
  const sb = supabaseClient(sc, server);
  const events = new Recorder(`changes on ${topic}`);
  const system = new Recorder(`system on ${topic}`);
  const ch = sb.channel(topic)
    .on('postgres_changes', binding, (p) => events.push({ at: Date.now(), p }))
    .on('system', {}, (p) => system.push(p));
  await new Promise((resolve, reject) => ch.subscribe((s, err) => {
    if (s === 'SUBSCRIBED') resolve();
    else reject(new Error(`${s}${err ? `: ${err.message}` : ''}`));
  }));
  const sys = await system.waitFor(() => true, 5000, 'postgres_changes system message');
  return { events, system, sys };
}

describe('delivery controls', () => {
  it('throttle_ms=500 (supabase-js): 1,000 updates to 10 rows come as at most 3 flushes with the final values', { timeout: 60_000 }, async (t) => {
    const sc = scope(t);
    const ids = rowIds();
    await insert(ids.map((id) => ({ id, v: 'start', n: 0 })));
    await sleep(100);
    const { events, sys } = await listenSupabase(sc, uniqueTopic('throttle'),
      { event: '*', schema: 'public', table: 'items', filter: `id=in.(${ids.join(',')})`, throttle_ms: 500 });
    assert.equal(sys.status, 'ok', JSON.stringify(sys));
    // 100 upserts of the 10 rows, 10 requests at a time: 1,000 updates
    const started = Date.now();
    for (let round = 0; round < 100; round += 10) {
      await Promise.all(Array.from({ length: 10 }, (_, k) =>
        upsert(ids.map((id) => ({ id, v: `r${round + k}`, n: round + k })))));
    }
    const took = Date.now() - started;
    t.diagnostic(`burst of 1,000 updates took ${took} ms`);
    const final = await rest('GET', `?id=in.(${ids.join(',')})&order=id`);
    assert.equal(final.length, 10);
    // the last flush comes at most 500 ms after the last write
    await sleep(1200);
    const got = events.events;
    const flushes = flushesOf(got);
    const budget = 2 + Math.ceil(took / 500); // leading + one per window the burst spans
    assert.ok(flushes.length <= Math.max(3, budget), `${flushes.length} flushes in a burst of ${took} ms`);
    if (took < 900) assert.ok(flushes.length <= 3, `${flushes.length} flushes`);
    assert.ok(got.length <= flushes.length * 10, `${got.length} messages: coalesced per row`);
    for (const e of got) assert.equal(e.p.eventType, 'UPDATE');
    const last = new Map();
    for (const e of got) last.set(e.p.new.id, e.p.new);
    for (const row of final) assert.deepEqual(last.get(row.id), row, `row ${row.id}`);
  });

  it('debounce_ms flushes once the changes pause, max_wait_ms bounds the wait', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const [id] = rowIds(1);
    await insert([{ id, v: 'a', n: 0 }]);
    await sleep(100);
    const { events, sys } = await listenSupabase(sc, uniqueTopic('debounce'),
      { event: 'UPDATE', schema: 'public', table: 'items', filter: `id=eq.${id}`, debounce_ms: 300, max_wait_ms: 900 });
    assert.equal(sys.status, 'ok', JSON.stringify(sys));
    for (let i = 1; i <= 5; i++) { await patch(id, { n: i }); await sleep(50); }
    const lastWrite = Date.now();
    const first = await events.waitFor(() => true, 5000, 'the debounced flush');
    assert.ok(first.at - lastWrite >= 200, `flushed ${first.at - lastWrite} ms after the last write`);
    assert.equal(first.p.new.n, 5);
    assert.equal(first.p.old.n, 0);
    await sleep(500);
    assert.equal(events.events.length, 1, 'one UPDATE for the burst');
    // never quiet for 300 ms: max_wait_ms (900) makes it flush anyway
    const from = events.events.length;
    const start = Date.now();
    for (let i = 0; Date.now() - start < 2000; i++) { await patch(id, { n: 100 + i }); await sleep(100); }
    const during = events.events.slice(from).filter((e) => e.at < start + 2000);
    assert.ok(during.length >= 1, 'flushed during the steady writes');
    assert.ok(during.length <= 3, `${during.length} flushes in 2 s`);
  });

  it('validation: bad options are answered as a failed postgres_changes subscription', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const raw = await rawConnect(sc, server, { vsn: '2.0.0' });
    const bad = [
      { throttle_ms: -1 }, { throttle_ms: 60_001 }, { throttle_ms: '500' }, { debounce_ms: 1.5 },
      { batch: 'yes' }, { throttle_ms: 100, debounce_ms: 100 }, { max_wait_ms: 100 },
    ];
    for (const opts of bad) {
      const topic = `realtime:${uniqueTopic('bad')}`;
      await raw.join(topic, { config: { postgres_changes: [{ event: '*', schema: 'public', table: 'items', ...opts }] } });
      const sys = await raw.next((f) => f.topic === topic && f.event === 'system', 5000, 'system message');
      assert.equal(sys.payload.status, 'error', JSON.stringify(opts));
      assert.match(sys.payload.message, /params/, JSON.stringify(opts));
    }
    // two entries of one channel with different settings
    const topic = `realtime:${uniqueTopic('mixed')}`;
    await raw.join(topic, { config: { postgres_changes: [
      { event: '*', schema: 'public', table: 'items', throttle_ms: 100 },
      { event: '*', schema: 'public', table: 'items' }] } });
    const sys = await raw.next((f) => f.topic === topic && f.event === 'system', 5000, 'system message');
    assert.equal(sys.payload.status, 'error');
    assert.match(sys.payload.message, /same throttle_ms/);
  });

  for (const vsn of ['1.0.0', '2.0.0']) {
    it(`batch: true with the phoenix client (vsn ${vsn}): one postgres_changes_batch per flush`, { timeout: 30_000 }, async (t) => {
      const sc = scope(t);
      const ids = rowIds(3);
      const opts = { transport: WebSocket, params: { apikey: server.token({ role: 'anon' }) }, vsn };
      if (vsn === '1.0.0') {
        opts.encode = (msg, cb) => cb(JSON.stringify(msg));
        opts.decode = (raw, cb) => cb(JSON.parse(raw));
      }
      const socket = new Socket(server.realtimeUrl, opts);
      socket.connect();
      sc.defer(() => new Promise((resolve) => socket.disconnect(() => resolve())));
      const entry = { event: '*', schema: 'public', table: 'items', filter: `id=in.(${ids.join(',')})`, batch: true, throttle_ms: 300 };
      const channel = socket.channel(`realtime:${uniqueTopic('batch')}`, { config: { postgres_changes: [entry] } });
      const batches = new Recorder('batches');
      const singles = new Recorder('postgres_changes');
      channel.on('postgres_changes_batch', batches.handler);
      channel.on('postgres_changes', singles.handler);
      const system = new Recorder('system');
      channel.on('system', system.handler);
      const resp = await new Promise((resolve, reject) => channel.join()
        .receive('ok', resolve).receive('error', reject).receive('timeout', () => reject(new Error('timeout'))));
      const id = resp.postgres_changes[0].id;
      assert.equal((await system.waitFor(() => true, 5000, 'system')).status, 'ok');
      // a quiet period: the first change goes at once, as a batch of one
      await insert([{ id: ids[0], v: 'x', n: 1 }]);
      const b1 = await batches.waitFor(() => true, 5000, 'first batch');
      assert.deepEqual(b1.ids, [id]);
      assert.equal(b1.changes.length, 1);
      assert.equal(b1.changes[0].type, 'INSERT');
      assert.equal(b1.position, b1.changes[0].position);
      // then, within the window: INSERT+UPDATE, UPDATE+UPDATE, INSERT+DELETE
      await insert([{ id: ids[1], v: 'y', n: 1 }]);
      await patch(ids[1], { n: 2 });
      await patch(ids[0], { n: 2 });
      await patch(ids[0], { n: 3 });
      await insert([{ id: ids[2], v: 'z', n: 1 }]);
      await del(ids[2]);
      const b2 = await batches.waitFor((b) => b !== b1, 5000, 'second batch');
      assert.deepEqual(b2.ids, [id]);
      const kinds = b2.changes.map((c) => `${c.type}:${(c.record || c.old_record).id}`);
      assert.deepEqual(kinds.sort(), [`INSERT:${ids[1]}`, `UPDATE:${ids[0]}`].sort());
      const up = b2.changes.find((c) => c.type === 'UPDATE');
      assert.equal(up.record.n, 3);
      assert.equal(up.old_record.n, 1);
      const ins = b2.changes.find((c) => c.type === 'INSERT');
      assert.equal(ins.record.n, 2);
      const positions = b2.changes.map((c) => BigInt(c.position));
      assert.ok(positions.every((p, i) => !i || p > positions[i - 1]), 'position order');
      assert.equal(b2.position, b2.changes[b2.changes.length - 1].position);
      assert.ok(BigInt(b2.position) > BigInt(b1.position));
      assert.ok(Array.isArray(b2.changes[0].columns));
      await sleep(400);
      assert.equal(batches.events.length, 2);
      assert.equal(singles.events.length, 0, 'no postgres_changes besides the batches');
    });
  }

  it('resume across a batch: reconnecting after the last batch position loses and repeats nothing', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const ids = rowIds(5);
    const topic = `realtime:${uniqueTopic('resume')}`;
    const entry = { event: '*', schema: 'public', table: 'items', filter: `id=in.(${ids.join(',')})`, batch: true, throttle_ms: 200 };
    const changesOf = (c) => c.frames.events.flatMap((f) =>
      f.topic !== topic ? [] : f.event === 'postgres_changes_batch' ? f.payload.changes
        : f.event === 'postgres_changes' ? [f.payload.data] : []);
    const a = await rawConnect(sc, server, { vsn: '2.0.0' });
    await a.join(topic, { config: { postgres_changes: [entry] } });
    await a.next((f) => f.event === 'system', 5000, 'subscribed');
    await insert(ids.map((id) => ({ id, v: 'a', n: 0 })));
    await sleep(100);
    for (const id of ids) await patch(id, { n: 1 });
    await sleep(500);
    const seen = changesOf(a);
    const batches = a.frames.events.filter((f) => f.event === 'postgres_changes_batch');
    assert.ok(batches.length >= 1);
    const lastPos = batches[batches.length - 1].payload.position;
    await a.close();
    // missed while away: each row changes twice, one row goes
    for (const id of ids) await patch(id, { n: 2 });
    for (const id of ids) await patch(id, { n: 3 });
    await del(ids[4]);
    const b = await rawConnect(sc, server, { vsn: '1.0.0' });
    await b.join(topic, { config: { postgres_changes: [entry], rtsync: { resume_after: lastPos } } });
    await b.next((f) => f.event === 'system', 5000, 'subscribed');
    await b.next((f) => f.event === 'postgres_changes' && f.payload.data.type === 'DELETE', 5000, 'the catch-up');
    await patch(ids[0], { n: 4 }); // live, after the catch-up
    await b.next((f) => f.event === 'postgres_changes_batch', 5000, 'a live batch');
    await sleep(300);
    const after = changesOf(b);
    assert.ok(after.every((c) => BigInt(c.position) > BigInt(lastPos)), 'nothing at or before the resume position');
    const pos = after.map((c) => c.position);
    assert.equal(new Set(pos).size, pos.length, 'nothing repeated');
    // the catch-up is the uncoalesced log: 5 + 5 updates and the DELETE, then n=4
    assert.equal(after.length, 12);
    assert.deepEqual(after.slice(0, 10).map((c) => c.record.n), [2, 2, 2, 2, 2, 3, 3, 3, 3, 3]);
    assert.equal(after[11].record.n, 4);
    // seen before plus after covers every row's final state
    const state = new Map();
    for (const c of [...seen, ...after]) {
      if (c.type === 'DELETE') state.delete(c.old_record.id); else state.set(c.record.id, c.record.n);
    }
    assert.deepEqual([...state.entries()].sort((x, y) => x[0] - y[0]), [[ids[0], 4], [ids[1], 3], [ids[2], 3], [ids[3], 3]]);
  });

  it('a catch-up into a group whose window is open ends at its last flushed position', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const ids = rowIds(2);
    const topic = `realtime:${uniqueTopic('open')}`;
    const entry = { event: '*', schema: 'public', table: 'items', filter: `id=in.(${ids.join(',')})`, batch: true, throttle_ms: 1500 };
    const a = await rawConnect(sc, server, { vsn: '2.0.0' });
    await a.join(topic, { config: { postgres_changes: [entry] } });
    const sysA = await a.next((f) => f.event === 'system', 5000, 'subscribed');
    const p0 = sysA.payload.position;
    await insert([{ id: ids[0], v: 'a', n: 0 }]); // goes at once
    const b1 = await a.next((f) => f.event === 'postgres_changes_batch', 5000, 'first batch');
    const p1 = b1.payload.position;
    await patch(ids[0], { n: 1 }); // these wait in the window for ~1.5 s
    await insert([{ id: ids[1], v: 'b', n: 0 }]);
    await sleep(50);
    // b resumes from the first batch, c from before it, d joins without resume
    const b = await rawConnect(sc, server, { vsn: '2.0.0' });
    const c = await rawConnect(sc, server, { vsn: '2.0.0' });
    const d = await rawConnect(sc, server, { vsn: '2.0.0' });
    await b.join(topic, { config: { postgres_changes: [entry], rtsync: { resume_after: p1 } } });
    await c.join(topic, { config: { postgres_changes: [entry], rtsync: { resume_after: p0 } } });
    await d.join(topic, { config: { postgres_changes: [entry] } });
    const sysD = await d.next((f) => f.event === 'system', 5000, 'subscribed');
    const b2 = await a.next((f) => f.event === 'postgres_changes_batch' && f.payload.position !== p1, 5000, 'the window');
    for (const x of [b, c, d]) {
      await x.next((f) => f.event === 'postgres_changes_batch' && f.payload.position === b2.payload.position, 5000, 'the same window');
    }
    await sleep(200);
    const list = (x) => x.frames.events.flatMap((f) =>
      f.event === 'postgres_changes_batch' ? f.payload.changes : f.event === 'postgres_changes' ? [f.payload.data] : []);
    const want = b2.payload.changes.map((ch) => ch.position);
    assert.deepEqual(want.length, 2); // UPDATE of row 0, INSERT of row 1
    // d's start position is the group's flushed one: the window reaches it
    assert.ok(BigInt(sysD.payload.position) >= BigInt(p1) && BigInt(sysD.payload.position) < BigInt(want[0]));
    assert.deepEqual(list(b).map((ch) => ch.position), want, 'b: the window once, nothing from the catch-up');
    assert.deepEqual(list(d).map((ch) => ch.position), want, 'd: the window');
    assert.deepEqual(list(c).map((ch) => ch.position), [p1, ...want], 'c: the first change from the catch-up, then the window');
  });
});
