// Raw-protocol checks with a bare WebSocket, for what the official clients
// cannot express: exact frames, malformed input, unmatched topics, leave/close
// refs, and V2 binary broadcasts seen by V1 and V2 subscribers.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import {
  VSNS, Recorder, scope, realtimeClient, subscribe, uniqueTopic, safeJson,
} from './lib/util.mjs';
import { rawConnect, encodeUserBroadcastPush, tryUpgrade } from './lib/raw.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { if (server) await server.stop(); });

const T = { timeout: 20_000 };

/** Assert the exact wire form of a logical frame for the socket's serializer. */
function assertFrame(vsn, f, { join_ref = null, ref = null, topic, event, payload }) {
  assert.equal(f.binary, false, `expected a text frame, got ${safeJson(f)}`);
  if (vsn === '2.0.0') {
    assert.deepEqual(f.raw, [join_ref, ref, topic, event, payload]);
  } else {
    // V1 frames never carry join_ref
    assert.deepEqual(f.raw, { topic, event, payload, ref });
  }
}

const joinPayload = (over = {}) => ({
  config: {
    broadcast: { self: false, ack: false, ...(over.broadcast || {}) },
    presence: { key: '', enabled: false, ...(over.presence || {}) },
    postgres_changes: [],
    private: false,
  },
});

const isReply = (ref) => (f) => !f.binary && f.event === 'phx_reply' && f.ref === ref;

