// The chaos harness's driver (docs/chaos.md). Runs rtsync under a steady load and injects the
// faults of each phase; after each phase it checks, with exact accounting:
//   - every acknowledged REST write (an idempotency key per write, retried until acknowledged)
//     is in the store exactly once;
//   - every subscriber, which resumes by position after each reconnect, saw every change once;
//   - the notification rule made exactly one inbox entry per acknowledged write, and no
//     notification was pushed twice;
//   - a Yjs document edited throughout has every update once, as a fresh client reads it;
//   - acknowledged broadcasts reach every subscriber once the server is back;
//   - the server logged the fault and its recovery, and served again by itself.
// It prints one "ok"/"not ok" line per check, a table of figures per phase and, last,
// "chaos: N passed, M failed, K skipped" (checks; K phases skipped, each says why).
//
//   node tests/chaos/chaos.mjs --bin build/rtsync [--long] [--phases a,b,...]
// Env: RTSYNC_TEST_POSTGRES (and PGBIN, PGDIR) for the PostgreSQL and cluster phases (the
// cluster phase also needs redis-server and redis-cli), CHAOS_CAN_MOUNT=1 for
// the disk phases, CHAOS_CAN_CUT=1 for the connection cut (run.sh sets them after checking).

import { spawn, execFileSync } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { appendFileSync, mkdirSync, mkdtempSync, openSync, closeSync, writeSync, rmSync, readFileSync, existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = resolve(here, '../..');
const require = createRequire(join(root, 'tests/interop/package.json'));
const WebSocket = require('ws');
const Y = require('yjs');
const { WebsocketProvider } = require('y-websocket');

// ---- options -------------------------------------------------------------------------------
const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(name);
  return i >= 0 ? argv[i + 1] : dflt;
};
const BIN = resolve(opt('--bin', join(root, 'build/rtsync')));
const LONG = argv.includes('--long');
const ONLY = opt('--phases', '') ? opt('--phases', '').split(',') : null;
// Short form: a few seconds of load around each fault; long form: longer loads, more
// subscribers and writers, every fault repeated.
const CFG = LONG
  ? { writers: 4, writeGapMs: 10, subscribers: 8, loadMs: 20000, repeat: 3, cutMs: 8000 }
  : { writers: 2, writeGapMs: 20, subscribers: 3, loadMs: 3000, repeat: 1, cutMs: 4000 };
const SECRET = 'rtsync-chaos-secret-0123456789abcdef0123456789';
const DOC = 'chaos-doc';
const USER = 'chaos-user';

// ---- reporting -----------------------------------------------------------------------------
let passed = 0;
let failed = 0;
const figures = [];
function check(phase, name, ok, detail = '') {
  if (ok) passed++;
  else failed++;
  console.log(`${ok ? 'ok' : 'not ok'} - ${phase}: ${name}${detail ? ` (${detail})` : ''}`);
  return ok;
}
let skipped = 0;
function note(msg) {
  if (msg.startsWith('SKIP ')) skipped++;
  console.log(`# ${msg}`);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(cond, ms, stepMs = 50) {
  const end = Date.now() + ms;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() > end) return false;
    await sleep(stepMs);
  }
}

function b64url(buf) {
  return Buffer.from(buf).toString('base64').replace(/=+$/, '').replace(/\+/g, '-').replace(/\//g, '_');
}
function token(role, claims = {}) {
  const now = Math.floor(Date.now() / 1000);
  const h = b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));
  const p = b64url(JSON.stringify({ iat: now, exp: now + 86400, role, ...claims }));
  return `${h}.${p}.${b64url(createHmac('sha256', SECRET).update(`${h}.${p}`).digest())}`;
}
const SERVICE = token('service_role');
const USER_TOKEN = token('authenticated', { sub: USER });

// ---- the server ----------------------------------------------------------------------------
// Every server still running when the driver exits, however it exits, is SIGKILLed.
const live = new Set();
process.on('exit', () => { for (const p of live) { try { p.kill('SIGKILL'); } catch { /* gone */ } } });
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) process.on(sig, () => process.exit(1));

// One server per phase, always on the same port (clients reconnect to the same URL), with its
// stdout and stderr appended to one log across its restarts.
class Server {
  constructor({ dataDir, args = [], log }) {
    this.dataDir = dataDir;
    this.args = args;
    this.logPath = log;
    this.port = 0;
    this.proc = null;
    this.starts = 0;
  }

