// Notifications (docs/notifications.md) with realtime-js as the client: rules
// turn changes into notifications for exactly the users they name, delivered
// live on the private channel realtime:notifications:<user> to every session
// of that user and kept in the inbox for the offline; read state reaches the
// user's other sessions; a burst becomes one summary; a SIGKILL between the
// change and its delivery loses nothing and repeats nothing. A join of the
// channel is followed by the inbox counts (inbox_state); the service role
// also sends over the socket (the `notify` event, with the phoenix client).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from './lib/server.mjs';
import { realtimeClient, Recorder, scope, sleep, withTimeout, WebSocket } from './lib/util.mjs';
import { Socket } from 'phoenix';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS requests (id bigint PRIMARY KEY, title text, status text, traveler_id text, org_id bigint);
CREATE TABLE IF NOT EXISTS members (id bigint PRIMARY KEY, org_id bigint, user_id text);
CREATE TABLE IF NOT EXISTS bookings (id bigint PRIMARY KEY, hotel text, guest text);
`;
const RULES = {
  rules: [
    { name: 'status', table: 'requests', events: ['UPDATE'], filter: 'status=changed.from.pending.to.approved',
      recipients: { column: 'traveler_id' }, title: '{{new.title}} is {{new.status}}', type: 'success',
      category: 'requests', link: '/requests/{{new.id}}' },
    { name: 'org', table: 'requests', events: 'INSERT',
      recipients: { query: { table: 'members', select: 'user_id', filter: 'org_id=eq.{{new.org_id}}' } },
      title: 'New request {{new.title}}', category: 'org' },
    { name: 'bookings', table: 'bookings', events: 'INSERT', recipients: { users: ['owner'] },
      title: 'Booking by {{new.guest}}', group: { window_ms: 60000, key: '{{new.hotel}}', title: '{{count}} new bookings at {{new.hotel}}' } },
  ],
};

let dir, schemaPath, rulesPath;
before(() => {
  dir = mkdtempSync(join(tmpdir(), 'rtsync-notify-'));
  schemaPath = join(dir, 'schema.sql');
  rulesPath = join(dir, 'rules.json');
  writeFileSync(schemaPath, SCHEMA);
  writeFileSync(rulesPath, JSON.stringify(RULES));
});
after(() => rmSync(dir, { recursive: true, force: true }));

const serverArgs = () => ['--schema', schemaPath, '--notify-rules', rulesPath];

async function rest(server, method, path, body, token) {
  const res = await fetch(`${server.httpUrl}${path}`, {
    method,
    headers: { apikey: token, authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  return { status: res.status, body: text ? JSON.parse(text) : null };
}

const svc = (server) => server.token({ role: 'service_role' });
const userTok = (server, sub) => server.token({ role: 'authenticated', claims: { sub } });

/** A realtime-js session of user `sub` on its notifications channel. */
async function session(sc, server, sub, { topicUser = sub, isPrivate = true } = {}) {
  const client = realtimeClient(sc, server, { apikey: userTok(server, sub) });
  const notes = new Recorder(`${sub} notifications`);
  const states = new Recorder(`${sub} inbox_state`);
  const ch = client.channel(`notifications:${topicUser}`, { config: { private: isPrivate } })
    .on('broadcast', { event: 'notification' }, (m) => notes.push(m.payload))
    .on('broadcast', { event: 'inbox_state' }, (m) => states.push(m.payload));
  const status = await withTimeout(new Promise((resolve) => {
    ch.subscribe((st, err) => {
      if (st === 'SUBSCRIBED' || st === 'CHANNEL_ERROR' || st === 'TIMED_OUT') resolve({ st, err });
    });
  }), 12_000, `${sub} subscribed`);
  return { client, ch, notes, states, status };
}

describe('notifications', () => {
  let server;
  before(async () => { server = await startServer({ args: serverArgs() }); });
  after(async () => { if (server) await server.stop(); });

  it('a change fans out to exactly the right users, live to each session, inbox for the offline', { timeout: 60_000 }, async (t) => {
    const sc = scope(t);
    const S = svc(server);
    assert.equal((await rest(server, 'POST', '/rest/v1/members', [
      { id: 1, org_id: 7, user_id: 'alice' }, { id: 2, org_id: 7, user_id: 'bob' },
      { id: 3, org_id: 8, user_id: 'carl' }, { id: 4, org_id: 7, user_id: 'dana' }], S)).status, 201);
    const alice1 = await session(sc, server, 'alice');
    const alice2 = await session(sc, server, 'alice');
    const bob = await session(sc, server, 'bob');
    const carl = await session(sc, server, 'carl');
    for (const s of [alice1, alice2, bob, carl]) assert.equal(s.status.st, 'SUBSCRIBED');

    assert.equal((await rest(server, 'POST', '/rest/v1/requests',
      [{ id: 1, title: 'Rome', status: 'pending', traveler_id: 'alice', org_id: 7 }], S)).status, 201);
    for (const s of [alice1, alice2, bob]) {
      const n = await s.notes.waitFor((p) => p.notification.title === 'New request Rome', 5000, 'org notification');
      assert.equal(n.notification.category, 'org');
      assert.equal(n.unread, 1);
    }
    // the status rule: only the traveler, on pending → approved only
    await rest(server, 'PATCH', '/rest/v1/requests?id=eq.1', { status: 'held' }, S);
    await rest(server, 'PATCH', '/rest/v1/requests?id=eq.1', { status: 'pending' }, S);
    await rest(server, 'PATCH', '/rest/v1/requests?id=eq.1', { status: 'approved' }, S);
    for (const s of [alice1, alice2]) {
      const n = await s.notes.waitFor((p) => p.notification.rule === 'status', 5000, 'status notification');
      assert.equal(n.notification.title, 'Rome is approved');
      assert.equal(n.notification.type, 'success');
      assert.equal(n.notification.link, '/requests/1');
      assert.equal(n.unread, 2);
    }
    await sleep(300);
    assert.equal(alice1.notes.filter((p) => p.notification.rule === 'status').length, 1);
    assert.equal(bob.notes.events.length, 1, 'bob: the org notification only');
    assert.equal(carl.notes.events.length, 0, 'carl: another org');
    // dana was offline: her inbox has it
    const inbox = await rest(server, 'GET', '/notify/v1/inbox', undefined, userTok(server, 'dana'));
    assert.equal(inbox.status, 200);
    assert.deepEqual(inbox.body.items.map((n) => n.title), ['New request Rome']);
    assert.equal(inbox.body.unread, 1);
    // a user never sees another's notifications
    const other = await rest(server, 'GET', `/notify/v1/inbox/${inbox.body.items[0].id}`, undefined, userTok(server, 'carl'));
    assert.equal(other.status, 404);
    assert.equal(other.body.code, 'RTS404');
  });

  it('only its user joins a notifications channel, privately, and nobody else sends on it', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const spy = await session(sc, server, 'mallory', { topicUser: 'alice' });
    assert.equal(spy.status.st, 'CHANNEL_ERROR');
    const pub = await session(sc, server, 'alice', { isPrivate: false });
    assert.equal(pub.status.st, 'CHANNEL_ERROR');
    const own = await session(sc, server, 'erin');
    const other = await session(sc, server, 'erin');
    assert.equal(own.status.st, 'SUBSCRIBED');
    // a client broadcast on its own channel is dropped
    await own.ch.send({ type: 'broadcast', event: 'notification', payload: { notification: { title: 'fake' } } });
    // the HTTP broadcast API cannot reach it either without the service role
    const r = await fetch(`${server.httpUrl}/realtime/v1/api/broadcast`, {
      method: 'POST',
      headers: { apikey: userTok(server, 'erin'), authorization: `Bearer ${userTok(server, 'erin')}`, 'content-type': 'application/json' },
      body: JSON.stringify({ messages: [{ topic: 'notifications:erin', event: 'notification', payload: { notification: { title: 'fake2' } }, private: true }] }),
    });
    assert.equal(r.status, 202);
    // a direct send by the service role arrives
    const sent = await rest(server, 'POST', '/notify/v1/send', { user: 'erin', title: 'real', type: 'warning' }, svc(server));
    assert.equal(sent.status, 201, JSON.stringify(sent.body));
    const n = await other.notes.waitFor((p) => p.notification.title === 'real', 5000, 'direct send');
    assert.equal(n.notification.type, 'warning');
    await sleep(200);
    assert.deepEqual(other.notes.events.map((p) => p.notification.title), ['real']);
    const denied = await rest(server, 'POST', '/notify/v1/send', { user: 'erin', title: 'x' }, userTok(server, 'erin'));
    assert.equal(denied.status, 403);
  });

  it('read state reaches the user\'s other sessions at once', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const phone = await session(sc, server, 'fred');
    const laptop = await session(sc, server, 'fred');
    const S = svc(server);
    await rest(server, 'POST', '/notify/v1/send', { user: 'fred', title: 'one' }, S);
    await rest(server, 'POST', '/notify/v1/send', { user: 'fred', title: 'two' }, S);
    const two = await laptop.notes.waitFor((p) => p.notification.title === 'two', 5000, 'two');
    assert.equal(two.unread, 2);
    const tok = userTok(server, 'fred');
    const marked = await rest(server, 'POST', `/notify/v1/inbox/${two.notification.id}/read`, undefined, tok);
    assert.equal(marked.status, 200);
    assert.equal(marked.body.read, true);
    for (const s of [phone, laptop]) {
      const st = await s.states.waitFor((p) => p.unread === 1, 5000, 'badge 1');
      assert.equal(st.changed[0].id, two.notification.id);
      assert.equal(st.changed[0].read, true);
    }
    assert.equal((await rest(server, 'POST', '/notify/v1/inbox/read-all', undefined, tok)).status, 200);
    await laptop.states.waitFor((p) => p.unread === 0 && p.all_read, 5000, 'badge 0');
    const count = await rest(server, 'GET', '/notify/v1/inbox/count', undefined, tok);
    assert.deepEqual(count.body, { unread: 0, total: 2, held: 0 });
  });

  it('preferences: muted categories drop, quiet hours hold', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const tok = userTok(server, 'gina');
    const s = await session(sc, server, 'gina');
    const now = new Date();
    const hhmm = (d) => `${String(d.getUTCHours()).padStart(2, '0')}:${String(d.getUTCMinutes()).padStart(2, '0')}`;
    const put = await rest(server, 'PUT', '/notify/v1/preferences', {
      muted_categories: ['promo'],
      quiet_hours: { start: hhmm(new Date(now - 3600_000)), end: hhmm(new Date(+now + 3600_000)), utc_offset: '+00:00' },
    }, tok);
    assert.equal(put.status, 200, JSON.stringify(put.body));
    const bad = await rest(server, 'PUT', '/notify/v1/preferences', { min_priority: 'loudest' }, tok);
    assert.equal(bad.status, 400);
    assert.equal(bad.body.code, 'RTS400');
    const S = svc(server);
    await rest(server, 'POST', '/notify/v1/send', { user: 'gina', title: 'sale', category: 'promo' }, S);
    await rest(server, 'POST', '/notify/v1/send', { user: 'gina', title: 'later' }, S);
    await rest(server, 'POST', '/notify/v1/send', { user: 'gina', title: 'now', priority: 'urgent' }, S);
    await s.notes.waitFor((p) => p.notification.title === 'now', 5000, 'urgent passes quiet hours');
    await sleep(300);
    assert.deepEqual(s.notes.events.map((p) => p.notification.title), ['now']);
    const count = await rest(server, 'GET', '/notify/v1/inbox/count', undefined, tok);
    assert.deepEqual(count.body, { unread: 1, total: 1, held: 1 });
  });

  it('a burst of 500 becomes one summary, expandable to the items', { timeout: 60_000 }, async (t) => {
    const sc = scope(t);
    const s = await session(sc, server, 'owner');
    const rows = Array.from({ length: 500 }, (_, i) => ({ id: i + 1, hotel: 'Seaview', guest: `g${i}` }));
    assert.equal((await rest(server, 'POST', '/rest/v1/bookings', rows, svc(server))).status, 201);
    const tok = userTok(server, 'owner');
    let inbox;
    for (let i = 0; i < 50; i++) {
      inbox = await rest(server, 'GET', '/notify/v1/inbox', undefined, tok);
      if (inbox.body.items[0]?.count === 500) break;
      await sleep(100);
    }
    assert.equal(inbox.body.items.length, 1);
    const sum = inbox.body.items[0];
    assert.equal(sum.summary, true);
    assert.equal(sum.title, '500 new bookings at Seaview');
    assert.equal(inbox.body.unread, 1);
    const items = await rest(server, 'GET', `/notify/v1/inbox/${sum.id}/items?limit=200`, undefined, tok);
    assert.equal(items.body.items.length, 200);
    assert.equal(typeof items.body.next_before, 'number');
    // live: far fewer events than bookings, the last with the whole count
    await s.notes.waitFor((p) => p.notification.id === sum.id && p.notification.count === 500, 5000, 'summary');
    assert.ok(s.notes.events.length < 50, `${s.notes.events.length} live events`);
  });

  it('a join is followed by the inbox counts, so no extra read is needed', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const S = svc(server);
    for (const title of ['a', 'b', 'c'])
      assert.equal((await rest(server, 'POST', '/notify/v1/send', { user: 'ivy', title }, S)).status, 201);
    const inbox = await rest(server, 'GET', '/notify/v1/inbox', undefined, userTok(server, 'ivy'));
    await rest(server, 'POST', `/notify/v1/inbox/${inbox.body.items[0].id}/read`, undefined, userTok(server, 'ivy'));
    const s = await session(sc, server, 'ivy');
    assert.equal(s.status.st, 'SUBSCRIBED');
    const st = await s.states.waitFor(() => true, 5000, 'join-time inbox_state');
    assert.deepEqual(st, { unread: 2, total: 3, held: 0 });
    // a user with an empty inbox gets zeros; a refused join gets nothing
    const empty = await session(sc, server, 'jack');
    assert.deepEqual(await empty.states.waitFor(() => true, 5000, 'empty'), { unread: 0, total: 0, held: 0 });
    const spy = await session(sc, server, 'mallory', { topicUser: 'ivy' });
    assert.equal(spy.status.st, 'CHANNEL_ERROR');
    await sleep(300);
    assert.equal(spy.states.events.length, 0);
    assert.equal(s.states.events.length, 1, 'one state per join');
  });

  it('the service role sends over the socket (notify event); others are refused', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const kim = await session(sc, server, 'kim');
    const lee = await session(sc, server, 'lee');
    const phx = async (token, topic) => {
      const socket = new Socket(server.socketUrl, { transport: WebSocket, params: { apikey: token }, vsn: '2.0.0', reconnectAfterMs: () => 1000 });
      socket.connect();
      sc.defer(() => new Promise((resolve) => socket.disconnect(() => resolve())));
      const ch = socket.channel(`realtime:${topic}`, { config: {} });
      await new Promise((resolve, reject) => {
        ch.join(10_000).receive('ok', resolve).receive('error', (r) => reject(new Error(JSON.stringify(r))))
          .receive('timeout', () => reject(new Error('join timeout')));
      });
      return (payload) => new Promise((resolve, reject) => {
        ch.push('notify', payload, 5000)
          .receive('ok', (resp) => resolve({ status: 'ok', resp }))
          .receive('error', (resp) => resolve({ status: 'error', resp }))
          .receive('timeout', () => reject(new Error('notify timed out')));
      });
    };
    const send = await phx(svc(server), 'ops');
    const r = await send({ users: ['kim', 'lee'], title: 'Deploy at 5', type: 'warning', category: 'ops', key: 'deploy-1' });
    assert.equal(r.status, 'ok', JSON.stringify(r.resp));
    assert.equal(r.resp.recipients, 2);
    assert.equal(r.resp.ids.length, 2);
    for (const s of [kim, lee]) {
      const n = await s.notes.waitFor((p) => p.notification.title === 'Deploy at 5', 5000, 'socket send');
      assert.equal(n.notification.type, 'warning');
      assert.ok(r.resp.ids.includes(n.notification.id));
    }
    // the same key again notifies nobody twice
    const again = await send({ users: ['kim', 'lee'], title: 'Deploy at 5', key: 'deploy-1' });
    assert.equal(again.status, 'ok');
    assert.deepEqual(again.resp.ids, []);
    // a bad body: the REST API's reason
    const bad = await send({ user: 'kim' });
    assert.equal(bad.status, 'error');
    assert.equal(bad.resp.code, 'RTS400');
    assert.match(bad.resp.reason, /title/);
    const notObj = await send([1, 2]);
    assert.equal(notObj.status, 'error');
    // a user's token is refused, also on its own channel
    const asUser = await phx(userTok(server, 'kim'), 'ops');
    const denied = await asUser({ user: 'lee', title: 'spoof' });
    assert.equal(denied.status, 'error');
    assert.equal(denied.resp.code, 'RTS403');
    assert.match(denied.resp.reason, /service role/);
    await sleep(300);
    assert.equal(lee.notes.filter((p) => p.notification.title === 'spoof').length, 0);
    assert.equal(kim.notes.filter((p) => p.notification.title === 'Deploy at 5').length, 1);
  });

  it('rules are managed over REST by the service role', { timeout: 30_000 }, async () => {
    const S = svc(server);
    const rule = { table: 'requests', events: 'DELETE', recipients: { column: 'traveler_id' }, title: 'Removed {{old.title}}' };
    assert.equal((await rest(server, 'PUT', '/notify/v1/rules/removed', rule, userTok(server, 'x'))).status, 403);
    const put = await rest(server, 'PUT', '/notify/v1/rules/removed', rule, S);
    assert.equal(put.status, 201, JSON.stringify(put.body));
    const bad = await rest(server, 'PUT', '/notify/v1/rules/bad', { ...rule, filter: 'status=changed.sideways' }, S);
    assert.equal(bad.status, 400);
    assert.match(bad.body.message, /changed/);
    await rest(server, 'POST', '/rest/v1/requests', [{ id: 50, title: 'Oslo', traveler_id: 'hank', org_id: 99 }], S);
    await rest(server, 'DELETE', '/rest/v1/requests?id=eq.50', undefined, S);
    let inbox;
    for (let i = 0; i < 30; i++) {
      inbox = await rest(server, 'GET', '/notify/v1/inbox', undefined, userTok(server, 'hank'));
      if (inbox.body.items.length) break;
      await sleep(100);
    }
    assert.deepEqual(inbox.body.items.map((n) => n.title), ['Removed Oslo']);
    const list = await rest(server, 'GET', '/notify/v1/rules', undefined, S);
    assert.deepEqual(list.body.rules.map((r) => `${r.name}:${r.source}`).sort(),
      ['bookings:file', 'org:file', 'removed:api', 'status:file']);
    assert.equal((await rest(server, 'DELETE', '/notify/v1/rules/status', undefined, S)).status, 409);
    assert.equal((await rest(server, 'DELETE', '/notify/v1/rules/removed', undefined, S)).status, 204);
  });
});

describe('notifications across a SIGKILL', () => {
  it('a kill between the change and its delivery loses none and delivers none twice', { timeout: 120_000 }, async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'rtsync-notify-kill-'));
    try {
      let total = 0;
      let pgDatabase; // with PostgreSQL: the same database across restarts
      for (let round = 0; round < 4; round++) {
        const server = await startServer({ args: serverArgs(), dataDir, pgDatabase });
        pgDatabase = server.pgDatabase || undefined;
        const S = svc(server);
        if (round === 0) await rest(server, 'POST', '/rest/v1/members', [{ id: 1, org_id: 1, user_id: 'ivan' }], S);
        // many small commits, then SIGKILL right after the last is acknowledged
        const writes = [];
        for (let i = 0; i < 60; i++) {
          const id = round * 1000 + i + 1;
          writes.push(rest(server, 'POST', '/rest/v1/requests', [{ id, title: `r${id}`, org_id: 1 }], S));
        }
        for (const w of writes) assert.equal((await w).status, 201);
        total += 60;
        await server.kill();
      }
      const server = await startServer({ args: serverArgs(), dataDir, pgDatabase });
      try {
        const tok = userTok(server, 'ivan');
        let count;
        for (let i = 0; i < 50; i++) {
          count = await rest(server, 'GET', '/notify/v1/inbox/count', undefined, tok);
          if (count.body.total >= total) break;
          await sleep(100);
        }
        assert.equal(count.body.total, total);
        const titles = [];
        let before = '';
        for (;;) {
          const page = await rest(server, 'GET', `/notify/v1/inbox?limit=200${before}`, undefined, tok);
          titles.push(...page.body.items.map((n) => n.title));
          if (page.body.next_before === null) break;
          before = `&before=${page.body.next_before}`;
        }
        assert.equal(titles.length, total);
        assert.equal(new Set(titles).size, total, 'each exactly once');
      } finally {
        await server.stop();
      }
    } finally {
      rmSync(dataDir, { recursive: true, force: true });
    }
  });
});
