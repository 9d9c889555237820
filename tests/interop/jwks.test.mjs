// Asymmetric signing keys (docs/security.md, "Signing keys"): ES256 and
// RS256 tokens checked against a JWKS from a file (read again on SIGHUP) or
// from a URL (fetched again when a token names an unknown kid), next to the
// HS256 secret; the usual attacks refused; aud and iss checks.

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { generateKeyPairSync, createSign, createHmac } from 'node:crypto';
import { createServer } from 'node:http';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startServer, nowSec } from './lib/server.mjs';
import { scope, realtimeClient, subscribe, uniqueTopic, sleep } from './lib/util.mjs';
import { tryUpgrade } from './lib/raw.mjs';

const b64 = (buf) => Buffer.from(buf).toString('base64url');

function keyPair(kind) {
  const { publicKey, privateKey } = kind === 'EC'
    ? generateKeyPairSync('ec', { namedCurve: 'P-256' })
    : generateKeyPairSync('rsa', { modulusLength: 2048 });
  return { publicKey, privateKey };
}

function jwk(pair, kid, alg) {
  return { ...pair.publicKey.export({ format: 'jwk' }), kid, alg, use: 'sig' };
}

function sign({ alg, kid, key, secret, claims }) {
  const header = { alg, typ: 'JWT', ...(kid ? { kid } : {}) };
  const input = `${b64(JSON.stringify(header))}.${b64(JSON.stringify(claims))}`;
  let sig;
  if (alg.startsWith('HS')) sig = createHmac('sha256', secret).update(input).digest();
  else if (alg === 'none') sig = Buffer.alloc(0);
  else sig = createSign('SHA256').update(input).sign(alg.startsWith('ES') ? { key, dsaEncoding: 'ieee-p1363' } : key);
  return `${input}.${b64(sig)}`;
}

const claims = (extra = {}) => ({ role: 'authenticated', sub: 'user-1', exp: nowSec() + 3600, ...extra });

async function restStatus(server, token) {
  const r = await fetch(`${server.httpUrl}/rest/v1/notes?select=id`, {
    headers: { apikey: token, Authorization: `Bearer ${token}` },
  });
  return { status: r.status, body: await r.text() };
}

describe('a JWKS file', () => {
  let server, dir, ec, rsa, ec2;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'rtsync-jwks-'));
    ec = keyPair('EC'); rsa = keyPair('RSA'); ec2 = keyPair('EC');
    writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [jwk(ec, 'ec-1', 'ES256'), jwk(rsa, 'rsa-1', 'RS256')] }));
    writeFileSync(join(dir, 'schema.sql'), 'CREATE TABLE IF NOT EXISTS notes (id bigint PRIMARY KEY, body text);\n');
    server = await startServer({ args: ['--jwks', join(dir, 'jwks.json'), '--schema', join(dir, 'schema.sql')] });
  });
  after(async () => {
    if (server) await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('realtime-js joins with an ES256 token, REST answers an RS256 one, HS256 still works', { timeout: 20_000 }, async (t) => {
    const sc = scope(t);
    const esToken = sign({ alg: 'ES256', kid: 'ec-1', key: ec.privateKey, claims: claims() });
    const client = realtimeClient(sc, server, { params: { apikey: esToken } });
    const ch = client.channel(uniqueTopic('jwks'), { config: { private: true } });
    await subscribe(ch);
    const rsToken = sign({ alg: 'RS256', kid: 'rsa-1', key: rsa.privateKey, claims: claims() });
    assert.equal((await restStatus(server, rsToken)).status, 200);
    assert.equal((await restStatus(server, server.token({ role: 'authenticated' }))).status, 200);
  });

  it('refuses alg none, HS256 keyed with the public key, another key type under a kid, an unknown kid, expiry and nbf', { timeout: 20_000 }, async () => {
    const pem = rsa.publicKey.export({ format: 'pem', type: 'spki' });
    const bad = [
      ['alg none', sign({ alg: 'none', kid: 'rsa-1', claims: claims() }), 'Failed to generate JWT signer'],
      ['HS256 with the RSA public key as secret', sign({ alg: 'HS256', kid: 'rsa-1', secret: pem, claims: claims() }), 'Failed to validate JWT signature'],
      ['RS256 naming the EC key', sign({ alg: 'RS256', kid: 'ec-1', key: rsa.privateKey, claims: claims() }), 'Failed to generate JWT signer'],
      ['ES256 by a key not in the set', sign({ alg: 'ES256', kid: 'ec-1', key: ec2.privateKey, claims: claims() }), 'Failed to validate JWT signature'],
      ['unknown kid', sign({ alg: 'ES256', kid: 'nope', key: ec2.privateKey, claims: claims() }), 'Failed to generate JWT signer'],
      ['no kid', sign({ alg: 'ES256', key: ec.privateKey, claims: claims() }), 'Failed to generate JWT signer'],
      ['expired', sign({ alg: 'ES256', kid: 'ec-1', key: ec.privateKey, claims: claims({ exp: nowSec() - 60 }) }), 'Token has expired'],
      ['not yet valid', sign({ alg: 'ES256', kid: 'ec-1', key: ec.privateKey, claims: claims({ nbf: nowSec() + 600 }) }), 'not valid yet'],
    ];
    for (const [what, token, want] of bad) {
      const up = await tryUpgrade(server, { query: { apikey: token, vsn: '2.0.0' } });
      assert.equal(up.status, 401, what);
      assert.match(up.body, new RegExp(want), what);
      assert.equal((await restStatus(server, token)).status, 401, `${what} (REST)`);
    }
  });

  it('SIGHUP reads the file again: a new key is accepted and a removed one refused', { timeout: 20_000 }, async () => {
    const old = sign({ alg: 'ES256', kid: 'ec-1', key: ec.privateKey, claims: claims() });
    const next = sign({ alg: 'ES256', kid: 'ec-2', key: ec2.privateKey, claims: claims() });
    assert.equal((await restStatus(server, next)).status, 401);
    writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [jwk(ec2, 'ec-2', 'ES256')] }));
    server.proc.kill('SIGHUP');
    let status;
    for (let i = 0; i < 50 && (status = (await restStatus(server, next)).status) !== 200; i++) await sleep(100);
    assert.equal(status, 200);
    assert.equal((await restStatus(server, old)).status, 401);
    // a broken file keeps the keys that work
    writeFileSync(join(dir, 'jwks.json'), '{"keys": [');
    server.proc.kill('SIGHUP');
    await sleep(300);
    assert.equal((await restStatus(server, next)).status, 200);
    assert.match(server.stderr, /signing keys stay as they were/);
  });
});