  async start({ expectFail = false } = {}) {
    const argv = ['serve', '--listen', `127.0.0.1:${this.port}`, '--jwt-secret', SECRET,
      '--data-dir', this.dataDir, '--log-level', 'info', '--workers', '2',
      '--notify-rules', join(here, 'rules.json'), ...this.args];
    appendFileSync(this.logPath, `--- chaos: start ${++this.starts}: ${argv.join(' ')}\n`);
    const proc = spawn(BIN, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
    this.proc = proc;
    live.add(proc);
    proc.exited = new Promise((r) => proc.on('exit', (code, signal) => { live.delete(proc); proc.status = { code, signal }; r(proc.status); }));
    proc.stderr.on('data', (d) => appendFileSync(this.logPath, d));
    let out = '';
    const url = await new Promise((resolveUrl) => {
      const timer = setTimeout(() => resolveUrl(null), 20000);
      proc.stdout.on('data', (d) => {
        appendFileSync(this.logPath, d);
        out += d;
        const m = /rtsync listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(out);
        if (m) { clearTimeout(timer); resolveUrl(m[1]); }
      });
      proc.exited.then(() => { clearTimeout(timer); resolveUrl(null); });
    });
    if (!url) {
      if (!expectFail) throw new Error(`rtsync did not start; log tail:\n${this.tail()}`);
      return false;
    }
    this.port = Number(url);
    this.http = `http://127.0.0.1:${this.port}`;
    this.ws = `ws://127.0.0.1:${this.port}`;
    return true;
  }

  async kill(signal = 'SIGKILL') {
    if (!this.proc || this.proc.status) return this.proc?.status;
    appendFileSync(this.logPath, `--- chaos: ${signal}\n`);
    this.proc.kill(signal);
    return this.proc.exited;
  }

  async stop() {
    if (!this.proc || this.proc.status) return this.proc?.status;
    this.proc.kill('SIGTERM');
    const st = await Promise.race([this.proc.exited, sleep(20000).then(() => null)]);
    if (!st) { this.proc.kill('SIGKILL'); await this.proc.exited; return { code: null, signal: 'SIGKILL (SIGTERM ignored)' }; }
    return st;
  }

  log() { return existsSync(this.logPath) ? readFileSync(this.logPath, 'utf8') : ''; }
  tail(n = 30) { return this.log().split('\n').slice(-n).join('\n'); }
  // Log text written after a mark (a length of the log taken earlier).
  since(mark) { return this.log().slice(mark); }
  mark() { return this.log().length; }
}

async function rest(server, method, path, { body, headers = {}, timeoutMs = 3000, tok = SERVICE } = {}) {
  const res = await fetch(`${server.http}${path}`, {
    method,
    headers: { apikey: tok, Authorization: `Bearer ${tok}`, 'Content-Type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await res.text();
  let json = null;
  try { json = JSON.parse(text); } catch { /* not JSON */ }
  return { status: res.status, text, json };
}

// ---- writers: every write has its idempotency key and is retried until acknowledged ---------
class Writer {
  constructor(server, id, stats) {
    this.server = server;
    this.id = id;
    this.stats = stats;
    this.seq = 0;
    this.acked = new Set(); // seq
    this.running = false;
  }

  start() {
    this.running = true;
    this.done = this.loop();
  }

  async loop() {
    while (this.running) {
      const seq = ++this.seq;
      const key = `chaos-${this.stats.run}-${this.id}-${seq}`;
      const body = { writer: this.id, seq, body: `w${this.id}s${seq}-${'x'.repeat(200)}` };
      let attempt = 0;
      for (;;) {
        attempt++;
        let r = null;
        try {
          r = await rest(this.server, 'POST', '/rest/v1/chaos_items', { body, headers: { 'Idempotency-Key': key, Prefer: 'return=minimal' } });
        } catch (e) {
          this.stats.count(`error ${e.cause?.code || e.name}`);
        }
        if (r && r.status >= 200 && r.status < 300) {
          this.acked.add(seq);
          this.stats.acked++;
          if (attempt > 1) this.stats.retriedAcked++;
          this.stats.lastAck = Date.now();
          break;
        }
        if (r) {
          this.stats.count(`HTTP ${r.status} ${r.json?.code ?? ''}`.trim());
          this.stats.lastError = { status: r.status, body: r.text.slice(0, 300) };
        }
        await sleep(Math.min(500, 50 * attempt));
      }
      await sleep(CFG.writeGapMs);
    }
  }

  async stop() {
    this.running = false;
    await this.done;
  }
}

class WriteStats {
  constructor(run) {
    this.run = run;
    this.acked = 0;
    this.retriedAcked = 0;
    this.errors = {};
    this.lastAck = 0;
    this.lastError = null;
  }

  count(what) { this.errors[what] = (this.errors[what] || 0) + 1; }
}

// ---- subscribers: Phoenix V1 over a bare WebSocket, resuming by position ------------------
// Each keeps the last position it saw and rejoins with config.rtsync.resume_after after every
// reconnect; a heartbeat unanswered for 2 s counts the link as dead. A roaming subscriber (roam:
// the nodes of a cluster) reconnects to the next node each time, resuming there by the position
// another node gave it; it does not join the notifications, which are each node's own.
class Subscriber {
  constructor(server, id, { roam = null } = {}) {
    this.server = server;
    this.roam = roam;
    this.visited = [server];
    this.id = id;
    this.seen = new Map(); // "writer-seq" -> times seen
    this.lastPos = null;
    this.dups = 0;
    this.outOfOrder = 0;
    this.resyncs = 0;
    this.joins = 0;
    this.reconnects = 0;
    this.broadcasts = new Map(); // seq -> times
    this.notifications = new Map(); // title -> times pushed
    this.joined = false;
    this.running = false;
    this.ref = 0;
  }

  start() {
    this.running = true;
    this.connect();
  }

  connect() {
    if (!this.running) return;
    const ws = new WebSocket(`${this.server.ws}/realtime/v1/websocket?apikey=${SERVICE}&vsn=1.0.0`);
    this.ws = ws;
    let lastReply = Date.now();
    let hb = null;
    const send = (topic, event, payload, joinRef = null) => {
      const ref = String(++this.ref);
      if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ topic, event, payload, ref, join_ref: joinRef }));
      return ref;
    };
    ws.on('open', () => {
      const rtsync = this.lastPos ? { resume_after: this.lastPos } : {};
      this.joinRef = send('realtime:chaos', 'phx_join', {
        config: { postgres_changes: [{ event: 'INSERT', schema: 'public', table: 'chaos_items' }],
          broadcast: { self: false }, rtsync },
      });
      if (!this.roam) send(`realtime:notifications:${USER}`, 'phx_join', { config: { private: true }, access_token: USER_TOKEN });
      hb = setInterval(() => {
        if (Date.now() - lastReply > 2000) { ws.terminate(); return; }
        send('phoenix', 'heartbeat', {});
      }, 500);
    });
    ws.on('message', (data) => {
      lastReply = Date.now();
      let m;
      try { m = JSON.parse(data.toString()); } catch { return; }
      if (process.env.CHAOS_DEBUG) console.log(`# sub ${this.id} <- ${data.toString().slice(0, 200)}`);
      if (m.topic === 'realtime:chaos') this.onChaos(m);
      else if (m.topic === `realtime:notifications:${USER}` && m.event === 'broadcast' && m.payload?.event === 'notification') {
        const t = m.payload.payload?.notification?.title;
        this.notifications.set(t, (this.notifications.get(t) || 0) + 1);
      }
    });
    const reconnect = () => {
      clearInterval(hb);
      this.joined = false;
      if (!this.running) return;
      this.reconnects++;
      if (this.roam) {
        this.server = this.roam[(this.roam.indexOf(this.server) + 1) % this.roam.length];
        this.visited.push(this.server);
      }
      setTimeout(() => this.connect(), 100 + Math.floor(Math.random() * 200));
    };
    ws.on('close', reconnect);
    ws.on('error', () => { /* close follows */ });
  }

  onChaos(m) {
    if (m.event === 'phx_reply' && m.ref === this.joinRef && m.payload?.status === 'ok') { this.joined = true; this.joins++; }
    if (m.event === 'system' && m.payload?.extension === 'postgres_changes') {
      if (m.payload.resync_required) this.resyncs++;
      if (m.payload.status === 'ok' && m.payload.position && !this.lastPos) this.lastPos = m.payload.position;
    }
    if (m.event === 'postgres_changes') {
      const d = m.payload?.data;
      if (!d?.record) return;
      const k = `${d.record.writer}-${d.record.seq}`;
      const n = (this.seen.get(k) || 0) + 1;
      this.seen.set(k, n);
      if (n > 1) this.dups++;
      if (this.lastPos && BigInt(d.position) <= BigInt(this.lastPos)) this.outOfOrder++;
      this.lastPos = d.position;
    }
    if (m.event === 'broadcast' && m.payload?.event === 'chaos') {
      const s = m.payload.payload?.seq;
      this.broadcasts.set(s, (this.broadcasts.get(s) || 0) + 1);
    }
  }

  stop() {
    this.running = false;
    try { this.ws?.terminate(); } catch { /* gone */ }
  }
}

// ---- broadcast sender (acknowledged broadcasts) -------------------------------------------
async function sendBroadcasts(server, n, tag) {
  const ws = new WebSocket(`${server.ws}/realtime/v1/websocket?apikey=${SERVICE}&vsn=1.0.0`);
  await new Promise((r, j) => { ws.on('open', r); ws.on('error', j); });
  const pending = new Map();
  let ref = 0;
  let joined;
  const joinedP = new Promise((r) => { joined = r; });
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString());
    if (m.event === 'phx_reply' && m.ref === '1') joined(m.payload.status);
    if (m.event === 'phx_reply' && pending.has(m.ref)) { pending.get(m.ref)(m.payload.status); pending.delete(m.ref); }
  });
  ws.send(JSON.stringify({ topic: 'realtime:chaos', event: 'phx_join', ref: String(++ref), join_ref: '1',
    payload: { config: { broadcast: { ack: true, self: false } } } }));
  const st = await Promise.race([joinedP, sleep(5000).then(() => 'timeout')]);
  if (st !== 'ok') { ws.terminate(); return { acked: [], error: `join ${st}` }; }
  const acked = [];
  for (let i = 0; i < n; i++) {
    const seq = `${tag}-${i}`;
    const r = String(++ref);
    const p = new Promise((res) => pending.set(r, res));
    ws.send(JSON.stringify({ topic: 'realtime:chaos', event: 'broadcast', ref: r, join_ref: '1',
      payload: { type: 'broadcast', event: 'chaos', payload: { seq } } }));
    if ((await Promise.race([p, sleep(3000).then(() => 'timeout')])) === 'ok') acked.push(seq);
    await sleep(5);
  }
  ws.close();
  return { acked };
}

