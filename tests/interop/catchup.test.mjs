// Catch-ups longer than the feed thread's catch-up cache (20,000 changes) are
// read from the log in batches instead: a subscriber that missed 20,500
// changes gets each once, in order, then live ones; two that resume together
// from different positions get exactly their own gaps.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer } from './lib/server.mjs';
import { rawConnect } from './lib/raw.mjs';
import { scope } from './lib/util.mjs';

const MISSED = 20_500;
let server, dir;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rtsync-catchup-'));
  const schemaPath = join(dir, 'schema.sql');
  writeFileSync(schemaPath, 'CREATE TABLE IF NOT EXISTS items (id bigint PRIMARY KEY, v text);\n');
  server = await startServer({ args: ['--schema', schemaPath, '--db', join(dir, 'test.db')] });
});
after(async () => {
  if (server) await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

// Returns the position of the write's last change (Rtsync-Position).
async function insert(rows) {
  const key = server.token({ role: 'service_role' });
  const r = await fetch(`${server.httpUrl}/rest/v1/items`, {
    method: 'POST',
    headers: { apikey: key, Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
    body: JSON.stringify(rows),
  });
  assert.equal(r.status, 201, await r.text());
  return r.headers.get('rtsync-position');
}

const inserts = (raw) => raw.frames.events.filter((f) => f.event === 'postgres_changes').map((f) => f.payload.data);

describe('catch-ups past the cache', () => {
  it(`${MISSED} missed changes arrive once each, in order, then live ones`, { timeout: 120_000 }, async (t) => {
    const sc = scope(t);
    const binding = { event: 'INSERT', schema: 'public', table: 'items' };
    const first = await rawConnect(sc, server, { vsn: '2.0.0' });
    await first.join('realtime:catchup-first', { config: { postgres_changes: [binding] } });
    await insert([{ id: 1, v: 'seen' }]);
    const seen = await first.frames.waitFor((f) => f.event === 'postgres_changes', 5000, 'first change');
    const p0 = seen.payload.data.position;
    await first.close();
    for (let start = 2; start < MISSED + 2; start += 5000) {
      const n = Math.min(5000, MISSED + 2 - start);
      await insert(Array.from({ length: n }, (_, i) => ({ id: start + i, v: 'missed' })));
    }
    // one resumes from before all of them (past the cache), one from the middle
    const a = await rawConnect(sc, server, { vsn: '2.0.0' });
    const b = await rawConnect(sc, server, { vsn: '1.0.0' });
    await Promise.all([
      a.join('realtime:catchup-a', { config: { postgres_changes: [binding], rtsync: { resume_after: p0 } } }),
      b.join('realtime:catchup-b', { config: { postgres_changes: [binding], rtsync: { resume_after: String(BigInt(p0) + 20_000n) } } }),
    ]);
    const last = MISSED + 1;
    let n = 0; // each event is tested once: count, do not rescan
    await a.frames.waitFor((f) => f.event === 'postgres_changes' && ++n >= MISSED, 60_000, 'the whole catch-up');
    await insert([{ id: last + 1, v: 'live' }]);
    const isLive = (f) => f.event === 'postgres_changes' && f.payload.data.record.id === last + 1;
    await a.frames.waitFor(isLive, 10_000, 'live change on a');
    await b.frames.waitFor(isLive, 10_000, 'live change on b');
    const ids = inserts(a).map((d) => d.record.id);
    assert.equal(ids.length, MISSED + 1);
    for (let i = 0; i < ids.length; i++) assert.equal(ids[i], i + 2, `change ${i}`);
    const pos = inserts(a).map((d) => BigInt(d.position));
    assert.ok(pos.every((p, i) => i === 0 || p > pos[i - 1]), 'positions increase');
    const idsB = inserts(b).map((d) => d.record.id);
    const wantB = Array.from({ length: MISSED - 20_000 }, (_, i) => 20_002 + i).concat([last + 1]);
    assert.deepEqual(idsB, wantB);
  });

  // A client may learn a position before the feed has read it (a write's
  // Rtsync-Position, a snapshot's position, taken right after a burst): a
  // resume from there is no gap, it waits for the feed to read that far.
  it('a resume from a position the feed has not read yet is not a resync', { timeout: 120_000 }, async (t) => {
    const sc = scope(t);
    const binding = { event: 'INSERT', schema: 'public', table: 'items' };
    let id = 1_000_000;
    for (let round = 0; round < 10; round++) {
      const pos = await insert(Array.from({ length: 3000 }, () => ({ id: id++, v: 'burst' })));
      assert.match(pos, /^[0-9]+$/);
      const c = await rawConnect(sc, server, { vsn: '2.0.0' });
      await c.join(`realtime:catchup-ahead-${round}`, { config: { postgres_changes: [binding], rtsync: { resume_after: pos } } });
      const liveId = id++;
      await insert([{ id: liveId, v: 'live' }]);
      await c.frames.waitFor((f) => f.event === 'postgres_changes' && f.payload.data.record.id === liveId, 10_000, `live change, round ${round}`);
      const resync = c.frames.events.filter((f) => f.event === 'system' && f.payload.resync_required);
      assert.deepEqual(resync, [], `round ${round}: no resync`);
      assert.deepEqual(inserts(c).map((d) => d.record.id), [liveId], `round ${round}: only the change after the position`);
      await c.close();
    }
  });
});
