// Heartbeats vs. the server idle timeout (--idle-timeout-ms 2000).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import {
  VSNS, Recorder, scope, realtimeClient, subscribe, uniqueTopic, sleep, withTimeout,
} from './lib/util.mjs';
import { rawConnect } from './lib/raw.mjs';

const IDLE_MS = 2000;
let server;
before(async () => { server = await startServer({ idleTimeoutMs: IDLE_MS }); });
after(async () => { if (server) await server.stop(); });

for (const vsn of VSNS) {
  describe(`heartbeat, vsn ${vsn}`, () => {
    it('realtime-js with heartbeatIntervalMs 500 stays connected for 6 s and still receives broadcasts',
      { timeout: 30_000 }, async (t) => {
        const sc = scope(t);
        const topic = uniqueTopic('hb');
        const beats = new Recorder('heartbeat statuses');
        const client = realtimeClient(sc, server, { vsn, heartbeatIntervalMs: 500, heartbeatCallback: beats.handler });
        const ch = client.channel(topic);
        const rec = new Recorder('broadcasts');
        ch.on('broadcast', { event: '*' }, rec.handler);
        await subscribe(ch);
        const conn = client.socketAdapter.getSocket().conn;
        const closes = [];
        conn.addEventListener('close', (ev) => closes.push({ code: ev.code, reason: ev.reason }));

        await sleep(6000); // timing is the point: 3x the server idle timeout

        assert.deepEqual(closes, [], 'the WebSocket was closed during the idle period');
        assert.equal(client.socketAdapter.getSocket().conn, conn, 'no reconnect happened');
        assert.equal(client.isConnected(), true);
        const ok = beats.filter((s) => s === 'ok').length;
        assert.ok(ok >= 6, `expected >= 6 acknowledged heartbeats in 6 s, got ${ok} (${beats.events.join(',')})`);
        assert.equal(beats.filter((s) => s === 'timeout' || s === 'error').length, 0, `statuses: ${beats.events.join(',')}`);
        assert.deepEqual(ch._statuses.events.map((e) => e.status), ['SUBSCRIBED'], 'channel never errored');

        const sender = realtimeClient(sc, server, { vsn });
        const sch = sender.channel(topic);
        await subscribe(sch);
        await sch.send({ type: 'broadcast', event: 'after-idle', payload: { ok: true } });
        const got = await rec.waitFor((m) => m.event === 'after-idle', 5000, 'broadcast after 6 s');
        assert.deepEqual(got.payload, { ok: true });
      });

    it('realtime-js without heartbeats is closed by the server, reconnects and rejoins by itself',
      { timeout: 30_000 }, async (t) => {
        const sc = scope(t);
        const topic = uniqueTopic('hb');
        const client = realtimeClient(sc, server, { vsn, heartbeatIntervalMs: 60_000 });
        const ch = client.channel(topic);
        const rec = new Recorder('broadcasts');
        ch.on('broadcast', { event: '*' }, rec.handler);
        await subscribe(ch);
        // the sender heartbeats, so it stays connected throughout
        const sender = realtimeClient(sc, server, { vsn, heartbeatIntervalMs: 500 });
        const sch = sender.channel(topic);
        await subscribe(sch);
        const firstConn = client.socketAdapter.getSocket().conn;
        const err = await ch._statuses.waitFor((e) => e.status === 'CHANNEL_ERROR', IDLE_MS + 5000, 'error after idle close');
        t.diagnostic(`channel error after idle close: ${err.err && err.err.message}`);
        await ch._statuses.waitFor((e) => e.status === 'SUBSCRIBED' && ch._statuses.events.indexOf(e) > 0, 8000, 'SUBSCRIBED again');
        assert.notEqual(client.socketAdapter.getSocket().conn, firstConn, 'a new WebSocket was opened');
        await sch.send({ type: 'broadcast', event: 'after-rejoin', payload: {} });
        await rec.waitFor((m) => m.event === 'after-rejoin', 5000, 'broadcast after rejoin');
      });

    it('a raw WebSocket that never sends a frame is closed by the server after the idle timeout',
      { timeout: 20_000 }, async (t) => {
        const sc = scope(t);
        const raw = await rawConnect(sc, server, { vsn });
        const closed = await withTimeout(raw.closed, IDLE_MS + 6000, 'server-side idle close');
        const after = closed.at - raw.openedAt;
        t.diagnostic(`idle close after ${after} ms with code ${closed.code} reason "${closed.reason}"`);
        assert.ok(after >= IDLE_MS - 300, `closed too early: ${after} ms (idle timeout ${IDLE_MS} ms)`);
        assert.ok(after <= IDLE_MS + 4000, `closed too late: ${after} ms`);
      });

    it('a joined raw WebSocket without heartbeats is also closed; one that heartbeats is not',
      { timeout: 20_000 }, async (t) => {
        const sc = scope(t);
        const topic = `realtime:${uniqueTopic('hb')}`;
        const silent = await rawConnect(sc, server, { vsn });
        const chatty = await rawConnect(sc, server, { vsn });
        const j1 = await silent.join(topic);
        const j2 = await chatty.join(topic);
        assert.equal(j1.reply.payload.status, 'ok');
        assert.equal(j2.reply.payload.status, 'ok');
        let silentClosed = null;
        silent.closed.then((c) => { silentClosed = c; });
        const start = Date.now();
        while (Date.now() - start < IDLE_MS * 2.5) {
          const r = await chatty.heartbeat(2000);
          assert.equal(r.payload.status, 'ok');
          await sleep(400);
        }
        assert.ok(silentClosed, 'the silent socket should have been closed by now');
        assert.equal(chatty.isOpen(), true, 'the heartbeating socket must stay open');
      });
  });
}