// ---- the document editor and its check ----------------------------------------------------
class Editor {
  constructor(server) {
    this.server = server;
    this.doc = new Y.Doc();
    this.items = this.doc.getArray('items');
    this.n = 0;
  }

  start() {
    this.provider = new WebsocketProvider(`${this.server.ws}/collab/v1`, DOC, this.doc,
      { WebSocketPolyfill: WebSocket, params: { apikey: SERVICE }, maxBackoffTime: 500, disableBc: true });
    this.timer = setInterval(() => this.items.push([`e${++this.n}`]), 50);
  }

  stopEditing() { clearInterval(this.timer); }

  destroy() {
    this.stopEditing();
    this.provider?.destroy();
  }
}

// A fresh client's view of the document, once synced.
async function readDoc(server) {
  const doc = new Y.Doc();
  const p = new WebsocketProvider(`${server.ws}/collab/v1`, DOC, doc,
    { WebSocketPolyfill: WebSocket, params: { apikey: SERVICE }, disableBc: true });
  const ok = await until(() => p.synced, 10000);
  const items = doc.getArray('items').toArray();
  p.destroy();
  return ok ? items : null;
}

// ---- store reads ---------------------------------------------------------------------------
async function storeRows(server) {
  const rows = [];
  for (let off = 0; ; off += 5000) {
    const r = await rest(server, 'GET', `/rest/v1/chaos_items?select=writer,seq&order=id.asc&limit=5000&offset=${off}`, { timeoutMs: 20000 });
    if (r.status !== 200) throw new Error(`reading chaos_items: ${r.status} ${r.text.slice(0, 200)}`);
    rows.push(...r.json);
    if (r.json.length < 5000) return rows;
  }
}