for (const vsn of VSNS) {
  describe(`raw protocol, vsn ${vsn}`, () => {
    it('heartbeat reply is exact', T, async (t) => {
      const c = await rawConnect(scope(t), server, { vsn });
      const ref = c.send({ topic: 'phoenix', event: 'heartbeat', payload: {} });
      const f = await c.reply(ref);
      assertFrame(vsn, f, { ref, topic: 'phoenix', event: 'phx_reply', payload: { status: 'ok', response: {} } });
    });

    it('join reply and presence_state are exact', T, async (t) => {
      const c = await rawConnect(scope(t), server, { vsn });
      const topic = `realtime:${uniqueTopic()}`;
      const { joinRef, reply } = await c.join(topic, joinPayload({ presence: { key: 'k1', enabled: true } }));
      assertFrame(vsn, reply, {
        join_ref: joinRef, ref: joinRef, topic, event: 'phx_reply',
        payload: { status: 'ok', response: { postgres_changes: [] } },
      });
      const ps = await c.next((f) => f.event === 'presence_state', 5000, 'presence_state');
      assertFrame(vsn, ps, { join_ref: joinRef, ref: null, topic, event: 'presence_state', payload: {} });
      assert.ok(c.frames.events.indexOf(ps) > c.frames.events.indexOf(reply), 'presence_state after the join reply');
    });

    it('malformed frames are dropped without a reply and the connection stays open', T, async (t) => {
      const c = await rawConnect(scope(t), server, { vsn });
      const junk = [
        '{"topic": "phoenix", "event": ',          // truncated JSON
        'not json at all',
        '',
        '42',
        'null',
        '[]',
        '[null,"901","phoenix"]',                  // short array
        '{"topic":"phoenix","event":"heartbeat"}', // object missing payload/ref
        '\u00ff\u00fe garbage',
      ];
      // the other serializer's heartbeat must be ignored too
      if (vsn === '2.0.0') junk.push('{"topic":"phoenix","event":"heartbeat","payload":{},"ref":"902"}');
      else junk.push('[null,"903","phoenix","heartbeat",{}]');
      for (const j of junk) c.sendRaw(j);
      if (vsn === '2.0.0') {
        c.sendRaw(Buffer.from([9, 1, 2, 3]));              // unknown binary kind
        c.sendRaw(Buffer.from([3, 5, 5, 200, 1, 0, 1, 65])); // truncated kind 3
      }
      const f = await c.heartbeat(5000);
      assert.equal(f.payload.status, 'ok');
      assert.equal(c.isOpen(), true);
      const replies = c.frames.filter((x) => x.event === 'phx_reply');
      assert.deepEqual(replies.map((x) => x.ref), [f.ref], `unexpected replies: ${safeJson(replies)}`);
      assert.equal(c.frames.events.length, 1, `unexpected frames: ${safeJson(c.frames.events)}`);
    });

    it('a push to a topic that is not joined -> unmatched topic', T, async (t) => {
      const c = await rawConnect(scope(t), server, { vsn });
      const topic = `realtime:${uniqueTopic()}`;
      const ref = c.send({ topic, event: 'broadcast', payload: { type: 'broadcast', event: 'x', payload: {} } });
      const f = await c.reply(ref);
      assertFrame(vsn, f, { ref, topic, event: 'phx_reply', payload: { status: 'error', response: { reason: 'unmatched topic' } } });
      assert.equal(c.isOpen(), true);
    });

    it('join on a topic without the realtime: prefix -> unmatched topic', T, async (t) => {
      const c = await rawConnect(scope(t), server, { vsn });
      const topic = uniqueTopic();
      const { joinRef, reply } = await c.join(topic, joinPayload());
      assertFrame(vsn, reply, {
        join_ref: null, ref: joinRef, topic, event: 'phx_reply',
        payload: { status: 'error', response: { reason: 'unmatched topic' } },
      });
      const hb = await c.heartbeat();
      assert.equal(hb.payload.status, 'ok');
    });

    it('join on "realtime:" (empty sub-topic) -> TopicNameRequired', T, async (t) => {
      const c = await rawConnect(scope(t), server, { vsn });
      const topic = 'realtime:';
      const { joinRef, reply } = await c.join(topic, joinPayload(), 12_000);
      assertFrame(vsn, reply, {
        join_ref: joinRef, ref: joinRef, topic, event: 'phx_reply',
        payload: { status: 'error', response: { reason: 'TopicNameRequired: You must provide a topic name' } },
      });
      // no channel exists afterwards
      const ref = c.send({ topic, event: 'broadcast', payload: { type: 'broadcast', event: 'x', payload: {} } });
      const f = await c.reply(ref);
      assert.deepEqual(f.payload, { status: 'error', response: { reason: 'unmatched topic' } });
      assert.equal(c.frames.filter((x) => x.event === 'phx_close').length, 0, 'no phx_close after a join error');
    });

    it('phx_leave -> ok reply, then phx_close with ref = join_ref; the topic is then unmatched', T, async (t) => {
      const c = await rawConnect(scope(t), server, { vsn });
      const topic = `realtime:${uniqueTopic()}`;
      const { joinRef } = await c.join(topic, joinPayload());
      const leaveRef = c.send({ join_ref: joinRef, topic, event: 'phx_leave', payload: {} });
      const reply = await c.reply(leaveRef);
      assertFrame(vsn, reply, {
        join_ref: joinRef, ref: leaveRef, topic, event: 'phx_reply', payload: { status: 'ok', response: {} },
      });
      const close = await c.next((f) => f.event === 'phx_close', 5000, 'phx_close');
      assertFrame(vsn, close, { join_ref: joinRef, ref: joinRef, topic, event: 'phx_close', payload: {} });
      assert.ok(c.frames.events.indexOf(close) > c.frames.events.indexOf(reply), 'phx_close after the leave reply');
      const ref = c.send({ join_ref: joinRef, topic, event: 'broadcast', payload: { type: 'broadcast', event: 'x', payload: {} } });
      const f = await c.reply(ref);
      assert.deepEqual(f.payload, { status: 'error', response: { reason: 'unmatched topic' } });
    });

    it('phx_leave for a topic that is not joined still replies ok', T, async (t) => {
      const c = await rawConnect(scope(t), server, { vsn });
      const topic = `realtime:${uniqueTopic()}`;
      const ref = c.send({ topic, event: 'phx_leave', payload: {} });
      const f = await c.reply(ref);
      assert.deepEqual(f.payload, { status: 'ok', response: {} });
    });

    it('re-joining a joined topic closes the old instance (phx_close with the old join_ref)', T, async (t) => {
      const c = await rawConnect(scope(t), server, { vsn });
      const topic = `realtime:${uniqueTopic()}`;
      const first = await c.join(topic, joinPayload());
      const second = await c.join(topic, joinPayload({ broadcast: { self: true } }));
      assert.equal(second.reply.payload.status, 'ok');
      const close = await c.next((f) => f.event === 'phx_close', 5000, 'phx_close of the old instance');
      assertFrame(vsn, close, { join_ref: first.joinRef, ref: first.joinRef, topic, event: 'phx_close', payload: {} });
      // the new instance works (self:true)
      c.send({ join_ref: second.joinRef, topic, event: 'broadcast', payload: { type: 'broadcast', event: 'again', payload: {} } });
      await c.next((f) => f.event === 'broadcast', 5000, 'self broadcast on the new instance');
    });

    it('JSON broadcast with ack and self: reply then self delivery; join_ref is not checked', T, async (t) => {
      const sc = scope(t);
      const c = await rawConnect(sc, server, { vsn });
      const other = await rawConnect(sc, server, { vsn });
      const topic = `realtime:${uniqueTopic()}`;
      const { joinRef } = await c.join(topic, joinPayload({ broadcast: { self: true, ack: true } }));
      await other.join(topic, joinPayload());
      const payload = { type: 'broadcast', event: 'ev', payload: { a: [1, 2], b: 'x' } };
      const ref = c.send({ join_ref: joinRef, topic, event: 'broadcast', payload });
      const reply = await c.reply(ref);
      assertFrame(vsn, reply, { join_ref: joinRef, ref, topic, event: 'phx_reply', payload: { status: 'ok', response: {} } });
      const self = await c.next((f) => f.event === 'broadcast', 5000, 'self delivery');
      assertFrame(vsn, self, { topic, event: 'broadcast', payload });
      const got = await other.next((f) => f.event === 'broadcast', 5000, 'delivery');
      assertFrame(vsn, got, { topic, event: 'broadcast', payload });
      // stale and null join_ref are accepted (routing by topic)
      for (const jr of ['some-other-join-ref', null]) {
        const r = c.send({ join_ref: jr, topic, event: 'broadcast', payload: { ...payload, event: `jr-${jr}` } });
        const rep = await c.reply(r);
        assert.deepEqual(rep.payload, { status: 'ok', response: {} }, `join_ref ${jr}`);
        await other.next((f) => f.event === 'broadcast' && f.payload.event === `jr-${jr}`, 5000, `delivery jr=${jr}`);
      }
    });

    it('presence track/untrack: ok replies and exact presence_diff frames', T, async (t) => {
      const sc = scope(t);
      const c = await rawConnect(sc, server, { vsn });
      const obs = await rawConnect(sc, server, { vsn });
      const topic = `realtime:${uniqueTopic()}`;
      await obs.join(topic, joinPayload({ presence: { key: 'obs', enabled: true } }));
      await obs.next((f) => f.event === 'presence_state', 5000, 'presence_state');
      const { joinRef } = await c.join(topic, joinPayload({ presence: { key: 'raw-key', enabled: true } }));
      const ref = c.send({ join_ref: joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'track', payload: { who: 'raw' } } });
      const rep = await c.reply(ref);
      assertFrame(vsn, rep, { join_ref: joinRef, ref, topic, event: 'phx_reply', payload: { status: 'ok', response: {} } });
      const diff = await obs.next((f) => f.event === 'presence_diff', 5000, 'presence_diff join');
      assert.equal(vsn === '2.0.0' ? diff.raw[0] : ('join_ref' in diff.raw), vsn === '2.0.0' ? null : false);
      assert.equal(diff.ref, null);
      const { joins, leaves } = diff.payload;
      assert.deepEqual(leaves, {});
      assert.deepEqual(Object.keys(joins), ['raw-key']);
      assert.equal(joins['raw-key'].metas.length, 1);
      const { phx_ref: phxRef, ...meta } = joins['raw-key'].metas[0];
      assert.deepEqual(meta, { who: 'raw' });
      assert.equal(typeof phxRef, 'string');

      const ref2 = c.send({ join_ref: joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'untrack' } });
      assert.deepEqual((await c.reply(ref2)).payload, { status: 'ok', response: {} });
      const diff2 = await obs.next((f) => f.event === 'presence_diff' && Object.keys(f.payload.leaves).length > 0, 5000, 'presence_diff leave');
      assert.deepEqual(diff2.payload.joins, {});
      assert.deepEqual(diff2.payload.leaves, { 'raw-key': { metas: [{ phx_ref: phxRef, who: 'raw' }] } });
    });

    it('presence disabled: no presence_state; a track auto-enables it without presence_state', T, async (t) => {
      const sc = scope(t);
      const c = await rawConnect(sc, server, { vsn });
      const obs = await rawConnect(sc, server, { vsn });
      const topic = `realtime:${uniqueTopic()}`;
      await obs.join(topic, joinPayload({ presence: { key: 'obs', enabled: true } }));
      await obs.next((f) => f.event === 'presence_state', 5000, 'observer presence_state');
      const { joinRef } = await c.join(topic, joinPayload({ presence: { key: 'auto', enabled: false } }));
      const ref = c.send({ join_ref: joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'TRACK', payload: { a: 1 } } });
      assert.deepEqual((await c.reply(ref)).payload, { status: 'ok', response: {} }, 'event name is case-insensitive');
      const diff = await obs.next((f) => f.event === 'presence_diff', 5000, 'diff for the auto-enabled tracker');
      assert.deepEqual(Object.keys(diff.payload.joins), ['auto']);
      await c.heartbeat();
      assert.equal(c.frames.filter((f) => f.event === 'presence_state').length, 0, 'no presence_state for a disabled/auto-enabled channel');
    });

    it('presence track with a non-object payload -> error reply, channel stays', T, async (t) => {
      const c = await rawConnect(scope(t), server, { vsn });
      const topic = `realtime:${uniqueTopic()}`;
      const { joinRef } = await c.join(topic, joinPayload({ presence: { key: 'k', enabled: true } }));
      const ref = c.send({ join_ref: joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'track', payload: 'nope' } });
      assert.deepEqual((await c.reply(ref)).payload,
        { status: 'error', response: { reason: 'Presence track payload must be a map' } });
      const ref2 = c.send({ join_ref: joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'track', payload: { ok: 1 } } });
      assert.deepEqual((await c.reply(ref2)).payload, { status: 'ok', response: {} });
    });

    it('an empty presence key gets a server-generated key, different per join', T, async (t) => {
      const sc = scope(t);
      const obs = await rawConnect(sc, server, { vsn });
      const topic = `realtime:${uniqueTopic()}`;
      await obs.join(topic, joinPayload({ presence: { key: 'obs', enabled: true } }));
      const keys = [];
      for (let i = 0; i < 2; i++) {
        const c = await rawConnect(sc, server, { vsn });
        const { joinRef } = await c.join(topic, joinPayload({ presence: { key: '', enabled: true } }));
        const from = obs.frames.events.length;
        c.send({ join_ref: joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'track', payload: { i } } });
        const d = await obs.frames.waitFor((f) => f.event === 'presence_diff' && Object.keys(f.payload.joins).length, 5000, 'diff', from);
        keys.push(...Object.keys(d.payload.joins));
      }
      assert.equal(keys.length, 2);
      for (const k of keys) assert.ok(typeof k === 'string' && k.length > 0, `generated key ${k}`);
      assert.notEqual(keys[0], keys[1]);
    });

    it('string booleans in the join config are accepted ("true")', T, async (t) => {
      const c = await rawConnect(scope(t), server, { vsn });
      const topic = `realtime:${uniqueTopic()}`;
      const payload = joinPayload();
      payload.config.broadcast = { self: 'true', ack: 'TRUE' };
      const { joinRef, reply } = await c.join(topic, payload);
      assert.equal(reply.payload.status, 'ok');
      const ref = c.send({ join_ref: joinRef, topic, event: 'broadcast', payload: { type: 'broadcast', event: 's', payload: {} } });
      assert.deepEqual((await c.reply(ref)).payload, { status: 'ok', response: {} }, 'ack:"TRUE"');
      await c.next((f) => f.event === 'broadcast', 5000, 'self delivery with self:"true"');
    });

    it('join with an sb_ access_token falls back to the socket token', T, async (t) => {
      const c = await rawConnect(scope(t), server, { vsn });
      const topic = `realtime:${uniqueTopic()}`;
      const payload = { ...joinPayload(), access_token: 'sb_publishable_abcdefghijklmnop' };
      const { reply } = await c.join(topic, payload);
      assert.deepEqual(reply.payload, { status: 'ok', response: { postgres_changes: [] } });
    });

    it('access_token push gets no reply', T, async (t) => {
      const c = await rawConnect(scope(t), server, { vsn });
      const topic = `realtime:${uniqueTopic()}`;
      const { joinRef } = await c.join(topic, joinPayload());
      const ref = c.send({ join_ref: joinRef, topic, event: 'access_token', payload: { access_token: server.token({ role: 'authenticated' }) } });
      const hb = await c.heartbeat();
      assert.equal(hb.payload.status, 'ok');
      assert.equal(c.frames.filter(isReply(ref)).length, 0);
      assert.equal(c.frames.filter((f) => f.event === 'system' || f.event === 'phx_close').length, 0);
    });
  });
}

