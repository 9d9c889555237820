// The plain `phoenix` npm client (Socket/Channel/Presence) on /socket.
// vsn 2.0.0 uses phoenix's default serializer (JSON arrays); vsn 1.0.0 uses
// plain JSON objects through the encode/decode options.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { Socket, Presence } from 'phoenix';
import { startServer } from './lib/server.mjs';
import { VSNS, Recorder, scope, uniqueTopic, WebSocket, withTimeout } from './lib/util.mjs';

let server;
before(async () => { server = await startServer({ idleTimeoutMs: 3000 }); });
after(async () => { if (server) await server.stop(); });

function phxSocket(sc, vsn, { heartbeatIntervalMs = 30_000, apikey } = {}) {
  const opts = {
    transport: WebSocket,
    params: { apikey: apikey || server.token({ role: 'anon' }) },
    vsn,
    heartbeatIntervalMs,
    reconnectAfterMs: () => 1000,
    rejoinAfterMs: () => 1000,
  };
  if (vsn === '1.0.0') {
    opts.encode = (msg, cb) => cb(JSON.stringify(msg));
    opts.decode = (raw, cb) => cb(JSON.parse(raw));
  }
  const socket = new Socket(server.socketUrl, opts);
  const messages = new Recorder('socket messages');
  socket.onMessage(messages.handler);
  socket.connect();
  sc.defer(() => new Promise((resolve) => {
    for (const ch of [...socket.channels]) { try { ch.leave(500); } catch { /* ignore */ } }
    socket.disconnect(() => resolve());
  }));
  socket._messages = messages;
  return socket;
}

function join(channel, ms = 10_000) {
  return new Promise((resolve, reject) => {
    channel.join(ms)
      .receive('ok', (resp) => resolve(resp))
      .receive('error', (resp) => reject(new Error(`join error: ${JSON.stringify(resp)}`)))
      .receive('timeout', () => reject(new Error('join timeout')));
  });
}

function push(channel, event, payload, ms = 5000) {
  return new Promise((resolve, reject) => {
    channel.push(event, payload, ms)
      .receive('ok', (resp) => resolve({ status: 'ok', resp }))
      .receive('error', (resp) => resolve({ status: 'error', resp }))
      .receive('timeout', () => reject(new Error(`push ${event} timed out`)));
  });
}

const config = (over = {}) => ({
  config: {
    broadcast: { self: false, ack: false, ...(over.broadcast || {}) },
    presence: { key: '', enabled: false, ...(over.presence || {}) },
    postgres_changes: [],
    private: false,
  },
});

