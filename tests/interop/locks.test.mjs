// Locks (docs/locks.md), on either store: the socket extension on private
// channels realtime:lock:<name> (lock_acquire / lock_renew / lock_release
// replies, lock_granted / lock_lost / lock_state pushes) with the raw client
// and realtime-js, and /locks/v1/<name> over REST. Two clients contend in
// FIFO order; a holder that goes away (socket closed, SIGKILLed process) or
// stops renewing loses the lock — a SIGKILLed REST holder at the end of its
// lease — and every next holder's fencing token is higher, across a server
// restart too; channel policies on topic lock:<name> decide who may see and
// who may take a lock.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from './lib/server.mjs';
import { rawConnect } from './lib/raw.mjs';
import { realtimeClient, Recorder, scope, sleep, withTimeout } from './lib/util.mjs';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, v text);
ALTER TABLE realtime.messages ENABLE ROW LEVEL SECURITY;
DROP POLICY IF EXISTS "lock readers" ON realtime.messages;
DROP POLICY IF EXISTS "lock writers" ON realtime.messages;
CREATE POLICY "lock readers" ON realtime.messages FOR SELECT TO authenticated
  USING (realtime.topic() LIKE 'lock:%' AND (auth.jwt() ->> 'sub') IN ('reader', 'writer', 'writer2'));
CREATE POLICY "lock writers" ON realtime.messages FOR INSERT TO authenticated
  WITH CHECK (realtime.topic() LIKE 'lock:%' AND (auth.jwt() ->> 'sub') IN ('writer', 'writer2'));
