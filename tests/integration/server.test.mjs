// Server-level behaviour with real processes on loopback: shutdown, slow
// consumers, changes written by another process, WebSocket protocol errors, HTTP edges, fan-out across workers,
// and the README's supabase-js example. Process handling and clients come from
// the interop harness (tests/interop/lib), so 'ws' and the official clients
// resolve from tests/interop/node_modules.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import { spawn, execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';

import { startServer } from '../interop/lib/server.mjs';
import { rawConnect, tryUpgrade, encodeUserBroadcastPush } from '../interop/lib/raw.mjs';
import { scope, sleep, withTimeout, uniqueTopic, Recorder } from '../interop/lib/util.mjs';

const here = dirname(fileURLToPath(import.meta.url));

async function server(sc, opts) {
  const s = await startServer(opts);
  sc.defer(() => s.kill());
  return s;
}

/** Plain HTTP over a socket: sends raw bytes, returns everything read until close or ms. */
function rawHttp(srv, bytes, ms = 3000) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(srv.port, '127.0.0.1');
    let data = Buffer.alloc(0);
    const done = () => { clearTimeout(timer); sock.destroy(); resolve(data.toString('latin1')); };
    const timer = setTimeout(done, ms);
    sock.on('connect', () => sock.write(bytes));
    sock.on('data', (d) => { data = Buffer.concat([data, d]); });
    sock.on('end', done);
    sock.on('error', (e) => { clearTimeout(timer); reject(e); });
  });
}

/** A WebSocket handshake by hand; resolves {sock, rest} after the 101. */
function rawUpgrade(srv, token) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(srv.port, '127.0.0.1');
    let buf = Buffer.alloc(0);
    sock.on('connect', () => sock.write(
      `GET /realtime/v1/websocket?vsn=2.0.0&apikey=${token} HTTP/1.1\r\nHost: x\r\n` +
      'Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n' +
      'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n'));
    const onData = (d) => {
      buf = Buffer.concat([buf, d]);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      sock.off('data', onData);
      if (!head.startsWith('HTTP/1.1 101')) return reject(new Error(`no upgrade: ${head}`));
      assert.match(head, /Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/);
      resolve({ sock, rest: buf.subarray(end + 4) });
    };
    sock.on('data', onData);
    sock.on('error', reject);
  });
}

/** Reads server frames from sock until a close frame; resolves its code. */
function closeCode(sock, initial, ms = 5000) {
  return withTimeout(new Promise((resolve) => {
    let buf = initial;
    const scan = () => {
      while (buf.length >= 2) {
        const op = buf[0] & 0x0f;
        let len = buf[1] & 0x7f, off = 2;
        if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
        else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
        if (buf.length < off + len) return;
        if (op === 8) return resolve(len >= 2 ? buf.readUInt16BE(off) : 1005);
        buf = buf.subarray(off + len);
      }
    };
    sock.on('data', (d) => { buf = Buffer.concat([buf, d]); scan(); });
    sock.on('close', () => resolve(null));
    scan();
  }), ms, 'close frame');
}

/** A masked client frame. */
function clientFrame(opcode, payload, { fin = true, mask = true } = {}) {
  const key = Buffer.from([1, 2, 3, 4]);
  const len = payload.length;
  const head = [((fin ? 0x80 : 0) | opcode)];
  if (len < 126) head.push((mask ? 0x80 : 0) | len);
  else if (len < 65536) head.push((mask ? 0x80 : 0) | 126, len >> 8, len & 0xff);
  else head.push((mask ? 0x80 : 0) | 127, 0, 0, 0, 0, (len >>> 24) & 0xff, (len >> 16) & 0xff, (len >> 8) & 0xff, len & 0xff);
  const body = Buffer.from(payload);
  if (mask) for (let i = 0; i < body.length; i++) body[i] ^= key[i % 4];
  return Buffer.concat([Buffer.from(head), mask ? key : Buffer.alloc(0), body]);
}

test('SIGTERM closes every WebSocket with 1001 and exits 0', async (t) => {
  const sc = scope(t);
  const srv = await server(sc, { workers: 2 });
  const clients = await Promise.all([0, 1, 2, 3].map(() => rawConnect(sc, srv, { vsn: '2.0.0' })));
  for (const c of clients) await c.join(`realtime:${uniqueTopic()}`);
  await srv.stop(); // asserts exit status 0 (no leak report under ASan)
  for (const c of clients) {
    const { code } = await withTimeout(c.closed, 5000, 'close');
    assert.equal(code, 1001);
  }
});