async function inbox(server) {
  const titles = [];
  let before = null;
  for (;;) {
    const q = `/notify/v1/inbox?status=all&archived=all&limit=200${before ? `&before=${before}` : ''}`;
    const r = await rest(server, 'GET', q, { tok: USER_TOKEN, timeoutMs: 20000 });
    if (r.status !== 200) throw new Error(`reading the inbox: ${r.status} ${r.text.slice(0, 200)}`);
    for (const n of r.json.items) titles.push(n.title);
    if (!r.json.next_before) return titles;
    before = r.json.next_before;
  }
}

// ---- one phase: load, faults, checks -------------------------------------------------------
// faults: async (ctx) => void, run while the load goes on; ctx has server, log marks, helpers.
// servers: the nodes of a cluster (default [server]); writers and subscribers are spread over
// them round-robin, the editor, the broadcaster and the reads are on the first (server), and
// the logs of all of them are checked.
// roam: subscriber 0 roams over the servers (a new node at each reconnect).
async function runPhase(name, { server, servers = [server], roam = false, faults, expectLog = [], store = 'sqlite' }) {
  const t0 = Date.now();
  const stats = new WriteStats(`${name}-${randomBytes(3).toString('hex')}`);
  const subs = [];
  const writers = [];
  const editor = new Editor(server);
  const row = { phase: name };
  const logMarks = servers.map((s) => s.mark());
  const node = (i) => servers[i % servers.length];
  try {
    for (let i = 0; i < CFG.subscribers; i++) { const s = new Subscriber(node(i), i, { roam: roam && i === 0 ? servers : null }); subs.push(s); s.start(); }
    if (!(await until(() => subs.every((s) => s.joined && s.lastPos), 10000))) throw new Error('subscribers did not join');
    editor.start();
    if (!(await until(() => editor.provider.synced, 10000))) throw new Error('the editor did not sync');
    for (let i = 0; i < CFG.writers; i++) { const w = new Writer(node(i), i, stats); writers.push(w); w.start(); }
    await sleep(CFG.loadMs);

    const ctx = { server, servers, stats, subs, row, note: (m) => note(`${name}: ${m}`) };
    for (let rep = 0; rep < CFG.repeat; rep++) {
      await faults(ctx, rep);
      // Recovery: the next acknowledged write after the fault, and load for a while after it.
      const before = stats.acked;
      const tRec = Date.now();
      const recovered = await until(() => stats.acked > before + 5, 30000);
      row.recovery_ms = Math.max(row.recovery_ms || 0, Date.now() - tRec);
      check(name, `writes acknowledged again after the fault${CFG.repeat > 1 ? ` (round ${rep + 1})` : ''}`, recovered,
        `${row.recovery_ms} ms`);
      await sleep(CFG.loadMs);
    }

    // Stop the load; each writer finishes the write it has in hand.
    for (const w of writers) await w.stop();
    editor.stopEditing();
    const acked = [];
    for (const w of writers) for (const s of w.acked) acked.push(`${w.id}-${s}`);
    row.acked = acked.length;
    row.retried_acked = stats.retriedAcked;
    row.write_errors = Object.entries(stats.errors).map(([k, v]) => `${k}: ${v}`).join(', ') || 'none';

    // 1. the store holds each acknowledged write exactly once (and nothing else of this run).
    const rows = await storeRows(server);
    const counts = new Map();
    for (const r of rows) { const k = `${r.writer}-${r.seq}`; counts.set(k, (counts.get(k) || 0) + 1); }
    const missing = acked.filter((k) => !counts.has(k));
    const twice = [...counts].filter(([, n]) => n > 1);
    const ackedSet = new Set(acked);
    const extra = [...counts.keys()].filter((k) => !ackedSet.has(k));
    row.store_rows = rows.length;
    check(name, 'every acknowledged write is in the store exactly once',
      missing.length === 0 && twice.length === 0 && rows.length === acked.length,
      `${acked.length} acknowledged, ${rows.length} rows, ${missing.length} missing, ${twice.length} twice, ${extra.length} unacknowledged` +
      (missing.length ? `; missing e.g. ${missing.slice(0, 5)}` : ''));

    // 2. every subscriber saw every acknowledged write once, in position order.
    const subsDone = await until(() => subs.every((s) => acked.every((k) => s.seen.has(k))), 20000, 200);
    let subMissing = 0;
    for (const s of subs) subMissing += acked.filter((k) => !s.seen.has(k)).length;
    const dups = subs.reduce((a, s) => a + s.dups, 0);
    const ooo = subs.reduce((a, s) => a + s.outOfOrder, 0);
    const resyncs = subs.reduce((a, s) => a + s.resyncs, 0);
    row.reconnects = subs.reduce((a, s) => a + s.reconnects, 0);
    row.sub_missing = subMissing;
    row.sub_dups = dups;
    check(name, `each of ${subs.length} subscribers saw every change once, in order, across ${row.reconnects} reconnects`,
      subsDone && subMissing === 0 && dups === 0 && ooo === 0 && resyncs === 0,
      `missing ${subMissing}, duplicates ${dups}, out of order ${ooo}, resync_required ${resyncs}` +
      subs.filter((s) => s.roam).map((s) => `; subscriber ${s.id} roamed over nodes ${s.visited.map((v) => servers.indexOf(v) + 1).join('>')}`).join(''));

    // 3. notifications: one inbox entry per acknowledged write; none pushed twice.
    // Each node runs the rules on its own change feed and keeps its own inboxes: every node's
    // inbox is checked.
    const want = new Set(acked.map((k) => `item ${k}`));
    let titles = [];
    let nMissing = 0;
    let nTwice = 0;
    let notified = true;
    for (const srv of servers) {
      let mine = [];
      notified = (await until(async () => {
        mine = (await inbox(srv)).filter((t) => want.has(t));
        return mine.length >= want.size;
      }, 20000, 500)) && notified;
      const tcount = new Map();
      for (const t of mine) tcount.set(t, (tcount.get(t) || 0) + 1);
      nMissing += [...want].filter((t) => !tcount.has(t)).length;
      nTwice += [...tcount.values()].filter((n) => n > 1).length;
      titles = titles.concat(mine);
    }
    let pushedTwice = 0;
    let pushed = 0;
    for (const s of subs) for (const [t, n] of s.notifications) { if (want.has(t)) { pushed++; if (n > 1) pushedTwice++; } }
    row.inbox = servers.length > 1 ? `${titles.length}/${want.size * servers.length}` : titles.length;
    const pushSubs = subs.filter((s) => !s.roam).length;
    row.pushed = `${pushed}/${want.size * pushSubs}`;
    check(name, 'the inbox holds one notification per acknowledged write; none pushed twice',
      notified && nMissing === 0 && nTwice === 0 && pushedTwice === 0,
      `${titles.length} in the inbox${servers.length > 1 ? `es of ${servers.length} nodes` : ''} for ${want.size} writes, ${nMissing} missing, ${nTwice} twice; ` +
      `live pushes ${pushed} of ${want.size * pushSubs} (at most once by design), ${pushedTwice} twice`);

    // 4. the document: a fresh client reads every edit once, as the editor has them.
    await until(() => editor.provider.synced && editor.provider.wsconnected, 10000);
    const mine = editor.items.toArray();
    let theirs = null;
    await until(async () => {
      theirs = await readDoc(server);
      return theirs && theirs.length === mine.length;
    }, 15000, 300);
    const uniq = theirs ? new Set(theirs).size : 0;
    row.doc_items = `${theirs ? theirs.length : 'unreadable'}/${mine.length}`;
    check(name, 'the document holds every edit once',
      theirs !== null && theirs.length === mine.length && uniq === mine.length && mine.every((v, i) => theirs[i] === v),
      `${mine.length} edits made, ${theirs ? theirs.length : 'no'} read back, ${uniq} distinct`);

    // 5. broadcasts after recovery: every acknowledged one reaches every subscriber once.
    await until(() => subs.every((s) => s.joined), 10000);
    const bc = await sendBroadcasts(server, 50, name);
    const bcOk = await until(() => subs.every((s) => bc.acked.every((q) => s.broadcasts.get(q) === 1)), 10000);
    let bcMissing = 0;
    for (const s of subs) bcMissing += bc.acked.filter((q) => s.broadcasts.get(q) !== 1).length;
    row.broadcasts = `${bc.acked.length}/50`;
    check(name, 'acknowledged broadcasts reach every subscriber once',
      bc.acked.length === 50 && bcOk, `${bc.acked.length} of 50 acknowledged, ${bcMissing} deliveries missing or repeated${bc.error ? `, ${bc.error}` : ''}`);

    // 5b. the document without its editor: the server stored every edit (restarted cleanly,
    // a fresh client reads them all).
    editor.destroy();
    await server.stop();
    await server.start();
    const stored = await readDoc(server);
    check(name, 'the server stored every edit (read back after a restart, the editor gone)',
      stored !== null && stored.length === mine.length && mine.every((v, i) => stored[i] === v),
      `${mine.length} edits, ${stored ? stored.length : 'no'} stored`);

    // 6. the log says what happened.
    const text = servers.map((s, i) => s.since(logMarks[i])).join('\n');
    if (/collab [^\n]*: updates not stored/.test(text))
      expectLog.push(['documents are stored again', /collab [^\n]*: stored again[^\n]*/]);
    for (const [what, re] of expectLog) {
      const m = re.exec(text);
      check(name, `the log says ${what}`, !!m, m ? JSON.stringify(m[0].slice(0, 160)) : `no line matching ${re}`);
    }
    const sanitizer = /ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:/.exec(text);
    check(name, 'no sanitizer report in the log', !sanitizer, sanitizer ? sanitizer[0] : '');
  } catch (e) {
    check(name, 'the phase ran to its checks', false, `${e.message}\n--- log tail ---\n${servers.map((s) => s.tail()).join('\n---\n')}`);
  } finally {
    for (const w of writers) w.running = false;
    for (const s of subs) s.stop();
    editor.destroy();
    row.seconds = ((Date.now() - t0) / 1000).toFixed(1);
    figures.push(row);
  }
}

