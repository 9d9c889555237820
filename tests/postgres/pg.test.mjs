// PostgreSQL-specific behaviour of `rtsync serve --postgres` (run by
// tests/postgres/run.sh against its private cluster): values converted to
// JSON as to_jsonb() does (what Supabase Realtime sends), old records per
// replica identity, unchanged TOASTed values, TRUNCATE, a 100k-row
// transaction, the clear errors at start, and aggregate reads giving the
// same JSON as the embedded store.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, createPgDatabase, psql } from '../interop/lib/server.mjs';
import { rawConnect } from '../interop/lib/raw.mjs';
import { scope, sleep } from '../interop/lib/util.mjs';

const SCHEMA = `
CREATE TABLE typed (
  id bigint PRIMARY KEY,
  i2 smallint, i4 integer, i8 bigint, num numeric, num_nan numeric, f4 real, f8 double precision,
  f8_inf double precision, b boolean, j json, jb jsonb, jb_str jsonb, ia integer[], ta text[],
  ja jsonb[], na numeric[], ts timestamp, tstz timestamptz, d date, tm time, u uuid, t text,
  vc varchar(20), bc char(3), by bytea, iv interval, tia integer[]
);
CREATE TABLE ident_default (id bigint PRIMARY KEY, a text, b integer);
CREATE TABLE ident_full (id bigint PRIMARY KEY, a text, b integer);
ALTER TABLE ident_full REPLICA IDENTITY FULL;
CREATE TABLE toasty (id bigint PRIMARY KEY, big text, n integer);
ALTER TABLE toasty ALTER COLUMN big SET STORAGE EXTERNAL;
CREATE TABLE toasty_full (id bigint PRIMARY KEY, big text, n integer);
ALTER TABLE toasty_full ALTER COLUMN big SET STORAGE EXTERNAL;
ALTER TABLE toasty_full REPLICA IDENTITY FULL;
CREATE TABLE trunc (id bigint PRIMARY KEY, v text);
CREATE TABLE bulk (id bigint PRIMARY KEY, v text);
`;
// Both stores read this one schema.
const AGG_SCHEMA = `
CREATE TABLE agg_sales (id bigint PRIMARY KEY, category text, qty integer, amount bigint,
  price double precision, note text);
`;