test('a client that stops reading is dropped as a slow consumer; others get everything', async (t) => {
  const sc = scope(t);
  const srv = await server(sc, { workers: 1, args: ['--max-queue-bytes', '262144'] });
  const topic = `realtime:${uniqueTopic()}`;
  const good = await rawConnect(sc, srv, { vsn: '2.0.0' });
  await good.join(topic);
  const pub = await rawConnect(sc, srv, { vsn: '2.0.0' });
  const { joinRef } = await pub.join(topic);

  // The slow one joins, then its socket stops reading.
  const { sock, rest } = await rawUpgrade(srv, srv.token());
  sc.defer(() => sock.destroy());
  sock.write(clientFrame(1, Buffer.from(JSON.stringify(['1', '1', topic, 'phx_join', { config: {} }]))));
  await sleep(300);
  sock.pause();

  // ~19 MB in all: more than loopback's kernel buffers (a few MB) plus the
  // slow client's 256 KiB queue.
  const payload = 'x'.repeat(32 * 1024);
  const n = 600;
  for (let i = 0; i < n; i++) {
    pub.sendRaw(encodeUserBroadcastPush({ joinRef, ref: String(1000 + i), topic, event: 'bulk', payload: JSON.stringify({ i, payload }) }));
    // The healthy subscriber lives in this process: let it read between sends,
    // or it stalls behind this loop exactly like the paused one.
    if (i % 8 === 7) await sleep(1);
  }
  // Count with a plain poll: the frames are large, so no recorder dump on failure.
  const bulk = () => good.frames.events.filter((f) => f.binary && f.event === 'bulk');
  for (let i = 0; i < 300 && bulk().length < n; i++) await sleep(100);
  const seen = bulk().map((f) => JSON.parse(f.payloadBytes.toString()).i);
  assert.equal(seen.length, n, `the healthy subscriber got ${seen.length} of ${n} messages`);
  assert.ok(seen.every((v, i) => v === i), 'in order');

  // The server counts the slow consumer and closes it within its 3 s grace
  // period (a paused socket never sees the FIN, so look from the server side).
  let metrics = '';
  for (let i = 0; i < 60; i++) {
    metrics = await (await fetch(`${srv.httpUrl}/metrics`)).text();
    if (/^rtsync_websockets 2$/m.test(metrics)) break;
    await sleep(100);
  }
  assert.match(metrics, /rtsync_errors_total\{reason="slow_consumer"\} 1$/m);
  assert.match(metrics, /^rtsync_websockets 2$/m, 'only the two healthy sockets remain');
  assert.ok(good.isOpen() && pub.isOpen());
  await srv.stop();
});

test('WebSocket protocol errors: unmasked 1002, invalid UTF-8 1007, oversize 1009', async (t) => {
  const sc = scope(t);
  const srv = await server(sc, { args: ['--max-payload-bytes', '1000'] });
  {
    const { sock, rest } = await rawUpgrade(srv, srv.token());
    sc.defer(() => sock.destroy());
    const code = closeCode(sock, rest);
    sock.write(clientFrame(1, Buffer.from('[null,"1","phoenix","heartbeat",{}]'), { mask: false }));
    assert.equal(await code, 1002);
  }
  {
    const { sock, rest } = await rawUpgrade(srv, srv.token());
    sc.defer(() => sock.destroy());
    const code = closeCode(sock, rest);
    sock.write(clientFrame(1, Buffer.from([0x5b, 0xff, 0xfe, 0x5d])));
    assert.equal(await code, 1007);
  }
  {
    const { sock, rest } = await rawUpgrade(srv, srv.token());
    sc.defer(() => sock.destroy());
    const code = closeCode(sock, rest);
    sock.write(clientFrame(2, Buffer.alloc(70 * 1024, 0x41)));
    assert.equal(await code, 1009);
  }
  {
    // Fragmented message (two frames) is reassembled and answered.
    const { sock, rest } = await rawUpgrade(srv, srv.token());
    sc.defer(() => sock.destroy());
    let got = rest.toString('latin1');
    const reply = new Promise((resolve) => sock.on('data', (d) => {
      got += d.toString('latin1');
      if (got.includes('"phx_reply"')) resolve(got);
    }));
    const msg = Buffer.from('[null,"7","phoenix","heartbeat",{}]');
    sock.write(clientFrame(1, msg.subarray(0, 10), { fin: false }));
    sock.write(clientFrame(0, msg.subarray(10)));
    assert.match(await withTimeout(reply, 3000, 'heartbeat reply'), /\[null,"7","phoenix","phx_reply",\{"status":"ok","response":\{\}\}\]/);
  }
  await srv.stop();
});