// ---- helpers for the faults ---------------------------------------------------------------
function sh(cmd, args, opts = {}) {
  return execFileSync(cmd, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], ...opts });
}

async function restartAfterKill(ctx, downMs = 500) {
  const { server } = ctx;
  const st = await server.kill('SIGKILL');
  ctx.note(`server SIGKILLed (${st?.signal}); restarting in ${downMs} ms`);
  await sleep(downMs);
  await server.start();
}

function pgCtl(...args) {
  return sh(join(process.env.PGBIN, 'pg_ctl'), ['-D', join(process.env.PGDIR, 'data'), ...args],
    process.getuid() === 0 ? { uid: Number(sh('id', ['-u', 'postgres']).trim()), gid: Number(sh('id', ['-g', 'postgres']).trim()) } : {});
}

// Fills the file system of dir until it is full; returns the filler's path.
function fillDisk(dir) {
  const path = join(dir, 'chaos-filler');
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(1 << 16, 0x61);
  let total = 0;
  try {
    for (;;) { writeSync(fd, chunk); total += chunk.length; }
  } catch (e) {
    if (e.code !== 'ENOSPC') throw e;
  } finally {
    closeSync(fd);
  }
  // Small writes fill the last partial block.
  const fd2 = openSync(path, 'a');
  try { for (;;) { writeSync(fd2, Buffer.alloc(512, 0x61)); total += 512; } } catch { /* full */ }
  closeSync(fd2);
  return { path, total };
}