let server, dir, db;
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'rtsync-pg-'));
  writeFileSync(join(dir, 'schema.sql'), SCHEMA + AGG_SCHEMA);
  db = createPgDatabase();
  server = await startServer({ pgDatabase: db, pgSchemaAsIs: true, args: ['--schema', join(dir, 'schema.sql'), '--retain-changes', '200000'] });
});
after(async () => {
  if (server) await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** Joins a topic with postgres_changes bindings; resolves the raw client once subscribed. */
async function listen(sc, topic, bindings) {
  const raw = await rawConnect(sc, server, { vsn: '2.0.0' });
  const { reply } = await raw.join(`realtime:${topic}`, { config: { postgres_changes: bindings } });
  assert.equal(reply.payload.status, 'ok');
  await raw.next((f) => f.event === 'system' && f.payload.status === 'ok', 5000, 'subscribed');
  return raw;
}
const changes = (raw) => raw.frames.filter((f) => f.event === 'postgres_changes').map((f) => f.payload.data);
const waitChanges = (raw, n, ms = 10_000, what = '') =>
  raw.frames.waitFor(() => changes(raw).length >= n, ms, `${n} changes ${what}`).then(() => changes(raw));
const toJsonb = (table, id) => JSON.parse(psql(db, `SET TimeZone = 'UTC'; SELECT to_jsonb(_row) FROM ${table} _row WHERE id = ${id}`).trim());

describe('PostgreSQL store', () => {
  it('values arrive as to_jsonb() gives them, with PostgreSQL type names', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const raw = await listen(sc, 'types', [{ event: '*', schema: 'public', table: 'typed' }]);
    server.sql(`INSERT INTO typed VALUES (1, -32768, 2147483647, 9007199254740991, 12345.678901234567890, 'NaN',
      1.5, 0.1, 'Infinity', true, '{"a": [1, "x"], "b": null}', '{"k": {"n": 2.5}}', '"just a string"',
      '{1,NULL,3}', '{"a b","c,d","e\\"f",NULL,"NULL"}', ARRAY['{"x":1}'::jsonb, '[2]'::jsonb],
      '{1.5,2}', '2024-02-29 12:34:56.789', '2024-02-29 12:34:56.789+05:30', '2024-02-29', '23:59:59',
      'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'ünï code 😀', 'var', 'ab', '\\x0001ff', '1 day 02:00:00',
      '[0:1]={7,8}')`);
    const [ins] = await waitChanges(raw, 1);
    assert.equal(ins.type, 'INSERT');
    assert.deepEqual(ins.record, toJsonb('typed', 1));
    assert.deepEqual(ins.record.ta, ['a b', 'c,d', 'e"f', null, 'NULL']);
    assert.deepEqual(ins.record.tstz, '2024-02-29T07:04:56.789+00:00');
    assert.deepEqual(ins.record.jb_str, 'just a string');
    assert.deepEqual(ins.columns.map((c) => c.type), ['int8', 'int2', 'int4', 'int8', 'numeric', 'numeric',
      'float4', 'float8', 'float8', 'bool', 'json', 'jsonb', 'jsonb', '_int4', '_text', '_jsonb', '_numeric',
      'timestamp', 'timestamptz', 'date', 'time', 'uuid', 'text', 'varchar', 'bpchar', 'bytea', 'interval', '_int4']);
    assert.match(ins.commit_timestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(Math.abs(Date.parse(ins.commit_timestamp) - Date.now()) < 60_000, 'commit time is now');
    // nulls everywhere
    server.sql('INSERT INTO typed (id) VALUES (2)');
    const [, ins2] = await waitChanges(raw, 2);
    assert.deepEqual(ins2.record, toJsonb('typed', 2));
    // integers beyond 64 bits, in numeric and inside jsonb
    server.sql(`INSERT INTO typed (id, num, jb) VALUES (3, 123456789012345678901234567890, '{"big": 123456789012345678901234567890}')`);
    const [, , ins3] = await waitChanges(raw, 3);
    assert.deepEqual(ins3.record, toJsonb('typed', 3));
    assert.equal(ins3.record.jb.big, 1.2345678901234568e29);
    // the REST API gives the same JSON
    const key = server.token({ role: 'service_role' });
    const res = await fetch(`${server.httpUrl}/rest/v1/typed?id=eq.1`, { headers: { apikey: key, authorization: `Bearer ${key}` } });
    assert.equal(res.status, 200);
    assert.deepEqual(await res.json(), [toJsonb('typed', 1)]);
    const big = await fetch(`${server.httpUrl}/rest/v1/typed?id=eq.3&select=num,jb`, { headers: { apikey: key, authorization: `Bearer ${key}` } });
    assert.equal(big.status, 200);
    assert.deepEqual(await big.json(), [{ num: 1.2345678901234568e29, jb: { big: 1.2345678901234568e29 } }]);
    // a value PostgreSQL cannot read as the column's type: 400 with its SQLSTATE
    const bad = await fetch(`${server.httpUrl}/rest/v1/typed?id=eq.abc`, { headers: { apikey: key, authorization: `Bearer ${key}` } });
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).code, '22P02');
  });

  it('old records follow the replica identity: primary key (DEFAULT) or the whole row (FULL)', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const raw = await listen(sc, 'ident', [{ event: '*', schema: 'public', table: 'ident_default' }, { event: '*', schema: 'public', table: 'ident_full' }]);
    for (const tbl of ['ident_default', 'ident_full']) {
      server.sql(`INSERT INTO ${tbl} VALUES (1, 'x', 1); UPDATE ${tbl} SET b = 2 WHERE id = 1;
        UPDATE ${tbl} SET id = 5 WHERE id = 1; DELETE FROM ${tbl} WHERE id = 5;`);
    }
    const got = await waitChanges(raw, 8);
    const byTable = (tbl) => got.filter((c) => c.table === tbl).map((c) => [c.type, c.record, c.old_record]);
    assert.deepEqual(byTable('ident_default'), [
      ['INSERT', { id: 1, a: 'x', b: 1 }, undefined],
      ['UPDATE', { id: 1, a: 'x', b: 2 }, { id: 1 }],
      ['UPDATE', { id: 5, a: 'x', b: 2 }, { id: 1 }],
      ['DELETE', undefined, { id: 5 }],
    ]);
    assert.deepEqual(byTable('ident_full'), [
      ['INSERT', { id: 1, a: 'x', b: 1 }, undefined],
      ['UPDATE', { id: 1, a: 'x', b: 2 }, { id: 1, a: 'x', b: 1 }],
      ['UPDATE', { id: 5, a: 'x', b: 2 }, { id: 1, a: 'x', b: 2 }],
      ['DELETE', undefined, { id: 5, a: 'x', b: 2 }],
    ]);
    // DELETE filters see only what the identity carries
    const f = await listen(sc, 'ident-filter', [{ event: 'DELETE', schema: 'public', table: 'ident_full', filter: 'a=eq.y' }]);
    server.sql("INSERT INTO ident_full VALUES (9, 'y', 0); DELETE FROM ident_full WHERE id = 9");
    const [del] = await waitChanges(f, 1);
    assert.deepEqual(del.old_record, { id: 9, a: 'y', b: 0 });
  });

  it('unchanged TOASTed values: left out, or taken from the old row with REPLICA IDENTITY FULL', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const raw = await listen(sc, 'toast', [{ event: 'UPDATE', schema: 'public', table: 'toasty' }, { event: 'UPDATE', schema: 'public', table: 'toasty_full' }]);
    for (const tbl of ['toasty', 'toasty_full']) {
      server.sql(`INSERT INTO ${tbl} SELECT 1, string_agg(md5(g::text), '') , 0 FROM generate_series(1, 2000) g;
        UPDATE ${tbl} SET n = 1 WHERE id = 1`);
    }
    const got = await waitChanges(raw, 2);
    const plain = got.find((c) => c.table === 'toasty');
    const full = got.find((c) => c.table === 'toasty_full');
    assert.deepEqual(plain.record, { id: 1, n: 1 }, 'the unchanged TOASTed column is left out');
    assert.equal(full.record.n, 1);
    assert.equal(full.record.big.length, 64_000, 'the value comes from the old row');
    assert.equal(full.old_record.big, full.record.big);
  });

  it('TRUNCATE sends no event (as Supabase Realtime) and the stream goes on', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const raw = await listen(sc, 'trunc', [{ event: '*', schema: 'public', table: 'trunc' }]);
    server.sql("INSERT INTO trunc VALUES (1, 'a'); TRUNCATE trunc; INSERT INTO trunc VALUES (2, 'b')");
    await waitChanges(raw, 2);
    await sleep(300);
    assert.deepEqual(changes(raw).map((c) => [c.type, c.record.id]), [['INSERT', 1], ['INSERT', 2]]);
  });

  it('a 100k-row transaction is delivered whole, in order, to the bindings it matches', { timeout: 120_000 }, async (t) => {
    const sc = scope(t);
    const few = await listen(sc, 'bulk-few', [{ event: 'INSERT', schema: 'public', table: 'bulk', filter: 'id=gt.99990' }]);
    const one = await listen(sc, 'bulk-one', [{ event: 'INSERT', schema: 'public', table: 'bulk', filter: 'id=eq.50000' }]);
    const started = Date.now();
    server.sql("INSERT INTO bulk SELECT g, 'row ' || g FROM generate_series(1, 100000) g");
    const got = await waitChanges(few, 10, 90_000, 'of the bulk insert');
    const ms = Date.now() - started;
    assert.deepEqual(got.map((c) => c.record.id), [99991, 99992, 99993, 99994, 99995, 99996, 99997, 99998, 99999, 100000]);
    const pos = got.map((c) => BigInt(c.position));
    assert.ok(pos.every((p, i) => i === 0 || p === pos[i - 1] + 1n), 'consecutive positions');
    const [mid] = await waitChanges(one, 1);
    assert.deepEqual(mid.record, { id: 50000, v: 'row 50000' });
    assert.equal(pos[9] - BigInt(mid.position), 50000n, 'every row has its own position');
    t.diagnostic(`100k-row transaction: commit to delivery in ${ms} ms`);
  });

  it('start fails clearly for a role without REPLICATION and for a table without a primary key', { timeout: 30_000 }, async () => {
    psql(db, "DO $$ BEGIN CREATE ROLE rt_norepl LOGIN; EXCEPTION WHEN duplicate_object THEN NULL; END $$; GRANT ALL ON SCHEMA public TO rt_norepl");
    const base = process.env.RTSYNC_TEST_POSTGRES.replace('postgres@', 'rt_norepl@');
    await assert.rejects(startServer({ args: ['--postgres', `${base}/${db}`, '--postgres-name', `${db}_x`] }),
      /role rt_norepl lacks the REPLICATION attribute/);
    const db2 = createPgDatabase();
    psql(db2, 'CREATE TABLE nopk (a int)');
    await assert.rejects(startServer({ pgDatabase: db2 }), /table public\.nopk has no primary key/);
    await assert.rejects(startServer({ pgDatabase: db2, args: ['--postgres-tables', 'nosuch'] }), /table public\.nosuch \(--postgres-tables\) does not exist/);
  });

  it('aggregate reads give the same JSON as the embedded store', { timeout: 60_000 }, async () => {
    writeFileSync(join(dir, 'agg.sql'), AGG_SCHEMA);
    const lite = await startServer({ store: 'sqlite', args: ['--schema', join(dir, 'agg.sql'), '--db', join(dir, 'agg.db')] });
    try {
      const key = server.token({ role: 'service_role' });
      const call = async (srv, method, path, body) => {
        const res = await fetch(`${srv.httpUrl}/rest/v1/${path}`, {
          method,
          headers: { apikey: key, authorization: `Bearer ${key}`, 'content-type': 'application/json', prefer: 'count=exact' },
          body: body && JSON.stringify(body),
        });
        const text = await res.text();
        return { status: res.status, range: res.headers.get('content-range'), json: text ? JSON.parse(text) : null };
      };
      const rows = [
        { id: 1, category: 'books', qty: 2, amount: 10, price: 1.5, note: 'm' },
        { id: 2, category: 'books', qty: 3, amount: 20, price: 2.25, note: 'x' },
        { id: 3, category: 'food', qty: 1, amount: 5, price: null, note: null },
        { id: 4, category: null, qty: null, amount: 7, price: 0.5, note: 'c' },
        { id: 5, category: 'toys', qty: 4, amount: 9007199254740000, price: 4, note: 'k' },
      ];
      for (const srv of [server, lite]) assert.equal((await call(srv, 'POST', 'agg_sales', rows)).status, 201);
      const queries = [
        'select=category,amount.sum(),count()&order=category',
        'select=count()',
        'select=count()&id=gt.100',
        'select=amount.sum(),qty.sum(),qty.avg(),price.sum(),price.avg(),lo:note.min(),hi:note.max(),price.count()',
        'select=amount.sum(),qty.avg(),note.max(),count()&category=eq.none',
        'select=c:category,n:count(),q:qty.max(),p:price.min()&order=category.desc.nullsfirst&limit=2&offset=1',
        'select=category,qty.avg()&qty=gte.2&order=category',
        'select=note.sum()',
        'select=category,count()&order=amount',
        'select=*.sum()',
      ];
      for (const q of queries) {
        const [pg, sq] = [await call(server, 'GET', `agg_sales?${q}`), await call(lite, 'GET', `agg_sales?${q}`)];
        assert.deepEqual(pg, sq, q);
      }
      const sums = await call(server, 'GET', 'agg_sales?select=category,amount.sum(),count()&order=category');
      assert.deepEqual(sums.json, [
        { category: 'books', sum: 30, count: 2 }, { category: 'food', sum: 5, count: 1 },
        { category: 'toys', sum: 9007199254740000, count: 1 }, { category: null, sum: 7, count: 1 },
      ]);
      assert.equal(sums.range, '0-3/5');
    } finally {
      await lite.stop();
    }
  });
});
