// realtime-js broadcast: subscribe, fan-out, self, ack, REST fallbacks,
// event filters, for both serializers (vsn 1.0.0 and 2.0.0) and mixed.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import {
  VSNS, Recorder, scope, realtimeClient, subscribe, uniqueTopic, withTimeout,
} from './lib/util.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { if (server) await server.stop(); });

const T = { timeout: 30_000 };

/** A subscribed realtime-js channel recording every broadcast it receives. */
async function member(sc, vsn, topic, config = {}) {
  const client = realtimeClient(sc, server, { vsn });
  const ch = client.channel(topic, { config });
  const rec = new Recorder(`broadcasts on ${topic} (${vsn})`);
  ch.on('broadcast', { event: '*' }, rec.handler);
  await subscribe(ch);
  return { client, ch, rec };
}

const isEvent = (name) => (m) => m.event === name;

for (const vsn of VSNS) {
  describe(`realtime-js broadcast, vsn ${vsn}`, () => {
    it('channel reaches SUBSCRIBED', T, async (t) => {
      const sc = scope(t);
      const client = realtimeClient(sc, server, { vsn });
      const ch = client.channel(uniqueTopic());
      await subscribe(ch);
      assert.equal(ch.state, 'joined');
      assert.equal(client.isConnected(), true);
      assert.equal(client.endpointURL().includes(`vsn=${vsn}`), true);
      assert.deepEqual(ch._statuses.events.map((e) => e.status), ['SUBSCRIBED']);
    });

    it('broadcast reaches another client, not the sender (self:false)', T, async (t) => {
      const sc = scope(t);
      const topic = uniqueTopic();
      const a = await member(sc, vsn, topic);
      const b = await member(sc, vsn, topic);
      const payload = { n: 1, text: 'hello', nested: { list: [1, 2, 3], flag: true, none: null } };
      assert.equal(await a.ch.send({ type: 'broadcast', event: 'msg', payload }), 'ok');
      const got = await b.rec.waitFor(isEvent('msg'), 5000, 'msg at B');
      assert.deepEqual(got, { type: 'broadcast', event: 'msg', payload });
      // B answers; when A gets the answer, A's own message would have come first.
      await b.ch.send({ type: 'broadcast', event: 'marker', payload: {} });
      await a.rec.waitFor(isEvent('marker'), 5000, 'marker at A');
      assert.equal(a.rec.filter(isEvent('msg')).length, 0, 'sender must not receive its own broadcast with self:false');
      assert.equal(b.rec.filter(isEvent('marker')).length, 0, 'B must not receive its own marker');
    });

    it('self:true delivers the sender its own broadcast', T, async (t) => {
      const sc = scope(t);
      const topic = uniqueTopic();
      const a = await member(sc, vsn, topic, { broadcast: { self: true } });
      const b = await member(sc, vsn, topic);
      await a.ch.send({ type: 'broadcast', event: 'echo', payload: { me: 'a' } });
      const own = await a.rec.waitFor(isEvent('echo'), 5000, 'own echo');
      assert.deepEqual(own, { type: 'broadcast', event: 'echo', payload: { me: 'a' } });
      await b.rec.waitFor(isEvent('echo'), 5000, 'echo at B');
      assert.equal(a.rec.filter(isEvent('echo')).length, 1, 'exactly one self delivery');
    });

    it('ack:true send resolves "ok" and the message is delivered', T, async (t) => {
      const sc = scope(t);
      const topic = uniqueTopic();
      const a = await member(sc, vsn, topic, { broadcast: { ack: true } });
      const b = await member(sc, vsn, topic);
      for (let i = 0; i < 3; i++) {
        const res = await withTimeout(a.ch.send({ type: 'broadcast', event: 'acked', payload: { i } }), 8000, 'ack');
        assert.equal(res, 'ok', `ack #${i}`);
      }
      await b.rec.waitFor((m) => m.event === 'acked' && m.payload.i === 2, 5000, 'third acked msg');
      assert.deepEqual(b.rec.filter(isEvent('acked')).map((m) => m.payload.i), [0, 1, 2], 'in order, no duplicates');
    });

    it('ack:false send resolves "ok" and others receive it', T, async (t) => {
      const sc = scope(t);
      const topic = uniqueTopic();
      const a = await member(sc, vsn, topic, { broadcast: { ack: false, self: false } });
      const b = await member(sc, vsn, topic);
      const c = await member(sc, vsn, topic);
      assert.equal(await a.ch.send({ type: 'broadcast', event: 'noack', payload: { v: 'x' } }), 'ok');
      for (const m of [b, c]) {
        const got = await m.rec.waitFor(isEvent('noack'), 5000, 'noack');
        assert.deepEqual(got.payload, { v: 'x' });
      }
    });

    it('send() on a channel that is not subscribed falls back to REST and is delivered', T, async (t) => {
      const sc = scope(t);
      const topic = uniqueTopic();
      const b = await member(sc, vsn, topic);
      const sender = realtimeClient(sc, server, { vsn });
      const ch = sender.channel(topic);
      const res = await ch.send({ type: 'broadcast', event: 'rest', payload: { via: 'batch' } });
      assert.equal(res, 'ok');
      const got = await b.rec.waitFor(isEvent('rest'), 5000, 'REST broadcast');
      assert.equal(got.type, 'broadcast');
      assert.deepEqual(got.payload, { via: 'batch' });
      assert.equal(sender.isConnected(), false, 'REST fallback must not open a socket');
    });

    it('httpSend() (POST /realtime/v1/api/broadcast/:topic/events/:event) is delivered', T, async (t) => {
      const sc = scope(t);
      const topic = uniqueTopic();
      const b = await member(sc, vsn, topic);
      const sender = realtimeClient(sc, server, { vsn });
      const ch = sender.channel(topic);
      assert.equal(typeof ch.httpSend, 'function');
      const res = await ch.httpSend('single', { via: 'httpSend' });
      assert.deepEqual(res, { success: true });
      const got = await b.rec.waitFor(isEvent('single'), 5000, 'httpSend broadcast');
      assert.equal(got.type, 'broadcast');
      assert.deepEqual(got.payload, { via: 'httpSend' });
    });

    it('raw POST to /realtime/v1/api/broadcast and /api/broadcast is delivered (202)', T, async (t) => {
      const sc = scope(t);
      const topic = uniqueTopic();
      const b = await member(sc, vsn, topic);
      const token = server.token({ role: 'service_role' });

      let r = await fetch(`${server.httpUrl}/realtime/v1/api/broadcast`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${token}` },
        body: JSON.stringify({ messages: [{ topic, event: 'http1', payload: { n: 1 }, private: false }] }),
      });
      assert.equal(r.status, 202, `bearer POST: ${await r.text()}`);

      r = await fetch(`${server.httpUrl}/api/broadcast`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json', apikey: server.token({ role: 'anon' }) },
        body: JSON.stringify({
          messages: [
            { topic, event: 'http2', payload: { n: 2 } },
            { topic, event: 'http3', payload: { n: 3 }, private: false },
          ],
        }),
      });
      assert.equal(r.status, 202, `apikey POST: ${await r.text()}`);

      const g1 = await b.rec.waitFor(isEvent('http1'), 5000, 'http1');
      const g2 = await b.rec.waitFor(isEvent('http2'), 5000, 'http2');
      const g3 = await b.rec.waitFor(isEvent('http3'), 5000, 'http3');
      assert.deepEqual([g1.type, g1.payload], ['broadcast', { n: 1 }]);
      assert.deepEqual([g2.type, g2.payload], ['broadcast', { n: 2 }]);
      assert.deepEqual([g3.type, g3.payload], ['broadcast', { n: 3 }]);
    });

    it('broadcast event filter: .on("broadcast", {event:"x"}) only gets "x"', T, async (t) => {
      const sc = scope(t);
      const topic = uniqueTopic();
      const a = await member(sc, vsn, topic);
      const client = realtimeClient(sc, server, { vsn });
      const ch = client.channel(topic);
      const onlyX = new Recorder('filtered x');
      const all = new Recorder('all');
      ch.on('broadcast', { event: 'x' }, onlyX.handler);
      ch.on('broadcast', { event: '*' }, all.handler);
      await subscribe(ch);
      await a.ch.send({ type: 'broadcast', event: 'y', payload: { k: 'y' } });
      await a.ch.send({ type: 'broadcast', event: 'x', payload: { k: 'x' } });
      await a.ch.send({ type: 'broadcast', event: 'z', payload: { k: 'z' } });
      await all.waitFor(isEvent('z'), 5000, 'z on the wildcard listener');
      assert.deepEqual(all.events.map((m) => m.event), ['y', 'x', 'z'], 'wildcard gets all, in order');
      assert.deepEqual(onlyX.events, [{ type: 'broadcast', event: 'x', payload: { k: 'x' } }]);
    });

    it('one socket, several channels: messages are routed to the right channel', T, async (t) => {
      const sc = scope(t);
      const t1 = uniqueTopic();
      const t2 = uniqueTopic();
      const client = realtimeClient(sc, server, { vsn });
      const c1 = client.channel(t1);
      const c2 = client.channel(t2);
      const r1 = new Recorder('channel 1');
      const r2 = new Recorder('channel 2');
      c1.on('broadcast', { event: '*' }, r1.handler);
      c2.on('broadcast', { event: '*' }, r2.handler);
      await Promise.all([subscribe(c1), subscribe(c2)]);
      const s1 = await member(sc, vsn, t1);
      const s2 = await member(sc, vsn, t2);
      await s1.ch.send({ type: 'broadcast', event: 'to1', payload: {} });
      await s2.ch.send({ type: 'broadcast', event: 'to2', payload: {} });
      await r1.waitFor(isEvent('to1'), 5000, 'to1');
      await r2.waitFor(isEvent('to2'), 5000, 'to2');
      // and from the shared socket out to each topic
      await c1.send({ type: 'broadcast', event: 'from1', payload: {} });
      await c2.send({ type: 'broadcast', event: 'from2', payload: {} });
      await s1.rec.waitFor(isEvent('from1'), 5000, 'from1');
      await s2.rec.waitFor(isEvent('from2'), 5000, 'from2');
      assert.deepEqual(r1.events.map((m) => m.event), ['to1']);
      assert.deepEqual(r2.events.map((m) => m.event), ['to2']);
      assert.deepEqual(s1.rec.events.map((m) => m.event), ['from1']);
      assert.deepEqual(s2.rec.events.map((m) => m.event), ['from2']);
    });

    it('unsubscribe then subscribe again to the same topic works (new join ref)', T, async (t) => {
      const sc = scope(t);
      const topic = uniqueTopic();
      const client = realtimeClient(sc, server, { vsn });
      const first = client.channel(topic);
      await subscribe(first);
      assert.equal(await client.removeChannel(first), 'ok');
      const again = client.channel(topic);
      assert.notEqual(again, first);
      const rec = new Recorder('second instance');
      again.on('broadcast', { event: '*' }, rec.handler);
      await subscribe(again);
      const s = await member(sc, vsn, topic);
      await s.ch.send({ type: 'broadcast', event: 'second', payload: {} });
      await rec.waitFor(isEvent('second'), 5000, 'delivery to the second instance');
    });

    it('large payloads (256 KiB and 1 MiB with ack) are delivered intact', { timeout: 40_000 }, async (t) => {
      const sc = scope(t);
      const topic = uniqueTopic();
      const a = await member(sc, vsn, topic, { broadcast: { ack: true } });
      const b = await member(sc, vsn, topic);
      for (const size of [256 * 1024, 1024 * 1024]) {
        const blob = 'abcdefghijklmnopqrstuvwxyz0123456789'.repeat(Math.ceil(size / 36)).slice(0, size);
        const res = await withTimeout(a.ch.send({ type: 'broadcast', event: `big${size}`, payload: { blob } }), 15_000, 'ack');
        assert.equal(res, 'ok');
        const got = await b.rec.waitFor(isEvent(`big${size}`), 10_000, `big payload ${size}`);
        assert.equal(got.payload.blob.length, size);
        assert.equal(got.payload.blob, blob);
      }
    });

    it('a burst of 100 messages arrives complete and in order', T, async (t) => {
      const sc = scope(t);
      const topic = uniqueTopic();
      const a = await member(sc, vsn, topic);
      const b = await member(sc, vsn, topic);
      for (let i = 0; i < 100; i++) a.ch.send({ type: 'broadcast', event: 'burst', payload: { i } });
      await b.rec.waitFor((m) => m.event === 'burst' && m.payload.i === 99, 10_000, 'last of the burst');
      const seq = b.rec.filter(isEvent('burst')).map((m) => m.payload.i);
      assert.deepEqual(seq, Array.from({ length: 100 }, (_, i) => i));
    });

    it('non-ASCII topic and event names (UTF-8 byte lengths)', T, async (t) => {
      const sc = scope(t);
      const topic = `${uniqueTopic()}-caf\u00e9-\u6f22\u5b57`;
      const a = await member(sc, vsn, topic, { broadcast: { self: true } });
      const b = await member(sc, vsn, topic);
      const event = '\u00e9v\u00e9nement-\u2603';
      await a.ch.send({ type: 'broadcast', event, payload: { ok: '\u00fc' } });
      assert.deepEqual(await b.rec.waitFor(isEvent(event), 5000, 'non-ASCII delivery'),
        { type: 'broadcast', event, payload: { ok: '\u00fc' } });
      await a.rec.waitFor(isEvent(event), 5000, 'non-ASCII self delivery');
    });

    it('public broadcasts do not leak to other topics', T, async (t) => {
      const sc = scope(t);
      const topic = uniqueTopic();
      const other = uniqueTopic();
      const a = await member(sc, vsn, topic, { broadcast: { self: true } });
      const o = await member(sc, vsn, other);
      const a2 = await member(sc, vsn, other);
      await a.ch.send({ type: 'broadcast', event: 'leak', payload: {} });
      await a.rec.waitFor(isEvent('leak'), 5000, 'self copy');
      await a2.ch.send({ type: 'broadcast', event: 'sentinel', payload: {} });
      await o.rec.waitFor(isEvent('sentinel'), 5000, 'sentinel on other topic');
      assert.equal(o.rec.filter(isEvent('leak')).length, 0);
    });
  });
}

describe('realtime-js broadcast between vsn 1.0.0 and 2.0.0 clients', () => {
  it('V2 (binary kind 3) -> V1 and V1 (JSON) -> V2 both arrive intact', T, async (t) => {
    const sc = scope(t);
    const topic = uniqueTopic();
    const v1 = await member(sc, '1.0.0', topic);
    const v2 = await member(sc, '2.0.0', topic);
    const p2 = { from: 'v2', arr: [1, 'two', { three: 3 }], unicode: 'h\u00e9llo \u2603' };
    const p1 = { from: 'v1', num: 1.5, neg: -7, b: false };
    assert.equal(await v2.ch.send({ type: 'broadcast', event: 'fromV2', payload: p2 }), 'ok');
    assert.equal(await v1.ch.send({ type: 'broadcast', event: 'fromV1', payload: p1 }), 'ok');
    assert.deepEqual(await v1.rec.waitFor(isEvent('fromV2'), 5000, 'fromV2 at V1'),
      { type: 'broadcast', event: 'fromV2', payload: p2 });
    assert.deepEqual(await v2.rec.waitFor(isEvent('fromV1'), 5000, 'fromV1 at V2'),
      { type: 'broadcast', event: 'fromV1', payload: p1 });
  });

  it('ten messages from one sender arrive in order at both serializers', T, async (t) => {
    const sc = scope(t);
    const topic = uniqueTopic();
    const sender = await member(sc, '2.0.0', topic);
    const v1 = await member(sc, '1.0.0', topic);
    const v2 = await member(sc, '2.0.0', topic);
    for (let i = 0; i < 10; i++) await sender.ch.send({ type: 'broadcast', event: 'seq', payload: { i } });
    for (const m of [v1, v2]) {
      await m.rec.waitFor((e) => e.event === 'seq' && e.payload.i === 9, 5000, 'last seq');
      assert.deepEqual(m.rec.filter(isEvent('seq')).map((e) => e.payload.i), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    }
  });
});

describe('HTTP broadcast to private channels', () => {
  it('httpSend on a private channel reaches private subscribers only; anon callers are dropped', T, async (t) => {
    const sc = scope(t);
    const sub = uniqueTopic('private');
    const mk = async (isPrivate) => {
      const c = realtimeClient(sc, server, { vsn: '2.0.0', apikey: server.token({ role: 'authenticated' }) });
      const ch = c.channel(sub, { config: { private: isPrivate } });
      const rec = new Recorder(isPrivate ? 'private' : 'public');
      ch.on('broadcast', { event: '*' }, rec.handler);
      await subscribe(ch);
      return rec;
    };
    const priv = await mk(true);
    const pub = await mk(false);
    const sender = realtimeClient(sc, server, { vsn: '2.0.0', apikey: server.token({ role: 'service_role' }) });
    const pch = sender.channel(sub, { config: { private: true } });
    assert.deepEqual(await pch.httpSend('p1', { secret: true }), { success: true });
    assert.deepEqual((await priv.waitFor(isEvent('p1'), 5000, 'private httpSend')).payload, { secret: true });

    // batch endpoint, private:true, with an anon token: 202 but not delivered
    const anonRes = await fetch(`${server.httpUrl}/realtime/v1/api/broadcast`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${server.token({ role: 'anon' })}` },
      body: JSON.stringify({ messages: [{ topic: sub, event: 'anon-private', payload: {}, private: true }] }),
    });
    assert.equal(anonRes.status, 202, 'unauthorized private messages are dropped silently (PROTOCOL.md §6.7)');
    // batch endpoint, private:true, authenticated: delivered to private only
    const okRes = await fetch(`${server.httpUrl}/realtime/v1/api/broadcast`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${server.token({ role: 'authenticated' })}` },
      body: JSON.stringify({ messages: [
        { topic: sub, event: 'p2', payload: {}, private: true },
        { topic: sub, event: 'pub', payload: {}, private: false },
      ] }),
    });
    assert.equal(okRes.status, 202);
    await priv.waitFor(isEvent('p2'), 5000, 'private batch delivery');
    await pub.waitFor(isEvent('pub'), 5000, 'public batch delivery');
    assert.deepEqual(priv.events.map((m) => m.event), ['p1', 'p2'], 'anon private message must be dropped');
    assert.deepEqual(pub.events.map((m) => m.event), ['pub'], 'private messages must not reach the public channel');
  });
});

describe('HTTP broadcast API errors', () => {
  it('POST /realtime/v1/api/broadcast without a valid token is refused (401) and not delivered', T, async (t) => {
    const sc = scope(t);
    const topic = uniqueTopic();
    const b = await member(sc, '2.0.0', topic);
    const body = JSON.stringify({ messages: [{ topic, event: 'unauth', payload: {} }] });
    const cases = [
      ['no auth', {}],
      ['bad signature', { Authorization: `Bearer ${server.token({ secret: 'not-the-secret' })}` }],
      ['expired', { apikey: server.token({ expIn: -60 }) }],
      ['not a jwt', { Authorization: 'Bearer not-a-jwt' }],
    ];
    for (const [what, headers] of cases) {
      const r = await fetch(`${server.httpUrl}/realtime/v1/api/broadcast`, {
        method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body,
      });
      assert.equal(r.status, 401, `${what}: ${await r.text()}`);
    }
    // a valid request afterwards is delivered; the refused ones never were
    const ok = await fetch(`${server.httpUrl}/api/broadcast`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${server.token()}` },
      body: JSON.stringify({ messages: [{ topic, event: 'authed', payload: {} }] }),
    });
    assert.equal(ok.status, 202);
    await b.rec.waitFor(isEvent('authed'), 5000, 'authed');
    assert.equal(b.rec.filter(isEvent('unauth')).length, 0);
  });
});
