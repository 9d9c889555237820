// Authentication and authorization as seen by realtime-js (and raw HTTP for
// the connect-time error responses).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startServer, nowSec } from './lib/server.mjs';
import {
  VSNS, Recorder, scope, realtimeClient, subscribe, subscribeRecording, uniqueTopic, sleep,
} from './lib/util.mjs';
import { tryUpgrade } from './lib/raw.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { if (server) await server.stop(); });

const EXPIRED_RE = /^InvalidJWTToken: Token has expired \d+ seconds ago$/;

describe('connect-time apikey validation (raw HTTP upgrade)', () => {
  const cases = [
    ['expired token', () => server.token({ expIn: -120 }), 'Token has expired'],
    ['bad signature', () => server.token({ secret: 'some-other-secret' }), 'Failed to validate JWT signature'],
    ['not a JWT', () => 'not-a-jwt', 'The token provided is not a valid JWT'],
    ['missing role', () => server.token({ role: null }), 'Fields `role` and `exp` are required in JWT'],
    ['missing exp', () => server.token({ exp: null }), 'Fields `role` and `exp` are required in JWT'],
    ['missing apikey', () => null, 'API key is missing'],
  ];
  for (const path of ['/realtime/v1/websocket', '/socket/websocket']) {
    for (const [what, tok, message] of cases) {
      it(`${path}: ${what} -> HTTP 401 {"error":"${message}"}`, { timeout: 15_000 }, async () => {
        const token = tok();
        const query = { vsn: '2.0.0' };
        if (token !== null) query.apikey = token;
        const res = await tryUpgrade(server, { path, query });
        assert.equal(res.status, 401, `status (body ${res.body})`);
        assert.match(res.headers['content-type'] || '', /^application\/json/);
        assert.deepEqual(JSON.parse(res.body), { error: message });
      });
    }
  }

  it('a valid apikey upgrades on both paths', { timeout: 10_000 }, async () => {
    for (const path of ['/realtime/v1/websocket', '/socket/websocket']) {
      const res = await tryUpgrade(server, { path, query: { apikey: server.token(), vsn: '1.0.0' } });
      assert.equal(res.status, 101, `${path}: ${res.body}`);
    }
  });
});

