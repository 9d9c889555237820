// The activity feed (docs/activity.md), on either store: REST writes,
// shared-document edits (merged per user) and lock grants become entries,
// readable newest first in pages at /activity/v1/<channel> and live on the
// private channel realtime:activity:<channel>; write entries are shown only
// to users whose row-level security lets them see the row, lock and
// document entries only to users the channel policies let read the topic;
// retention trims by count.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as Y from 'yjs';
import { WebsocketProvider } from 'y-websocket';
import { startServer } from './lib/server.mjs';
import { rawConnect } from './lib/raw.mjs';
import { scope, sleep, withTimeout, WebSocket } from './lib/util.mjs';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS notes (id bigint PRIMARY KEY, owner text NOT NULL, body text);
ALTER TABLE notes ENABLE ROW LEVEL SECURITY;
CREATE POLICY "own notes" ON notes FOR ALL TO authenticated
  USING (owner = (auth.jwt() ->> 'sub')) WITH CHECK (owner = (auth.jwt() ->> 'sub'));
ALTER TABLE realtime.messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY "team reads" ON realtime.messages FOR SELECT TO authenticated
  USING ((realtime.topic() LIKE 'lock:team-%' OR realtime.topic() LIKE 'collab:team-%'
          OR realtime.topic() LIKE 'activity:%') AND (auth.jwt() ->> 'sub') IN ('alice', 'bob'));
CREATE POLICY "team writes" ON realtime.messages FOR INSERT TO authenticated
  WITH CHECK ((realtime.topic() LIKE 'lock:team-%' OR realtime.topic() LIKE 'collab:team-%')
              AND (auth.jwt() ->> 'sub') IN ('alice', 'bob'));
CREATE POLICY "outsider reads activity" ON realtime.messages FOR SELECT TO authenticated
  USING (realtime.topic() LIKE 'activity:%' AND (auth.jwt() ->> 'sub') = 'eve');