test('HTTP edges: vsn, apikey errors, 404, 431, CORS preflight, keep-alive, metrics', async (t) => {
  const sc = scope(t);
  const srv = await server(sc);
  let r = await tryUpgrade(srv, { query: { apikey: srv.token(), vsn: '3.0.0' } });
  assert.equal(r.status, 403);
  r = await tryUpgrade(srv, { query: { vsn: '2.0.0' } });
  assert.equal(r.status, 401);
  assert.deepEqual(JSON.parse(r.body), { error: 'API key is missing' });
  r = await tryUpgrade(srv, { query: { vsn: '2.0.0', apikey: srv.token({ expIn: -10 }) } });
  assert.deepEqual([r.status, JSON.parse(r.body)], [401, { error: 'Token has expired' }]);
  r = await tryUpgrade(srv, { query: { vsn: '2.0.0', apikey: 'not-a-jwt' } });
  assert.deepEqual([r.status, JSON.parse(r.body)], [401, { error: 'The token provided is not a valid JWT' }]);
  r = await tryUpgrade(srv, { query: { vsn: '2.0.0', apikey: srv.token({ role: null }) } });
  assert.deepEqual([r.status, JSON.parse(r.body)], [401, { error: 'Fields `role` and `exp` are required in JWT' }]);
  r = await tryUpgrade(srv, { path: '/socket/websocket', query: { apikey: srv.token() } });
  assert.equal(r.status, 101, 'vsn defaults to 1.0.0 and /socket/websocket is served');

  assert.equal((await fetch(`${srv.httpUrl}/nope`)).status, 404);
  const pre = await fetch(`${srv.httpUrl}/realtime/v1/api/broadcast`, { method: 'OPTIONS' });
  assert.equal(pre.status, 204);
  assert.equal(pre.headers.get('access-control-allow-origin'), '*');
  assert.match(pre.headers.get('access-control-allow-headers'), /apikey/);

  const big = await rawHttp(srv, `GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20000)}\r\n\r\n`);
  assert.match(big, /^HTTP\/1\.1 431 /);
  const junk = await rawHttp(srv, 'NOT HTTP AT ALL\r\n\r\n');
  assert.match(junk, /^HTTP\/1\.1 400 /);
  const two = await rawHttp(srv, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  assert.match(two, /^HTTP\/1\.1 200 OK[\s\S]*HTTP\/1\.1 404 Not Found/, 'pipelined requests answered in order');

  const metrics = await (await fetch(`${srv.httpUrl}/metrics`)).text();
  for (const name of ['rtsync_uptime_seconds', 'rtsync_connections', 'rtsync_channels', 'rtsync_joins_total',
    'rtsync_messages_in_total', 'rtsync_bytes_out_total', 'rtsync_errors_total', 'rtsync_fanout_latency_seconds_bucket']) {
    assert.match(metrics, new RegExp(`^${name}`, 'm'), name);
  }
  assert.match(metrics, /rtsync_errors_total\{reason="auth"\} [1-9]/);
  await srv.stop();
});

test('fan-out and presence across four workers', async (t) => {
  const sc = scope(t);
  const srv = await server(sc, { workers: 4 });
  const topic = `realtime:${uniqueTopic()}`;
  const cfg = (key) => ({ config: { broadcast: { self: true }, presence: { key, enabled: true } } });
  const clients = [];
  for (let i = 0; i < 16; i++) {
    const c = await rawConnect(sc, srv, { vsn: i % 2 ? '1.0.0' : '2.0.0' });
    const { joinRef } = await c.join(topic, cfg(`user${i}`));
    clients.push({ c, joinRef });
  }
  // Everyone tracks; everyone must end up having seen 16 joins.
  for (const [i, { c, joinRef }] of clients.entries()) {
    const ref = c.send({ join_ref: joinRef, topic, event: 'presence', payload: { type: 'presence', event: 'track', payload: { i } } });
    assert.equal((await c.reply(ref)).payload.status, 'ok');
  }
  for (const { c } of clients) {
    await c.frames.waitFor(() => new Set(c.frames.events
      .filter((f) => f.event === 'presence_diff')
      .flatMap((f) => Object.keys(f.payload.joins))).size === 16, 10000, '16 presence joins');
  }
  const { c: pub, joinRef } = clients[3];
  const ref = pub.send({ join_ref: joinRef, topic, event: 'broadcast', payload: { type: 'broadcast', event: 'hello', payload: { n: 1 } } });
  for (const { c } of clients) {
    const f = await c.next((x) => x.event === 'broadcast', 5000, 'broadcast');
    assert.deepEqual(f.payload, { type: 'broadcast', event: 'hello', payload: { n: 1 } });
  }
  assert.ok(ref);
  await srv.stop();
});

test('the README example (examples/supabase-js/room.mjs) works with two clients', async (t) => {
  const sc = scope(t);
  const srv = await server(sc);
  // Run a copy beside the interop node_modules so its imports resolve.
  const copy = join(here, '..', 'interop', `.example-room-${process.pid}.mjs`);
  copyFileSync(join(here, '..', '..', 'examples', 'supabase-js', 'room.mjs'), copy);
  sc.defer(() => rmSync(copy, { force: true }));
  const run = (name) => {
    const out = new Recorder(name);
    const p = spawn(process.execPath, [copy, name], {
      env: { ...process.env, RTSYNC_URL: srv.httpUrl, ANON_KEY: srv.token({ role: 'anon' }), DURATION_MS: '8000' },
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    sc.defer(() => p.kill('SIGKILL'));
    let buf = '';
    p.stdout.on('data', (d) => {
      buf += d;
      let nl;
      while ((nl = buf.indexOf('\n')) >= 0) {
        out.push(JSON.parse(buf.slice(0, nl)));
        buf = buf.slice(nl + 1);
      }
    });
    return out;
  };
  const alice = run('alice');
  const bob = run('bob');
  await alice.waitFor((e) => e.event === 'cursor' && e.from === 'bob', 8000, 'alice sees bob');
  await bob.waitFor((e) => e.event === 'cursor' && e.from === 'alice', 8000, 'bob sees alice');
  await alice.waitFor((e) => e.event === 'presence' && e.online.join() === 'alice,bob', 8000, 'presence of both');
  assert.ok(!alice.events.some((e) => e.event === 'cursor' && e.from === 'alice'), 'no self broadcasts by default');
  await srv.stop();
});

test('writes by another process (the sqlite3 shell) reach subscribers while the server runs', { timeout: 30_000 }, async (t) => {
  const sc = scope(t);
  const dir = mkdtempSync(join(tmpdir(), 'rtsync-shell-'));
  sc.defer(() => rmSync(dir, { recursive: true, force: true }));
  const schema = join(dir, 'schema.sql');
  writeFileSync(schema, 'CREATE TABLE IF NOT EXISTS todos (id bigint PRIMARY KEY, title text);');
  const db = join(dir, 'db');
  const srv = await startServer({ args: ['--schema', schema, '--db', db] });
  sc.defer(() => srv.kill());
  const raw = await rawConnect(sc, srv, { vsn: '2.0.0' });
  await raw.join('realtime:shell', { config: { postgres_changes: [{ event: '*', schema: 'public', table: 'todos' }] } });
  await raw.next((f) => f.event === 'system' && f.payload.status === 'ok', 5000, 'subscribed');
  for (let i = 1; i <= 3; i++) {
    execFileSync('sqlite3', [db, `INSERT INTO todos VALUES (${i}, 'shell ${i}')`]);
    const f = await raw.next((x) => x.event === 'postgres_changes' && x.payload.data.record?.id === i, 5000, `change ${i}`);
    assert.equal(f.payload.data.record.title, `shell ${i}`);
  }
  await srv.stop();
});
