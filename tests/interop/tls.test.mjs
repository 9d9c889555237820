// TLS (docs/security.md, "Transport"): `rtsync serve --tls-cert --tls-key`
// serves https:// and wss:// on its listener. realtime-js over wss with the
// test CA, supabase-js (REST and realtime) with NODE_EXTRA_CA_CERTS, clients
// without the CA refused, a certificate rotated by SIGHUP used by new
// connections while old ones go on, a bad file on SIGHUP keeping the old one,
// and garbage, plain HTTP and a stalled handshake refused without touching
// the others. Certificates come from tests/tls/make-certs.sh, made per run.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer } from './lib/server.mjs';
import { scope, realtimeClient, subscribe, uniqueTopic, sleep, Recorder, WebSocket } from './lib/util.mjs';

const MAKE_CERTS = fileURLToPath(new URL('../tls/make-certs.sh', import.meta.url));
const CHILD = fileURLToPath(new URL('./lib/tls-child.mjs', import.meta.url));

/** A `ws` WebSocket class that trusts ca (realtime-js takes it as transport). */
function wsTrusting(ca) {
  return class extends WebSocket {
    constructor(url, protocols, opts) { super(url, protocols, { ...(opts || {}), ca }); }
  };
}

/** GET over https with the given CA; resolves {status, body} or rejects with the TLS error. */
function httpsGet(url, { ca, headers = {} } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.get(url, { ca, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('timeout')));
  });
}

/** The certificate the server presents to a new connection (its issuer CN). */
function peerIssuer(port, ca) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca, servername: 'localhost' }, () => {
      const cert = s.getPeerCertificate();
      resolve({ issuer: cert.issuer.CN, protocol: s.getProtocol(), alpn: s.alpnProtocol });
      s.end();
    });
    s.on('error', reject);
  });
}

/** Writes bytes on a raw TCP socket and collects what comes back until it closes. */
function rawExchange(port, bytes, ms = 5000) {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(bytes));
    const chunks = [];
    const timer = setTimeout(() => { s.destroy(); reject(new Error('server kept the connection open')); }, ms);
    s.on('data', (d) => chunks.push(d));
    s.on('error', () => {});
    s.on('close', () => { clearTimeout(timer); resolve(Buffer.concat(chunks)); });
  });
}

async function broadcastRoundTrip(sc, server, Transport, topic) {
  const a = realtimeClient(sc, server, { transport: Transport });
  const b = realtimeClient(sc, server, { transport: Transport });
  const cha = a.channel(topic, { config: { broadcast: { self: false, ack: true } } });
  const chb = b.channel(topic);
  const got = new Recorder('broadcasts');
  chb.on('broadcast', { event: 'ping' }, (m) => got.push(m.payload));
  await subscribe(cha);
  await subscribe(chb);
  assert.equal(await cha.send({ type: 'broadcast', event: 'ping', payload: { n: 1 } }), 'ok');
  await got.waitFor((p) => p.n === 1, 5000, 'the broadcast over wss');
  return { a, b, cha, chb, got };
}

