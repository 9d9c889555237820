// Scale-out (docs/cluster.md): three rtsync nodes on one redis-server, with
// supabase-js clients spread over them. Broadcasts reach every subscriber on
// every node once and in order per sender; presence is the union of the
// nodes; a SIGKILLed node's members leave after the TTL; Redis SIGKILLed and
// started again: the nodes serve their own clients meanwhile, report it, and
// recover.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Recorder, scope, sleep, supabaseClient, uniqueTopic, withTimeout } from '../interop/lib/util.mjs';
import { startRedis, startNodes, getJson, metric, until } from './lib.mjs';
import { startServer } from '../interop/lib/server.mjs';

const TTL_MS = 2000;

function subscribed(ch) {
  return new Promise((resolve, reject) => {
    ch.subscribe((status, err) => {
      if (status === 'SUBSCRIBED') resolve(ch);
      else if (status !== 'CLOSED') reject(new Error(`${status}${err ? `: ${err.message}` : ''}`));
    });
  });
}

/** A supabase-js client on server joined to topic, recording broadcasts and presence syncs. */
async function member(sc, server, topic, { vsn = '2.0.0', key, presence = false } = {}) {
  const sb = supabaseClient(sc, server, { vsn });
  const rec = new Recorder(`broadcasts at ${server.port}`);
  const syncs = new Recorder(`presence at ${server.port}`);
  const config = { broadcast: { self: false } };
  if (presence) config.presence = { key };
  const ch = sb.channel(topic, { config }).on('broadcast', { event: '*' }, rec.handler);
  if (presence) ch.on('presence', { event: 'sync' }, () => syncs.push(ch.presenceState()));
  await withTimeout(subscribed(ch), 10_000, `join on ${server.port}`);
  return { sb, ch, rec, syncs, server };
}

const keysOf = (state) => Object.keys(state).sort();