// ---- the phases -----------------------------------------------------------------------------
const work = mkdtempSync(join(tmpdir(), 'rtsync-chaos-'));
const phases = [];

phases.push(['sqlite-kill', async () => {
  const dir = join(work, 'sqlite');
  const server = new Server({ dataDir: dir, args: ['--schema', join(here, 'schema.sql')], log: join(work, 'sqlite.log') });
  await server.start();
  await runPhase('sqlite-kill', {
    server,
    faults: async (ctx) => restartAfterKill(ctx),
    expectLog: [['the restart found an unclean stop', /the previous server \(pid \d+\) did not stop cleanly[^\n]*/],
      ['it listens again', /rtsync listening on 127\.0\.0\.1:\d+ with/]],
  });
  const st = await server.stop();
  check('sqlite-kill', 'the server stops cleanly at the end', st?.code === 0, JSON.stringify(st));
}]);

phases.push(['postgres-kill', async () => {
  if (!process.env.RTSYNC_TEST_POSTGRES) { note('SKIP postgres-kill: no PostgreSQL cluster (initdb not found or it did not start)'); return; }
  const db = `chaos_${randomBytes(4).toString('hex')}`;
  sh('psql', ['-X', '-q', '-d', `${process.env.RTSYNC_TEST_POSTGRES}/postgres`, '-c', `CREATE DATABASE ${db}`]);
  const dir = join(work, 'pg');
  const server = new Server({ dataDir: dir, log: join(work, 'pg.log'),
    args: ['--schema', join(here, 'schema.pg.sql'), '--postgres', `${process.env.RTSYNC_TEST_POSTGRES}/${db}`, '--postgres-name', db] });
  await server.start();
  await runPhase('postgres-kill', {
    server,
    faults: async (ctx, rep) => {
      await restartAfterKill(ctx);
      await sleep(CFG.loadMs);
      // PostgreSQL itself: SIGKILL the postmaster, let its backends go, start it again.
      const pid = Number(readFileSync(join(process.env.PGDIR, 'data', 'postmaster.pid'), 'utf8').split('\n')[0]);
      process.kill(pid, 'SIGKILL');
      ctx.note(`PostgreSQL postmaster ${pid} SIGKILLed`);
      await until(() => { try { process.kill(pid, 0); return false; } catch { return true; } }, 5000);
      // Its backends see the postmaster gone and exit; the start waits for them.
      await sleep(1500);
      for (let i = 0; ; i++) {
        try { pgCtl('-l', join(process.env.PGDIR, 'server.log'), '-w', '-t', '30', 'start'); break; } catch (e) {
          if (i >= 10) throw new Error(`PostgreSQL did not start again: ${e.stderr || e.message}`);
          await sleep(1000);
        }
      }
      ctx.note('PostgreSQL started again');
    },
    expectLog: [
      ['the restart found an unclean stop', /the previous server \(pid \d+\) did not stop cleanly[^\n]*/],
      ['the replication connection was lost', /store: (replication stream|the replication stream ended|nothing from PostgreSQL|replication connection failed)[^\n]*/],
      ['writes failed while PostgreSQL was down', /store: writes fail: [^\n]*/],
      ['writes succeed again', /store: writes succeed again[^\n]*/],
      ['it reconnected to PostgreSQL', /store: streaming changes from slot[^\n]*(?![\s\S]*store: reconnecting)/],
    ],
  });
  const st = await server.stop();
  check('postgres-kill', 'the server stops cleanly at the end', st?.code === 0, JSON.stringify(st));
}]);

// The data dir on its own small tmpfs (the disk phases).
function smallFs(name, sizeMb) {
  const mnt = join(work, name);
  mkdirSync(mnt, { recursive: true });
  sh('mount', ['-t', 'tmpfs', '-o', `size=${sizeMb}m,mode=0755`, `chaos-${name}`, mnt]);
  return mnt;
}
function umount(mnt) {
  try { sh('umount', [mnt]); } catch { try { sh('umount', ['-l', mnt]); } catch { /* gone */ } }
}

phases.push(['disk-full', async () => {
  if (process.env.CHAOS_CAN_MOUNT !== '1') { note('SKIP disk-full: cannot mount a tmpfs here (needs root and a mount namespace)'); return; }
  const mnt = smallFs('full', LONG ? 64 : 24);
  try {
    const server = new Server({ dataDir: join(mnt, 'data'), args: ['--schema', join(here, 'schema.sql')], log: join(work, 'full.log') });
    await server.start();
    let filler = null;
    await runPhase('disk-full', {
      server,
      faults: async (ctx) => {
        const before = { ...ctx.stats.errors };
        filler = fillDisk(mnt);
        ctx.note(`filled the data dir's file system (${filler.total} bytes)`);
        const errs = () => Object.entries(ctx.stats.errors).filter(([k, v]) => /^HTTP 507/.test(k) && v > (before[k] || 0)).length > 0;
        const saw507 = await until(errs, 15000);
        check('disk-full', 'writes fail with 507 while the disk is full', saw507,
          ctx.stats.lastError ? `last: ${ctx.stats.lastError.status} ${ctx.stats.lastError.body}` : 'no error seen');
        await sleep(2000);
        check('disk-full', 'the server is alive while the disk is full', !server.proc.status, JSON.stringify(server.proc.status));
        const h = await rest(server, 'GET', '/rest/v1/chaos_items?select=writer,seq&limit=1').catch((e) => ({ status: e.message, json: null }));
        check('disk-full', 'reads are served while the disk is full', h.status === 200 && Array.isArray(h.json) && h.json.length === 1,
          `GET /rest/v1/chaos_items: ${h.status}`);
        rmSync(filler.path);
        ctx.note('space freed');
      },
      expectLog: [
        ['writes fail for a full disk', /store: writes fail: [^\n]*disk is full[^\n]*/],
        ['writes succeed again', /store: writes succeed again[^\n]*/],
      ],
    });
    const st = await server.stop();
    check('disk-full', 'the server stops cleanly at the end', st?.code === 0, JSON.stringify(st));
  } finally {
    umount(mnt);
  }
}]);

