// Shared Yjs documents at /collab/v1/<document>, driven by the unmodified
// yjs + y-websocket clients (docs/collab.md): convergence of three clients
// after concurrent and offline edits and a disconnect, a late joiner after
// a server restart, awareness, isolation, bad keys and read-only users,
// REST reads, and compaction under 100,000 small edits. Runs on either store.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import WebSocket from 'ws';
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';
import { startServer } from './lib/server.mjs';
import { sleep } from './lib/util.mjs';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, v text);
ALTER TABLE realtime.messages ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS "doc readers" ON realtime.messages;
DROP POLICY IF EXISTS "doc writers" ON realtime.messages;
CREATE POLICY "doc readers" ON realtime.messages FOR SELECT TO authenticated
  USING (realtime.topic() LIKE 'collab:%' AND (auth.jwt() ->> 'sub') IN ('reader', 'writer'));
CREATE POLICY "doc writers" ON realtime.messages FOR INSERT TO authenticated
  WITH CHECK (realtime.topic() LIKE 'collab:%' AND (auth.jwt() ->> 'sub') = 'writer');
`;

let dir, schemaPath;
const servers = [];
async function start(opts = {}) {
  const s = await startServer({ args: ['--schema', schemaPath], ...opts });
  servers.push(s);
  return s;
}
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'rtsync-collab-'));
  schemaPath = join(dir, 'schema.sql');
  writeFileSync(schemaPath, SCHEMA);
});
after(async () => {
  for (const s of servers) await s.stop();
  rmSync(dir, { recursive: true, force: true });
});

const wsBase = (server) => server.httpUrl.replace(/^http/, 'ws') + '/collab/v1';
const tok = (server, sub) => server.token({ role: 'authenticated', claims: { sub } });

/** A y-websocket client on doc; resolves once synced. */
function client(server, doc, { sub = 'writer', apikey, ydoc = new Y.Doc(), connect = true } = {}) {
  const provider = new WebsocketProvider(wsBase(server), doc, ydoc, {
    params: { apikey: apikey ?? tok(server, sub) },
    WebSocketPolyfill: WebSocket,
    connect,
    maxBackoffTime: 200,
    disableBc: true, // clients of one process would otherwise sync without the server
  });
  return { ydoc, provider, close: () => { provider.destroy(); ydoc.destroy(); } };
}

function until(cond, what, ms = 10_000) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      if (cond()) return resolve();
      if (Date.now() - t0 > ms) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 20);
    };
    tick();
  });
}
const synced = (c) => until(() => c.provider.synced, 'sync');
const text = (c) => c.ydoc.getText('t').toString();

/** A raw WebSocket to the document: resolves with {status} on refusal or the open socket. */
function rawOpen(server, doc, apikey) {
  return new Promise((resolve) => {
    const q = apikey === undefined ? '' : `?apikey=${encodeURIComponent(apikey)}`;
    const ws = new WebSocket(`${wsBase(server)}/${doc}${q}`);
    ws.on('unexpected-response', (_req, res) => resolve({ status: res.statusCode }));
    ws.on('open', () => resolve({ ws }));
    ws.on('error', () => {});
  });
}

describe('collab documents over y-websocket', () => {
  let server;
  before(async () => { server = await start(); });

  it('three clients converge after concurrent edits, offline edits and a disconnect', { timeout: 60_000 }, async () => {
    const cs = [client(server, 'conv'), client(server, 'conv'), client(server, 'conv')];
    try {
      await Promise.all(cs.map(synced));
      cs.forEach((c, i) => c.ydoc.transact(() => {
        c.ydoc.getText('t').insert(0, `c${i}-`);
        c.ydoc.getMap('m').set(`k${i}`, i);
        c.ydoc.getArray('a').push([i, { n: i }]);
      }));
      await until(() => cs.every((c) => text(c).length === 9 && c.ydoc.getArray('a').length === 6), 'concurrent edits');
      // offline: client 2 disconnects, all edit, it reconnects
      cs[2].provider.disconnect();
      cs[0].ydoc.getText('t').insert(0, 'A');
      cs[2].ydoc.getText('t').insert(text(cs[2]).length, 'Z');
      cs[2].ydoc.getMap('m').set('offline', true);
      await sleep(200);
      assert.ok(!text(cs[1]).includes('Z'), 'an offline edit arrived before the reconnect');
      cs[2].provider.connect();
      // a dropped socket (not closed cleanly) on client 1
      cs[1].provider.ws.terminate();
      cs[1].ydoc.getText('t').insert(0, 'B');
      await until(() => cs.every((c) => text(c) === text(cs[0]) && text(c).includes('A') &&
        text(c).includes('B') && text(c).includes('Z')), 'convergence after reconnects');
      // (key order follows arrival order: compare sorted)
      const mapOf = (c) => JSON.stringify(Object.entries(c.ydoc.getMap('m').toJSON()).sort());
      await until(() => cs.every((c) => mapOf(c) === mapOf(cs[0])), 'maps converge');
      assert.equal(cs[0].ydoc.getMap('m').get('offline'), true);
      assert.deepEqual(cs[1].ydoc.getArray('a').toJSON(), cs[0].ydoc.getArray('a').toJSON());
    } finally { cs.forEach((c) => c.close()); }
  });

  it('awareness states reach the others and leave with their connection', { timeout: 30_000 }, async () => {
    const a = client(server, 'aware'), b = client(server, 'aware'), c = client(server, 'aware');
    try {
      await Promise.all([a, b, c].map(synced));
      a.provider.awareness.setLocalStateField('user', { name: 'ann' });
      const id = a.ydoc.clientID;
      await until(() => b.provider.awareness.getStates().get(id)?.user?.name === 'ann' &&
        c.provider.awareness.getStates().get(id)?.user?.name === 'ann', 'awareness at b and c');
      // a late joiner gets it too
      const d = client(server, 'aware');
      await synced(d);
      await until(() => d.provider.awareness.getStates().get(id)?.user?.name === 'ann', 'awareness at a late joiner');
      d.close();
      // an unclean close removes it at once (long before the 30 s timeout)
      const t0 = Date.now();
      a.provider.ws.terminate();
      a.provider.shouldConnect = false;
      await until(() => !b.provider.awareness.getStates().has(id) && !c.provider.awareness.getStates().has(id), 'removal', 5000);
      assert.ok(Date.now() - t0 < 5000);
      // b's state is not removed by someone else's id
      b.provider.awareness.setLocalStateField('user', { name: 'bob' });
      await until(() => c.provider.awareness.getStates().get(b.ydoc.clientID)?.user?.name === 'bob', 'b at c');
    } finally { [a, b, c].forEach((x) => x.close()); }
  });

  it('documents are isolated', { timeout: 30_000 }, async () => {
    const x = client(server, 'iso-x'), y = client(server, 'iso-y');
    try {
      await Promise.all([x, y].map(synced));
      x.ydoc.getText('t').insert(0, 'only x');
      x.provider.awareness.setLocalStateField('who', 'x');
      const x2 = client(server, 'iso-x');
      await synced(x2);
      await until(() => text(x2) === 'only x', 'x2 gets x');
      await sleep(300);
      assert.equal(text(y), '');
      assert.ok(!y.provider.awareness.getStates().has(x.ydoc.clientID));
      x2.close();
    } finally { x.close(); y.close(); }
  });

  it('bad, expired and missing keys get no document; users without read are refused', { timeout: 30_000 }, async () => {
    const w = client(server, 'secret');
    await synced(w);
    w.ydoc.getText('t').insert(0, 'classified');
    await sleep(200);
    w.close();
    assert.equal((await rawOpen(server, 'secret')).status, 401);
    assert.equal((await rawOpen(server, 'secret', 'not-a-jwt')).status, 401);
    assert.equal((await rawOpen(server, 'secret', server.token({ role: 'authenticated', expIn: -10, claims: { sub: 'writer' } }))).status, 401);
    assert.equal((await rawOpen(server, 'secret', server.token({ role: 'authenticated', secret: 'wrong-secret-wrong-secret-wrong-secret', claims: { sub: 'writer' } }))).status, 401);
    assert.equal((await rawOpen(server, 'secret', tok(server, 'stranger'))).status, 403);
    assert.equal((await rawOpen(server, 'secret', server.token({ role: 'anon' }))).status, 403);
    const r = await fetch(`${server.httpUrl}/collab/v1/secret`, { headers: { apikey: tok(server, 'stranger') } });
    assert.equal(r.status, 403);
    // a y-websocket client with a bad key never syncs
    const bad = client(server, 'secret', { apikey: 'nope' });
    await sleep(500);
    assert.equal(bad.provider.synced, false);
    assert.equal(text(bad), '');
    bad.close();
  });

  it('a read-only user reads but its updates are refused and not applied', { timeout: 30_000 }, async () => {
    const w = client(server, 'ro');
    const r = client(server, 'ro', { sub: 'reader' });
    try {
      await Promise.all([w, r].map(synced));
      w.ydoc.getText('t').insert(0, 'by writer');
      await until(() => text(r) === 'by writer', 'reader sees the writer');
      let denied = null;
      r.provider.on('connection-close', () => {});
      const origWarn = console.warn; const origErr = console.error;
      console.warn = console.error = (...a) => { if (String(a[0]).includes('Permission denied')) denied = a.join(' '); };
      r.ydoc.getText('t').insert(0, 'by reader ');
      await until(() => denied !== null, 'permission denied message').finally(() => { console.warn = origWarn; console.error = origErr; });
      assert.match(denied, /read-only/);
      await sleep(300);
      assert.equal(text(w), 'by writer');
      const fresh = client(server, 'ro');
      await synced(fresh);
      await sleep(100);
      assert.equal(text(fresh), 'by writer');
      fresh.close();
    } finally { w.close(); r.close(); }
  });

  it('REST reads a document as JSON and as one update', { timeout: 30_000 }, async () => {
    const w = client(server, 'rest doc');
    try {
      await synced(w);
      w.ydoc.getText('t').insert(0, 'hello');
      w.ydoc.getMap('m').set('n', 42);
      await sleep(300);
      const h = { apikey: tok(server, 'reader') };
      const bin = await fetch(`${server.httpUrl}/collab/v1/rest%20doc?format=update`, { headers: h });
      assert.equal(bin.status, 200);
      assert.equal(bin.headers.get('content-type'), 'application/octet-stream');
      const d = new Y.Doc();
      Y.applyUpdate(d, new Uint8Array(await bin.arrayBuffer()));
      assert.equal(d.getText('t').toString(), 'hello');
      assert.equal(d.getMap('m').get('n'), 42);
      const js = await (await fetch(`${server.httpUrl}/collab/v1/rest%20doc`, { headers: h })).json();
      assert.equal(js.document, 'rest doc');
      assert.equal(js.state_vector[String(w.ydoc.clientID)], 6);
      const d2 = new Y.Doc();
      Y.applyUpdate(d2, new Uint8Array(Buffer.from(js.update, 'base64')));
      assert.equal(d2.getText('t').toString(), 'hello');
      // the shared types as JSON, for a server without yjs
      const nested = new Y.Map();
      w.ydoc.getMap('m').set('nested', nested);
      nested.set('list', Y.Array.from([1, 'two', { three: 3 }]));
      w.ydoc.getText('t').format(0, 2, { bold: true });
      w.ydoc.getArray('a').push([new Uint8Array([1, 2, 3]), null]);
      await sleep(300);
      const types = await fetch(`${server.httpUrl}/collab/v1/rest%20doc?format=json`, { headers: h });
      assert.equal(types.status, 200);
      assert.equal(types.headers.get('content-type'), 'application/json');
      assert.deepEqual(await types.json(), {
        t: 'hello', m: { n: 42, nested: { list: [1, 'two', { three: 3 }] } }, a: ['AQID', null],
      });
      const delta = await (await fetch(`${server.httpUrl}/collab/v1/rest%20doc?format=delta`, { headers: h })).json();
      assert.deepEqual(delta.t, [{ insert: 'he', attributes: { bold: true } }, { insert: 'llo' }]);
      assert.deepEqual(delta.t, w.ydoc.getText('t').toDelta());
      assert.equal((await fetch(`${server.httpUrl}/collab/v1/rest%20doc?format=xml`, { headers: h })).status, 400);
      // the read check is the binary GET's
      assert.equal((await fetch(`${server.httpUrl}/collab/v1/rest%20doc?format=json`)).status, 401);
      assert.equal((await fetch(`${server.httpUrl}/collab/v1/rest%20doc?format=json`, { headers: { apikey: tok(server, 'nobody') } })).status, 403);
    } finally { w.close(); }
  });

  it('malformed updates close the connection and leave the document as it was', { timeout: 30_000 }, async () => {
    const w = client(server, 'hostile');
    await synced(w);
    w.ydoc.getText('t').insert(0, 'intact');
    await sleep(200);
    const { ws } = await rawOpen(server, 'hostile', tok(server, 'writer'));
    const closed = new Promise((r) => ws.on('close', (code) => r(code)));
    // sync update whose struct has an unknown content ref (11)
    ws.send(Buffer.from([0, 2, 8, 1, 1, 7, 0, 0x0b, 1, 0, 0]));
    assert.equal(await closed, 1008);
    const fresh = client(server, 'hostile');
    await synced(fresh);
    await sleep(100);
    assert.equal(text(fresh), 'intact');
    assert.equal(text(w), 'intact');
    fresh.close(); w.close();
  });

  it('a client count past the update\'s length is refused, and the server stays up', { timeout: 30_000 }, async () => {
    const { ws } = await rawOpen(server, 'hostile-count', tok(server, 'writer'));
    const closed = new Promise((r) => ws.on('close', (code) => r(code)));
    // sync update: 15 bytes that claim 2^49 clients
    const update = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x00, 0x02, 0x6b, 0x02, 0x32, 0x01, 0x02, 0x6d];
    ws.send(Buffer.from([0, 2, update.length, ...update]));
    assert.equal(await closed, 1008);
    const fresh = client(server, 'hostile-count');
    await synced(fresh);
    fresh.close();
  });

  it('one connection holds at most 16 awareness states', { timeout: 30_000 }, async () => {
    const varuint = (n) => { const out = []; do { let b = n & 0x7f; n = Math.floor(n / 128); out.push(n ? b | 0x80 : b); } while (n); return out; };
    const awareness = (ids) => {
      const u = [...varuint(ids.length)];
      for (const id of ids) {
        const state = Buffer.from(JSON.stringify({ n: id }));
        u.push(...varuint(id), ...varuint(1), ...varuint(state.length), ...state);
      }
      return Buffer.from([1, ...varuint(u.length), ...u]);
    };
    const watcher = client(server, 'aw-bound');
    await synced(watcher);
    const { ws } = await rawOpen(server, 'aw-bound', tok(server, 'writer'));
    const closed = new Promise((r) => ws.on('close', (code) => r(code)));
    ws.send(awareness(Array.from({ length: 16 }, (_, i) => 1000 + i)));
    await until(() => watcher.provider.awareness.getStates().has(1015), '16 states at the watcher');
    ws.send(awareness([2000]));
    assert.equal(await closed, 1009);
    // its states leave with it; the watcher's connection is untouched
    await until(() => !watcher.provider.awareness.getStates().has(1000), 'removal');
    assert.ok(watcher.provider.wsconnected);
    watcher.close();
  });
});

describe('persistence and compaction', () => {
  it('a late joiner gets the whole document after a server restart, and a reconnecting client only what it lacks', { timeout: 60_000 }, async () => {
    const dataDir = mkdtempSync(join(dir, 'keep-'));
    let s1 = await start({ dataDir });
    const a = client(s1, 'persist'), b = client(s1, 'persist');
    await Promise.all([a, b].map(synced));
    for (let i = 0; i < 50; i++) (i % 2 ? a : b).ydoc.getText('t').insert(0, String(i % 10));
    a.ydoc.getMap('m').set('k', 'v');
    await until(() => text(a) === text(b) && text(a).length === 50, 'a and b agree');
    const want = text(a);
    b.close();
    a.provider.disconnect();
    a.ydoc.getText('t').insert(0, 'offline ');
    await s1.stop();
    const s2 = await start({ dataDir, pgDatabase: s1.pgDatabase });
    const late = client(s2, 'persist');
    await synced(late);
    assert.equal(text(late), want);
    assert.equal(late.ydoc.getMap('m').get('k'), 'v');
    // a reconnects to the new server: sends its offline edit, gets nothing twice
    a.provider.destroy();
    const a2 = client(s2, 'persist', { ydoc: a.ydoc });
    await until(() => text(late) === `offline ${want}`, 'the offline edit reaches the late joiner');
    a2.close(); late.close();
  });

  it('compaction collapses a deleted type as Yjs does, and the JSON reads the compacted state', { timeout: 60_000 }, async () => {
    process.env.RTSYNC_COLLAB_COMPACT_UPDATES = '2';
    let s;
    try { s = await start(); } finally { delete process.env.RTSYNC_COLLAB_COMPACT_UPDATES; }
    const w = client(s, 'gc');
    await synced(w);
    const big = new Y.Map();
    w.ydoc.getMap('m').set('big', big);
    w.ydoc.transact(() => { for (let i = 0; i < 200; i++) big.set(`key-${i}`, `a value long enough to be worth collecting ${i}`); });
    w.ydoc.getMap('m').set('keep', 'yes');
    await sleep(200);
    w.ydoc.getMap('m').delete('big');
    w.ydoc.getText('t').insert(0, 'after');
    const h = { apikey: tok(s, 'reader') };
    // the 200 entries become one GC range, as in the writer's own (gc'd)
    // state: what is stored (the compacted state, and the last update when
    // it came after the compaction) stays within a few bytes of it; with the
    // entries kept as deleted content (their keys) it would be over 2,000
    const own = Y.encodeStateAsUpdate(w.ydoc).length;
    let info;
    for (let k = 0; k < 200; k++) {
      info = await (await fetch(`${s.httpUrl}/collab/v1/gc`, { headers: h })).json();
      if (info.stored.updates <= 2 && info.stored.bytes <= own + 64) break;
      await sleep(100);
    }
    assert.ok(info.stored.updates <= 2, `stored ${info.stored.updates} updates`);
    assert.ok(info.stored.bytes <= own + 64, `stored ${info.stored.bytes} bytes, yjs ${own}`);
    const types = await (await fetch(`${s.httpUrl}/collab/v1/gc?format=json`, { headers: h })).json();
    assert.deepEqual(types, { m: { keep: 'yes' }, t: 'after' });
    const late = client(s, 'gc');
    await synced(late);
    assert.deepEqual(late.ydoc.getMap('m').toJSON(), { keep: 'yes' });
    assert.equal(text(late), 'after');
    late.close(); w.close();
  });

  it('compaction keeps the stored size bounded under 100,000 small edits', { timeout: 600_000 }, async () => {
    const s = await start();
    const w = client(s, 'big');
    await synced(w);
    const t = w.ydoc.getText('t'), m = w.ydoc.getMap('m');
    const N = Number(process.env.RTSYNC_COLLAB_EDITS || 100_000);
    let sent = 0, rawBytes = 0;
    w.ydoc.on('update', (u) => { rawBytes += u.length; });
    for (let i = 0; i < N; i++) {
      // typing with corrections, a counter overwritten again and again
      if (i % 3 === 2) m.set('count', i);
      else if (i % 7 === 6 && t.length) t.delete(t.length - 1, 1);
      else t.insert(t.length, String.fromCharCode(97 + (i % 26)));
      if (t.length > 2000) t.delete(0, 1000);
      if (++sent % 2000 === 0) {
        // let the socket drain
        await until(() => w.provider.ws && w.provider.ws.bufferedAmount === 0, 'drain', 60_000);
        await sleep(5);
      }
    }
    const yjsState = Y.encodeStateAsUpdate(w.ydoc).length;
    const h = { apikey: tok(s, 'reader') };
    let info;
    for (let k = 0; k < 100; k++) {
      info = await (await fetch(`${s.httpUrl}/collab/v1/big`, { headers: h })).json();
      const sv = Y.decodeStateVector(Y.encodeStateVector(w.ydoc)).get(w.ydoc.clientID);
      if (info.state_vector[String(w.ydoc.clientID)] === sv && info.stored.updates < 600) break;
      await sleep(200);
    }
    console.log(`${N} edits (${rawBytes} bytes of updates): stored ${info.stored.updates} updates, ${info.stored.bytes} bytes; in memory ${info.memory.bytes}; yjs state ${yjsState} bytes`);
    assert.ok(info.stored.updates <= 600, `stored updates ${info.stored.updates}`);
    assert.ok(info.stored.bytes < 3 * yjsState + 600 * 64, `stored ${info.stored.bytes} bytes vs yjs state ${yjsState}`);
    assert.ok(info.stored.bytes < rawBytes / 2, `stored ${info.stored.bytes} of ${rawBytes} bytes of updates`);
    // and the compacted document is the document
    const late = client(s, 'big');
    await synced(late);
    assert.equal(text(late), t.toString());
    assert.equal(late.ydoc.getMap('m').get('count'), m.get('count'));
    late.close(); w.close();
  });
});