describe('a JWKS URL', () => {
  let server, http, keys, a, b, fetches = 0;
  before(async () => {
    a = keyPair('EC'); b = keyPair('RSA');
    keys = [jwk(a, 'a', 'ES256')];
    http = createServer((req, res) => {
      fetches++;
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ keys }));
    });
    await new Promise((r) => http.listen(0, '127.0.0.1', r));
    server = await startServer({ args: ['--jwks', `http://127.0.0.1:${http.address().port}/auth/v1/.well-known/jwks.json`] });
  });
  after(async () => {
    if (server) await server.stop();
    await new Promise((r) => http.close(r));
  });

  it('a rotated key is fetched when a token names its kid', { timeout: 20_000 }, async () => {
    const ta = sign({ alg: 'ES256', kid: 'a', key: a.privateKey, claims: claims() });
    assert.equal((await tryUpgrade(server, { query: { apikey: ta, vsn: '2.0.0' } })).status, 101);
    const before = fetches;
    keys = [jwk(a, 'a', 'ES256'), jwk(b, 'b', 'RS256')];
    const tb = sign({ alg: 'RS256', kid: 'b', key: b.privateKey, claims: claims() });
    let status;
    for (let i = 0; i < 50 && (status = (await tryUpgrade(server, { query: { apikey: tb, vsn: '2.0.0' } })).status) !== 101; i++) await sleep(100);
    assert.equal(status, 101);
    assert.ok(fetches > before);
    // unknown kids do not make the server fetch on every request
    const n = fetches;
    for (let i = 0; i < 20; i++) {
      const tx = sign({ alg: 'RS256', kid: `x${i}`, key: b.privateKey, claims: claims() });
      assert.equal((await tryUpgrade(server, { query: { apikey: tx, vsn: '2.0.0' } })).status, 401);
    }
    await sleep(200);
    assert.ok(fetches <= n + 1, `${fetches - n} fetches for 20 unknown kids`);
  });

  it('a URL that does not answer at start refuses to start with the reason', { timeout: 20_000 }, async () => {
    await assert.rejects(startServer({ args: ['--jwks', 'http://127.0.0.1:9/jwks.json'] }), /--jwks: fetching http:\/\/127\.0\.0\.1:9\/jwks\.json/);
  });
});

describe('aud and iss', () => {
  let server, dir, ec;
  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'rtsync-jwks-'));
    ec = keyPair('EC');
    writeFileSync(join(dir, 'jwks.json'), JSON.stringify({ keys: [jwk(ec, 'k', 'ES256')] }));
    server = await startServer({ args: ['--jwks', join(dir, 'jwks.json'), '--jwt-aud', 'authenticated', '--jwt-iss', 'https://x.example/auth/v1'] });
  });
  after(async () => {
    if (server) await server.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  it('tokens without the configured audience and issuer are refused', { timeout: 20_000 }, async () => {
    const ok = sign({ alg: 'ES256', kid: 'k', key: ec.privateKey, claims: claims({ aud: 'authenticated', iss: 'https://x.example/auth/v1' }) });
    const wrongAud = sign({ alg: 'ES256', kid: 'k', key: ec.privateKey, claims: claims({ aud: 'other', iss: 'https://x.example/auth/v1' }) });
    const noIss = sign({ alg: 'ES256', kid: 'k', key: ec.privateKey, claims: claims({ aud: 'authenticated' }) });
    assert.equal((await tryUpgrade(server, { query: { apikey: ok, vsn: '2.0.0' } })).status, 101);
    for (const tok of [wrongAud, noIss]) {
      const up = await tryUpgrade(server, { query: { apikey: tok, vsn: '2.0.0' } });
      assert.equal(up.status, 401);
      assert.match(up.body, /audience or issuer/);
    }
  });
});
