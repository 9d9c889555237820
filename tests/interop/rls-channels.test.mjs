// Private channels authorized by policies on realtime.messages (Supabase
// Realtime Authorization), on either store: SELECT policies decide who may
// join (read broadcast or presence), INSERT policies who may send broadcast
// or track presence, with realtime.topic() and the extension column; HTTP
// broadcast to a private topic and token refreshes go through the same check.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, STORE } from './lib/server.mjs';
import { rawConnect } from './lib/raw.mjs';
import { scope, sleep } from './lib/util.mjs';

const ROOM = 'private-room';
const SCHEMA = `
CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, v text);
ALTER TABLE realtime.messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY "members read" ON realtime.messages FOR SELECT TO authenticated
  USING (realtime.topic() = '${ROOM}' AND (auth.jwt() ->> 'sub') IN ('reader', 'writer'));
CREATE POLICY "writer sends" ON realtime.messages FOR INSERT TO authenticated
  WITH CHECK (realtime.topic() = '${ROOM}' AND (auth.jwt() ->> 'sub') = 'writer'
              AND extension IN ('broadcast', 'presence'));
CREATE POLICY "tracker tracks" ON realtime.messages FOR INSERT TO authenticated
  WITH CHECK (realtime.topic() = '${ROOM}' AND (auth.jwt() ->> 'sub') = 'tracker'
              AND extension = 'presence');
CREATE POLICY "tracker reads presence" ON realtime.messages FOR SELECT TO authenticated
  USING (realtime.topic() = '${ROOM}' AND (auth.jwt() ->> 'sub') = 'tracker' AND extension = 'presence');
`;