describe('three nodes, one redis-server', () => {
  let redis;
  let nodes = [];
  before(async () => {
    redis = await startRedis();
    nodes = await startNodes(3, redis.url, { ttlMs: TTL_MS });
    // every node has heard every other (heartbeats)
    for (const n of nodes) await until(async () => (await metric(n, 'rtsync_cluster_peers')) === 2, 10_000, 'peers');
  });
  after(async () => {
    for (const n of nodes) await n.stop();
    if (redis) await redis.stop();
  });

  it('/healthz and /metrics report the cluster', async () => {
    const h = await getJson(nodes[0], '/healthz');
    assert.equal(h.status, 200);
    assert.equal(h.body.status, 'ok');
    assert.equal(h.body.cluster.redis, 'up');
    assert.equal(h.body.cluster.peers, 2);
    assert.match(h.body.cluster.node, /^node1-/);
    assert.equal(await metric(nodes[0], 'rtsync_cluster_redis_up'), 1);
  });

  it('broadcasts from clients on every node reach every other client once, in order', { timeout: 60_000 }, async (t) => {
    const sc = scope(t);
    const topic = uniqueTopic('cl-bcast');
    const members = [];
    for (let i = 0; i < 6; i++)
      members.push(await member(sc, nodes[i % 3], topic, { vsn: i % 2 ? '1.0.0' : '2.0.0' }));
    const N = 25;
    await Promise.all(members.map(async (m, i) => {
      for (let k = 0; k < N; k++)
        assert.equal(await m.ch.send({ type: 'broadcast', event: 'msg', payload: { from: i, k } }), 'ok');
    }));
    const want = (members.length - 1) * N;
    for (const [i, m] of members.entries())
      await until(() => m.rec.events.length >= want, 15_000, `member ${i}: ${want} broadcasts (has ${m.rec.events.length})`);
    await sleep(500); // a duplicate would arrive by now
    for (const [i, m] of members.entries()) {
      assert.equal(m.rec.events.length, want, `member ${i} got each broadcast once`);
      for (let j = 0; j < members.length; j++) {
        if (j === i) continue;
        const ks = m.rec.events.filter((e) => e.payload.from === j).map((e) => e.payload.k);
        assert.deepEqual(ks, [...Array(N).keys()], `member ${i}: sender ${j} in order, none lost or twice`);
      }
    }
  });

  it('an HTTP broadcast on one node reaches the subscribers of all three once', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const topic = uniqueTopic('cl-http');
    const members = [];
    for (let i = 0; i < 3; i++) members.push(await member(sc, nodes[i], topic));
    const r = await fetch(`${nodes[1].httpUrl}/realtime/v1/api/broadcast`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${nodes[1].token({ role: 'service_role' })}` },
      body: JSON.stringify({ messages: [{ topic, event: 'rest', payload: { n: 1 } }, { topic, event: 'rest', payload: { n: 2 } }] }),
    });
    assert.equal(r.status, 202);
    for (const m of members) await m.rec.waitFor((e) => e.event === 'rest' && e.payload.n === 2, 5000, 'rest broadcast');
    await sleep(300);
    for (const m of members) assert.deepEqual(m.rec.events.map((e) => e.payload.n), [1, 2]);
  });

  it('presence is the union of the nodes, presence_state on join included', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const topic = uniqueTopic('cl-pres');
    const members = [];
    for (let i = 0; i < 3; i++) members.push(await member(sc, nodes[i], topic, { presence: true, key: `user${i}` }));
    for (const [i, m] of members.entries()) assert.equal(await m.ch.track({ i }), 'ok');
    for (const [i, m] of members.entries())
      await m.syncs.waitFor((s) => keysOf(s).join() === 'user0,user1,user2', 5000, `member ${i} sees all three`);
    for (const m of members) {
      const state = m.ch.presenceState();
      for (let i = 0; i < 3; i++) assert.equal(state[`user${i}`].length, 1, 'one meta per user');
      assert.equal(state.user2[0].i, 2);
    }
    // a late joiner on any node gets the whole state in presence_state
    const late = await member(sc, nodes[2], topic, { presence: true, key: 'late' });
    await late.syncs.waitFor((s) => ['user0', 'user1', 'user2'].every((k) => s[k]), 5000, 'late joiner state');
    // untrack on node 1: gone everywhere
    const marks = [...members.slice(1), late].map((m) => m.syncs.events.length);
    await members[0].ch.untrack();
    for (const [i, m] of [...members.slice(1), late].entries())
      await m.syncs.waitFor((s) => !s.user0 && s.user1 && s.user2, 5000, 'user0 left', marks[i]);
  });

  it('a hostile message on the bus is counted and refused, nothing else happens', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const topic = uniqueTopic('cl-bad');
    const m = await member(sc, nodes[0], topic);
    const before = await metric(nodes[0], 'rtsync_cluster_invalid_total');
    redis.cli('PUBLISH', 'rtsync:bus', 'RTB1\x01garbage');
    redis.cli('PUBLISH', 'rtsync:bus', 'not even the magic');
    await until(async () => (await metric(nodes[0], 'rtsync_cluster_invalid_total')) >= before + 2, 5000, 'invalid counted');
    // still working
    const r = await fetch(`${nodes[2].httpUrl}/api/broadcast`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', apikey: nodes[2].token({ role: 'anon' }) },
      body: JSON.stringify({ messages: [{ topic, event: 'after', payload: {} }] }),
    });
    assert.equal(r.status, 202);
    await m.rec.waitFor((e) => e.event === 'after', 5000, 'broadcast after garbage');
  });
});

describe('failures', () => {
  it('a SIGKILLed node: its members leave the others after the TTL', { timeout: 60_000 }, async (t) => {
    const sc = scope(t);
    const redis = await startRedis();
    const nodes = await startNodes(3, redis.url, { ttlMs: TTL_MS });
    t.after(async () => { for (const n of nodes) await n.kill(); await redis.stop(); });
    const topic = uniqueTopic('cl-kill');
    const members = [];
    for (let i = 0; i < 3; i++) members.push(await member(sc, nodes[i], topic, { presence: true, key: `user${i}` }));
    for (const m of members) assert.equal(await m.ch.track({}), 'ok');
    for (const m of members.slice(0, 2))
      await m.syncs.waitFor((s) => keysOf(s).join() === 'user0,user1,user2', 5000, 'all three');
    const marks = members.map((m) => m.syncs.events.length);
    const killedAt = Date.now();
    await nodes[2].kill();
    for (const [i, m] of members.slice(0, 2).entries())
      await m.syncs.waitFor((s) => keysOf(s).join() === 'user0,user1', TTL_MS * 4, 'user2 gone', marks[i]);
    const took = Date.now() - killedAt;
    assert.ok(took >= TTL_MS - 200, `left after the TTL, not before (${took} ms)`);
    assert.equal(await metric(nodes[0], 'rtsync_cluster_peers'), 1);
    for (const n of nodes.slice(0, 2)) await n.stop();
  });

  it('a node SIGKILLed and started again under the same id is heard at once', { timeout: 60_000 }, async (t) => {
    const sc = scope(t);
    const redis = await startRedis();
    const nodes = await startNodes(2, redis.url, { ttlMs: 10_000 });
    t.after(async () => { for (const n of nodes) await n.kill(); await redis.stop(); });
    const topic = uniqueTopic('cl-restart');
    const a = await member(sc, nodes[0], topic, { presence: true, key: 'a' });
    const old = await member(sc, nodes[1], topic, { presence: true, key: 'old' });
    for (const m of [a, old]) assert.equal(await m.ch.track({}), 'ok');
    await a.syncs.waitFor((s) => keysOf(s).join() === 'a,old', 5000, 'a sees old');
    const id = nodes[1].proc.spawnargs[nodes[1].proc.spawnargs.indexOf('--cluster-node') + 1];
    await nodes[1].kill();
    // the same id, long before the 10 s TTL: its numbers start at 1 again
    nodes[1] = await startServer({ args: ['--redis', redis.url, '--cluster-node', id, '--cluster-ttl-ms', '10000'] });
    const mark = a.syncs.events.length;
    const b = await member(sc, nodes[1], topic, { presence: true, key: 'new' });
    assert.equal(await b.ch.track({}), 'ok');
    await a.syncs.waitFor((s) => keysOf(s).join() === 'a,new', 5000, 'the old member replaced by the new one', mark);
    await b.syncs.waitFor((s) => keysOf(s).join() === 'a,new', 5000, 'the new node sees a');
    assert.equal(await b.ch.send({ type: 'broadcast', event: 'hi', payload: {} }), 'ok');
    await a.rec.waitFor((e) => e.event === 'hi', 5000, 'its broadcasts get through');
    for (const n of nodes) await n.stop();
  });

  it('Redis SIGKILLed: nodes serve their own clients, report degraded, and recover', { timeout: 90_000 }, async (t) => {
    const sc = scope(t);
    const redis = await startRedis();
    const nodes = await startNodes(2, redis.url, { ttlMs: TTL_MS });
    t.after(async () => { for (const n of nodes) await n.kill(); await redis.stop(); });
    for (const n of nodes) await until(async () => (await metric(n, 'rtsync_cluster_peers')) === 1, 10_000, 'peers');
    const topic = uniqueTopic('cl-redis');
    const a = await member(sc, nodes[0], topic, { presence: true, key: 'a' });
    const a2 = await member(sc, nodes[0], topic, { presence: true, key: 'a2' });
    const b = await member(sc, nodes[1], topic, { presence: true, key: 'b' });
    for (const m of [a, a2, b]) assert.equal(await m.ch.track({}), 'ok');
    await b.syncs.waitFor((s) => keysOf(s).join() === 'a,a2,b', 5000, 'b sees a, a2');

    await redis.kill();
    for (const n of nodes) {
      await until(async () => (await getJson(n, '/healthz')).body.status === 'degraded', 5000, 'degraded');
      const h = await getJson(n, '/healthz');
      assert.equal(h.status, 200, 'still 200: the node serves its own clients');
      assert.equal(h.body.cluster.redis, 'down');
      assert.equal(await metric(n, 'rtsync_cluster_redis_up'), 0);
    }
    // local delivery goes on
    assert.equal(await a.ch.send({ type: 'broadcast', event: 'local', payload: { n: 1 } }), 'ok');
    await a2.rec.waitFor((e) => e.event === 'local', 5000, 'local broadcast while Redis is down');
    const dropped = await metric(nodes[0], 'rtsync_cluster_dropped_total{reason="redis_down"}');
    assert.ok(dropped >= 1, `dropped while down counted (${dropped})`);
    // presence changes while down
    await a2.ch.untrack();
    // past the TTL each node has dropped the other's members
    for (const n of nodes) await until(async () => (await metric(n, 'rtsync_cluster_peers')) === 0, TTL_MS * 4, 'peers expired');
    await until(() => keysOf(b.ch.presenceState()).join() === 'b', 5000, 'b alone while Redis is down');
    await until(() => keysOf(a.ch.presenceState()).join() === 'a', 5000, 'a alone while Redis is down');
    const marks = [a.syncs.events.length, b.syncs.events.length];

    await redis.start();
    for (const n of nodes)
      await until(async () => (await getJson(n, '/healthz')).body.status === 'ok', 15_000, 'recovered');
    // presence resynchronized: b sees a (and no longer a2), a sees b
    await b.syncs.waitFor((s) => keysOf(s).join() === 'a,b', 10_000, 'b: a, b after recovery', marks[1]);
    await a.syncs.waitFor((s) => keysOf(s).join() === 'a,b', 10_000, 'a: a, b after recovery', marks[0]);
    assert.equal(keysOf(b.ch.presenceState()).join(), 'a,b');
    // and broadcasts cross again
    const from = b.rec.events.length;
    assert.equal(await a.ch.send({ type: 'broadcast', event: 'again', payload: {} }), 'ok');
    await b.rec.waitFor((e) => e.event === 'again', 5000, 'broadcast after recovery', from);
    assert.equal(b.rec.events.filter((e) => e.event === 'local').length, 0, 'nothing sent while down arrives later');
    for (const n of nodes) await n.stop();
  });
});
