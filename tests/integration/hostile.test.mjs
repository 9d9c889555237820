// Hostile input against a live server: each case once crashed it, made its
// memory grow without bound, or produced a frame a client cannot parse.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { startServer } from '../interop/lib/server.mjs';
import { rawConnect } from '../interop/lib/raw.mjs';
import { scope, sleep, withTimeout } from '../interop/lib/util.mjs';

async function serverWithTable(sc, args = []) {
  const dir = mkdtempSync(join(tmpdir(), 'rtsync-hostile-'));
  sc.defer(() => rmSync(dir, { recursive: true, force: true }));
  const schema = join(dir, 'schema.sql');
  writeFileSync(schema, 'CREATE TABLE IF NOT EXISTS todos (id bigint PRIMARY KEY, title text);');
  const s = await startServer({ args: ['--schema', schema, '--db', join(dir, 'db'), ...args] });
  sc.defer(() => s.kill());
  return s;
}

const metric = async (srv, re) => {
  const text = await (await fetch(`${srv.httpUrl}/metrics`)).text();
  const m = re.exec(text);
  return m ? Number(m[1]) : null;
};

/** Opens a socket, writes bytes without ever reading; resolves when the server closes it. */
function writeWithoutReading(srv, first, more, ms) {
  return new Promise((resolve) => {
    const sock = net.connect(srv.port, '127.0.0.1');
    let closed = false, timer;
    sock.on('connect', () => {
      sock.pause();
      sock.write(first);
      timer = setInterval(() => { if (!closed && sock.writable) sock.write(more); }, 1);
    });
    const done = (how) => { if (closed) return; closed = true; clearInterval(timer); sock.destroy(); resolve(how); };
    sock.on('error', () => done('closed'));
    sock.on('close', () => done('closed'));
    setTimeout(() => done('still open'), ms);
  });
}

test('REST: repeated * in select, invalid UTF-8 names, a huge Range never crash the server', { timeout: 30_000 }, async (t) => {
  const sc = scope(t);
  const srv = await serverWithTable(sc);
  const key = srv.token();
  const get = (path, headers = {}) => fetch(`${srv.httpUrl}/rest/v1/${path}`, { headers: { apikey: key, ...headers } });

  await fetch(`${srv.httpUrl}/rest/v1/todos`, { method: 'POST', headers: { apikey: key, 'Content-Type': 'application/json' }, body: '{"id":1,"title":"a"}' });
  let r = await get(`todos?select=${Array(50).fill('*').join(',')}`);
  assert.equal(r.status, 200);
  const rows = await r.json();
  assert.deepEqual(Object.keys(rows[0]).sort(), ['id', 'title']);

  r = await get('%FF%FE');
  assert.equal(r.status, 404);
  assert.equal((await r.json()).code, 'PGRST205', 'a valid JSON error body');

  r = await get('todos?select=%FF');
  assert.equal(r.status, 400);
  await r.json();

  r = await fetch(`${srv.httpUrl}/rest/v1/todos`, {
    method: 'POST',
    headers: { apikey: key, 'Content-Type': 'application/json' },
    body: JSON.stringify({ ['é'.repeat(400)]: 1 }),
  });
  assert.equal(r.status, 400);
  assert.equal((await r.json()).code, 'PGRST204');

  r = await get('todos?select=id', { Range: '0-9223372036854775807' });
  assert.equal(r.status, 200);
  await srv.stop(); // exit status 0: no sanitizer report
});

test('a client that pipelines requests without reading the answers is cut off', { timeout: 30_000 }, async (t) => {
  const sc = scope(t);
  const srv = await serverWithTable(sc, ['--max-queue-bytes', '262144']);
  const req = 'GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n';
  const how = await writeWithoutReading(srv, req, req.repeat(200), 15_000);
  assert.equal(how, 'closed');
  assert.ok((await metric(srv, /rtsync_errors_total\{reason="slow_consumer"\} (\d+)/)) >= 1);
  await srv.stop();
});