let server, dir;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rtsync-rlsch-'));
  const schemaPath = join(dir, 'schema.sql');
  writeFileSync(schemaPath, SCHEMA);
  server = await startServer({ args: ['--schema', schemaPath] });
});
after(async () => {
  if (server) await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

const tok = (sub) => server.token({ role: 'authenticated', claims: { sub } });
const cfg = (extra = {}) => ({ config: { broadcast: { self: false, ack: true }, presence: { key: '', enabled: true }, postgres_changes: [], private: true, ...extra } });

async function member(sc, sub, topic = ROOM) {
  const raw = await rawConnect(sc, server, { vsn: '1.0.0' });
  const { joinRef, reply } = await raw.join(`realtime:${topic}`, { ...cfg(), access_token: tok(sub) });
  return { raw, joinRef, reply, topic: `realtime:${topic}` };
}

describe('private channels under realtime.messages policies', () => {
  it('join needs read: members in, others refused with Supabase\'s message', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    for (const sub of ['reader', 'writer', 'tracker']) {
      const m = await member(sc, sub);
      assert.equal(m.reply.payload.status, 'ok', `${sub}: ${JSON.stringify(m.reply.payload)}`);
    }
    const out = await member(sc, 'nobody');
    assert.equal(out.reply.payload.status, 'error');
    assert.equal(out.reply.payload.response.reason,
      `Unauthorized: You do not have permissions to read from this Channel topic: ${ROOM}`);
    const other = await member(sc, 'writer', 'another-room');
    assert.equal(other.reply.payload.status, 'error');
    assert.match(other.reply.payload.response.reason, /another-room$/);
    // the same topic joined as public is not under the policies
    const raw = await rawConnect(sc, server, { vsn: '1.0.0' });
    const pub = await raw.join(`realtime:${ROOM}`, { ...cfg({ private: false }), access_token: tok('nobody') });
    assert.equal(pub.reply.payload.status, 'ok');
  });

  it('broadcast needs write: the writer\'s arrive, the reader\'s are dropped', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const w = await member(sc, 'writer');
    const r = await member(sc, 'reader');
    const send = (m, n) => m.raw.send({ join_ref: m.joinRef, topic: m.topic, event: 'broadcast', payload: { type: 'broadcast', event: 'msg', payload: { n } } });
    const ref1 = send(w, 1);
    assert.equal((await w.raw.reply(ref1)).payload.status, 'ok');
    await r.raw.next((f) => f.event === 'broadcast' && f.payload.payload?.n === 1, 5000, "writer's broadcast");
    send(r, 2);
    await sleep(400);
    assert.ok(!w.raw.frames.events.some((f) => f.event === 'broadcast' && f.payload.payload?.n === 2), "reader's broadcast dropped");
  });

  it('presence track needs write for presence', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const r = await member(sc, 'reader');
    const tr = await member(sc, 'tracker');
    const track = (m) => m.raw.send({ join_ref: m.joinRef, topic: m.topic, event: 'presence', payload: { type: 'presence', event: 'track', payload: { who: 'x' } } });
    const ok = await tr.raw.reply(track(tr));
    assert.equal(ok.payload.status, 'ok');
    await r.raw.next((f) => f.event === 'presence_diff' && Object.keys(f.payload.joins).length === 1, 5000, 'the tracker joins');
    const refused = await r.raw.reply(track(r));
    assert.equal(refused.payload.status, 'error');
  });

  it('HTTP broadcast to a private topic is checked under the request\'s token', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const r = await member(sc, 'reader');
    const post = (sub, n) => fetch(`${server.httpUrl}/realtime/v1/api/broadcast`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', apikey: server.token({ role: 'anon' }), Authorization: `Bearer ${tok(sub)}` },
      body: JSON.stringify({ messages: [{ topic: ROOM, event: 'http', payload: { n }, private: true }] }),
    });
    assert.equal((await post('reader', 1)).status, 202);
    assert.equal((await post('writer', 2)).status, 202);
    await r.raw.next((f) => f.event === 'broadcast' && f.payload.payload?.n === 2, 5000, "writer's HTTP broadcast");
    await sleep(300);
    assert.ok(!r.raw.frames.events.some((f) => f.event === 'broadcast' && f.payload.payload?.n === 1), "reader's HTTP broadcast dropped");
    const single = await fetch(`${server.httpUrl}/realtime/v1/api/broadcast/${ROOM}/events/one?private=true`, {
      method: 'POST', headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${tok('reader')}` }, body: '{}',
    });
    assert.equal(single.status, 403);
  });

  it('a token refresh re-checks: losing read closes the channel, gaining write allows sending', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const r = await member(sc, 'reader');
    const w = await member(sc, 'writer');
    // reader becomes writer: its broadcasts now arrive
    r.raw.send({ join_ref: r.joinRef, topic: r.topic, event: 'access_token', payload: { access_token: tok('writer') } });
    await sleep(200);
    r.raw.send({ join_ref: r.joinRef, topic: r.topic, event: 'broadcast', payload: { type: 'broadcast', event: 'msg', payload: { n: 7 } } });
    await w.raw.next((f) => f.event === 'broadcast' && f.payload.payload?.n === 7, 5000, 'sent after gaining write');
    // writer becomes nobody: system error, then phx_close
    w.raw.send({ join_ref: w.joinRef, topic: w.topic, event: 'access_token', payload: { access_token: tok('nobody') } });
    const sys = await w.raw.next((f) => f.event === 'system' && f.payload.status === 'error', 5000, 'system error');
    assert.equal(sys.payload.message, `You do not have permissions to read from this Channel topic: ${ROOM}`);
    await w.raw.next((f) => f.event === 'phx_close', 5000, 'phx_close');
  });
});

describe('realtime.messages policies without row level security enabled', { skip: STORE === 'postgres' && 'the embedded store\'s schema file only' }, () => {
  let srv, d;
  before(async () => {
    d = mkdtempSync(join(tmpdir(), 'rtsync-rlsch-off-'));
    const schemaPath = join(d, 'schema.sql');
    writeFileSync(schemaPath, `CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY);
CREATE POLICY "members read" ON realtime.messages FOR SELECT TO authenticated USING ((auth.jwt() ->> 'sub') = 'reader');
`);
    srv = await startServer({ args: ['--schema', schemaPath, '--private-roles', 'authenticated'] });
  });
  after(async () => {
    if (srv) await srv.stop();
    rmSync(d, { recursive: true, force: true });
  });

  it('deny private channels (an unenforced policy must not open them)', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const raw = await rawConnect(sc, srv, { vsn: '1.0.0' });
    const token = srv.token({ role: 'authenticated', claims: { sub: 'reader' } });
    const priv = await raw.join(`realtime:${ROOM}`, { ...cfg(), access_token: token });
    assert.equal(priv.reply.payload.status, 'error');
    assert.match(priv.reply.payload.response.reason, /^Unauthorized: You do not have permissions to read from this Channel topic/);
    const pub = await raw.join('realtime:public-room', { ...cfg({ private: false }), access_token: token });
    assert.equal(pub.reply.payload.status, 'ok');
  });
});

describe('realtime.messages policies the database evaluates (PostgreSQL)', { skip: STORE !== 'postgres' && 'subquery policies are PostgreSQL\'s' }, () => {
  let srv, d;
  const TOPIC = 'members-room';
  before(async () => {
    d = mkdtempSync(join(tmpdir(), 'rtsync-rlsch-db-'));
    const schemaPath = join(d, 'schema.sql');
    writeFileSync(schemaPath, `CREATE TABLE IF NOT EXISTS room_members (user_id text NOT NULL, topic text NOT NULL, PRIMARY KEY (user_id, topic));
INSERT INTO room_members VALUES ('reader', '${TOPIC}'), ('writer', '${TOPIC}') ON CONFLICT DO NOTHING;
GRANT SELECT ON room_members TO authenticated;
ALTER TABLE realtime.messages ENABLE ROW LEVEL SECURITY;
CREATE POLICY "members read" ON realtime.messages FOR SELECT TO authenticated
  USING (EXISTS (SELECT 1 FROM room_members m WHERE m.user_id = (auth.jwt() ->> 'sub') AND m.topic = realtime.topic()));
CREATE POLICY "writer sends" ON realtime.messages FOR INSERT TO authenticated
  WITH CHECK ((auth.jwt() ->> 'sub') = 'writer');
`);
    srv = await startServer({ args: ['--schema', schemaPath] });
  });
  after(async () => {
    if (srv) await srv.stop();
    rmSync(d, { recursive: true, force: true });
  });

  it('a join is decided by the database without holding up the socket; sends by its INSERT policy', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const join1 = async (sub) => {
      const raw = await rawConnect(sc, srv, { vsn: '1.0.0' });
      const token = srv.token({ role: 'authenticated', claims: { sub } });
      const { joinRef, reply } = await raw.join(`realtime:${TOPIC}`, { ...cfg(), access_token: token });
      return { raw, joinRef, reply, topic: `realtime:${TOPIC}` };
    };
    const r = await join1('reader');
    assert.equal(r.reply.payload.status, 'ok', JSON.stringify(r.reply.payload));
    const w = await join1('writer');
    assert.equal(w.reply.payload.status, 'ok');
    const out = await join1('nobody');
    assert.equal(out.reply.payload.status, 'error');
    assert.equal(out.reply.payload.response.reason,
      `Unauthorized: You do not have permissions to read from this Channel topic: ${TOPIC}`);
    const ref = w.raw.send({ join_ref: w.joinRef, topic: w.topic, event: 'broadcast', payload: { type: 'broadcast', event: 'm', payload: { n: 1 } } });
    assert.equal((await w.raw.reply(ref)).payload.status, 'ok');
    await r.raw.next((f) => f.event === 'broadcast' && f.payload.payload?.n === 1, 5000, "writer's broadcast");
    r.raw.send({ join_ref: r.joinRef, topic: r.topic, event: 'broadcast', payload: { type: 'broadcast', event: 'm', payload: { n: 2 } } });
    await sleep(400);
    assert.ok(!w.raw.frames.events.some((f) => f.event === 'broadcast' && f.payload.payload?.n === 2), "reader's broadcast dropped");
    // losing membership, then refreshing the token: the database closes the channel
    srv.sql(`DELETE FROM room_members WHERE user_id = 'reader'`);
    r.raw.send({ join_ref: r.joinRef, topic: r.topic, event: 'access_token', payload: { access_token: srv.token({ role: 'authenticated', claims: { sub: 'reader', v: 2 } }) } });
    const sys = await r.raw.next((f) => f.event === 'system' && f.payload.status === 'error', 5000, 'system error');
    assert.equal(sys.payload.message, `You do not have permissions to read from this Channel topic: ${TOPIC}`);
  });
});