phases.push(['read-only', async () => {
  if (process.env.CHAOS_CAN_MOUNT !== '1') { note('SKIP read-only: cannot mount a tmpfs here (needs root and a mount namespace)'); return; }
  const mnt = smallFs('ro', 64);
  try {
    const server = new Server({ dataDir: join(mnt, 'data'), args: ['--schema', join(here, 'schema.sql')], log: join(work, 'ro.log') });
    await server.start();
    await runPhase('read-only', {
      server,
      faults: async (ctx) => {
        // A live remount is refused by the kernel while the database is open for writing
        // (EBUSY): the file system goes read-only under a crashed server, which then starts on it.
        let live = 'remounted';
        try { sh('mount', ['-o', 'remount,ro', mnt]); } catch (e) { live = /busy/i.test(e.stderr) ? 'EBUSY' : e.stderr.trim(); }
        ctx.note(`live remount read-only: ${live}`);
        if (live === 'remounted') sh('mount', ['-o', 'remount,rw', mnt]);
        await server.kill('SIGKILL');
        sh('mount', ['-o', 'remount,ro', mnt]);
        ctx.note('server SIGKILLed, data dir read-only, starting the server on it');
        const started = await server.start({ expectFail: true });
        const text = server.tail(10);
        check('read-only', 'the server refuses a read-only data dir with a clear line', !started && /data dir [^\n]* is not writable \(Read-only file system\)/.test(text),
          started ? 'it started' : JSON.stringify(text.split('\n').filter((l) => /read-only|error|cannot/i.test(l)).slice(-2)));
        if (started) await server.kill('SIGKILL');
        sh('mount', ['-o', 'remount,rw', mnt]);
        ctx.note('data dir writable again, starting the server');
        await server.start();
      },
      expectLog: [['the restart found an unclean stop', /the previous server \(pid \d+\) did not stop cleanly[^\n]*/],
        ['it listens again', /rtsync listening on 127\.0\.0\.1:\d+ with/]],
    });
    const st = await server.stop();
    check('read-only', 'the server stops cleanly at the end', st?.code === 0, JSON.stringify(st));
  } finally {
    try { sh('mount', ['-o', 'remount,rw', mnt]); } catch { /* not mounted */ }
    umount(mnt);
  }
}]);

phases.push(['connection-cut', async () => {
  if (process.env.CHAOS_CAN_CUT !== '1') { note('SKIP connection-cut: not in a private network namespace (unshare -n unavailable)'); return; }
  const dir = join(work, 'cut');
  const server = new Server({ dataDir: dir, args: ['--schema', join(here, 'schema.sql')], log: join(work, 'cut.log') });
  await server.start();
  await runPhase('connection-cut', {
    server,
    faults: async (ctx) => {
      sh('ip', ['link', 'set', 'lo', 'down']);
      ctx.note(`loopback down for ${CFG.cutMs} ms (this namespace only)`);
      await sleep(CFG.cutMs);
      sh('ip', ['link', 'set', 'lo', 'up']);
      ctx.note('loopback up');
    },
  });
  const st = await server.stop();
  check('connection-cut', 'the server stops cleanly at the end', st?.code === 0, JSON.stringify(st));
}]);

// ---- the Redis cluster (--redis; docs/cluster.md, tests/cluster/) ------------------------
// Three nodes on one private redis-server and one PostgreSQL database, so postgres_changes go
// through the leader and the Redis Stream; writers and subscribers spread over the nodes. The
// faults: SIGKILL of Redis (started again, empty, after a few seconds) and SIGKILL of the node
// leading the replication (started again under its id once another node took the lead).
async function healthz(srv) {
  try {
    const r = await rest(srv, 'GET', '/healthz', { timeoutMs: 1000 });
    return r.json;
  } catch { return null; }
}
async function leaderOf(servers, ms = 15000) {
  let leader = null;
  await until(async () => {
    const leads = [];
    for (const srv of servers) if (!srv.proc?.status && (await healthz(srv))?.cluster?.changes === 'leader') leads.push(srv);
    leader = leads.length === 1 ? leads[0] : null;
    return leader;
  }, ms, 100);
  return leader;
}
const redisUpEverywhere = async (servers) => {
  for (const srv of servers) if ((await healthz(srv))?.cluster?.redis !== 'up') return false;
  return true;
};

