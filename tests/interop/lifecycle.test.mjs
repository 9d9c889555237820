// Server lifecycle as seen by clients: SIGTERM closes every WebSocket with
// 1001 and exits 0; fan-out across several worker threads.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import {
  Recorder, scope, realtimeClient, subscribe, uniqueTopic, withTimeout,
} from './lib/util.mjs';
import { rawConnect } from './lib/raw.mjs';

describe('server lifecycle', () => {
  it('SIGTERM closes every WebSocket with 1001 and the server exits 0', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const server = await startServer();
    sc.defer(() => server.kill());
    const topic = `realtime:${uniqueTopic()}`;
    const raws = [];
    for (const vsn of ['1.0.0', '2.0.0', '2.0.0']) {
      const c = await rawConnect(sc, server, { vsn });
      await c.join(topic);
      raws.push(c);
    }
    const idle = await rawConnect(sc, server, { vsn: '2.0.0' }); // connected, no channel
    raws.push(idle);
    const client = realtimeClient(sc, server, { vsn: '2.0.0' });
    const ch = client.channel(uniqueTopic());
    await subscribe(ch);
    const conn = client.socketAdapter.getSocket().conn;
    const clientClose = new Promise((r) => conn.addEventListener('close', (ev) => r(ev.code)));

    await withTimeout(server.stop(), 20_000, 'server stop'); // throws unless exit code 0
    for (const c of raws) {
      const closed = await withTimeout(c.closed, 5000, 'close of a raw socket');
      assert.equal(closed.code, 1001, `close code ${closed.code} reason "${closed.reason}"`);
    }
    assert.equal(await withTimeout(clientClose, 5000, 'realtime-js close'), 1001);
    await client.disconnect();
  });

  it('SIGTERM with no clients exits 0 promptly', { timeout: 20_000 }, async () => {
    const server = await startServer();
    const t0 = Date.now();
    await server.stop();
    assert.ok(Date.now() - t0 < 10_000);
  });

  it('--workers 4: broadcast and presence reach clients on every worker', { timeout: 45_000 }, async (t) => {
    const sc = scope(t);
    const server = await startServer({ workers: 4 });
    sc.defer(() => server.kill());
    const topic = uniqueTopic('workers');
    const members = [];
    for (let i = 0; i < 8; i++) {
      const vsn = i % 2 ? '1.0.0' : '2.0.0';
      const client = realtimeClient(sc, server, { vsn });
      const ch = client.channel(topic, { config: { presence: { key: `m${i}` } } });
      const rec = new Recorder(`member ${i}`);
      const syncs = new Recorder(`member ${i} syncs`);
      ch.on('broadcast', { event: '*' }, rec.handler);
      ch.on('presence', { event: 'sync' }, () => syncs.push(ch.presenceState()));
      members.push({ client, ch, rec, syncs, i });
    }
    await Promise.all(members.map((m) => subscribe(m.ch)));
    for (const m of members) assert.equal(await m.ch.track({ i: m.i }), 'ok');
    for (const m of members) {
      await m.syncs.waitFor(() => Object.keys(m.ch.presenceState()).length === 8, 10_000, `member ${m.i} sees 8`);
    }
    for (const m of members) {
      await m.ch.send({ type: 'broadcast', event: 'hi', payload: { from: m.i } });
    }
    for (const m of members) {
      await m.rec.waitFor(() => m.rec.events.length >= 7, 10_000, `member ${m.i} gets 7 broadcasts`);
      const froms = m.rec.events.map((e) => e.payload.from).sort((a, b) => a - b);
      assert.deepEqual(froms, [0, 1, 2, 3, 4, 5, 6, 7].filter((x) => x !== m.i));
    }
    for (const m of members) await m.client.disconnect();
    await server.stop();
  });
});