`;

let dir, schemaPath;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'rtsync-locks-'));
  schemaPath = join(dir, 'schema.sql');
  writeFileSync(schemaPath, SCHEMA);
});
after(() => rmSync(dir, { recursive: true, force: true }));

const privCfg = (token) => ({
  config: { broadcast: { self: false, ack: false }, presence: { key: '', enabled: false }, postgres_changes: [], private: true },
  access_token: token,
});

/** A raw socket joined on realtime:lock:<name> as sub. */
async function holder(sc, server, name, sub, vsn = '1.0.0') {
  const raw = await rawConnect(sc, server, { vsn, apikey: server.token({ role: 'authenticated', claims: { sub } }) });
  const topic = `realtime:lock:${name}`;
  const { joinRef, reply } = await raw.join(topic, privCfg(server.token({ role: 'authenticated', claims: { sub } })));
  const call = async (event, payload = {}) => {
    const ref = raw.send({ join_ref: joinRef, topic, event, payload });
    return (await raw.reply(ref, 5000)).payload;
  };
  const pushed = (event, from = 0) => raw.next((f) => f.event === 'broadcast' && f.topic === topic && f.payload?.event === event &&
    raw.frames.events.indexOf(f) >= from, 8000, event);
  return { raw, topic, joinRef, reply, call, pushed };
}

async function rest(server, method, path, body, token) {
  const res = await fetch(`${server.httpUrl}${path}`, {
    method,
    headers: token ? { authorization: `Bearer ${token}`, 'content-type': 'application/json' } : { 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const tok = (server, sub) => server.token({ role: 'authenticated', claims: { sub } });

describe('locks', () => {
  let server;
  before(async () => { server = await startServer({ args: ['--schema', schemaPath, '--lock-lease-min-ms', '100'] }); });
  after(async () => { if (server) await server.stop(); });

  it('two socket clients contend: FIFO hand-over, lock_granted and lock_state pushes, higher tokens', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const a = await holder(sc, server, 'job1', 'writer');
    const b = await holder(sc, server, 'job1', 'writer2', '2.0.0');
    assert.equal(a.reply.payload.status, 'ok');
    assert.equal(b.reply.payload.status, 'ok');
    const ga = await a.call('lock_acquire', { lease_ms: 5000 });
    assert.equal(ga.status, 'ok', JSON.stringify(ga));
    assert.equal(ga.response.status, 'granted');
    assert.ok(ga.response.token > 0);
    assert.equal(ga.response.lease_ms, 5000);
    assert.ok(Math.abs(ga.response.expires_at - (Date.now() + 5000)) < 2000);
    // busy without a wait; queued with one
    const busy = await b.call('lock_acquire', { lease_ms: 5000 });
    assert.equal(busy.status, 'error');
    assert.equal(busy.response.code, 'RTS409');
    assert.equal(busy.response.details, 'busy');
    const q = await b.call('lock_acquire', { lease_ms: 5000, wait_ms: 10000 });
    assert.equal(q.status, 'ok');
    assert.deepEqual([q.response.status, q.response.position], ['queued', 1]);
    const st = await a.call('lock_state');
    assert.equal(st.response.held, true);
    assert.equal(st.response.holder, 'writer');
    assert.equal(st.response.waiters, 1);
    // the holder renews, then releases: b is granted with a higher token
    const rn = await a.call('lock_renew', { token: ga.response.token, lease_ms: 4000 });
    assert.equal(rn.status, 'ok');
    assert.equal(rn.response.lease_ms, 4000);
    const from = b.raw.frames.events.length;
    const rel = await a.call('lock_release', { token: ga.response.token });
    assert.equal(rel.status, 'ok');
    const granted = await b.pushed('lock_granted', from);
    assert.ok(granted.payload.payload.token > ga.response.token, JSON.stringify(granted.payload));
    const state = await a.raw.next((f) => f.payload?.event === 'lock_state' && f.payload.payload.holder === 'writer2', 5000, 'state to a');
    assert.equal(state.payload.payload.token, granted.payload.payload.token);
    // a release by the old holder is refused
    const again = await a.call('lock_release', { token: ga.response.token });
    assert.equal(again.response.code, 'RTS404');
  });

  it('a holder that closes its socket releases at once; one that stops renewing loses the lock at lease end', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const a = await holder(sc, server, 'job2', 'writer');
    const b = await holder(sc, server, 'job2', 'writer2');
    const ga = await a.call('lock_acquire', { lease_ms: 60000 });
    assert.equal(ga.response.status, 'granted');
    await b.call('lock_acquire', { lease_ms: 800, wait_ms: 10000 });
    const t0 = Date.now();
    a.raw.ws.terminate();
    const g = await b.pushed('lock_granted');
    assert.ok(Date.now() - t0 < 3000, 'released when the socket went');
    assert.ok(g.payload.payload.token > ga.response.token);
    // b holds with an 800 ms lease and does not renew: lost, pushed, handed on
    const c = await holder(sc, server, 'job2', 'writer');
    const qc = await c.call('lock_acquire', { lease_ms: 5000, wait_ms: 10000 });
    assert.equal(qc.response.status, 'queued');
    const lost = await b.pushed('lock_lost');
    assert.equal(lost.payload.payload.reason, 'lease_expired');
    const gc = await c.pushed('lock_granted');
    assert.ok(gc.payload.payload.token > g.payload.payload.token);
    const rn = await b.call('lock_renew', {});
    assert.equal(rn.response.code, 'RTS404');
    // a wait that ends without a grant is told
    const d = await holder(sc, server, 'job2', 'writer2');
    const qd = await d.call('lock_acquire', { wait_ms: 300 });
    assert.equal(qd.response.status, 'queued');
    await d.pushed('lock_timeout');
  });

  it('a SIGKILLed REST holder keeps the lock until its lease ends; the next token is higher', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const waiter = await holder(sc, server, 'job3', 'writer2');
    // a child process takes the lock over REST and renews it until killed
    const code = `
      const [url, token] = process.argv.slice(1);
      const post = (p, body) => fetch(url + p, { method: 'POST', headers: { authorization: 'Bearer ' + token,
        'content-type': 'application/json' }, body: JSON.stringify(body) }).then((r) => r.json());
      const g = await post('/locks/v1/job3', { lease_ms: 1500 });
      console.log(JSON.stringify(g));
      setInterval(() => post('/locks/v1/job3/renew', { lease_id: g.lease_id, lease_ms: 1500 }), 300);`;
    const child = spawn(process.execPath, ['--input-type=module', '-e', code, server.httpUrl, tok(server, 'writer')], { stdio: ['ignore', 'pipe', 'inherit'] });
    sc.defer(() => { try { child.kill('SIGKILL'); } catch { /* gone */ } });
    const line = await withTimeout(new Promise((resolve) => {
      let buf = '';
      child.stdout.on('data', (d) => { buf += d; if (buf.includes('\n')) resolve(buf.split('\n')[0]); });
    }), 10_000, 'child granted');
    const held = JSON.parse(line);
    assert.ok(held.token > 0 && held.lease_id, line);
    const q = await waiter.call('lock_acquire', { lease_ms: 5000, wait_ms: 15000 });
    assert.equal(q.response.status, 'queued');
    await sleep(1000); // renewals keep it held past its first lease
    const st = await waiter.call('lock_state');
    assert.equal(st.response.held, true);
    assert.equal(st.response.token, held.token);
    const from = waiter.raw.frames.events.length;
    const killedAt = Date.now();
    child.kill('SIGKILL');
    const g = await waiter.pushed('lock_granted', from);
    const after = Date.now() - killedAt;
    // held until the lease of the last renewal ended (at most 1500 ms), not released at the kill
    assert.ok(after >= 900, `granted ${after} ms after the kill`);
    assert.ok(after < 4000, `granted ${after} ms after the kill`);
    assert.ok(g.payload.payload.token > held.token);
    // the dead holder's lease is gone
    const r = await rest(server, 'POST', '/locks/v1/job3/renew', { lease_id: held.lease_id }, tok(server, 'writer'));
    assert.equal(r.status, 404);
  });

  it('REST: acquire, busy, state, renew, release, waits, errors', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const w = tok(server, 'writer');
    const a = await rest(server, 'POST', '/locks/v1/rest1', { lease_ms: 5000 }, w);
    assert.equal(a.status, 200, JSON.stringify(a.body));
    assert.match(a.body.lease_id, /^[0-9a-f]{16}$/);
    const busy = await rest(server, 'POST', '/locks/v1/rest1', {}, w);
    assert.equal(busy.status, 409);
    assert.equal(busy.body.details, 'busy');
    const st = await rest(server, 'GET', '/locks/v1/rest1', undefined, tok(server, 'reader'));
    assert.equal(st.status, 200);
    assert.deepEqual([st.body.held, st.body.holder, st.body.token], [true, 'writer', a.body.token]);
    const rn = await rest(server, 'POST', '/locks/v1/rest1/renew', { lease_id: a.body.lease_id, lease_ms: 2000 }, w);
    assert.equal(rn.status, 200);
    assert.equal(rn.body.token, a.body.token);
    // a waiting acquisition is answered when the holder releases
    const waiting = rest(server, 'POST', '/locks/v1/rest1', { wait_ms: 10000 }, tok(server, 'writer2'));
    await sleep(300);
    const rel = await rest(server, 'DELETE', `/locks/v1/rest1?lease_id=${a.body.lease_id}`, undefined, w);
    assert.equal(rel.status, 204);
    const got = await waiting;
    assert.equal(got.status, 200, JSON.stringify(got.body));
    assert.ok(got.body.token > a.body.token);
    assert.equal((await rest(server, 'DELETE', '/locks/v1/rest1', { lease_id: a.body.lease_id }, w)).status, 404);
    // a socket holder hands over to a REST waiter; a REST wait can time out
    const s = await holder(sc, server, 'rest1', 'writer');
    const q = await s.call('lock_acquire', { wait_ms: 5000 });
    assert.equal(q.response.status, 'queued');
    assert.equal((await rest(server, 'DELETE', '/locks/v1/rest1', { lease_id: got.body.lease_id }, tok(server, 'writer2'))).status, 204);
    const gs = await s.pushed('lock_granted');
    assert.ok(gs.payload.payload.token > got.body.token);
    const to = await rest(server, 'POST', '/locks/v1/rest1', { wait_ms: 300 }, w);
    assert.equal(to.status, 409);
    assert.equal(to.body.details, 'timeout');
    // bounds and errors
    assert.equal((await rest(server, 'POST', '/locks/v1/rest2', { lease_ms: 10 }, w)).status, 400);
    assert.equal((await rest(server, 'POST', '/locks/v1/rest2', { lease_ms: -1 }, w)).status, 400);
    assert.equal((await rest(server, 'POST', '/locks/v1/rest2', { wait_ms: 999999999 }, w)).status, 400);
    assert.equal((await rest(server, 'POST', `/locks/v1/${'x'.repeat(129)}`, {}, w)).status, 400);
    assert.equal((await rest(server, 'POST', '/locks/v1/a%20b', {}, w)).status, 400);
    assert.equal((await rest(server, 'POST', '/locks/v1/rest2/other', {}, w)).status, 404);
    assert.equal((await rest(server, 'PATCH', '/locks/v1/rest2', {}, w)).status, 405);
    assert.equal((await rest(server, 'POST', '/locks/v1/rest2', {})).status, 401);
    assert.equal((await rest(server, 'POST', '/locks/v1/rest2/renew', { lease_id: 'nope' }, w)).status, 400);
    const bad = await fetch(`${server.httpUrl}/locks/v1/rest2`, { method: 'POST', headers: { authorization: `Bearer ${w}` }, body: '[1' });
    assert.equal(bad.status, 400);
    const m = await (await fetch(`${server.httpUrl}/metrics`)).text();
    assert.match(m, /rtsync_lock_grants_total [1-9]/);
    assert.match(m, /rtsync_lock_wait_timeouts_total [1-9]/);
    assert.match(m, /rtsync_locks_held \d/);
  });

  it('channel policies decide: readers see, only writers take, others are refused', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const r = await holder(sc, server, 'guarded', 'reader');
    assert.equal(r.reply.payload.status, 'ok');
    const refused = await r.call('lock_acquire', {});
    assert.equal(refused.status, 'error');
    assert.equal(refused.response.code, 'RTS403');
    assert.equal((await r.call('lock_state')).status, 'ok');
    const n = await holder(sc, server, 'guarded', 'nobody');
    assert.equal(n.reply.payload.status, 'error');
    assert.match(n.reply.payload.response.reason, /Unauthorized/);
    assert.equal((await rest(server, 'POST', '/locks/v1/guarded', {}, tok(server, 'reader'))).status, 403);
    assert.equal((await rest(server, 'GET', '/locks/v1/guarded', undefined, tok(server, 'reader'))).status, 200);
    assert.equal((await rest(server, 'GET', '/locks/v1/guarded', undefined, tok(server, 'nobody'))).status, 403);
    assert.equal((await rest(server, 'POST', '/locks/v1/guarded', {}, server.token({ role: 'anon' }))).status, 403);
    // a public join of a lock channel is refused
    const raw = await rawConnect(sc, server, { vsn: '1.0.0' });
    const pub = await raw.join('realtime:lock:guarded');
    assert.equal(pub.reply.payload.status, 'error');
    assert.match(pub.reply.payload.response.reason, /private/);
  });

  it('realtime-js: the pushes are broadcast events an official client receives', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const client = realtimeClient(sc, server, { apikey: tok(server, 'writer') });
    client.setAuth(tok(server, 'writer'));
    const states = new Recorder('lock_state');
    const ch = client.channel('lock:js', { config: { private: true } })
      .on('broadcast', { event: 'lock_state' }, (m) => states.push(m.payload));
    await withTimeout(new Promise((resolve, reject) => ch.subscribe((s, e) => (s === 'SUBSCRIBED' ? resolve() : s === 'CHANNEL_ERROR' && reject(e)))), 10_000, 'js subscribed');
    const a = await rest(server, 'POST', '/locks/v1/js', { lease_ms: 5000 }, tok(server, 'writer2'));
    assert.equal(a.status, 200);
    const s = await states.waitFor((p) => p.held === true, 5000, 'held');
    assert.equal(s.token, a.body.token);
    await rest(server, 'DELETE', '/locks/v1/js', { lease_id: a.body.lease_id }, tok(server, 'writer2'));
    await states.waitFor((p) => p.held === false, 5000, 'free');
  });
});

describe('locks per user', () => {
  it('one sub over REST leases and sockets is bounded by --locks-per-user', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const server = await startServer({ args: ['--schema', schemaPath, '--locks-per-user', '2'] });
    try {
      const w = tok(server, 'writer');
      assert.equal((await rest(server, 'POST', '/locks/v1/u1', {}, w)).status, 200);
      const h = await holder(sc, server, 'u2', 'writer');
      assert.equal((await h.call('lock_acquire', {})).response.status, 'granted');
      const over = await rest(server, 'POST', '/locks/v1/u3', {}, w);
      assert.equal(over.status, 429);
      assert.equal(over.body.details, 'subject_limit');
      const sock = await h.call('lock_acquire', {});
      assert.equal(sock.status, 'ok'); // its own lock again: the grant
      const other = await holder(sc, server, 'u3', 'writer');
      const r = await other.call('lock_acquire', {});
      assert.equal(r.response.code, 'RTS429');
      assert.equal(r.response.details, 'subject_limit');
      // another user is not affected
      assert.equal((await rest(server, 'POST', '/locks/v1/u3', {}, tok(server, 'writer2'))).status, 200);
      h.raw.ws.terminate();
      await sleep(300);
      assert.equal((await other.call('lock_acquire', { wait_ms: 5000 })).status, 'ok');
    } finally {
      await server.stop();
    }
  });
});

describe('lock requests and the per-user REST rate', () => {
  it('count toward --rest-max-requests-per-second with /rest/v1', { timeout: 30_000 }, async () => {
    const server = await startServer({ args: ['--schema', schemaPath, '--rest-max-requests-per-second', '3'] });
    try {
      // until the bucket is empty (a slow build may see it refill between
      // requests), then the activity feed at once, before the next refill
      const statuses = [];
      while (statuses.length < 30 && statuses.at(-1) !== 429)
        statuses.push((await rest(server, 'GET', '/locks/v1/rate', undefined, tok(server, 'reader'))).status);
      assert.ok(statuses.slice(0, 2).every((s) => s === 200), statuses.join());
      assert.ok(statuses.includes(429), statuses.join());
      const act = await fetch(`${server.httpUrl}/activity/v1/lock:rate`, { headers: { authorization: `Bearer ${tok(server, 'reader')}` } });
      assert.equal(act.status, 429);
      assert.equal(act.headers.get('retry-after'), '1');
    } finally {
      await server.stop();
    }
  });
});

describe('fencing tokens across a restart', () => {
  it('a token after a restart is higher than every token before it', { timeout: 60_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'rtsync-locks-restart-'));
    try {
      let server = await startServer({ dataDir, args: ['--schema', schemaPath] });
      let last = 0;
      for (let i = 0; i < 3; i++) {
        const a = await rest(server, 'POST', '/locks/v1/r', { lease_ms: 60000 }, tok(server, 'writer'));
        assert.equal(a.status, 200);
        assert.ok(a.body.token > last);
        last = a.body.token;
        await rest(server, 'DELETE', '/locks/v1/r', { lease_id: a.body.lease_id }, tok(server, 'writer'));
      }
      // the last lock stays held when the server stops
      const held = await rest(server, 'POST', '/locks/v1/r', { lease_ms: 60000 }, tok(server, 'writer'));
      last = held.body.token;
      await server.stop();
      server = await startServer({ dataDir, args: ['--schema', schemaPath], pgDatabase: server.pgDatabase });
      try {
        const b = await rest(server, 'POST', '/locks/v1/r', { lease_ms: 1000 }, tok(server, 'writer'));
        assert.equal(b.status, 200, 'a restart starts with no lock held');
        assert.ok(b.body.token > last, `${b.body.token} > ${last}`);
      } finally {
        await server.stop();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
