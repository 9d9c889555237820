// Quotas and rate limits (docs/limits.md): each limit trips with its exact
// error (Supabase's where it has one) while another client on the same
// server keeps receiving broadcasts on time, and /metrics counts the refusal.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from './lib/server.mjs';
import { rawConnect, tryUpgrade } from './lib/raw.mjs';
import { realtimeClient, scope, subscribe, uniqueTopic, sleep } from './lib/util.mjs';

const LIMITS = [
  '--max-connections-per-user', '3',
  '--max-joins-per-second', '5',
  '--max-channels', '4', // the join burst is max(rate, channels): 5
  '--max-events-per-second', '200',
  '--max-channel-events-per-second', '100',
  '--max-presence-events-per-second', '3',
  '--max-payload-bytes', '1000',
  '--rest-max-requests-per-second', '5',
];

let server;
let userN = 0;
/** A token of a user of its own (the per-user limit keys on sub). */
const userToken = (sub = `user-${process.pid}-${++userN}`, role = 'authenticated') =>
  server.token({ role, claims: { sub } });

before(async () => {
  const dir = mkdtempSync(join(tmpdir(), 'rtsync-limits-'));
  const schema = join(dir, 'schema.sql');
  writeFileSync(schema, 'CREATE TABLE items (id bigint PRIMARY KEY, name text);\n');
  server = await startServer({ args: [...LIMITS, '--schema', schema, '--db', join(dir, 'test.db')] });
});
after(async () => { if (server) await server.stop(); });

async function refusals(limit) {
  const text = await (await fetch(`${server.httpUrl}/metrics`)).text();
  const m = new RegExp(`^rtsync_limit_refusals_total\\{limit="${limit}"\\} (\\d+)$`, 'm').exec(text);
  assert.ok(m, `metric for ${limit}`);
  return Number(m[1]);
}

const joinPayload = (extra = {}) => ({
  config: { broadcast: { self: false, ack: false, ...extra }, presence: { key: '', enabled: false }, postgres_changes: [], private: false },
});

/**
 * An observer: a realtime-js client subscribed to a topic of its own and a
 * publisher (another connection) sending it a timestamped broadcast every
 * 20 ms. stop() returns the latencies (ms) of what the observer received.
 */
async function startObserver(sc) {
  const topic = uniqueTopic('observer');
  const client = realtimeClient(sc, server, { apikey: userToken() });
  const ch = client.channel(topic);
  const lat = [];
  ch.on('broadcast', { event: 'tick' }, ({ payload }) => lat.push(Date.now() - payload.t));
  await subscribe(ch);
  const pub = await rawConnect(sc, server, { apikey: userToken() });
  const { joinRef } = await pub.join(`realtime:${topic}`, joinPayload());
  let sent = 0;
  const timer = setInterval(() => {
    sent += 1;
    pub.send({ join_ref: joinRef, topic: `realtime:${topic}`, event: 'broadcast', payload: { type: 'broadcast', event: 'tick', payload: { t: Date.now() } } });
  }, 20);
  await sleep(400); // a baseline before the flood (at least 10 ticks even when they run late)
  return {
    async stop() {
      clearInterval(timer);
      await sleep(300);
      lat.sort((a, b) => a - b);
      const p99 = lat[Math.min(lat.length - 1, Math.floor(lat.length * 0.99))];
      return { sent, received: lat.length, p99, max: lat[lat.length - 1] };
    },
  };
}

/** The other client kept receiving everything, on time. */
function assertUnaffected(t, r, what) {
  t.diagnostic(`${what}: observer ${r.received}/${r.sent} broadcasts, p99 ${r.p99} ms, max ${r.max} ms`);
  assert.ok(r.sent >= 10, `${what}: observer publisher sent ${r.sent}`);
  assert.equal(r.received, r.sent, `${what}: observer received every broadcast`);
  assert.ok(r.p99 < 100, `${what}: observer p99 ${r.p99} ms (max ${r.max} ms) stays under 100 ms`);
}