`;

let dir, schemaPath;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'rtsync-activity-'));
  schemaPath = join(dir, 'schema.sql');
  writeFileSync(schemaPath, SCHEMA);
});
after(() => rmSync(dir, { recursive: true, force: true }));

const tok = (server, sub) => server.token({ role: 'authenticated', claims: { sub } });

async function req(server, method, path, body, token) {
  const res = await fetch(`${server.httpUrl}${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, apikey: token, 'content-type': 'application/json', prefer: 'return=representation' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const feed = (server, channel, token, q = '') => req(server, 'GET', `/activity/v1/${encodeURIComponent(channel)}${q}`, undefined, token);

async function liveFeed(sc, server, channel, sub) {
  const raw = await rawConnect(sc, server, { vsn: '1.0.0', apikey: tok(server, sub) });
  const topic = `realtime:activity:${channel}`;
  const { reply } = await raw.join(topic, {
    config: { broadcast: { self: false, ack: false }, presence: { key: '', enabled: false }, postgres_changes: [], private: true },
    access_token: tok(server, sub),
  });
  assert.equal(reply.payload.status, 'ok', JSON.stringify(reply.payload));
  const entries = () => raw.frames.events.filter((f) => f.topic === topic && f.payload?.event === 'activity').map((f) => f.payload.payload);
  return { raw, entries };
}

describe('activity feed', () => {
  let server;
  before(async () => { server = await startServer({ args: ['--schema', schemaPath, '--activity-merge-ms', '60000'] }); });
  after(async () => { if (server) await server.stop(); });

  it('REST and socket writes appear live and in pages, each only to users whose RLS shows the row', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const aliceLive = await liveFeed(sc, server, 'table:public.notes', 'alice');
    const eveLive = await liveFeed(sc, server, 'table:public.notes', 'eve');
    for (let i = 1; i <= 5; i++) {
      const r = await req(server, 'POST', '/rest/v1/notes', { id: i, owner: 'alice', body: `a${i}` }, tok(server, 'alice'));
      assert.equal(r.status, 201, JSON.stringify(r.body));
    }
    assert.equal((await req(server, 'POST', '/rest/v1/notes', { id: 100, owner: 'eve', body: 'e' }, tok(server, 'eve'))).status, 201);
    assert.equal((await req(server, 'PATCH', '/rest/v1/notes?id=eq.1', { body: 'changed' }, tok(server, 'alice'))).status, 200);
    assert.equal((await req(server, 'DELETE', '/rest/v1/notes?id=eq.2', undefined, tok(server, 'alice'))).status, 200);
    // live: alice sees her 7, eve only her own insert
    await aliceLive.raw.next(() => aliceLive.entries().length >= 7, 5000, 'alice live');
    await eveLive.raw.next(() => eveLive.entries().length >= 1, 5000, 'eve live');
    await sleep(200);
    assert.equal(aliceLive.entries().length, 7);
    assert.deepEqual(eveLive.entries().map((e) => e.summary), [{ op: 'INSERT', pk: { id: 100 } }]);
    const last = aliceLive.entries()[6];
    assert.deepEqual([last.kind, last.actor, last.channel, last.summary], ['write', 'alice', 'table:public.notes', { op: 'DELETE', pk: { id: 2 } }]);
    assert.match(last.at, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    // pages: newest first, before= goes on, the ids fall
    const p1 = await feed(server, 'table:public.notes', tok(server, 'alice'), '?limit=3');
    assert.equal(p1.status, 200);
    assert.deepEqual(p1.body.entries.map((e) => e.summary.op), ['DELETE', 'UPDATE', 'INSERT']);
    assert.ok(p1.body.next_before);
    const p2 = await feed(server, 'table:public.notes', tok(server, 'alice'), `?limit=3&before=${p1.body.next_before}`);
    const p3 = await feed(server, 'table:public.notes', tok(server, 'alice'), `?limit=3&before=${p2.body.next_before}`);
    const all = [...p1.body.entries, ...p2.body.entries, ...p3.body.entries];
    assert.equal(all.length, 7, JSON.stringify(all.map((e) => e.summary)));
    assert.equal(p3.body.next_before, null);
    for (let i = 1; i < all.length; i++) assert.ok(all[i].id < all[i - 1].id);
    assert.ok(all.every((e) => e.actor === 'alice'));
    // eve's page holds her row alone, though alice's entries are newer
    const pe = await feed(server, 'table:public.notes', tok(server, 'eve'), '?limit=2');
    assert.deepEqual(pe.body.entries.map((e) => e.summary.pk.id), [100]);
    assert.equal(pe.body.next_before, null);
    // the service role sees every entry
    const ps = await feed(server, 'table:public.notes', server.token({ role: 'service_role' }), '?limit=50');
    assert.equal(ps.body.entries.length, 8);
    // a write over the socket (the `write` event) is recorded the same way
    const ws = await rawConnect(sc, server, { vsn: '1.0.0', apikey: tok(server, 'alice') });
    const { joinRef } = await ws.join('realtime:w', { config: { broadcast: { self: false, ack: false }, presence: { key: '', enabled: false }, postgres_changes: [], private: false }, access_token: tok(server, 'alice') });
    const ref = ws.send({ join_ref: joinRef, topic: 'realtime:w', event: 'write', payload: { type: 'insert', table: 'notes', record: { id: 50, owner: 'alice', body: 's' } } });
    assert.equal((await ws.reply(ref)).payload.status, 'ok');
    await aliceLive.raw.next(() => aliceLive.entries().length >= 8, 5000, 'socket write live');
    assert.deepEqual(aliceLive.entries()[7].summary, { op: 'INSERT', pk: { id: 50 } });
    // errors
    assert.equal((await feed(server, 'nope', tok(server, 'alice'))).status, 400);
    assert.equal((await feed(server, 'table:public.notes', tok(server, 'alice'), '?limit=500')).status, 400);
    assert.equal((await feed(server, 'table:public.notes', tok(server, 'alice'), '?before=x')).status, 400);
    const noauth = await fetch(`${server.httpUrl}/activity/v1/table:public.notes`);
    assert.equal(noauth.status, 401);
  });

  it('lock grants and releases appear on lock:<name> for those the channel policies let read', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const live = await liveFeed(sc, server, 'lock:team-a', 'bob');
    const eve = await liveFeed(sc, server, 'lock:team-a', 'eve');
    const g = await req(server, 'POST', '/locks/v1/team-a', { lease_ms: 5000 }, tok(server, 'alice'));
    assert.equal(g.status, 200, JSON.stringify(g.body));
    assert.equal((await req(server, 'DELETE', '/locks/v1/team-a', { lease_id: g.body.lease_id }, tok(server, 'alice'))).status, 204);
    await live.raw.next(() => live.entries().length >= 2, 5000, 'lock entries');
    assert.deepEqual(live.entries().map((e) => [e.kind, e.actor, e.summary.event, e.summary.token]),
      [['lock', 'alice', 'granted', g.body.token], ['lock', 'alice', 'released', g.body.token]]);
    const page = await feed(server, 'lock:team-a', tok(server, 'bob'));
    assert.deepEqual(page.body.entries.map((e) => e.summary.event), ['released', 'granted']);
    // eve may read activity:* channels but not the lock's topic: she sees nothing
    await sleep(300);
    assert.equal(eve.entries().length, 0);
    assert.deepEqual((await feed(server, 'lock:team-a', tok(server, 'eve'))).body.entries, []);
  });

  it('document edits are merged per user and shown to readers of the document', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const live = await liveFeed(sc, server, 'collab:team-doc', 'bob');
    const ydoc = new Y.Doc();
    const provider = new WebsocketProvider(`${server.wsUrl}/collab/v1`, 'team-doc', ydoc, {
      WebSocketPolyfill: WebSocket, params: { apikey: tok(server, 'alice') }, disableBc: true,
    });
    sc.defer(() => { provider.destroy(); ydoc.destroy(); });
    await withTimeout(new Promise((resolve) => provider.once('synced', resolve)), 10_000, 'synced');
    const text = ydoc.getText('t');
    for (let i = 0; i < 100; i++) text.insert(text.length, 'x');
    await sleep(1000);
    const page = await feed(server, 'collab:team-doc', tok(server, 'bob'));
    assert.equal(page.status, 200);
    assert.equal(page.body.entries.length, 1, JSON.stringify(page.body.entries));
    const e = page.body.entries[0];
    assert.deepEqual([e.kind, e.actor, e.channel], ['doc_edit', 'alice', 'collab:team-doc']);
    assert.ok(e.summary.edits >= 50, JSON.stringify(e.summary)); // 100 edits, one entry
    assert.ok(e.summary.bytes > 0);
    assert.equal(live.entries().length, 1);
    assert.deepEqual((await feed(server, 'collab:team-doc', tok(server, 'eve'))).body.entries, []);
  });
});

describe('activity retention', () => {
  it('keeps at most --activity-retain-count entries', { timeout: 30_000 }, async () => {
    const server = await startServer({ args: ['--schema', schemaPath, '--activity-retain-count', '5'] });
    try {
      for (let i = 1; i <= 12; i++)
        assert.equal((await req(server, 'POST', '/rest/v1/notes', { id: 1000 + i, owner: 'alice' }, tok(server, 'alice'))).status, 201);
      const p = await feed(server, 'table:public.notes', tok(server, 'alice'), '?limit=50');
      assert.deepEqual(p.body.entries.map((e) => e.summary.pk.id), [1012, 1011, 1010, 1009, 1008]);
      const m = await (await fetch(`${server.httpUrl}/metrics`)).text();
      assert.match(m, /rtsync_activity_entries 5\b/);
      assert.match(m, /rtsync_activity_appended_total 12\b/);
    } finally {
      await server.stop();
    }
  });
});