test('a deep pipeline of large requests is held back by TCP, not cut off, and every one is answered', { timeout: 30_000 }, async (t) => {
  const sc = scope(t);
  const srv = await serverWithTable(sc);
  // 12 inserts of ~100 KB each in one write: far more than the server keeps
  // while an answer is pending, so it stops reading until each is answered.
  const n = 12, rows = 2000;
  let reqs = '';
  for (let k = 0; k < n; k++) {
    const body = JSON.stringify(Array.from({ length: rows }, (_, i) => ({ id: k * rows + i, title: 'x'.repeat(30) })));
    reqs += `POST /rest/v1/todos HTTP/1.1\r\nHost: x\r\napikey: ${srv.token()}\r\nContent-Type: application/json\r\n` +
      `Prefer: return=minimal\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
  }
  const answers = await new Promise((resolve, reject) => {
    const sock = net.connect(srv.port, '127.0.0.1');
    let got = '';
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`timeout; got ${got.slice(0, 200)}`)); }, 20_000);
    sock.on('connect', () => sock.write(reqs));
    sock.on('data', (d) => {
      got += d.toString('latin1');
      if ((got.match(/^HTTP\/1\.1 /gm) || []).length === n) { clearTimeout(timer); sock.destroy(); resolve(got); }
    });
    sock.on('close', () => { clearTimeout(timer); resolve(got); });
    sock.on('error', () => {});
  });
  const statuses = answers.match(/^HTTP\/1\.1 \d+/gm) || [];
  assert.deepEqual(statuses, Array(n).fill('HTTP/1.1 201'));
  const r = await fetch(`${srv.httpUrl}/rest/v1/todos?select=id`, { headers: { apikey: srv.token(), Prefer: 'count=exact', Range: '0-0' } });
  assert.equal(r.headers.get('content-range'), `0-0/${n * rows}`);
  assert.equal(await metric(srv, /rtsync_errors_total\{reason="slow_consumer"\} (\d+)/) ?? 0, 0);
  await srv.stop();
});

test('a client that floods pings without reading the pongs is cut off', { timeout: 30_000 }, async (t) => {
  const sc = scope(t);
  const srv = await serverWithTable(sc, ['--max-queue-bytes', '262144']);
  const upgrade = `GET /realtime/v1/websocket?vsn=2.0.0&apikey=${srv.token()} HTTP/1.1\r\nHost: x\r\n` +
    'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n';
  const ping = Buffer.concat([Buffer.from([0x89, 0x80 | 125, 1, 2, 3, 4]), Buffer.alloc(125, 7)]);
  const how = await writeWithoutReading(srv, upgrade, Buffer.concat(Array(64).fill(ping)), 15_000);
  assert.equal(how, 'closed');
  assert.ok((await metric(srv, /rtsync_errors_total\{reason="slow_consumer"\} (\d+)/)) >= 1);
  await srv.stop();
});

test('postgres_changes: too many bindings and over-long names get a parsable system error', { timeout: 20_000 }, async (t) => {
  const sc = scope(t);
  const srv = await serverWithTable(sc);
  const raw = await rawConnect(sc, srv, { vsn: '2.0.0' });
  const many = Array.from({ length: 101 }, (_, i) => ({ event: '*', schema: 'public', table: 'todos', filter: `id=eq.${i}` }));
  const { reply } = await raw.join('realtime:many', { config: { postgres_changes: many } });
  assert.equal(reply.payload.status, 'ok');
  assert.equal(reply.payload.response.postgres_changes.length, 101);
  const sys = await raw.next((f) => f.event === 'system' && f.topic === 'realtime:many', 5000, 'system');
  assert.equal(sys.payload.status, 'error');
  assert.match(sys.payload.message, /Too many postgres_changes subscriptions/);

  await raw.join('realtime:long', { config: { postgres_changes: [{ event: '*', schema: 'public', table: 'a' + 'é'.repeat(600) }] } });
  const sys2 = await raw.next((f) => f.event === 'system' && f.topic === 'realtime:long', 5000, 'system');
  assert.equal(sys2.payload.status, 'error');
  assert.ok(!raw.frames.events.some((f) => f.unparsable), 'every frame parses as JSON');
  await srv.stop();
});