phases.push(['cluster', async () => {
  if (!process.env.RTSYNC_TEST_POSTGRES) { note('SKIP cluster: no PostgreSQL cluster (initdb not found or it did not start)'); return; }
  try { sh('redis-server', ['--version']); sh('redis-cli', ['--version']); } catch { note('SKIP cluster: no redis-server or redis-cli (apt-get install redis-server)'); return; }
  const { startRedis } = await import('../cluster/lib.mjs');
  const redis = await startRedis();
  const servers = [];
  try {
    const db = `chaos_${randomBytes(4).toString('hex')}`;
    sh('psql', ['-X', '-q', '-d', `${process.env.RTSYNC_TEST_POSTGRES}/postgres`, '-c', `CREATE DATABASE ${db}`]);
    for (let i = 1; i <= 3; i++) {
      const srv = new Server({ dataDir: join(work, `cluster${i}`), log: join(work, `cluster${i}.log`),
        args: ['--schema', join(here, 'schema.pg.sql'), '--postgres', `${process.env.RTSYNC_TEST_POSTGRES}/${db}`, '--postgres-name', db,
          '--redis', redis.url, '--cluster-node', `chaos${i}`, '--cluster-ttl-ms', '2000'] });
      servers.push(srv);
      await srv.start();
    }
    await runPhase('cluster', {
      server: servers[0],
      servers,
      roam: true,
      faults: async (ctx, rep) => {
        const round = CFG.repeat > 1 ? ` (round ${rep + 1})` : '';
        // Redis: SIGKILL, down for 3 s, started again (without what it held).
        if (!(await until(() => redisUpEverywhere(servers), 10000))) throw new Error('not every node is connected to Redis');
        const marks = servers.map((srv) => srv.mark());
        await redis.kill();
        const tDown = Date.now();
        ctx.note(`redis-server SIGKILLed; starting it again in 3000 ms`);
        // Degraded, never down: a node without Redis still delivers its own broadcasts to its
        // own subscribers (once), and to no one twice.
        const local = servers[2];
        const bcDown = await sendBroadcasts(local, 20, `cluster-redis-down-${rep}`);
        const localSubs = ctx.subs.filter((sub) => sub.server === local);
        const localOk = await until(() => localSubs.every((sub) => bcDown.acked.every((q) => sub.broadcasts.get(q) === 1)), 2000);
        const never2 = ctx.subs.every((sub) => bcDown.acked.every((q) => (sub.broadcasts.get(q) || 0) <= 1));
        check('cluster', `with Redis down a node's broadcasts reach its own subscribers once, no one twice${round}`,
          bcDown.acked.length === 20 && localSubs.length > 0 && localOk && never2,
          `${bcDown.acked.length} of 20 acknowledged by node 3, ${localSubs.length} local subscribers${bcDown.error ? `, ${bcDown.error}` : ''}`);
        await sleep(Math.max(0, 3000 - (Date.now() - tDown)));
        await redis.start();
        const tUp = Date.now();
        const back = await until(() => redisUpEverywhere(servers), 15000, 100);
        const backMs = Date.now() - tUp;
        ctx.row.redis_back_ms = Math.max(ctx.row.redis_back_ms || 0, backMs);
        check('cluster', `every node is connected to Redis again${round}`, back, `${backMs} ms after its restart`);
        for (const [i, srv] of servers.entries()) {
          const m = /cluster: redis lost \([^\n]*\); serving local clients only[\s\S]*?(cluster: node chaos\d connected to redis[^\n]*)/.exec(srv.since(marks[i]));
          check('cluster', `node ${i + 1}'s log says Redis was lost (degraded) and connected again${round}`, !!m, m ? JSON.stringify(m[1]) : 'no "redis lost" then "connected to redis"');
        }
        await sleep(CFG.loadMs);
        // The leader of the replication: SIGKILL; another node takes the lead; it starts again.
        const leader = await leaderOf(servers);
        if (!leader) throw new Error('no single leader of the replication');
        const killMarks = servers.map((srv) => srv.mark());
        const st = await leader.kill('SIGKILL');
        const tKill = Date.now();
        ctx.note(`leader node ${servers.indexOf(leader) + 1} SIGKILLed (${st?.signal})`);
        const next = await leaderOf(servers.filter((s) => s !== leader), 20000);
        const took = Date.now() - tKill;
        ctx.row.takeover_ms = Math.max(ctx.row.takeover_ms || 0, took);
        check('cluster', `another node takes the lead of the replication${round}`, !!next,
          next ? `node ${servers.indexOf(next) + 1} after ${took} ms` : 'none');
        const lead = next && /store: leading the replication of slot [^\n]*/.exec(next.since(killMarks[servers.indexOf(next)]));
        check('cluster', `the new leader's log says it took the leadership${round}`, !!lead, lead ? JSON.stringify(lead[0]) : 'no "leading the replication" line');
        await leader.start();
        ctx.note(`node ${servers.indexOf(leader) + 1} started again`);
      },
      expectLog: [
        ['Redis was lost and the nodes served their own clients', /cluster: redis lost \([^\n]*\); serving local clients only/],
        ['the killed node\'s restart found an unclean stop', /the previous server \(pid \d+\) did not stop cleanly[^\n]*/],
      ],
    });
    for (const [i, srv] of servers.entries()) {
      const st = await srv.stop();
      check('cluster', `node ${i + 1} stops cleanly at the end`, st?.code === 0, JSON.stringify(st));
    }
  } finally {
    for (const srv of servers) await srv.kill('SIGKILL');
    await redis.stop();
  }
}]);

// ---- main ----------------------------------------------------------------------------------
const t0 = Date.now();
try {
  for (const [name, fn] of phases) {
    if (ONLY && !ONLY.includes(name)) continue;
    note(`phase ${name}`);
    try { await fn(); } catch (e) { check(name, 'phase setup', false, e.stack); }
  }
} finally {
  console.log('\n# figures');
  const cols = ['phase', 'seconds', 'acked', 'retried_acked', 'store_rows', 'recovery_ms', 'redis_back_ms', 'takeover_ms', 'reconnects', 'sub_missing', 'sub_dups', 'inbox', 'pushed', 'doc_items', 'broadcasts', 'write_errors'];
  console.log(`# ${cols.join(' | ')}`);
  for (const r of figures) console.log(`# ${cols.map((c) => r[c] ?? '-').join(' | ')}`);
  console.log(`# logs in ${process.env.CHAOS_KEEP ? work : '(removed; CHAOS_KEEP=1 keeps them)'}; ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  if (!process.env.CHAOS_KEEP) rmSync(work, { recursive: true, force: true });
  console.log(`chaos: ${passed} passed, ${failed} failed, ${skipped} skipped`);
  process.exit(failed ? 1 : 0);
}
