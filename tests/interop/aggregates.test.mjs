// Aggregate functions in reads (docs/store.md), driven with supabase-js:
// select('category, amount.sum(), count()') groups by the plain columns,
// row-level security decides which rows each requester aggregates, and the
// errors are PostgreSQL's and PostgREST's. Runs on both stores
// (tests/postgres/run.sh runs it against PostgreSQL).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createRequire } from 'node:module';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, STORE, psql } from './lib/server.mjs';
import { WebSocket } from './lib/util.mjs';

const require = createRequire(import.meta.url);
const { createClient } = require('@supabase/supabase-js');

const SCHEMA = `
CREATE TABLE IF NOT EXISTS sales (
  id bigint PRIMARY KEY,
  owner uuid NOT NULL,
  category text,
  amount bigint,
  price double precision,
  note text
);
ALTER TABLE sales ENABLE ROW LEVEL SECURITY;
CREATE POLICY "own sales" ON sales
  FOR ALL TO authenticated
  USING (owner = auth.uid())
  WITH CHECK (owner = auth.uid());
`;
const PG_EXTRA = `
GRANT USAGE ON SCHEMA public TO anon, authenticated, service_role;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO anon, authenticated, service_role;
`;

const alice = randomUUID();
const bob = randomUUID();
const ROWS = [
  { id: 1, owner: alice, category: 'books', amount: 10, price: 1.5, note: 'm' },
  { id: 2, owner: alice, category: 'books', amount: 20, price: 2.5, note: 'x' },
  { id: 3, owner: alice, category: 'food', amount: 5, price: null, note: null },
  { id: 4, owner: alice, category: null, amount: 7, price: 0.25, note: 'c' },
  { id: 5, owner: bob, category: 'books', amount: 100, price: 4, note: 'k' },
  { id: 6, owner: bob, category: 'toys', amount: 1, price: 0.5, note: 'a' },
];