describe('rtsync serve --tls-cert/--tls-key', () => {
  let server, dir, ca, ca2;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'rtsync-tls-'));
    execFileSync(MAKE_CERTS, [dir]);
    ca = readFileSync(join(dir, 'ca.pem'));
    ca2 = readFileSync(join(dir, 'ca2.pem'));
    // the server reads these paths; SIGHUP tests replace their contents
    copyFileSync(join(dir, 'server.pem'), join(dir, 'live.pem'));
    copyFileSync(join(dir, 'server.key'), join(dir, 'live.key'));
    writeFileSync(join(dir, 'schema.sql'), 'CREATE TABLE IF NOT EXISTS notes (id bigint PRIMARY KEY, body text);\n');
    server = await startServer({
      args: ['--tls-cert', join(dir, 'live.pem'), '--tls-key', join(dir, 'live.key'),
        '--schema', join(dir, 'schema.sql'), '--workers', '2'],
      logLevel: 'info',
    });
  });
  after(async () => {
    if (server) await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('prints https:// and wss:// URLs, negotiates TLS 1.3 and ALPN http/1.1, refuses TLS 1.1', async () => {
    assert.match(server.httpUrl, /^https:\/\//);
    assert.match(server.stdout, /websocket {3}wss:\/\/127\.0\.0\.1:\d+\/realtime\/v1\/websocket/);
    const p = await new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: server.port, ca, servername: 'localhost', ALPNProtocols: ['h2', 'http/1.1'] }, () => {
        resolve({ protocol: s.getProtocol(), alpn: s.alpnProtocol }); s.end();
      });
      s.on('error', reject);
    });
    assert.deepEqual(p, { protocol: 'TLSv1.3', alpn: 'http/1.1' });
    const v12 = await new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: server.port, ca, servername: 'localhost', maxVersion: 'TLSv1.2' }, () => {
        resolve({ protocol: s.getProtocol(), cipher: s.getCipher().name }); s.end();
      });
      s.on('error', reject);
    });
    assert.equal(v12.protocol, 'TLSv1.2');
    assert.match(v12.cipher, /^ECDHE-ECDSA-(AES\d+-GCM|CHACHA20)/);
    await assert.rejects(new Promise((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port: server.port, ca, servername: 'localhost', minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }, () => { s.end(); resolve(); });
      s.on('error', reject);
    }));
  });

  it('realtime-js subscribes and broadcasts over wss with the test CA', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    await broadcastRoundTrip(sc, server, wsTrusting(ca), uniqueTopic('tls'));
  });

  it('REST over https answers with the CA and is refused without it', { timeout: 20_000 }, async () => {
    const key = server.token({ role: 'service_role' });
    const ok = await httpsGet(`${server.httpUrl}/rest/v1/notes?select=id`, { ca, headers: { apikey: key, Authorization: `Bearer ${key}` } });
    assert.equal(ok.status, 200);
    assert.equal(ok.body, '[]');
    await assert.rejects(httpsGet(`${server.httpUrl}/healthz`), (e) => e.code === 'UNABLE_TO_VERIFY_LEAF_SIGNATURE' || /issuer|self.signed/i.test(e.message));
    // fetch (undici) trusts only the system store here
    await assert.rejects(fetch(`${server.httpUrl}/healthz`), (e) => /certificate|issuer/i.test(String(e.cause && e.cause.message)));
  });

  it('a WebSocket client without the CA is refused', { timeout: 20_000 }, async () => {
    const err = await new Promise((resolve) => {
      const ws = new WebSocket(`${server.wsUrl}/realtime/v1/websocket?apikey=${server.token()}&vsn=1.0.0`);
      ws.on('open', () => { ws.terminate(); resolve(null); });
      ws.on('error', (e) => resolve(e));
    });
    assert.ok(err, 'the connection must fail');
    assert.match(err.message, /unable to (verify|get local issuer)/i);
  });

  it('supabase-js: REST and realtime with NODE_EXTRA_CA_CERTS', { timeout: 30_000 }, async () => {
    const key = server.token({ role: 'service_role' });
    const child = spawn(process.execPath, [CHILD, server.httpUrl, key, uniqueTopic('sb-tls')], {
      env: { ...process.env, NODE_EXTRA_CA_CERTS: join(dir, 'ca.pem') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '', err = '';
    child.stdout.on('data', (d) => { out += d; });
    child.stderr.on('data', (d) => { err += d; });
    const code = await new Promise((r) => child.on('exit', r));
    assert.equal(code, 0, `child failed: ${out}\n${err}`);
    const res = JSON.parse(out.trim().split('\n').pop());
    assert.deepEqual(res, { insert: 201, select: [{ id: 1, body: 'over tls' }], subscribed: true, change: 'INSERT', broadcast: 'ok' });
  });

  it('garbage, plain HTTP and a stalled handshake are refused; others go on', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const { cha, got } = await broadcastRoundTrip(sc, server, wsTrusting(ca), uniqueTopic('tls-garbage'));
    // plain HTTP: a readable 400 in plaintext, then the close
    const plain = (await rawExchange(server.port, 'GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n')).toString('latin1');
    assert.match(plain, /^HTTP\/1\.1 400 Bad Request\r\n/);
    assert.match(plain, /speaks TLS/);
    // garbage: an alert at most, then the close
    const junk = await rawExchange(server.port, Buffer.from('\x16\x03\x01\x00\x05hello-garbage-garbage-garbage'));
    assert.ok(junk.length < 64, `a short alert at most, got ${junk.length} bytes`);
    const junk2 = await rawExchange(server.port, Buffer.alloc(4096, 0xff));
    assert.ok(junk2.length < 64);
    // a handshake that stalls halfway does not hold anyone up
    const stalled = net.connect(server.port, '127.0.0.1');
    await new Promise((r) => stalled.on('connect', r));
    stalled.write(Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01])); // a ClientHello header, then nothing
    const stalledClosed = new Promise((r) => stalled.on('close', () => r(Date.now())));
    stalled.on('error', () => {});
    const t0 = Date.now();
    for (let n = 2; n <= 4; n++) {
      assert.equal(await cha.send({ type: 'broadcast', event: 'ping', payload: { n } }), 'ok');
      await got.waitFor((p) => p.n === n, 5000, `broadcast ${n} beside the bad clients`);
    }
    const fresh = await httpsGet(`${server.httpUrl}/healthz`, { ca });
    assert.equal(fresh.status, 200);
    // ...and is closed by the request timeout (10 s)
    const closedAt = await Promise.race([stalledClosed, sleep(15_000).then(() => null)]);
    assert.ok(closedAt, 'the stalled handshake must be closed');
    assert.ok(closedAt - t0 < 12_500, `closed after ${closedAt - t0} ms`);
  });

  it('SIGHUP: a new certificate for new connections, old ones go on; a bad file keeps the old one', { timeout: 30_000 }, async (t) => {
    const sc = scope(t);
    const topic = uniqueTopic('tls-rotate');
    const old = await broadcastRoundTrip(sc, server, wsTrusting(ca), topic);
    assert.equal((await peerIssuer(server.port, ca)).issuer, 'rtsync test CA 1');

    // a broken certificate file: refused with a warning, CA 1's stays
    writeFileSync(join(dir, 'live.pem'), '-----BEGIN CERTIFICATE-----\nnot a certificate\n-----END CERTIFICATE-----\n');
    const before = server.stderr.length;
    server.proc.kill('SIGHUP');
    await waitForLog(server, before, /tls: the certificate stays as it was/);
    assert.equal((await peerIssuer(server.port, ca)).issuer, 'rtsync test CA 1');

    // rotate to CA 2's certificate
    copyFileSync(join(dir, 'server2.pem'), join(dir, 'live.pem'));
    copyFileSync(join(dir, 'server2.key'), join(dir, 'live.key'));
    const before2 = server.stderr.length;
    server.proc.kill('SIGHUP');
    await waitForLog(server, before2, /tls: certificate and key read again/);
    assert.equal((await peerIssuer(server.port, ca2)).issuer, 'rtsync test CA 2');
    await assert.rejects(peerIssuer(server.port, ca), /unable to (verify|get local issuer)/i);

    // a new client trusting CA 2 joins the same topic; the old sockets (CA 1) still work both ways
    const c = realtimeClient(sc, server, { transport: wsTrusting(ca2) });
    const chc = c.channel(topic);
    const gotC = new Recorder('broadcasts on the new socket');
    chc.on('broadcast', { event: 'ping' }, (m) => gotC.push(m.payload));
    await subscribe(chc);
    assert.equal(await old.cha.send({ type: 'broadcast', event: 'ping', payload: { n: 10 } }), 'ok');
    await old.got.waitFor((p) => p.n === 10, 5000, 'old socket receives after the rotation');
    await gotC.waitFor((p) => p.n === 10, 5000, 'new socket receives from the old one');
    // put CA 1's certificate back for the other tests
    copyFileSync(join(dir, 'server.pem'), join(dir, 'live.pem'));
    copyFileSync(join(dir, 'server.key'), join(dir, 'live.key'));
    const before3 = server.stderr.length;
    server.proc.kill('SIGHUP');
    await waitForLog(server, before3, /tls: certificate and key read again/);
  });
});

async function waitForLog(server, from, re, ms = 5000) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (re.test(server.stderr.slice(from))) return;
    await sleep(50);
  }
  throw new Error(`no log line ${re} in:\n${server.stderr.slice(from)}`);
}