for (const vsn of VSNS) {
  describe(`realtime-js auth, vsn ${vsn}`, () => {
    for (const [what, mk] of [
      ['invalid (bad signature)', () => server.token({ secret: 'wrong-secret' })],
      ['expired', () => server.token({ expIn: -60 })],
    ]) {
      it(`${what} apikey: never SUBSCRIBED, channel reports CHANNEL_ERROR from the transport`,
        { timeout: 20_000 }, async (t) => {
          const sc = scope(t);
          const client = realtimeClient(sc, server, { vsn, apikey: mk() });
          const socketErrors = new Recorder('socket errors');
          client.socketAdapter.onError(socketErrors.handler);
          const ch = client.channel(uniqueTopic());
          const statuses = subscribeRecording(ch);
          const first = await statuses.waitFor(() => true, 10_000, 'first status');
          assert.equal(first.status, 'CHANNEL_ERROR', `first status was ${first.status}`);
          assert.ok(first.err instanceof Error);
          // realtime-js wraps the transport's error event (no close code yet)
          assert.equal(first.err.message, 'channel error: transport failure');
          await socketErrors.waitFor(() => true, 5000, 'socket onError');
          // The client keeps retrying (reconnectAfterMs = 1 s here); none may succeed.
          await sleep(3000);
          assert.equal(statuses.filter((e) => e.status === 'SUBSCRIBED').length, 0);
          assert.equal(client.isConnected(), false);
          assert.notEqual(ch.state, 'joined');
        });
    }

    it('join with an expired access_token -> CHANNEL_ERROR with the server reason', { timeout: 25_000 }, async (t) => {
      const sc = scope(t);
      const client = realtimeClient(sc, server, { vsn });
      await client.setAuth(server.token({ role: 'authenticated', expIn: -30 }));
      const ch = client.channel(uniqueTopic());
      const statuses = subscribeRecording(ch);
      const first = await statuses.waitFor(() => true, 12_000, 'join result');
      assert.equal(first.status, 'CHANNEL_ERROR');
      assert.match(first.err.message, EXPIRED_RE);
      const n = Number(/expired (\d+) seconds/.exec(first.err.message)[1]);
      assert.ok(n >= 29 && n <= 60, `seconds ago = ${n}`);
      assert.equal(client.isConnected(), true, 'a join error does not close the socket');
    });

    it('join with a badly signed access_token -> CHANNEL_ERROR JwtSignatureError', { timeout: 25_000 }, async (t) => {
      const sc = scope(t);
      const client = realtimeClient(sc, server, { vsn });
      await client.setAuth(server.token({ role: 'authenticated', secret: 'wrong-secret' }));
      const ch = client.channel(uniqueTopic());
      const statuses = subscribeRecording(ch);
      const first = await statuses.waitFor(() => true, 12_000, 'join result');
      assert.equal(first.status, 'CHANNEL_ERROR');
      assert.equal(first.err.message, 'JwtSignatureError: Failed to validate JWT signature');
    });

    it('join with an access_token missing role -> CHANNEL_ERROR InvalidJWTToken: Fields ...', { timeout: 25_000 }, async (t) => {
      const sc = scope(t);
      const client = realtimeClient(sc, server, { vsn });
      await client.setAuth(server.token({ role: null }));
      const ch = client.channel(uniqueTopic());
      const statuses = subscribeRecording(ch);
      const first = await statuses.waitFor(() => true, 12_000, 'join result');
      assert.equal(first.status, 'CHANNEL_ERROR');
      assert.equal(first.err.message, 'InvalidJWTToken: Fields `role` and `exp` are required in JWT');
    });

    it('refreshing a private channel with an anon token closes it (no read permission)', { timeout: 25_000 }, async (t) => {
      const sc = scope(t);
      const sub = uniqueTopic('private');
      const client = realtimeClient(sc, server, { vsn });
      await client.setAuth(server.token({ role: 'authenticated' }));
      const ch = client.channel(sub, { config: { private: true } });
      const sys = new Recorder('system messages');
      ch.on('system', {}, sys.handler);
      await subscribe(ch);
      await client.setAuth(server.token({ role: 'anon' }));
      const msg = await sys.waitFor(() => true, 8000, 'system message');
      assert.deepEqual(msg, {
        extension: 'system', status: 'error', channel: sub,
        message: `You do not have permissions to read from this Channel topic: ${sub}`,
      });
      await ch._statuses.waitFor((e) => e.status === 'CLOSED', 5000, 'CLOSED');
    });

    it('refreshing a public channel with an anon token keeps it open', { timeout: 25_000 }, async (t) => {
      const sc = scope(t);
      const topic = uniqueTopic();
      const client = realtimeClient(sc, server, { vsn });
      await client.setAuth(server.token({ role: 'authenticated' }));
      const ch = client.channel(topic);
      const sys = new Recorder('system messages');
      const rec = new Recorder('broadcasts');
      ch.on('system', {}, sys.handler);
      ch.on('broadcast', { event: '*' }, rec.handler);
      await subscribe(ch);
      await client.setAuth(server.token({ role: 'anon' }));
      const sender = realtimeClient(sc, server, { vsn });
      const sch = sender.channel(topic);
      await subscribe(sch);
      await sch.send({ type: 'broadcast', event: 'after', payload: {} });
      await rec.waitFor((m) => m.event === 'after', 5000, 'delivery after refresh');
      assert.deepEqual(sys.events, []);
      assert.deepEqual(ch._statuses.events.map((e) => e.status), ['SUBSCRIBED']);
    });

    it('refreshing with a token missing role closes the channel', { timeout: 25_000 }, async (t) => {
      const sc = scope(t);
      const topic = uniqueTopic();
      const client = realtimeClient(sc, server, { vsn });
      await client.setAuth(server.token({ role: 'authenticated' }));
      const ch = client.channel(topic);
      const sys = new Recorder('system messages');
      ch.on('system', {}, sys.handler);
      await subscribe(ch);
      await client.setAuth(server.token({ role: null }));
      const msg = await sys.waitFor(() => true, 8000, 'system message');
      assert.deepEqual(msg, {
        extension: 'system', status: 'error', channel: topic,
        message: 'Fields `role` and `exp` are required in JWT',
      });
      await ch._statuses.waitFor((e) => e.status === 'CLOSED', 5000, 'CLOSED');
    });

    it('private channel: anon rejected, authenticated and service_role accepted', { timeout: 30_000 }, async (t) => {
      const sc = scope(t);
      const sub = uniqueTopic('private');

      const anon = realtimeClient(sc, server, { vsn }); // socket token role anon, no access_token
      const chA = anon.channel(sub, { config: { private: true } });
      const stA = subscribeRecording(chA);

      const authed = realtimeClient(sc, server, { vsn });
      await authed.setAuth(server.token({ role: 'authenticated', claims: { sub: 'user-1' } }));
      const chB = authed.channel(sub, { config: { private: true } });

      const service = realtimeClient(sc, server, { vsn, apikey: server.token({ role: 'service_role' }) });
      const chC = service.channel(sub, { config: { private: true } });

      await Promise.all([subscribe(chB), subscribe(chC)]);
      const first = await stA.waitFor(() => true, 12_000, 'anon join result');
      assert.equal(first.status, 'CHANNEL_ERROR');
      assert.equal(first.err.message, `Unauthorized: You do not have permissions to read from this Channel topic: ${sub}`);
    });

    it('private broadcast reaches private members only (not the public channel of the same name)',
      { timeout: 30_000 }, async (t) => {
        const sc = scope(t);
        const sub = uniqueTopic('private');
        const mk = async (isPrivate) => {
          const c = realtimeClient(sc, server, { vsn, apikey: server.token({ role: 'authenticated' }) });
          const ch = c.channel(sub, { config: { private: isPrivate } });
          const rec = new Recorder(`${isPrivate ? 'private' : 'public'} broadcasts`);
          ch.on('broadcast', { event: '*' }, rec.handler);
          await subscribe(ch);
          return { c, ch, rec };
        };
        const p1 = await mk(true);
        const p2 = await mk(true);
        const pub1 = await mk(false);
        const pub2 = await mk(false);
        await p1.ch.send({ type: 'broadcast', event: 'secret', payload: { s: 1 } });
        const got = await p2.rec.waitFor((m) => m.event === 'secret', 5000, 'private delivery');
        assert.deepEqual(got.payload, { s: 1 });
        await pub2.ch.send({ type: 'broadcast', event: 'public', payload: {} });
        await pub1.rec.waitFor((m) => m.event === 'public', 5000, 'public delivery');
        assert.equal(pub1.rec.filter((m) => m.event === 'secret').length, 0, 'private message leaked to public channel');
        // and vice versa
        await p2.ch.send({ type: 'broadcast', event: 'secret2', payload: {} });
        await p1.rec.waitFor((m) => m.event === 'secret2', 5000, 'second private delivery');
        assert.equal(p1.rec.filter((m) => m.event === 'public').length, 0, 'public message leaked to private channel');
      });

    it('setAuth(newToken) refreshes the channel token: it survives the old token expiry', { timeout: 30_000 }, async (t) => {
      const sc = scope(t);
      const topic = uniqueTopic('refresh');
      const client = realtimeClient(sc, server, { vsn });
      const oldExp = nowSec() + 3;
      await client.setAuth(server.token({ role: 'authenticated', exp: oldExp }));
      const ch = client.channel(topic);
      const sys = new Recorder('system messages');
      const rec = new Recorder('broadcasts');
      ch.on('system', {}, sys.handler);
      ch.on('broadcast', { event: '*' }, rec.handler);
      await subscribe(ch);
      await client.setAuth(server.token({ role: 'authenticated', expIn: 3600 }));
      // wait past the old token's expiry (timing is the point)
      const waitMs = oldExp * 1000 + 2000 - Date.now();
      if (waitMs > 0) await sleep(waitMs);
      assert.deepEqual(sys.events, [], 'no system message expected');
      assert.deepEqual(ch._statuses.events.map((e) => e.status), ['SUBSCRIBED']);
      assert.equal(ch.state, 'joined');
      const sender = realtimeClient(sc, server, { vsn });
      const sch = sender.channel(topic);
      await subscribe(sch);
      await sch.send({ type: 'broadcast', event: 'still-here', payload: {} });
      await rec.waitFor((m) => m.event === 'still-here', 5000, 'broadcast after refresh');
    });

    it('a token that expires while joined -> system error message, then CLOSED', { timeout: 30_000 }, async (t) => {
      const sc = scope(t);
      const topic = uniqueTopic('expiring');
      const client = realtimeClient(sc, server, { vsn });
      await client.setAuth(server.token({ role: 'authenticated', exp: nowSec() + 2 }));
      const ch = client.channel(topic);
      const sys = new Recorder('system messages');
      ch.on('system', {}, sys.handler);
      await subscribe(ch);
      const msg = await sys.waitFor(() => true, 8000, 'expiry system message');
      assert.equal(msg.extension, 'system');
      assert.equal(msg.status, 'error');
      assert.equal(msg.channel, topic);
      assert.match(msg.message, /^Token has expired \d+ seconds ago$/);
      assert.deepEqual(Object.keys(msg).sort(), ['channel', 'extension', 'message', 'status']);
      t.diagnostic(`system message: ${JSON.stringify(msg)}`);
      const closed = await ch._statuses.waitFor((e) => e.status === 'CLOSED', 5000, 'CLOSED');
      assert.ok(closed);
      assert.deepEqual(ch._statuses.events.map((e) => e.status), ['SUBSCRIBED', 'CLOSED']);
      assert.equal(ch.state, 'closed');
      assert.equal(client.getChannels().includes(ch), false, 'realtime-js removes a closed channel');
      assert.equal(client.isConnected(), true, 'the socket itself stays open');
    });

    it('refreshing with an expired token closes the channel with the expiry message', { timeout: 30_000 }, async (t) => {
      const sc = scope(t);
      const topic = uniqueTopic('badrefresh');
      const client = realtimeClient(sc, server, { vsn });
      await client.setAuth(server.token({ role: 'authenticated', expIn: 3600 }));
      const ch = client.channel(topic);
      const sys = new Recorder('system messages');
      ch.on('system', {}, sys.handler);
      await subscribe(ch);
      await client.setAuth(server.token({ role: 'authenticated', expIn: -10 }));
      const msg = await sys.waitFor(() => true, 8000, 'system message');
      assert.equal(msg.extension, 'system');
      assert.equal(msg.status, 'error');
      assert.equal(msg.channel, topic);
      assert.match(msg.message, /^Token has expired \d+ seconds ago$/);
      await ch._statuses.waitFor((e) => e.status === 'CLOSED', 5000, 'CLOSED');
    });
  });
}
