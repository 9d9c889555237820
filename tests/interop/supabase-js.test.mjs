// @supabase/supabase-js createClient(url, anonKey).channel(...) against rtsync.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer } from './lib/server.mjs';
import { VSNS, Recorder, scope, uniqueTopic, supabaseClient, withTimeout } from './lib/util.mjs';


let server;
before(async () => { server = await startServer(); });
after(async () => { if (server) await server.stop(); });

function supabase(sc, vsn, key = server.token({ role: 'anon' })) {
  return supabaseClient(sc, server, { vsn, key });
}

function subscribed(ch) {
  return new Promise((resolve, reject) => {
    ch.subscribe((status, err) => {
      if (status === 'SUBSCRIBED') resolve(ch);
      else reject(new Error(`${status}${err ? `: ${err.message}` : ''}`));
    });
  });
}

for (const vsn of VSNS) {
  describe(`supabase-js, vsn ${vsn}`, () => {
    it('createClient(url, anonKey).channel(): broadcast and presence round trip', { timeout: 30_000 }, async (t) => {
      const sc = scope(t);
      const topic = uniqueTopic('sbjs');
      const a = supabase(sc, vsn);
      const b = supabase(sc, vsn);
      assert.equal(a.realtime.endpointURL().startsWith(`${server.wsUrl}/realtime/v1/websocket?`), true, a.realtime.endpointURL());

      const recA = new Recorder('A broadcasts');
      const recB = new Recorder('B broadcasts');
      const syncA = new Recorder('A sync');
      const syncB = new Recorder('B sync');
      const leavesA = new Recorder('A leaves');
      const chA = a.channel(topic, { config: { presence: { key: 'user-a' }, broadcast: { ack: true } } })
        .on('broadcast', { event: 'ping' }, recA.handler)
        .on('presence', { event: 'sync' }, () => syncA.push(chA.presenceState()))
        .on('presence', { event: 'leave' }, leavesA.handler);
      const chB = b.channel(topic, { config: { presence: { key: 'user-b' } } })
        .on('broadcast', { event: 'ping' }, recB.handler)
        .on('broadcast', { event: 'pong' }, recB.handler)
        .on('presence', { event: 'sync' }, () => syncB.push(chB.presenceState()));
      await withTimeout(Promise.all([subscribed(chA), subscribed(chB)]), 12_000, 'both SUBSCRIBED');

      // broadcast both ways
      assert.equal(await chA.send({ type: 'broadcast', event: 'ping', payload: { from: 'a' } }), 'ok', 'acked send');
      assert.deepEqual(await recB.waitFor((m) => m.event === 'ping', 5000, 'ping at B'),
        { type: 'broadcast', event: 'ping', payload: { from: 'a' } });
      await chB.send({ type: 'broadcast', event: 'ping', payload: { from: 'b' } });
      assert.deepEqual((await recA.waitFor((m) => m.event === 'ping', 5000, 'ping at A')).payload, { from: 'b' });

      // presence both ways
      assert.equal(await chA.track({ name: 'Alice' }), 'ok');
      assert.equal(await chB.track({ name: 'Bob' }), 'ok');
      const both = (s) => s['user-a'] && s['user-b'];
      await syncA.waitFor(() => both(chA.presenceState()), 5000, 'A sees both');
      await syncB.waitFor(() => both(chB.presenceState()), 5000, 'B sees both');
      for (const s of [chA.presenceState(), chB.presenceState()]) {
        assert.deepEqual(Object.keys(s).sort(), ['user-a', 'user-b']);
        assert.equal(s['user-a'][0].name, 'Alice');
        assert.equal(s['user-b'][0].name, 'Bob');
        assert.equal(typeof s['user-a'][0].presence_ref, 'string');
      }

      // B leaves via removeChannel -> A sees leave
      assert.equal(await b.removeChannel(chB), 'ok');
      await leavesA.waitFor((e) => e.key === 'user-b', 5000, 'leave of user-b');
      assert.deepEqual(Object.keys(chA.presenceState()), ['user-a']);
    });

    it('channel.send() before subscribing goes through /realtime/v1/api/broadcast', { timeout: 20_000 }, async (t) => {
      const sc = scope(t);
      const topic = uniqueTopic('sbjs');
      const listener = supabase(sc, vsn);
      const rec = new Recorder('broadcasts');
      const ch = listener.channel(topic).on('broadcast', { event: '*' }, rec.handler);
      await subscribed(ch);
      const sender = supabase(sc, vsn);
      const res = await sender.channel(topic).send({ type: 'broadcast', event: 'via-rest', payload: { ok: 1 } });
      assert.equal(res, 'ok');
      const got = await rec.waitFor((m) => m.event === 'via-rest', 5000, 'REST broadcast');
      assert.deepEqual(got.payload, { ok: 1 });
    });
  });
}
