// Writes with conflict control and idempotency keys: the `write` event on a
// joined channel (driven with the plain `phoenix` client, vsn 1.0.0 and 2.0.0)
// and the REST headers Rtsync-Base / Rtsync-Strategy / Idempotency-Key
// (docs/writes.md). supabase-js subscribers check what reached postgres_changes.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Socket } from 'phoenix';
import { startServer, STORE } from './lib/server.mjs';
import { Recorder, scope, sleep, supabaseClient, VSNS, WebSocket } from './lib/util.mjs';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS docs (
  id bigint PRIMARY KEY,
  title text NOT NULL,
  body text,
  n integer NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS big (id bigint PRIMARY KEY, v text);
` + (STORE === 'sqlite' ? 'CREATE TABLE IF NOT EXISTS nokey (a text);\n' : ''); // PostgreSQL refuses to serve one

let server, dir, dbPath, schemaPath;
// A restart keeps the store: the same SQLite file, or the same PostgreSQL database.
const start = (args = []) => startServer({ args: ['--schema', schemaPath, '--db', dbPath, ...args],
  pgDatabase: server?.pgDatabase ?? undefined });
// Positions of writes are known at once with SQLite; with PostgreSQL they come
// with the replication stream and the reply says "0".
const hasPositions = () => server.store === 'sqlite';
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rtsync-writes-'));
  schemaPath = join(dir, 'schema.sql');
  writeFileSync(schemaPath, SCHEMA);
  dbPath = join(dir, 'test.db');
  server = await start();
});
after(async () => {
  if (server) await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

let nextId = 5000;
const newId = () => ++nextId;

function phxSocket(sc, vsn) {
  const opts = {
    transport: WebSocket,
    params: { apikey: server.token({ role: 'authenticated' }) },
    vsn,
    reconnectAfterMs: () => 1000,
  };
  if (vsn === '1.0.0') {
    opts.encode = (msg, cb) => cb(JSON.stringify(msg));
    opts.decode = (raw, cb) => cb(JSON.parse(raw));
  }
  const socket = new Socket(server.socketUrl, opts);
  socket.connect();
  sc.defer(() => new Promise((resolve) => socket.disconnect(() => resolve())));
  return socket;
}

async function joined(sc, vsn, topic = `writes-${vsn}-${Math.random().toString(36).slice(2)}`) {
  const socket = phxSocket(sc, vsn);
  const ch = socket.channel(`realtime:${topic}`, { config: {} });
  await new Promise((resolve, reject) => {
    ch.join(10_000).receive('ok', resolve)
      .receive('error', (r) => reject(new Error(JSON.stringify(r))))
      .receive('timeout', () => reject(new Error('join timeout')));
  });
  return ch;
}

function write(ch, payload, ms = 5000) {
  return new Promise((resolve, reject) => {
    ch.push('write', payload, ms)
      .receive('ok', (resp) => resolve({ status: 'ok', resp }))
      .receive('error', (resp) => resolve({ status: 'error', resp }))
      .receive('timeout', () => reject(new Error('write timed out')));
  });
}

function push(ch, event, payload, ms = 5000) {
  return new Promise((resolve, reject) => {
    ch.push(event, payload, ms)
      .receive('ok', (resp) => resolve({ status: 'ok', resp }))
      .receive('error', (resp) => resolve({ status: 'error', resp }))
      .receive('timeout', () => reject(new Error(`${event} timed out`)));
  });
}

function rest(method, path, { body, headers = {} } = {}) {
  const key = server.token({ role: 'authenticated' });
  return fetch(`${server.httpUrl}/rest/v1/${path}`, {
    method,
    headers: { apikey: key, Authorization: `Bearer ${key}`, 'Content-Type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function row(id) {
  const r = await rest('GET', `docs?id=eq.${id}`);
  const rows = await r.json();
  return rows[0] ?? null;
}

/** A supabase-js subscriber to every change of docs. */
async function changes(sc, topic) {
  const sb = supabaseClient(sc, server, { key: server.token({ role: 'anon' }) });
  const events = new Recorder(`changes on ${topic}`);
  const system = new Recorder(`system on ${topic}`);
  const ch = sb.channel(topic)
    .on('postgres_changes', { event: '*', schema: 'public', table: 'docs' }, (p) => events.push(p))
    .on('system', {}, (p) => system.push(p));
  await new Promise((resolve, reject) => ch.subscribe((s, err) => {
    if (s === 'SUBSCRIBED') resolve(); else reject(new Error(`${s} ${err?.message ?? ''}`));
  }));
  await system.waitFor(() => true, 5000, 'postgres_changes system message');
  return events;
}

for (const vsn of VSNS) {
  describe(`socket writes, vsn ${vsn}`, () => {
    it('insert, update with a base that holds, and delete: applied with the row and its position', async (t) => {
      const sc = scope(t);
      try {
        const ch = await joined(sc, vsn);
        const id = newId();
        const ins = await write(ch, { type: 'insert', table: 'docs', record: { id, title: 'a', body: 'x' } });
        assert.equal(ins.status, 'ok', JSON.stringify(ins));
        assert.equal(ins.resp.outcome, 'applied');
        assert.deepEqual(ins.resp.record, { id, title: 'a', body: 'x', n: 0 });
        if (hasPositions()) assert.match(ins.resp.position, /^[1-9][0-9]*$/);
        else assert.equal(ins.resp.position, '0');
        assert.equal(ins.resp.replayed, false);

        const upd = await write(ch, { type: 'UPDATE', schema: 'public', table: 'docs', key: { id },
          record: { title: 'b' }, base: { title: 'a' } });
        assert.equal(upd.status, 'ok', JSON.stringify(upd));
        assert.equal(upd.resp.outcome, 'applied');
        assert.deepEqual(upd.resp.record, { id, title: 'b', body: 'x', n: 0 });
        assert.deepEqual(upd.resp.conflicts, []);
        if (hasPositions()) assert.ok(BigInt(upd.resp.position) > BigInt(ins.resp.position));

        const del = await write(ch, { type: 'delete', table: 'docs', key: { id }, base: { title: 'b' } });
        assert.equal(del.status, 'ok', JSON.stringify(del));
        assert.equal(del.resp.outcome, 'applied');
        assert.equal(del.resp.record, null);
        assert.equal(await row(id), null);
      } finally { await sc.close(); }
    });

    it('two clients edit the same row: reject, merge and last-write-wins', async (t) => {
      const sc = scope(t);
      try {
        const a = await joined(sc, vsn);
        const b = await joined(sc, vsn);
        const id = newId();
        await write(a, { type: 'insert', table: 'docs', record: { id, title: 't0', body: 'b0', n: 1 } });
        const seen = { title: 't0', body: 'b0', n: 1 }; // what both clients read
        // A and B send at once with the same base; exactly one title change wins.
        const [ra, rb] = await Promise.all([
          write(a, { type: 'update', table: 'docs', key: { id }, record: { title: 'from-a' }, base: { title: seen.title } }),
          write(b, { type: 'update', table: 'docs', key: { id }, record: { title: 'from-b' }, base: { title: seen.title } }),
        ]);
        const results = [ra, rb];
        const won = results.filter((r) => r.status === 'ok');
        const lost = results.filter((r) => r.status === 'error');
        assert.equal(won.length, 1, JSON.stringify(results));
        assert.equal(lost.length, 1, JSON.stringify(results));
        assert.equal(lost[0].resp.reason, 'conflict');
        assert.equal(lost[0].resp.outcome, 'conflict');
        assert.deepEqual(lost[0].resp.conflicts, ['title']);
        assert.equal(lost[0].resp.record.title, won[0].resp.record.title);
        const winner = won[0].resp.record.title;
        assert.equal((await row(id)).title, winner);

        // merge: title conflicts (changed under B), body does not: body applies, title is reported.
        const m = await write(b, { type: 'update', table: 'docs', key: { id }, strategy: 'merge',
          record: { title: 'b-title', body: 'b-body' }, base: { title: 't0', body: 'b0' } });
        assert.equal(m.status, 'ok', JSON.stringify(m));
        assert.equal(m.resp.outcome, 'merged');
        assert.deepEqual(m.resp.conflicts, ['title']);
        assert.deepEqual(m.resp.record, { id, title: winner, body: 'b-body', n: 1 });

        // last-write-wins: applies everything, still says what it overwrote.
        const l = await write(a, { type: 'update', table: 'docs', key: { id }, strategy: 'lww',
          record: { title: 'lww', n: 5 }, base: { title: 't0', n: 1 } });
        assert.equal(l.status, 'ok', JSON.stringify(l));
        assert.equal(l.resp.outcome, 'applied');
        assert.deepEqual(l.resp.conflicts, ['title']);
        assert.deepEqual(await row(id), { id, title: 'lww', body: 'b-body', n: 5 });

        // the same change made by both sides is no conflict
        const same = await write(b, { type: 'update', table: 'docs', key: { id },
          record: { title: 'lww' }, base: { title: 'something-old' } });
        assert.equal(same.status, 'ok', JSON.stringify(same));
        assert.equal(same.resp.outcome, 'applied');

        // a row deleted under the writer: conflict with no current row
        await write(a, { type: 'delete', table: 'docs', key: { id } });
        const gone = await write(b, { type: 'update', table: 'docs', key: { id }, record: { n: 9 }, base: { n: 5 } });
        assert.equal(gone.status, 'error');
        assert.equal(gone.resp.outcome, 'conflict');
        assert.equal(gone.resp.record, null);
      } finally { await sc.close(); }
    });

    it('an idempotency key applies once: the replay gets the first result, one change is delivered', async (t) => {
      const sc = scope(t);
      try {
        const events = await changes(sc, `idem-${vsn}`);
        const ch = await joined(sc, vsn);
        const id = newId();
        const payload = { type: 'insert', table: 'docs', record: { id, title: 'once' }, idempotency_key: `k-${vsn}-${id}` };
        const first = await write(ch, payload);
        const again = await write(ch, payload);
        assert.equal(first.status, 'ok', JSON.stringify(first));
        assert.equal(again.status, 'ok', JSON.stringify(again));
        assert.equal(first.resp.replayed, false);
        assert.equal(again.resp.replayed, true);
        assert.deepEqual(again.resp.record, first.resp.record);
        assert.equal(again.resp.position, first.resp.position);
        // the same key for another request is refused
        const other = await write(ch, { ...payload, record: { id, title: 'twice' } });
        assert.equal(other.status, 'error');
        assert.equal(other.resp.code, 'RTS422');
        await events.waitFor((e) => e.eventType === 'INSERT' && e.new.id === id, 5000, 'the insert');
        await sleep(300);
        assert.equal(events.filter((e) => e.new?.id === id).length, 1);
        assert.equal((await row(id)).title, 'once');
      } finally { await sc.close(); }
    });

    it('writes of one socket apply in the order sent, also pipelined', async (t) => {
      const sc = scope(t);
      try {
        const ch = await joined(sc, vsn);
        const id = newId();
        const ins = await write(ch, { type: 'insert', table: 'docs', record: { id, title: 't' } });
        assert.equal(ins.status, 'ok', JSON.stringify(ins));
        // 40 pushes without waiting: at most 32 wait at a time, the rest are refused
        const sent = [];
        for (let i = 1; i <= 40; i++) sent.push(write(ch, { type: 'update', table: 'docs', key: { id }, record: { n: i } }));
        const got = await Promise.all(sent);
        const accepted = [];
        got.forEach((r, i) => {
          if (r.status === 'ok') accepted.push({ n: i + 1, r });
          else assert.equal(r.resp.code, 'RTS429', JSON.stringify(r));
        });
        assert.ok(accepted.length >= 32, `only ${accepted.length} accepted`);
        // each reply shows the row as that write left it: applied one after the other
        for (const { n, r } of accepted) assert.equal(r.resp.record.n, n, JSON.stringify(r));
        if (hasPositions()) {
          for (let i = 1; i < accepted.length; i++)
            assert.ok(BigInt(accepted[i].r.resp.position) > BigInt(accepted[i - 1].r.resp.position));
        }
        assert.equal((await row(id)).n, accepted[accepted.length - 1].n);
      } finally { await sc.close(); }
    });

    it('snapshot: every row by primary key with the position it reflects, after the socket\'s own writes', async (t) => {
      const sc = scope(t);
      try {
        const ch = await joined(sc, vsn);
        const id = newId();
        // pipelined: the snapshot runs after the write it follows
        const [w, snap] = await Promise.all([
          write(ch, { type: 'insert', table: 'docs', record: { id, title: 'snap' } }),
          push(ch, 'snapshot', { table: 'docs' }),
        ]);
        assert.equal(w.status, 'ok', JSON.stringify(w));
        assert.equal(snap.status, 'ok', JSON.stringify(snap).slice(0, 300));
        assert.match(snap.resp.position, /^[0-9]+$/);
        const ids = snap.resp.rows.map((r) => r.id);
        assert.deepEqual(ids, [...ids].sort((a, b) => a - b));
        assert.deepEqual(snap.resp.rows.find((r) => r.id === id), { id, title: 'snap', body: null, n: 0 });
        const all = await (await rest('GET', 'docs?order=id.asc')).json();
        assert.deepEqual(snap.resp.rows, all);
        if (hasPositions()) assert.ok(BigInt(snap.resp.position) >= BigInt(w.resp.position));

        const bad = await push(ch, 'snapshot', { table: 'nope' });
        assert.equal(bad.status, 'error');
        assert.equal(bad.resp.code, 'PGRST205');
        const none = await push(ch, 'snapshot', {});
        assert.equal(none.resp.code, 'PGRST205');
      } finally { await sc.close(); }
    });

    it('refuses bad writes with clear errors', async (t) => {
      const sc = scope(t);
      try {
        const ch = await joined(sc, vsn);
        const cases = [
          [{ type: 'merge', table: 'docs', record: {} }, 'RTS400', /type must be/],
          [{ type: 'insert', table: 'nope', record: { id: 1 } }, 'PGRST205', /unknown table/],
          [{ type: 'insert', table: 'docs' }, 'RTS400', /record must be an object/],
          [{ type: 'update', table: 'docs', record: { title: 'x' } }, 'RTS400', /key must be an object/],
          [{ type: 'update', table: 'docs', key: { nope: 1 }, record: { title: 'x' } }, 'RTS400', /"nope" is not a primary key column/],
          [{ type: 'update', table: 'docs', key: { title: 'x' }, record: { n: 1 } }, 'RTS400', /"title" is not a primary key column/],
          ...(STORE === 'sqlite' ? [[{ type: 'delete', table: 'nokey', key: { a: 'x' } }, 'RTS400', /"a" is not a primary key column/]] : []),
          [{ type: 'insert', table: 'docs', record: { id: newId(), title: 'x' }, base: { title: 'y' } }, 'RTS400', /not insert/],
          [{ type: 'update', table: 'docs', key: { id: 1 }, record: { title: 'x' }, strategy: 'maybe' }, 'RTS400', /strategy/],
          [{ type: 'update', table: 'docs', key: { id: 1 }, record: { nope: 1 }, base: { title: 'y' } }, 'PGRST204', /nope/],
          [{ type: 'insert', table: 'docs', record: { id: newId() } }, '23502', /null value in column "title"/],
          [{ type: 'insert', table: 'docs', record: { id: newId(), title: 'k' }, idempotency_key: 'x'.repeat(256) }, 'RTS400', /idempotency key/],
        ];
        for (const [payload, code, re] of cases) {
          const r = await write(ch, payload);
          assert.equal(r.status, 'error', `${JSON.stringify(payload)} -> ${JSON.stringify(r)}`);
          assert.equal(r.resp.code, code, `${JSON.stringify(payload)} -> ${JSON.stringify(r)}`);
          assert.match(r.resp.reason, re);
        }
      } finally { await sc.close(); }
    });
  });
}

describe('snapshot limits and consistency', () => {
  it('one channel: changes after the snapshot position arrive, the snapshot holds those at or below it', async (t) => {
    const sc = scope(t);
    try {
      const socket = phxSocket(sc, '1.0.0');
      const ch = socket.channel(`realtime:snap-${Math.random().toString(36).slice(2)}`, {
        config: { postgres_changes: [{ event: '*', schema: 'public', table: 'docs' }] } });
      const events = new Recorder('postgres_changes');
      const system = new Recorder('system');
      ch.on('postgres_changes', (p) => events.push(p.data));
      ch.on('system', (p) => system.push(p));
      await new Promise((resolve, reject) => {
        ch.join(10_000).receive('ok', resolve).receive('error', (r) => reject(new Error(JSON.stringify(r))));
      });
      await system.waitFor((p) => p.extension === 'postgres_changes', 5000, 'subscribed');
      const a = newId(), b = newId();
      assert.equal((await rest('POST', 'docs', { body: { id: a, title: 'before' } })).status, 201);
      const ea = await events.waitFor((d) => d.record?.id === a, 5000, 'insert of a');
      const snap = await push(ch, 'snapshot', { table: 'docs' });
      assert.equal(snap.status, 'ok');
      assert.ok(snap.resp.rows.some((r) => r.id === a));
      assert.ok(!snap.resp.rows.some((r) => r.id === b));
      assert.ok(BigInt(snap.resp.position) >= BigInt(ea.position), `${snap.resp.position} < ${ea.position}`);
      assert.equal((await rest('POST', 'docs', { body: { id: b, title: 'after' } })).status, 201);
      const eb = await events.waitFor((d) => d.record?.id === b, 5000, 'insert of b');
      assert.ok(BigInt(eb.position) > BigInt(snap.resp.position), `${eb.position} <= ${snap.resp.position}`);
    } finally { await sc.close(); }
  });

  it('a table over 10,000 rows is refused with RTS413', async (t) => {
    const sc = scope(t);
    try {
      const rows = Array.from({ length: 10001 }, (_, i) => ({ id: i + 1, v: 'x' }));
      const r = await rest('POST', 'big', { body: rows });
      assert.equal(r.status, 201, await r.text());
      const ch = await joined(sc, '1.0.0');
      const snap = await push(ch, 'snapshot', { table: 'big' }, 20000);
      assert.equal(snap.status, 'error');
      assert.equal(snap.resp.code, 'RTS413');
      assert.match(snap.resp.reason, /at most 10000 rows/);
      assert.equal((await rest('DELETE', 'big?id=eq.1')).status, 204);
      const ok = await push(ch, 'snapshot', { table: 'big' }, 20000);
      assert.equal(ok.status, 'ok');
      assert.equal(ok.resp.rows.length, 10000);
      assert.equal(ok.resp.rows[0].id, 2);
    } finally { await sc.close(); }
  });
});

describe('REST writes with Rtsync-Base, Rtsync-Strategy and Idempotency-Key', () => {
  it('409 with the current row on a conflict, merge headers, and replays', async () => {
    const id = newId();
    let r = await rest('POST', 'docs', { body: { id, title: 'r0', body: 'b0' } });
    assert.equal(r.status, 201);

    r = await rest('PATCH', `docs?id=eq.${id}`, { body: { title: 'r1' }, headers: { 'Rtsync-Base': '{"title":"stale"}', Prefer: 'return=representation' } });
    assert.equal(r.status, 409);
    assert.equal(r.headers.get('rtsync-outcome'), 'conflict');
    assert.equal(r.headers.get('rtsync-conflicts'), 'title');
    const body = await r.json();
    assert.equal(body.code, 'RTS409');
    assert.deepEqual(body.conflicts, ['title']);
    assert.deepEqual(body.current, { id, title: 'r0', body: 'b0', n: 0 });

    r = await rest('PATCH', `docs?id=eq.${id}`, { body: { title: 'r1', body: 'b1' },
      headers: { 'Rtsync-Base': '{"title":"stale","body":"b0"}', 'Rtsync-Strategy': 'merge', Prefer: 'return=representation' } });
    assert.equal(r.status, 200);
    assert.equal(r.headers.get('rtsync-outcome'), 'merged');
    assert.equal(r.headers.get('rtsync-conflicts'), 'title');
    if (hasPositions()) assert.match(r.headers.get('rtsync-position'), /^[1-9][0-9]*$/);
    else assert.equal(r.headers.get('rtsync-position'), null);
    assert.deepEqual(await r.json(), [{ id, title: 'r0', body: 'b1', n: 0 }]);

    const headers = { 'Idempotency-Key': `rest-${id}`, Prefer: 'return=representation' };
    const first = await rest('PATCH', `docs?id=eq.${id}`, { body: { n: 1 }, headers });
    const again = await rest('PATCH', `docs?id=eq.${id}`, { body: { n: 1 }, headers });
    assert.equal(first.status, 200);
    assert.equal(again.status, 200);
    assert.equal(first.headers.get('idempotency-replayed'), null);
    assert.equal(again.headers.get('idempotency-replayed'), 'true');
    assert.deepEqual(await again.json(), await first.json());
    const reused = await rest('PATCH', `docs?id=eq.${id}`, { body: { n: 2 }, headers });
    assert.equal(reused.status, 422);
    assert.equal((await reused.json()).code, 'RTS422');

    r = await rest('PATCH', 'docs', { body: { n: 3 }, headers: { 'Rtsync-Base': '{"n":1}' } });
    assert.equal(r.status, 400);
    assert.match((await r.json()).message, /one row/);
    // a conflict stays a 409 when a single object was asked for
    r = await rest('PATCH', `docs?id=eq.${id}`, { body: { n: 3 }, headers: { 'Rtsync-Base': '{"n":0}', Accept: 'application/vnd.pgrst.object+json', Prefer: 'return=representation' } });
    assert.equal(r.status, 409);
    assert.equal((await r.json()).current.n, 1);
    if (STORE === 'sqlite') {
      r = await rest('PATCH', 'nokey?a=eq.x', { body: { a: 'y' }, headers: { 'Rtsync-Base': '{"a":"x"}' } });
      assert.equal(r.status, 400);
      assert.match((await r.json()).message, /primary key/);
    }
    r = await rest('PATCH', `docs?id=eq.${id}`, { body: { n: 3 }, headers: { 'Rtsync-Base': '[1]' } });
    assert.equal(r.status, 400);
    r = await rest('PATCH', `docs?id=eq.${id}`, { body: { n: 3 }, headers: { 'Rtsync-Strategy': 'nope' } });
    assert.equal(r.status, 400);
  });

  it('idempotency keys survive a restart', async () => {
    const id = newId();
    const headers = { 'Idempotency-Key': `restart-${id}`, Prefer: 'return=representation' };
    const first = await rest('POST', 'docs', { body: { id, title: 'persist' }, headers });
    assert.equal(first.status, 201);
    const firstBody = await first.json();
    await server.stop();
    server = await start();
    const again = await rest('POST', 'docs', { body: { id, title: 'persist' }, headers });
    assert.equal(again.status, 201, await again.clone().text());
    assert.equal(again.headers.get('idempotency-replayed'), 'true');
    assert.deepEqual(await again.json(), firstBody);
  });

  it('a key is forgotten after --idempotency-window-ms', async () => {
    await server.stop();
    server = await start(['--idempotency-window-ms', '1000']);
    const id = newId();
    const headers = { 'Idempotency-Key': `window-${id}`, Prefer: 'return=representation' };
    const first = await rest('PATCH', `docs?id=eq.${id}`, { body: { n: 1 }, headers });
    assert.equal(first.status, 200);
    const soon = await rest('PATCH', `docs?id=eq.${id}`, { body: { n: 1 }, headers });
    assert.equal(soon.headers.get('idempotency-replayed'), 'true');
    await sleep(1200);
    const late = await rest('PATCH', `docs?id=eq.${id}`, { body: { n: 1 }, headers });
    assert.equal(late.status, 200);
    assert.equal(late.headers.get('idempotency-replayed'), null);
    // and the key is remembered again from then on
    const again = await rest('PATCH', `docs?id=eq.${id}`, { body: { n: 1 }, headers });
    assert.equal(again.headers.get('idempotency-replayed'), 'true');
  });
});
