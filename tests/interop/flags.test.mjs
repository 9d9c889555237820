// Feature flags (docs/flags.md) against the official clients: a flag switched
// off mid-session stops postgres_changes and broadcast with a system message
// (supabase-js keeps the channel), switched on resumes them with nothing lost
// or repeated; the join reply carries the flags that apply, a change is the
// system message of extension "flags"; /flags/v1 is the service role's;
// REST writes are refused while `writes` is off; the file is read again on
// SIGHUP; exposures reach /metrics.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from './lib/server.mjs';
import { rawConnect } from './lib/raw.mjs';
import { VSNS, Recorder, scope, uniqueTopic, supabaseClient, withTimeout, sleep } from './lib/util.mjs';

let server, dir, flagsPath;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rtsync-flags-'));
  const schemaPath = join(dir, 'schema.sql');
  writeFileSync(schemaPath, 'CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, v text);\n' +
    'CREATE TABLE IF NOT EXISTS notes (id bigint PRIMARY KEY, v text);\n');
  flagsPath = join(dir, 'flags.json');
  server = await startServer({ args: ['--schema', schemaPath, '--db', join(dir, 'test.db'), '--flags', flagsPath] });
});
after(async () => {
  if (server) await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

const service = () => server.token({ role: 'service_role' });

async function flagsApi(method, name, body, key = service()) {
  const r = await fetch(`${server.httpUrl}/flags/v1${name ? `/${name}` : ''}`, {
    method,
    headers: { Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, body: text ? JSON.parse(text) : null };
}

async function setFlag(name, def) {
  const r = await flagsApi('PUT', name, def);
  assert.equal(r.status, 200, JSON.stringify(r.body));
}

async function clearFlags() {
  const r = await flagsApi('PUT', '', { flags: {} });
  assert.equal(r.status, 200, JSON.stringify(r.body));
}

async function insert(table, rows) {
  const key = service();
  const r = await fetch(`${server.httpUrl}/rest/v1/${table}`, {
    method: 'POST',
    headers: { apikey: key, Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(rows),
  });
  assert.equal(r.status, 201, await r.text());
}

function subscribed(ch) {
  return new Promise((resolve, reject) => {
    ch.subscribe((status, err) => {
      if (status === 'SUBSCRIBED') resolve(ch);
      else if (status !== 'CLOSED') reject(new Error(`${status}${err ? `: ${err.message}` : ''}`));
    });
  });
}

let nextId = 1;

for (const vsn of VSNS) {
  describe(`feature flags with supabase-js, vsn ${vsn}`, () => {
    it('switched off mid-session: postgres_changes and broadcast stop with a system message; on again: resume, nothing lost',
      { timeout: 60_000 }, async (t) => {
        const sc = scope(t);
        await clearFlags();
        const topic = uniqueTopic('flags');
        const user = server.token({ role: 'authenticated', claims: { sub: `user-${vsn}` } });
        const a = supabaseClient(sc, server, { vsn, key: user });
        const b = supabaseClient(sc, server, { vsn, key: user });
        const changes = new Recorder('A changes');
        const pings = new Recorder('A broadcasts');
        const system = new Recorder('A system');
        const chA = a.channel(topic)
          .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'items' }, changes.handler)
          .on('broadcast', { event: 'ping' }, pings.handler)
          .on('system', {}, system.handler);
        const chB = b.channel(topic, { config: { broadcast: { ack: true } } });
        await withTimeout(Promise.all([subscribed(chA), subscribed(chB)]), 12_000, 'both SUBSCRIBED');
        await system.waitFor((m) => m.extension === 'postgres_changes' && m.status === 'ok', 5000, 'subscribed to PostgreSQL');

        const first = nextId++;
        await insert('items', [{ id: first, v: 'before' }]);
        await changes.waitFor((c) => c.new.id === first, 5000, 'change before');
        assert.equal(await chB.send({ type: 'broadcast', event: 'ping', payload: { n: 1 } }), 'ok');
        await pings.waitFor((m) => m.payload.n === 1, 5000, 'ping 1');

        // off: each feature says so within a second
        const offAt = Date.now();
        await setFlag('postgres_changes', { enabled: false });
        await setFlag('broadcast', { enabled: false });
        const pgOff = await system.waitFor((m) => m.extension === 'postgres_changes' && m.status === 'error', 1500, 'postgres_changes off');
        const bcOff = await system.waitFor((m) => m.extension === 'broadcast' && m.status === 'error', 1500, 'broadcast off');
        t.diagnostic(`switched off: both notices ${Date.now() - offAt} ms after the first PUT`);
        assert.ok(Date.now() - offAt < 1500, `took ${Date.now() - offAt} ms`);
        assert.equal(pgOff.feature, 'postgres_changes');
        assert.equal(pgOff.enabled, false);
        assert.match(pgOff.message, /switched off/);
        assert.equal(bcOff.channel, topic);
        const flagsMsg = await system.waitFor((m) => m.extension === 'flags' && m.flags && m.flags.broadcast === false, 1500, 'flags event');
        assert.equal(flagsMsg.flags.postgres_changes, false);
        assert.equal(chA.state, 'joined', 'supabase-js keeps the channel');

        // while off: changes happen, a broadcast is refused, nothing arrives
        const missed = [nextId++, nextId++, nextId++];
        await insert('items', missed.slice(0, 2).map((id) => ({ id, v: 'while off' })));
        await insert('items', [{ id: missed[2], v: 'while off' }]);
        assert.equal(await chB.send({ type: 'broadcast', event: 'ping', payload: { n: 2 } }), 'error', 'a broadcast push is refused');
        await sleep(500);
        assert.deepEqual(changes.events.map((c) => c.new.id), [first], 'no change while off');
        assert.deepEqual(pings.events.map((m) => m.payload.n), [1], 'no broadcast while off');

        // on again: the missed changes, in order, then live ones; broadcast flows
        const onAt = Date.now();
        assert.equal((await flagsApi('DELETE', 'postgres_changes')).status, 204);
        assert.equal((await flagsApi('DELETE', 'broadcast')).status, 204);
        await system.waitFor((m) => m.extension === 'postgres_changes' && m.status === 'ok' && m.enabled === true, 1500, 'postgres_changes on');
        await system.waitFor((m) => m.extension === 'broadcast' && m.status === 'ok' && m.enabled === true, 1500, 'broadcast on');
        t.diagnostic(`switched on: both notices ${Date.now() - onAt} ms after the first DELETE`);
        assert.ok(Date.now() - onAt < 1500, `took ${Date.now() - onAt} ms`);
        await changes.waitFor((c) => c.new.id === missed[2], 5000, 'the missed changes');
        const live = nextId++;
        await insert('items', [{ id: live, v: 'after' }]);
        await changes.waitFor((c) => c.new.id === live, 5000, 'live change after');
        await sleep(200);
        assert.deepEqual(changes.events.map((c) => c.new.id), [first, ...missed, live], 'each change once, in order');
        assert.equal(await chB.send({ type: 'broadcast', event: 'ping', payload: { n: 3 } }), 'ok');
        await pings.waitFor((m) => m.payload.n === 3, 5000, 'ping 3');
        assert.deepEqual(pings.events.map((m) => m.payload.n), [1, 3]);
      });
  });
}

describe('feature flags on the wire', () => {
  it('the join reply carries the flags that apply; a change is a system message of extension "flags"', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    await clearFlags();
    await setFlag('checkout', { variants: { control: 1, one_page: 1 } });
    await setFlag('beta', { when: { 'app_metadata.team': ['red'] } });
    await setFlag('room_only', { channels: ['room:*'] });
    const red = server.token({ role: 'authenticated', claims: { sub: 'u-red', app_metadata: { team: 'red' } } });
    const blue = server.token({ role: 'authenticated', claims: { sub: 'u-blue', app_metadata: { team: 'blue' } } });
    const cr = await rawConnect(sc, server, { apikey: red });
    const cb = await rawConnect(sc, server, { apikey: blue });
    const topic = uniqueTopic('lobby');
    const jr = await cr.join(`realtime:${topic}`);
    const jb = await cb.join(`realtime:${topic}`);
    const jroom = await cr.join('realtime:room:1');
    const fr = jr.reply.payload.response.flags, fb = jb.reply.payload.response.flags;
    assert.equal(jr.reply.payload.status, 'ok');
    assert.equal(fr.beta, true);
    assert.equal(fb.beta, false);
    assert.ok(['control', 'one_page'].includes(fr.checkout), JSON.stringify(fr));
    assert.equal(fr.room_only, undefined, 'a flag scoped to other channels is not reported');
    assert.equal(jroom.reply.payload.response.flags.room_only, true);
    assert.deepEqual(jr.reply.payload.response.postgres_changes, []);

    // sticky: the same answers on a new connection
    const again = await rawConnect(sc, server, { apikey: red });
    const ja = await again.join(`realtime:${topic}`);
    assert.deepEqual(ja.reply.payload.response.flags, fr);

    // an edit reaches the joined channels within a second
    const at = Date.now();
    await setFlag('beta', { when: { 'app_metadata.team': ['red', 'blue'] } });
    const ev = await cb.next((f) => f.event === 'system' && f.payload.extension === 'flags', 1500, 'flags change at blue');
    assert.ok(Date.now() - at < 1500);
    assert.equal(ev.payload.status, 'ok');
    assert.equal(ev.payload.channel, topic);
    assert.equal(ev.payload.flags.beta, true);
    assert.equal(ev.payload.flags.checkout, fb.checkout, 'other answers stay');
    // red's answers did not change: no event for it
    await sleep(300);
    assert.equal(cr.frames.filter((f) => f.event === 'system' && f.payload.extension === 'flags').length, 0);

    // exposures in the metrics
    const m = await (await fetch(`${server.httpUrl}/metrics`)).text();
    const exp = (flag, variant) => Number((m.match(new RegExp(`rtsync_flag_exposures_total\\{flag="${flag}",variant="${variant}"\\} (\\d+)`)) || [])[1]);
    assert.ok(exp('beta', 'on') >= 3, m);
    assert.ok(exp('beta', 'off') >= 1);
    assert.ok(exp('checkout', 'control') + exp('checkout', 'one_page') >= 4);
    assert.match(m, /rtsync_flag_evaluations_total \d+/);
  });

  it('a join that resumes while postgres_changes is off gets the changes after its position once on', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    await clearFlags();
    const key = service();
    const post = async (rows) => {
      const r = await fetch(`${server.httpUrl}/rest/v1/items`, {
        method: 'POST', headers: { apikey: key, Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
        body: JSON.stringify(rows),
      });
      assert.equal(r.status, 201);
    };
    const a = nextId++, b = nextId++, c = nextId++;
    const binding = { event: 'INSERT', schema: 'public', table: 'items' };
    // the position of a, as a client that saw it knows it (both stores)
    const first = await rawConnect(sc, server, {});
    await first.join(`realtime:${uniqueTopic('first')}`, { config: { postgres_changes: [binding] } });
    await post([{ id: a, v: 'seen before' }]);
    const seen = await first.next((f) => f.event === 'postgres_changes' && f.payload.data.record.id === a, 5000, 'a');
    const p0 = seen.payload.data.position;
    await first.close();
    await post([{ id: b, v: 'missed' }]);
    await setFlag('postgres_changes', { enabled: false });
    const raw = await rawConnect(sc, server, {});
    const topic = `realtime:${uniqueTopic('resume')}`;
    const { reply } = await raw.join(topic, { config: { postgres_changes: [binding], rtsync: { resume_after: p0 } } });
    assert.equal(reply.payload.response.flags.postgres_changes, false);
    await raw.next((f) => f.event === 'system' && f.payload.extension === 'postgres_changes' && f.payload.status === 'error', 1500, 'off at the join');
    await post([{ id: c, v: 'while off' }]);
    await sleep(400);
    const ids = () => raw.frames.filter((f) => f.event === 'postgres_changes').map((f) => f.payload.data.record.id);
    assert.deepEqual(ids(), []);
    await clearFlags();
    await raw.next((f) => f.event === 'postgres_changes' && f.payload.data.record.id === c, 5000, 'the changes after the position');
    await sleep(200);
    assert.deepEqual(ids(), [b, c]);
  });

  it('presence switched off stops presence messages and refuses a track; on again sends the state', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    await clearFlags();
    const topic = `realtime:${uniqueTopic('pres')}`;
    const cfg = { config: { presence: { key: 'k', enabled: true }, broadcast: {}, postgres_changes: [] } };
    const a = await rawConnect(sc, server, {});
    const b = await rawConnect(sc, server, {});
    await a.join(topic, cfg);
    const jb = await b.join(topic, { config: { presence: { key: 'b', enabled: true } } });
    await setFlag('presence', { enabled: false });
    await a.next((f) => f.event === 'system' && f.payload.extension === 'presence' && f.payload.status === 'error', 1500, 'presence off');
    await b.next((f) => f.event === 'system' && f.payload.extension === 'presence' && f.payload.status === 'error', 1500, 'presence off at b');
    const ref = b.send({ join_ref: jb.joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'track', payload: { x: 1 } } });
    const r = await b.reply(ref);
    assert.equal(r.payload.status, 'error');
    assert.match(r.payload.response.reason, /FeatureDisabled: presence/);
    await sleep(300);
    assert.equal(a.frames.filter((f) => f.event === 'presence_diff').length, 0);
    await clearFlags();
    await a.next((f) => f.event === 'system' && f.payload.extension === 'presence' && f.payload.status === 'ok', 1500, 'presence on');
    await a.next((f) => f.event === 'presence_state', 1500, 'a fresh presence_state');
  });

  it('live queries switched off stop their messages; on again they resume from their position', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    await clearFlags();
    const raw = await rawConnect(sc, server, { apikey: service() });
    const topic = `realtime:${uniqueTopic('live')}`;
    const queries = [{ id: 'all', table: 'items', query: 'select=id,v&order=id.desc&limit=5' }];
    await raw.join(topic, { config: { postgres_changes: [], rtsync: { live: { queries } } } });
    await raw.next((f) => f.event === 'live_query', 5000, 'first live_query');
    await setFlag('live_queries', { enabled: false });
    await raw.next((f) => f.event === 'system' && f.payload.extension === 'live_queries' && f.payload.status === 'error', 1500, 'live_queries off');
    const before = raw.frames.filter((f) => f.event === 'live_query').length;
    const id = 987_654_321;
    await insert('items', [{ id, v: 'while live is off' }]);
    const ref = raw.send({ topic, event: 'live_subscribe', payload: { queries: [{ id: 'more', table: 'items' }] } });
    const r = await raw.reply(ref);
    assert.equal(r.payload.status, 'error');
    assert.match(r.payload.response.reason, /FeatureDisabled: live_queries/);
    await sleep(500);
    assert.equal(raw.frames.filter((f) => f.event === 'live_query').length, before, 'no live_query while off');
    await clearFlags();
    await raw.next((f) => f.event === 'system' && f.payload.extension === 'live_queries' && f.payload.status === 'ok', 1500, 'live_queries on');
    await raw.next((f) => f.event === 'live_query' && f.text.includes(String(id)), 5000, 'the change made while off');
  });

  it('notifications and documents switched off answer 403', { timeout: 30_000 }, async () => {
    await clearFlags();
    const dana = server.token({ role: 'authenticated', claims: { sub: 'dana' } });
    const inbox = () => fetch(`${server.httpUrl}/notify/v1/inbox`, { headers: { apikey: dana, Authorization: `Bearer ${dana}` } });
    const doc = (name) => fetch(`${server.httpUrl}/collab/v1/${name}`, { headers: { apikey: dana } });
    assert.equal((await inbox()).status, 200);
    assert.equal((await doc('secret-1')).status, 200);
    await setFlag('notifications', { enabled: false });
    await setFlag('documents.secret', { enabled: false, channels: ['secret-*'] });
    let r = await inbox();
    assert.equal(r.status, 403);
    assert.equal((await r.json()).code, 'RTS403');
    r = await doc('secret-1');
    assert.equal(r.status, 403);
    assert.match(await r.text(), /documents are switched off/);
    assert.equal((await doc('public-1')).status, 200, 'a flag scoped to secret-* leaves other documents alone');
    await clearFlags();
    assert.equal((await inbox()).status, 200);
  });

  it('/flags/v1 is the service role\'s; REST writes are refused while writes is off', { timeout: 30_000 }, async () => {
    await clearFlags();
    const anon = server.token({ role: 'anon' });
    const authd = server.token({ role: 'authenticated', claims: { sub: 'x' } });
    let r = await fetch(`${server.httpUrl}/flags/v1`);
    assert.equal(r.status, 401);
    assert.equal((await r.json()).code, 'RTS401');
    for (const key of [anon, authd]) {
      assert.equal((await flagsApi('GET', '', undefined, key)).status, 403);
      const put = await flagsApi('PUT', 'x', { enabled: false }, key);
      assert.equal(put.status, 403);
      assert.equal(put.body.code, 'RTS403');
      assert.equal((await flagsApi('DELETE', 'x', undefined, key)).status, 403);
    }
    assert.equal((await flagsApi('GET', '')).status, 200);
    const bad = await flagsApi('PUT', 'x', { rollout: 150 });
    assert.equal(bad.status, 400);
    assert.match(bad.body.message, /rollout/);
    assert.equal((await flagsApi('GET', 'x')).status, 404);
    assert.equal((await flagsApi('DELETE', 'x')).status, 404);

    await setFlag('writes.notes', { tables: ['notes'], when: { role: 'service_role' } });
    // writes on notes: only the service role; items unaffected
    const post = (table, key, id) => fetch(`${server.httpUrl}/rest/v1/${table}`, {
      method: 'POST', headers: { apikey: key, Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
      body: JSON.stringify([{ id, v: 'w' }]),
    });
    r = await post('notes', authd, 1);
    assert.equal(r.status, 403);
    assert.equal((await r.json()).code, 'RTS403');
    r = await post('notes', service(), 2);
    assert.equal(r.status, 201, await r.text());
    r = await post('items', authd, 10_000 + nextId++);
    assert.equal(r.status, 201, 'a flag scoped to notes leaves items alone');
    // reads are not writes
    r = await fetch(`${server.httpUrl}/rest/v1/notes`, { headers: { apikey: authd, Authorization: `Bearer ${authd}` } });
    assert.equal(r.status, 200);
    // persisted to the file
    assert.deepEqual(JSON.parse(readFileSync(flagsPath, 'utf8')).flags['writes.notes'].tables, ['notes']);
    await clearFlags();
  });

  it('the flags file is read again on SIGHUP (a broken one keeps the current flags)', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    await clearFlags();
    const c = await rawConnect(sc, server, {});
    const topic = `realtime:${uniqueTopic('hup')}`;
    const j = await c.join(topic);
    assert.equal(j.reply.payload.response.flags, undefined, 'no flags: the reply is Supabase\'s');
    assert.deepEqual(Object.keys(j.reply.payload.response), ['postgres_changes']);
    writeFileSync(flagsPath, JSON.stringify({ flags: { banner: { description: 'from the file' } } }));
    const at = Date.now();
    server.proc.kill('SIGHUP');
    const ev = await c.next((f) => f.event === 'system' && f.payload.extension === 'flags', 2000, 'flags after SIGHUP');
    t.diagnostic(`SIGHUP to the flags event: ${Date.now() - at} ms`);
    assert.ok(Date.now() - at < 1500, `took ${Date.now() - at} ms`);
    assert.deepEqual(ev.payload.flags, { banner: true });
    assert.equal((await flagsApi('GET', 'banner')).body.description, 'from the file');

    writeFileSync(flagsPath, '{"flags": {"banner": {"rollout": "all"}}}');
    server.proc.kill('SIGHUP');
    await sleep(500);
    assert.equal((await flagsApi('GET', 'banner')).status, 200, 'the current flags stay');
    const m = await (await fetch(`${server.httpUrl}/metrics`)).text();
    assert.match(m, /rtsync_flag_reloads_total\{result="error"\} [1-9]/);
    await clearFlags();
  });
});
