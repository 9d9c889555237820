// realtime-js presence across three clients (plus one in a child process that
// is killed abruptly), for both serializers.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { startServer } from './lib/server.mjs';
import {
  VSNS, Recorder, scope, realtimeClient, subscribe, uniqueTopic, withTimeout, safeJson,
} from './lib/util.mjs';

let server;
before(async () => { server = await startServer(); });
after(async () => { if (server) await server.stop(); });

const CHILD = fileURLToPath(new URL('./lib/presence-child.mjs', import.meta.url));

/** A subscribed channel with presence listeners recording sync/join/leave. */
async function presenceMember(sc, vsn, topic, key) {
  const client = realtimeClient(sc, server, { vsn });
  const ch = client.channel(topic, { config: { presence: { key } } });
  const m = {
    key, client, ch,
    syncs: new Recorder(`${key}: presence sync`),
    joins: new Recorder(`${key}: presence join`),
    leaves: new Recorder(`${key}: presence leave`),
  };
  ch.on('presence', { event: 'sync' }, () => m.syncs.push(ch.presenceState()));
  ch.on('presence', { event: 'join' }, m.joins.handler);
  ch.on('presence', { event: 'leave' }, m.leaves.handler);
  await subscribe(ch);
  return m;
}

/** Resolve when the member's current presence state satisfies pred. */
function waitState(m, pred, what, ms = 5000) {
  if (pred(m.ch.presenceState())) return Promise.resolve(m.ch.presenceState());
  return m.syncs.waitNext(() => pred(m.ch.presenceState()), ms, what).then(() => m.ch.presenceState());
}

const hasKeys = (...keys) => (s) => keys.every((k) => k in s);
const lacksKey = (k) => (s) => !(k in s);

/** Strip presence_ref so metas can be compared with deepEqual. */
const metasOf = (state, key) => (state[key] || []).map(({ presence_ref, ...rest }) => rest);

function startChild(sc, vsn, topic, key, meta) {
  const child = spawn(process.execPath, [CHILD, server.realtimeUrl, server.token(), vsn, topic, key, JSON.stringify(meta)],
    { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  const exited = new Promise((r) => child.on('exit', (code, signal) => r({ code, signal })));
  sc.defer(async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    await exited;
  });
  const ready = new Promise((resolve, reject) => {
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => { err += d; });
    child.stdout.on('data', (d) => {
      out += d;
      if (out.includes('READY\n')) resolve();
      else if (/TRACK-FAILED|STATUS/.test(out)) reject(new Error(`child: ${out} ${err}`));
    });
    child.on('exit', (code) => reject(new Error(`child exited early (${code}): ${out} ${err}`)));
  });
  return { child, ready, exited };
}