describe('raw protocol, V2 binary broadcasts', () => {
  it('realtime-js V2 kind-3 broadcast -> V1 subscriber gets JSON, V2 subscriber gets binary kind 4', T, async (t) => {
    const sc = scope(t);
    const sub = uniqueTopic('bin');
    const topic = `realtime:${sub}`;
    const v1 = await rawConnect(sc, server, { vsn: '1.0.0' });
    const v2 = await rawConnect(sc, server, { vsn: '2.0.0' });
    await v1.join(topic, joinPayload());
    await v2.join(topic, joinPayload());
    const client = realtimeClient(sc, server, { vsn: '2.0.0' });
    const ch = client.channel(sub);
    await subscribe(ch);
    const payload = { x: 1, y: [true, null], s: 'cursor' };
    assert.equal(await ch.send({ type: 'broadcast', event: 'cursor', payload }), 'ok');

    const j = await v1.next((f) => f.event === 'broadcast', 5000, 'V1 JSON broadcast');
    assert.equal(j.binary, false);
    assert.deepEqual(j.raw, { topic, event: 'broadcast', payload: { type: 'broadcast', event: 'cursor', payload }, ref: null });

    const b = await v2.next((f) => f.binary, 5000, 'V2 binary broadcast');
    const body = Buffer.from(JSON.stringify(payload));
    const expected = Buffer.concat([Buffer.from([4, Buffer.byteLength(topic), 6, 0, 1]), Buffer.from(topic), Buffer.from('cursor'), body]);
    assert.equal(b.kind, 4);
    assert.equal(b.topic, topic);
    assert.equal(b.event, 'cursor');
    assert.equal(b.metaLen, 0);
    assert.equal(b.encoding, 1);
    assert.deepEqual(JSON.parse(b.payloadBytes.toString('utf8')), payload);
    assert.equal(b.bytes.toString('hex'), expected.toString('hex'), 'byte-exact kind-4 frame');
    assert.equal(v2.frames.filter((f) => !f.binary && f.event === 'broadcast').length, 0, 'no text copy for V2');
  });

  it('raw kind-3 push with ack+self: text ack reply and binary self delivery', T, async (t) => {
    const sc = scope(t);
    const c = await rawConnect(sc, server, { vsn: '2.0.0' });
    const topic = `realtime:${uniqueTopic('bin')}`;
    const { joinRef } = await c.join(topic, joinPayload({ broadcast: { self: true, ack: true } }));
    const ref = c.makeRef();
    c.sendRaw(encodeUserBroadcastPush({ joinRef, ref, topic, event: 'bin-ack', payload: '{"k":"v"}' }));
    const reply = await c.reply(ref);
    assert.deepEqual(reply.raw, [joinRef, ref, topic, 'phx_reply', { status: 'ok', response: {} }]);
    const self = await c.next((f) => f.binary, 5000, 'binary self delivery');
    assert.deepEqual([self.kind, self.topic, self.event, self.metaLen, self.encoding, self.payloadBytes.toString()],
      [4, topic, 'bin-ack', 0, 1, '{"k":"v"}']);
  });

  it('kind-3 opaque binary payload (encoding 0): V2 gets the same bytes, V1 gets nothing', T, async (t) => {
    const sc = scope(t);
    const topic = `realtime:${uniqueTopic('bin')}`;
    const sender = await rawConnect(sc, server, { vsn: '2.0.0' });
    const v1 = await rawConnect(sc, server, { vsn: '1.0.0' });
    const v2 = await rawConnect(sc, server, { vsn: '2.0.0' });
    const { joinRef } = await sender.join(topic, joinPayload());
    await v1.join(topic, joinPayload());
    await v2.join(topic, joinPayload());
    const bytes = Buffer.from([0, 1, 2, 0x7f, 0x80, 0xfe, 0xff]);
    sender.sendRaw(encodeUserBroadcastPush({ joinRef, ref: sender.makeRef(), topic, event: 'blob', encoding: 0, payload: bytes }));
    const b = await v2.next((f) => f.binary, 5000, 'binary delivery');
    assert.deepEqual([b.kind, b.topic, b.event, b.metaLen, b.encoding], [4, topic, 'blob', 0, 0]);
    assert.equal(b.payloadBytes.toString('hex'), bytes.toString('hex'));
    // sentinel JSON broadcast: V1 must see it and nothing before it
    sender.sendRaw(encodeUserBroadcastPush({ joinRef, ref: sender.makeRef(), topic, event: 'sentinel', payload: '{}' }));
    const s = await v1.next((f) => f.event === 'broadcast', 5000, 'sentinel at V1');
    assert.equal(s.payload.event, 'sentinel');
    assert.equal(v1.frames.filter((f) => f.binary || (f.event === 'broadcast' && f.payload.event === 'blob')).length, 0);
  });

  it('V1 JSON broadcast -> V2 raw subscriber gets a text array, realtime-js V2 gets the message', T, async (t) => {
    const sc = scope(t);
    const sub = uniqueTopic('bin');
    const topic = `realtime:${sub}`;
    const v1 = await rawConnect(sc, server, { vsn: '1.0.0' });
    const v2 = await rawConnect(sc, server, { vsn: '2.0.0' });
    const { joinRef } = await v1.join(topic, joinPayload());
    await v2.join(topic, joinPayload());
    const client = realtimeClient(sc, server, { vsn: '2.0.0' });
    const ch = client.channel(sub);
    const rec = new Recorder('realtime-js broadcasts');
    ch.on('broadcast', { event: 'from-v1' }, rec.handler);
    await subscribe(ch);
    const payload = { type: 'broadcast', event: 'from-v1', payload: { hello: 'world' } };
    v1.send({ join_ref: joinRef, topic, event: 'broadcast', payload });
    const f = await v2.next((x) => x.event === 'broadcast', 5000, 'V2 text broadcast');
    assert.equal(f.binary, false);
    assert.deepEqual(f.raw, [null, null, topic, 'broadcast', payload]);
    assert.deepEqual(await rec.waitFor(() => true, 5000, 'realtime-js delivery'), payload);
  });
});