describe('limits', () => {
  it('connections per user: the 4th socket of one sub is refused 429 "Too many connected users"; others connect', async (t) => {
    const sc = scope(t);
    const obs = await startObserver(sc);
    const before = await refusals('connections_per_user');
    const tok = userToken();
    for (let i = 0; i < 3; i++) await rawConnect(sc, server, { apikey: tok });
    const r = await tryUpgrade(server, { query: { apikey: tok, vsn: '2.0.0' } });
    assert.equal(r.status, 429);
    assert.match(r.headers['content-type'], /^application\/json/);
    assert.deepEqual(JSON.parse(r.body), { error: 'Too many connected users' });
    // Another user is not affected; a freed slot is usable again.
    const other = await rawConnect(sc, server, { apikey: userToken() });
    assert.ok(other.isOpen());
    assert.equal(await refusals('connections_per_user'), before + 1);
    assertUnaffected(t, await obs.stop(), 'connections per user');
  });

  it('connections per user count /collab/v1 document sockets too', async (t) => {
    const sc = scope(t);
    const tok = userToken();
    const path = `/collab/v1/${uniqueTopic('limits-doc')}`;
    await rawConnect(sc, server, { apikey: tok });
    const opened = [];
    for (let i = 0; i < 2; i++) opened.push(await rawConnect(sc, server, { apikey: tok, path, omitVsn: true }));
    assert.ok(opened.every((c) => c.isOpen()));
    const refused = await tryUpgrade(server, { path, query: { apikey: tok } });
    assert.equal(refused.status, 429);
    assert.deepEqual(JSON.parse(refused.body), { error: 'Too many connected users' });
    const again = await tryUpgrade(server, { query: { apikey: tok, vsn: '2.0.0' } });
    assert.equal(again.status, 429, 'the Realtime socket is refused as well');
    // closing a document socket frees its slot
    await opened[0].close();
    let status;
    for (let i = 0; i < 50 && (status = (await tryUpgrade(server, { path, query: { apikey: tok } })).status) !== 101; i++) await sleep(20);
    assert.equal(status, 101);
  });

  it('joins per second: past the burst the join is refused "ClientJoinRateLimitReached: Too many joins per second" and the socket closed 1001', async (t) => {
    const sc = scope(t);
    const obs = await startObserver(sc);
    const c = await rawConnect(sc, server, { apikey: userToken() });
    const topic = `realtime:${uniqueTopic('joins')}`;
    const replies = [];
    for (let i = 0; i < 6; i++) {
      const ref = c.makeRef();
      c.send({ join_ref: ref, ref, topic, event: 'phx_join', payload: joinPayload() });
      replies.push(c.reply(ref));
    }
    const got = await Promise.all(replies);
    assert.deepEqual(got.slice(0, 5).map((f) => f.payload.status), ['ok', 'ok', 'ok', 'ok', 'ok']);
    assert.deepEqual(got[5].payload, { status: 'error', response: { reason: 'ClientJoinRateLimitReached: Too many joins per second' } });
    const closed = await c.closed;
    assert.equal(closed.code, 1001);
    assert.ok(await refusals('joins_per_second') >= 1);
    assertUnaffected(t, await obs.stop(), 'joins per second');
  });

  it('channels per connection: the 5th channel is refused "ChannelRateLimitReached: Too many channels"', async (t) => {
    const sc = scope(t);
    const c = await rawConnect(sc, server, { apikey: userToken() });
    for (let i = 0; i < 4; i++) {
      const { reply } = await c.join(`realtime:${uniqueTopic('chan')}`, joinPayload());
      assert.equal(reply.payload.status, 'ok');
    }
    const { reply } = await c.join(`realtime:${uniqueTopic('chan')}`, joinPayload());
    assert.deepEqual(reply.payload, { status: 'error', response: { reason: 'ChannelRateLimitReached: Too many channels' } });
    assert.ok(c.isOpen());
    assert.ok(await refusals('channels') >= 1);
  });

  it('events per channel: a flood closes the channel with "Too many messages per second" and phx_close; the socket stays', async (t) => {
    const sc = scope(t);
    const obs = await startObserver(sc);
    const c = await rawConnect(sc, server, { apikey: userToken() });
    const topic = `realtime:${uniqueTopic('flood')}`;
    const { joinRef } = await c.join(topic, joinPayload());
    const before = await refusals('channel_events_per_second');
    for (let i = 0; i < 300; i++) {
      c.send({ join_ref: joinRef, topic, event: 'broadcast', payload: { type: 'broadcast', event: 'spam', payload: { i } } });
    }
    const sys = await c.next((f) => f.event === 'system' && f.topic === topic, 5000, 'system message');
    assert.deepEqual(sys.payload, { extension: 'system', status: 'error', message: 'Too many messages per second', channel: topic.slice(9) });
    const close = await c.next((f) => f.event === 'phx_close' && f.topic === topic, 5000, 'phx_close');
    assert.equal(close.ref, joinRef);
    assert.ok(c.isOpen());
    await c.heartbeat();
    // The flooder keeps on for a second (~5000 messages a second, answered
    // `unmatched topic` now); the observer is not slowed. (Both run in this
    // process: part of the observer's latency is this loop's own sending.)
    const until = Date.now() + 1000;
    while (Date.now() < until) {
      for (let i = 0; i < 50; i++) {
        c.send({ join_ref: joinRef, topic, event: 'broadcast', payload: { type: 'broadcast', event: 'spam', payload: { i } } });
      }
      await sleep(10);
    }
    assert.ok(await refusals('channel_events_per_second') > before);
    assertUnaffected(t, await obs.stop(), 'events per channel (flooding on for 1 s)');
  });

  it('events per connection: spread over channels, the connection\'s rate closes the channel it trips on', async (t) => {
    const sc = scope(t);
    const obs = await startObserver(sc);
    const c = await rawConnect(sc, server, { apikey: userToken() });
    const topics = [];
    for (let i = 0; i < 3; i++) {
      const topic = `realtime:${uniqueTopic('spread')}`;
      const { joinRef } = await c.join(topic, joinPayload());
      topics.push({ topic, joinRef });
    }
    const before = await refusals('events_per_second');
    for (let i = 0; i < 90; i++) { // 270 in all, 90 (< 100) per channel
      for (const { topic, joinRef } of topics) {
        c.send({ join_ref: joinRef, topic, event: 'broadcast', payload: { type: 'broadcast', event: 'spam', payload: { i } } });
      }
    }
    const sys = await c.next((f) => f.event === 'system', 5000, 'system message');
    assert.equal(sys.payload.message, 'Too many messages per second');
    assert.equal(sys.payload.status, 'error');
    await c.next((f) => f.event === 'phx_close', 5000, 'phx_close');
    assert.ok(await refusals('events_per_second') > before);
    assertUnaffected(t, await obs.stop(), 'events per connection');
  });

  it('presence per connection: past the rate the channel closes with "Too many presence messages per second"', async (t) => {
    const sc = scope(t);
    const c = await rawConnect(sc, server, { apikey: userToken() });
    const chans = [];
    for (let i = 0; i < 4; i++) {
      const topic = `realtime:${uniqueTopic('pres')}`;
      const { joinRef } = await c.join(topic, joinPayload());
      chans.push({ topic, joinRef });
    }
    for (const [i, { topic, joinRef }] of chans.entries()) {
      const ref = c.send({ join_ref: joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'track', payload: { i } } });
      if (i < 3) assert.equal((await c.reply(ref)).payload.status, 'ok');
    }
    const last = chans[3].topic;
    const sys = await c.next((f) => f.event === 'system' && f.topic === last, 5000, 'system message');
    assert.equal(sys.payload.message, 'Too many presence messages per second');
    await c.next((f) => f.event === 'phx_close' && f.topic === last, 5000, 'phx_close');
    assert.ok(await refusals('presence_per_second') >= 1);
  });

  it('presence per channel: the 6th call within the window closes the channel with "Client presence rate limit exceeded"', async (t) => {
    const sc = scope(t);
    const c = await rawConnect(sc, server, { apikey: userToken() });
    const topic = `realtime:${uniqueTopic('pres1')}`;
    const { joinRef } = await c.join(topic, joinPayload());
    for (let i = 0; i < 6; i++) {
      if (i > 0 && i % 3 === 0) await sleep(1100); // stay within the per-connection rate
      c.send({ join_ref: joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'track', payload: { i } } });
    }
    const sys = await c.next((f) => f.event === 'system' && f.topic === topic, 5000, 'system message');
    assert.equal(sys.payload.message, 'Client presence rate limit exceeded');
    assert.ok(await refusals('channel_presence_calls') >= 1);
  });

  it('payload size: an acked broadcast over the limit answers "payload_size_exceeded"', async (t) => {
    const sc = scope(t);
    const c = await rawConnect(sc, server, { apikey: userToken() });
    const topic = `realtime:${uniqueTopic('big')}`;
    const { joinRef } = await c.join(topic, joinPayload({ ack: true }));
    const ref = c.send({ join_ref: joinRef, topic, event: 'broadcast', payload: { type: 'broadcast', event: 'big', payload: { s: 'x'.repeat(2000) } } });
    const r = await c.reply(ref);
    assert.deepEqual(r.payload, { status: 'error', response: 'payload_size_exceeded' });
    const ok = c.send({ join_ref: joinRef, topic, event: 'broadcast', payload: { type: 'broadcast', event: 'small', payload: { s: 'x' } } });
    assert.equal((await c.reply(ok)).payload.status, 'ok');
    assert.ok(await refusals('payload_bytes') >= 1);
  });

  it('REST per user: past the rate 429 with Retry-After and a PostgREST-style error; another user is served', async (t) => {
    const sc = scope(t);
    const obs = await startObserver(sc);
    const a = userToken(), b = userToken();
    const get = (tok) => fetch(`${server.httpUrl}/rest/v1/items`, { headers: { Authorization: `Bearer ${tok}` } });
    const res = await Promise.all(Array.from({ length: 12 }, () => get(a)));
    const codes = res.map((r) => r.status);
    const limited = res.filter((r) => r.status === 429);
    assert.ok(limited.length >= 5, `some refused: ${codes}`);
    assert.ok(codes.filter((s) => s === 200).length <= 10, `at most two windows' worth served: ${codes}`);
    assert.equal(limited[0].headers.get('retry-after'), '1');
    const body = await limited[0].json();
    assert.deepEqual(body, {
      code: 'RT429', details: 'At most 5 requests per second per user',
      hint: 'Retry after the number of seconds in Retry-After', message: 'Too many requests per second',
    });
    assert.equal((await get(b)).status, 200);
    await sleep(1100);
    assert.equal((await get(a)).status, 200, 'served again in the next second');
    assert.ok(await refusals('rest_requests_per_second') >= 5);
    assertUnaffected(t, await obs.stop(), 'REST per user');
  });
});

describe('limits: connections on the server', () => {
  let small;
  before(async () => { small = await startServer({ args: ['--max-connections', '2'] }); });
  after(async () => { if (small) await small.stop(); });

  it('the socket past --max-connections is refused 429 "Too many connected users"; a closed one frees its place', async (t) => {
    const sc = scope(t);
    const a = await rawConnect(sc, small);
    await rawConnect(sc, small);
    const r = await tryUpgrade(small, { query: { apikey: small.token(), vsn: '2.0.0' } });
    assert.equal(r.status, 429);
    assert.deepEqual(JSON.parse(r.body), { error: 'Too many connected users' });
    await a.close();
    await sleep(200);
    const again = await rawConnect(sc, small);
    assert.ok(again.isOpen());
    const text = await (await fetch(`${small.httpUrl}/metrics`)).text();
    assert.match(text, /^rtsync_limit_refusals_total\{limit="connections"\} 1$/m);
  });
});