for (const vsn of VSNS) {
  describe(`realtime-js presence, vsn ${vsn}`, () => {
    it('three clients: sync/join/leave, state contents, re-track, untrack, unsubscribe, abrupt disconnect',
      { timeout: 60_000 }, async (t) => {
        const sc = scope(t);
        const topic = uniqueTopic('presence');
        let A; let B; let C;

        await t.test('first member tracks and sees itself', async () => {
          A = await presenceMember(sc, vsn, topic, 'alice');
          // presence_state arrives right after the join: the first sync is the empty room
          await A.syncs.waitFor(() => true, 5000, 'initial sync');
          assert.deepEqual(A.syncs.events[0], {}, 'initial presence_state of an empty room is {}');
          assert.equal(await A.ch.track({ user: 'alice', status: 'online' }), 'ok');
          const j = await A.joins.waitFor((e) => e.key === 'alice', 5000, 'own join');
          assert.equal(j.event, 'join');
          assert.deepEqual(j.currentPresences, []);
          assert.equal(j.newPresences.length, 1);
          assert.equal(j.newPresences[0].user, 'alice');
          assert.equal(typeof j.newPresences[0].presence_ref, 'string');
          assert.ok(j.newPresences[0].presence_ref.length > 0);
          const s = await waitState(A, hasKeys('alice'), 'alice in own state');
          assert.deepEqual(metasOf(s, 'alice'), [{ user: 'alice', status: 'online' }]);
        });

        await t.test('late joiner gets existing members in its first sync (presence_state)', async () => {
          B = await presenceMember(sc, vsn, topic, 'bob');
          const first = await B.syncs.waitFor(() => true, 5000, 'first sync at B');
          assert.deepEqual(Object.keys(first), ['alice']);
          assert.deepEqual(metasOf(first, 'alice'), [{ user: 'alice', status: 'online' }]);
          assert.equal(typeof first.alice[0].presence_ref, 'string');
          await B.joins.waitFor((e) => e.key === 'alice', 5000, 'join event for alice at B');
          assert.equal(await B.ch.track({ user: 'bob', status: 'online' }), 'ok');
          await A.joins.waitFor((e) => e.key === 'bob', 5000, 'A sees bob join');
        });

        await t.test('third member: everyone converges on the same three keys', async () => {
          C = await presenceMember(sc, vsn, topic, 'carol');
          assert.equal(await C.ch.track({ user: 'carol', status: 'online', n: 3 }), 'ok');
          const states = [];
          for (const m of [A, B, C]) states.push(await waitState(m, hasKeys('alice', 'bob', 'carol'), `${m.key} sees 3`));
          for (const s of states) {
            assert.deepEqual(Object.keys(s).sort(), ['alice', 'bob', 'carol']);
            assert.deepEqual(metasOf(s, 'alice'), [{ user: 'alice', status: 'online' }]);
            assert.deepEqual(metasOf(s, 'bob'), [{ user: 'bob', status: 'online' }]);
            assert.deepEqual(metasOf(s, 'carol'), [{ user: 'carol', status: 'online', n: 3 }]);
          }
          const refs = ['alice', 'bob', 'carol'].map((k) => states[0][k][0].presence_ref);
          assert.equal(new Set(refs).size, 3, `presence refs unique: ${refs}`);
          for (const s of states.slice(1)) {
            assert.deepEqual(['alice', 'bob', 'carol'].map((k) => s[k][0].presence_ref), refs, 'same refs everywhere');
          }
        });

        await t.test('re-track replaces the meta (join with new meta, leave of the old one)', async () => {
          const oldRef = A.ch.presenceState().alice[0].presence_ref;
          const fromB = B.joins.events.length;
          const leavesB = B.leaves.events.length;
          assert.equal(await A.ch.track({ user: 'alice', status: 'away' }), 'ok');
          for (const m of [A, B, C]) {
            const s = await waitState(m, (st) => st.alice && st.alice.length === 1 && st.alice[0].status === 'away',
              `${m.key} sees alice away`);
            assert.deepEqual(metasOf(s, 'alice'), [{ user: 'alice', status: 'away' }]);
            assert.notEqual(s.alice[0].presence_ref, oldRef, 'a new presence_ref for the new meta');
          }
          const j = await B.joins.waitFor((e) => e.key === 'alice', 5000, 'alice re-join at B', fromB);
          assert.equal(j.newPresences.length, 1);
          assert.equal(j.newPresences[0].status, 'away');
          const l = await B.leaves.waitFor((e) => e.key === 'alice', 5000, 'alice old meta leave at B', leavesB);
          assert.equal(l.leftPresences.length, 1);
          assert.equal(l.leftPresences[0].status, 'online');
          assert.equal(l.leftPresences[0].presence_ref, oldRef);
        });

        await t.test('untrack -> others see leave, the channel stays joined', async () => {
          const fromA = A.leaves.events.length;
          const fromB = B.leaves.events.length;
          assert.equal(await C.ch.untrack(), 'ok');
          for (const [m, from] of [[A, fromA], [B, fromB]]) {
            const l = await m.leaves.waitFor((e) => e.key === 'carol', 5000, `${m.key} sees carol leave`, from);
            assert.equal(l.leftPresences.length, 1);
            assert.equal(l.leftPresences[0].user, 'carol');
            assert.deepEqual(l.currentPresences, []);
            const s = await waitState(m, lacksKey('carol'), `${m.key}: carol gone`);
            assert.deepEqual(Object.keys(s).sort(), ['alice', 'bob']);
          }
          await waitState(C, lacksKey('carol'), 'carol gone from own state');
          assert.equal(C.ch.state, 'joined');
        });

        await t.test('abrupt disconnect of a tracked client (SIGKILL) -> others see leave', async () => {
          const child = startChild(sc, vsn, topic, 'dave', { user: 'dave' });
          await withTimeout(child.ready, 10_000, 'child READY');
          for (const m of [A, B]) await waitState(m, hasKeys('dave'), `${m.key} sees dave`);
          const fromA = A.leaves.events.length;
          const fromB = B.leaves.events.length;
          child.child.kill('SIGKILL');
          await child.exited;
          for (const [m, from] of [[A, fromA], [B, fromB]]) {
            const l = await m.leaves.waitFor((e) => e.key === 'dave', 10_000, `${m.key} sees dave leave`, from);
            assert.deepEqual(l.leftPresences.map(({ presence_ref, ...r }) => r), [{ user: 'dave' }]);
            await waitState(m, lacksKey('dave'), `${m.key}: dave gone`);
          }
        });

        await t.test('abrupt disconnect in-process (socket destroyed) -> others see leave', async () => {
          const E = await presenceMember(sc, vsn, topic, 'erin');
          assert.equal(await E.ch.track({ user: 'erin' }), 'ok');
          await waitState(A, hasKeys('erin'), 'A sees erin');
          const fromA = A.leaves.events.length;
          // Kill the TCP connection without a close frame, then stop the client reconnecting.
          const conn = E.client.socketAdapter.getSocket().conn;
          conn._socket.destroy();
          await E.client.disconnect();
          await A.leaves.waitFor((e) => e.key === 'erin', 10_000, 'A sees erin leave', fromA);
          await waitState(A, lacksKey('erin'), 'erin gone');
        });

        await t.test('unsubscribe (phx_leave) -> others see leave', async () => {
          const fromA = A.leaves.events.length;
          assert.equal(await B.client.removeChannel(B.ch), 'ok');
          await A.leaves.waitFor((e) => e.key === 'bob', 5000, 'A sees bob leave', fromA);
          const s = await waitState(A, lacksKey('bob'), 'bob gone');
          assert.deepEqual(Object.keys(s), ['alice'], `final state ${safeJson(s)}`);
          const sc2 = await waitState(C, lacksKey('bob'), 'bob gone at C');
          assert.deepEqual(Object.keys(sc2), ['alice']);
        });
      });

    it('same presence key from two sockets gives one key with two metas', { timeout: 30_000 }, async (t) => {
      const sc = scope(t);
      const topic = uniqueTopic('presence');
      const obs = await presenceMember(sc, vsn, topic, 'observer');
      const d1 = await presenceMember(sc, vsn, topic, 'shared');
      const d2 = await presenceMember(sc, vsn, topic, 'shared');
      assert.equal(await d1.ch.track({ device: 'phone' }), 'ok');
      assert.equal(await d2.ch.track({ device: 'laptop' }), 'ok');
      const s = await waitState(obs, (st) => st.shared && st.shared.length === 2, 'two metas under "shared"');
      assert.deepEqual(metasOf(s, 'shared').map((m) => m.device).sort(), ['laptop', 'phone']);
      assert.equal(await d1.ch.untrack(), 'ok');
      const s2 = await waitState(obs, (st) => st.shared && st.shared.length === 1, 'one meta left');
      assert.deepEqual(metasOf(s2, 'shared'), [{ device: 'laptop' }]);
    });
  });
}