describe('HTTP endpoints and handshake variants', () => {
  it('GET /healthz -> 200, GET /metrics -> 200 Prometheus text', T, async () => {
    const h = await fetch(`${server.httpUrl}/healthz`);
    assert.equal(h.status, 200);
    await h.text();
    const m = await fetch(`${server.httpUrl}/metrics`);
    assert.equal(m.status, 200);
    assert.match(m.headers.get('content-type') || '', /^text\/plain/);
    const body = await m.text();
    assert.ok(body.length > 0);
    for (const line of body.split('\n')) {
      if (line === '' || line.startsWith('#')) continue;
      assert.match(line, /^[a-zA-Z_:][a-zA-Z0-9_:]*(\{.*\})? -?[0-9.eE+-]+|NaN|[+-]Inf/, `metrics line: ${line}`);
    }
  });

  for (const vsn of VSNS) {
    it(`/socket/websocket works with vsn ${vsn}`, T, async (t) => {
      const c = await rawConnect(scope(t), server, { vsn, path: '/socket/websocket' });
      const f = await c.heartbeat();
      assertFrame(vsn, f, { ref: f.ref, topic: 'phoenix', event: 'phx_reply', payload: { status: 'ok', response: {} } });
      const topic = `realtime:${uniqueTopic()}`;
      const { reply } = await c.join(topic, joinPayload());
      assert.equal(reply.payload.status, 'ok');
    });
  }

  it('missing vsn means 1.0.0', T, async (t) => {
    const c = await rawConnect(scope(t), server, { omitVsn: true });
    c.vsn = '1.0.0';
    const f = await c.heartbeat();
    assertFrame('1.0.0', f, { ref: f.ref, topic: 'phoenix', event: 'phx_reply', payload: { status: 'ok', response: {} } });
  });

  it('unsupported vsn -> HTTP 403', T, async () => {
    const res = await tryUpgrade(server, { query: { apikey: server.token(), vsn: '3.0.0' } });
    assert.equal(res.status, 403);
  });
});