for (const vsn of VSNS) {
  describe(`phoenix client, vsn ${vsn}`, () => {
    it('join, push broadcast (ack + self), receive on another socket', { timeout: 30_000 }, async (t) => {
      const sc = scope(t);
      const topic = `realtime:${uniqueTopic('phx')}`;
      const s1 = phxSocket(sc, vsn);
      const s2 = phxSocket(sc, vsn);
      const c1 = s1.channel(topic, config({ broadcast: { self: true, ack: true } }));
      const c2 = s2.channel(topic, config());
      const r1 = new Recorder('c1 broadcasts');
      const r2 = new Recorder('c2 broadcasts');
      c1.on('broadcast', r1.handler);
      c2.on('broadcast', r2.handler);
      const resp1 = await join(c1);
      await join(c2);
      assert.deepEqual(resp1, { postgres_changes: [] });
      assert.equal(s1.endPointURL().startsWith(`${server.wsUrl}/socket/websocket?`), true);

      const msg = { type: 'broadcast', event: 'hello', payload: { n: 42, s: 'str' } };
      const res = await push(c1, 'broadcast', msg);
      assert.equal(res.status, 'ok');
      assert.deepEqual(res.resp, {});
      assert.deepEqual(await r2.waitFor(() => true, 5000, 'delivery to c2'), msg);
      assert.deepEqual(await r1.waitFor(() => true, 5000, 'self delivery to c1'), msg);

      // without ack: no reply is expected, delivery still happens
      c2.push('broadcast', { type: 'broadcast', event: 'back', payload: { ok: true } });
      const back = await r1.waitFor((m) => m.event === 'back', 5000, 'c2 -> c1');
      assert.deepEqual(back.payload, { ok: true });
      assert.equal(r2.filter((m) => m.event === 'back').length, 0, 'c2 has self:false');
    });

    it('presence through phoenix Presence: state, join, leave', { timeout: 30_000 }, async (t) => {
      const sc = scope(t);
      const topic = `realtime:${uniqueTopic('phx')}`;
      const s1 = phxSocket(sc, vsn);
      const s2 = phxSocket(sc, vsn);
      const c1 = s1.channel(topic, config({ presence: { key: 'p1', enabled: true } }));
      const c2 = s2.channel(topic, config({ presence: { key: 'p2', enabled: true } }));
      const p1 = new Presence(c1);
      const p2 = new Presence(c2);
      const sync1 = new Recorder('p1 syncs');
      const sync2 = new Recorder('p2 syncs');
      const leaves1 = new Recorder('p1 leaves');
      p1.onSync(() => sync1.push(p1.list((key, { metas }) => ({ key, metas }))));
      p2.onSync(() => sync2.push(p2.list((key, { metas }) => ({ key, metas }))));
      p1.onLeave((key, current, left) => leaves1.push({ key, current, left }));
      await join(c1);
      const first = await sync1.waitFor(() => true, 5000, 'initial presence_state');
      assert.deepEqual(first, []);
      assert.equal((await push(c1, 'presence', { type: 'presence', event: 'track', payload: { name: 'one' } })).status, 'ok');
      await sync1.waitFor((l) => l.some((e) => e.key === 'p1'), 5000, 'p1 sees itself');

      await join(c2);
      const initial2 = await sync2.waitFor(() => true, 5000, 'p2 initial state');
      assert.deepEqual(initial2.map((e) => e.key), ['p1']);
      assert.equal(initial2[0].metas.length, 1);
      assert.equal(initial2[0].metas[0].name, 'one');
      assert.equal(typeof initial2[0].metas[0].phx_ref, 'string');

      assert.equal((await push(c2, 'presence', { type: 'presence', event: 'track', payload: { name: 'two' } })).status, 'ok');
      const l1 = await sync1.waitFor((l) => l.length === 2, 5000, 'p1 sees two');
      assert.deepEqual(l1.map((e) => e.key).sort(), ['p1', 'p2']);
      assert.equal(l1.find((e) => e.key === 'p2').metas[0].name, 'two');

      // leaving the channel removes the presence
      await new Promise((resolve) => c2.leave().receive('ok', resolve));
      const lv = await leaves1.waitFor((e) => e.key === 'p2', 5000, 'p2 leave');
      assert.equal(lv.left.metas[0].name, 'two');
      assert.deepEqual(p1.list((key) => key), ['p1']);
    });

    it('heartbeats are answered and keep the socket alive past the idle timeout', { timeout: 20_000 }, async (t) => {
      const sc = scope(t);
      const s = phxSocket(sc, vsn, { heartbeatIntervalMs: 400 });
      const closes = new Recorder('socket closes');
      s.onClose(closes.handler);
      const c = s.channel(`realtime:${uniqueTopic('phx')}`, config());
      await join(c);
      const replies = (m) => m.topic === 'phoenix' && m.event === 'phx_reply';
      // 8 answered heartbeats take >= 3.2 s, longer than the server's 3 s idle timeout
      await s._messages.waitFor(() => s._messages.filter(replies).length >= 8, 10_000, '8 heartbeat replies');
      for (const m of s._messages.filter(replies)) {
        assert.deepEqual(m.payload, { status: 'ok', response: {} });
        assert.equal(typeof m.ref, 'string');
        assert.ok(m.join_ref === null || m.join_ref === undefined, `heartbeat reply join_ref ${m.join_ref}`);
      }
      assert.equal(closes.events.length, 0, 'socket closed');
      assert.equal(s.isConnected(), true);
      assert.equal(c.state, 'joined');
    });

    it('a socket without heartbeats is closed after the idle timeout and the channel errors', { timeout: 20_000 }, async (t) => {
      const sc = scope(t);
      const s = phxSocket(sc, vsn, { heartbeatIntervalMs: 60_000 });
      const closes = new Recorder('socket closes');
      s.onClose(closes.handler);
      const c = s.channel(`realtime:${uniqueTopic('phx')}`, config());
      const errors = new Recorder('channel errors');
      c.onError(errors.handler);
      await join(c);
      const ev = await closes.waitFor(() => true, 8000, 'idle close');
      t.diagnostic(`idle close code ${ev.code} reason "${ev.reason}"`);
      await errors.waitFor(() => true, 2000, 'channel error after close');
    });
  });
}