let server, dir;
const clients = [];
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rtsync-aggs-'));
  if (STORE === 'postgres') {
    for (const [role, extra] of [['anon', ''], ['authenticated', ''], ['service_role', ' BYPASSRLS']]) {
      psql('postgres', `DO $$ BEGIN CREATE ROLE ${role} NOLOGIN${extra}; EXCEPTION WHEN duplicate_object THEN NULL; END $$`);
    }
  }
  writeFileSync(join(dir, 'schema.sql'), SCHEMA + (STORE === 'postgres' ? PG_EXTRA : ''));
  server = await startServer({ args: ['--schema', join(dir, 'schema.sql'), '--db', join(dir, 'test.db')] });
  const { error } = await asService().from('sales').insert(ROWS);
  assert.equal(error, null, JSON.stringify(error));
});
after(async () => {
  for (const sb of clients) await sb.realtime.disconnect();
  if (server) await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

const opts = (headers = {}) => ({
  auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  realtime: { transport: WebSocket, logger: () => {} },
  global: { headers },
});
const track = (sb) => { clients.push(sb); return sb; };
const anonKey = () => server.token({ role: 'anon' });
function asUser(sub) {
  const token = server.token({ role: 'authenticated', claims: { sub } });
  return track(createClient(server.httpUrl, anonKey(), opts({ Authorization: `Bearer ${token}` })));
}
function asService() {
  return track(createClient(server.httpUrl, server.token({ role: 'service_role' }), opts()));
}
const ok = (r) => {
  assert.equal(r.error, null, `unexpected error ${JSON.stringify(r.error)}`);
  return r.data;
};

describe('aggregate functions', () => {
  it('group by the plain columns, keyed by the function names', async () => {
    const r = await asService().from('sales').select('category, amount.sum(), count()').order('category');
    assert.deepEqual(ok(r), [
      { category: 'books', sum: 130, count: 3 },
      { category: 'food', sum: 5, count: 1 },
      { category: 'toys', sum: 1, count: 1 },
      { category: null, sum: 7, count: 1 },
    ]);
  });

  it('row-level security: each user aggregates only the rows it may select', async () => {
    const a = await asUser(alice).from('sales').select('category, amount.sum(), count()').order('category');
    assert.deepEqual(ok(a), [
      { category: 'books', sum: 30, count: 2 },
      { category: 'food', sum: 5, count: 1 },
      { category: null, sum: 7, count: 1 },
    ]);
    const b = await asUser(bob).from('sales').select('category, amount.sum(), count()').order('category');
    assert.deepEqual(ok(b), [
      { category: 'books', sum: 100, count: 1 },
      { category: 'toys', sum: 1, count: 1 },
    ]);
    const totals = await asUser(bob).from('sales').select('amount.sum(), count()');
    assert.deepEqual(ok(totals), [{ sum: 101, count: 2 }]);
    // anon has no policy: one row over no rows
    const anon = await track(createClient(server.httpUrl, anonKey(), opts())).from('sales').select('amount.sum(), count()');
    assert.deepEqual(ok(anon), [{ sum: null, count: 0 }]);
  });

  it('aliases, every function, and their types', async () => {
    const r = await asUser(alice).from('sales')
      .select('cat:category, total:amount.sum(), mean:amount.avg(), p:price.sum(), pa:price.avg(), lo:amount.min(), hi:note.max(), n:price.count(), rows:count()')
      .eq('category', 'books');
    assert.deepEqual(ok(r), [{ cat: 'books', total: 30, mean: 15, p: 4, pa: 2, lo: 10, hi: 'x', n: 2, rows: 2 }]);
    // the aggregates alone, over no rows: count 0, the others null
    const none = await asUser(alice).from('sales').select('amount.sum(), price.avg(), note.min(), count()').eq('category', 'none');
    assert.deepEqual(ok(none), [{ sum: null, avg: null, min: null, count: 0 }]);
    // nulls are not counted by col.count()
    const food = await asUser(alice).from('sales').select('price.count(), count(), price.max()').eq('category', 'food');
    assert.deepEqual(ok(food), [{ count: 1, max: null }]); // the later "count" key wins, as in PostgREST
  });

  it('order, limit and offset apply to the groups; the exact count to the rows', async () => {
    const r = await asService().from('sales').select('category, count()', { count: 'exact' })
      .order('category', { ascending: false }).range(1, 2);
    assert.deepEqual(ok(r), [{ category: 'toys', count: 1 }, { category: 'food', count: 1 }]);
    assert.equal(r.count, 6);
    const head = await asUser(alice).from('sales').select('category, count()', { count: 'exact', head: true });
    assert.equal(head.error, null);
    assert.equal(head.count, 4);
  });

  it('refusals: PostgreSQL\'s for functions and grouping, PostgREST\'s for syntax and writes', async () => {
    const sb = asService();
    const text = await sb.from('sales').select('note.sum()');
    assert.equal(text.status, 404);
    assert.equal(text.error.code, '42883');
    assert.equal(text.error.message, 'function sum(text) does not exist');
    const order = await sb.from('sales').select('category, count()').order('amount');
    assert.equal(order.status, 400);
    assert.equal(order.error.code, '42803');
    const star = await sb.from('sales').select('*.sum()');
    assert.equal(star.status, 400);
    assert.equal(star.error.code, 'PGRST100');
    assert.equal(star.error.message, 'failed to parse select parameter (*.sum())');
    const fn = await sb.from('sales').select('amount.median()');
    assert.equal(fn.status, 400);
    assert.equal(fn.error.code, 'PGRST100');
    const write = await sb.from('sales').insert({ id: 99, owner: alice, amount: 1 }).select('amount.sum()');
    assert.equal(write.status, 400);
    assert.equal(write.error.code, 'PGRST100');
    const upd = await sb.from('sales').update({ note: 'q' }).eq('id', 1).select('count()');
    assert.equal(upd.status, 400);
    // nothing was written
    assert.deepEqual(ok(await sb.from('sales').select('id, note').in('id', [1, 99])), [{ id: 1, note: 'm' }]);
  });
});
