// Shared-document benchmark (bench/README.md, "Documents"): the unmodified
// yjs + y-websocket clients against rtsync's /collab/v1.
//
//   node bench/collab.mjs BUILD/rtsync [--editors 100] [--rate 200] [--duration 10]
//                         [--edits 20000] [--workers 2] [--clients raw|yjs]
//                         [--phase fanout|storage|both]
//
// Phase 1 (fan-out): --editors editors on one document. With --clients yjs
// they are y-websocket providers on Y.Docs, each applying every update (in
// one Node process that is what limits the figure); with --clients raw
// (default) each is a WebSocket speaking y-websocket's sync protocol that
// makes its edits with its own Y.Doc but does not apply what it receives:
// it takes the send times out of the updates. They edit
// at --rate edits/s in total (open loop, round-robin over the editors) for
// --duration s. Each edit is one transaction: one character typed into a
// shared Y.Text and the editor's own Y.Map key set to {t: send time, s: seq}.
// Every other editor observes the key change; send-to-receipt latency is
// taken there (one process, one clock). Reported: edits sent, updates
// delivered (expected: sent x (editors - 1)), updates/s delivered, latency
// p50/p99/max, server CPU and the CPU the rest of the machine used meanwhile
// ("others", 100 % = one core), this process's CPU.
//
// Phase 2 (storage): one editor makes --edits small edits (typing with
// corrections, a counter overwritten on every third edit, the text trimmed
// past 2,000 characters) with compaction off, the stored size is read
// (REST info); then a server on the same data with compaction on, and the
// size read again once the compaction ran. Also the time a late joiner
// takes to load the document.
//
// Prints one JSON line. Starts its servers on port 0 with temporary data
// directories (removed at the end).
import { execFileSync } from 'node:child_process';
import { readFileSync, rmSync, mkdtempSync } from 'node:fs';
import { tmpdir, cpus } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';

const nm = new URL('../tests/interop/node_modules/', import.meta.url);
const Y = await import(new URL('yjs/dist/yjs.mjs', nm));
const { WebsocketProvider } = await import(new URL('y-websocket/src/y-websocket.js', nm));
const { default: WebSocket } = await import(new URL('ws/wrapper.mjs', nm));
const encoding = await import(new URL('lib0/encoding.js', nm));
const { startServer } = await import(new URL('../tests/interop/lib/server.mjs', import.meta.url));

process.setMaxListeners(0); // y-websocket adds an exit listener per provider
const argv = process.argv.slice(2);
if (!argv[0] || argv[0].startsWith('--')) {
  console.error('usage: node bench/collab.mjs RTSYNC_BINARY [--editors N] [--rate R] [--duration S] [--edits N] [--workers W] [--clients raw|yjs] [--phase fanout|storage|both]');
  process.exit(2);
}
process.env.RTSYNC_BIN = argv[0];
const opt = (name, def) => { const i = argv.indexOf(`--${name}`); return i > 0 ? Number(argv[i + 1]) : def; };
const EDITORS = opt('editors', 100), RATE = opt('rate', 200), DURATION = opt('duration', 10);
const EDITS = opt('edits', 20000), WORKERS = opt('workers', 2);
const CLIENTS = argv.includes('--clients') ? argv[argv.indexOf('--clients') + 1] : 'raw';

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function until(cond, what, ms = 60_000) {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

// ---- CPU accounting (as rtbench: 100 % = one core) ----
const TICK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
function machineBusyTicks() {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  return f[0] + f[1] + f[2] + f[5] + f[6] + f[7]; // user nice system irq softirq steal
}
function procTicks(pid) {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return Number(f[11]) + Number(f[12]); // utime stime
}
function cpuWindow(pid) {
  const t0 = performance.now(), m0 = machineBusyTicks(), s0 = procTicks(pid), c0 = process.cpuUsage();
  return () => {
    const secs = (performance.now() - t0) / 1000;
    const pct = (ticks) => (100 * ticks) / TICK / secs;
    const c1 = process.cpuUsage(c0);
    const server = pct(procTicks(pid) - s0), machine = pct(machineBusyTicks() - m0);
    const self = (100 * (c1.user + c1.system)) / 1e6 / secs;
    return { server_pct: +server.toFixed(1), generator_pct: +self.toFixed(1),
      others_pct: +Math.max(0, machine - server - self).toFixed(1), cores: cpus().length };
  };
}

function percentile(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

function editor(server, room, i) {
  const ydoc = new Y.Doc();
  const provider = new WebsocketProvider(server.httpUrl.replace(/^http/, 'ws') + '/collab/v1', room, ydoc, {
    params: { apikey: server.token({ role: 'authenticated', claims: { sub: `editor-${i}` } }) },
    WebSocketPolyfill: WebSocket,
    disableBc: true,
    maxBackoffTime: 500,
  });
  return { ydoc, provider, close: () => { provider.destroy(); ydoc.destroy(); } };
}

async function info(server, doc) {
  const r = await fetch(`${server.httpUrl}/collab/v1/${doc}`, {
    headers: { apikey: server.token({ role: 'authenticated', claims: { sub: 'reader' } }) },
  });
  return r.json();
}

// ---- phase 1, raw: the protocol without applying ----
function rawEditor(server, room, i) {
  const ydoc = new Y.Doc();
  const url = `${server.httpUrl.replace(/^http/, 'ws')}/collab/v1/${room}?apikey=${server.token({ role: 'authenticated', claims: { sub: `editor-${i}` } })}`;
  const ws = new WebSocket(url);
  ws.binaryType = 'nodebuffer';
  const e = { ydoc, ws, synced: false, onUpdate: null, close: () => { ws.close(); ydoc.destroy(); } };
  const send = (type, payload) => {
    const enc = encoding.createEncoder();
    encoding.writeVarUint(enc, 0);
    encoding.writeVarUint(enc, type);
    encoding.writeVarUint8Array(enc, payload);
    ws.send(encoding.toUint8Array(enc));
  };
  ws.on('open', () => send(0, Y.encodeStateVector(ydoc)));
  ws.on('message', (m) => {
    if (m[0] !== 0) return; // awareness
    if (m[1] === 1) e.synced = true; // step 2: the document
    else if (m[1] === 2 && e.onUpdate) e.onUpdate(m);
  });
  ydoc.on('update', (u, origin) => { if (origin !== 'remote') send(2, u); });
  return e;
}

async function fanoutRaw() {
  const server = await startServer({ workers: WORKERS });
  const eds = [];
  try {
    for (let i = 0; i < EDITORS; i++) eds.push(rawEditor(server, 'fanout', i));
    await until(() => eds.every((e) => e.synced), 'every editor synced');
    const lat = [];
    let delivered = 0;
    const t0us = Math.round(performance.now() * 1000);
    const re = /T(\d+)\./g;
    for (const e of eds) {
      e.onUpdate = (m) => {
        const now = performance.now() * 1000;
        for (const x of m.toString('latin1').matchAll(re)) {
          const t = Number(x[1]);
          if (t >= t0us) { lat.push((now - t) / 1000); delivered++; }
        }
      };
    }
    const done = cpuWindow(server.proc.pid);
    const t0 = performance.now();
    let sent = 0;
    while (performance.now() - t0 < DURATION * 1000) {
      const due = Math.floor(((performance.now() - t0) / 1000) * RATE);
      while (sent < due) {
        const t = eds[sent % EDITORS].ydoc.getText('t');
        t.insert(t.length, `T${Math.round(performance.now() * 1000)}.`);
        sent++;
      }
      await sleep(1);
    }
    const sendS = (performance.now() - t0) / 1000;
    const expected = sent * (EDITORS - 1);
    const tDrain = performance.now();
    while (delivered < expected && performance.now() - tDrain < 10_000) await sleep(20);
    const cpu = done();
    const s = lat.sort((a, b) => a - b);
    const fanIn = await info(server, 'fanout');
    return {
      clients: 'raw', editors: EDITORS, rate: RATE, duration_s: +sendS.toFixed(2), sent,
      expected, delivered, delivered_per_s: Math.round(delivered / sendS),
      latency_ms: { p50: +percentile(s, 50).toFixed(2), p99: +percentile(s, 99).toFixed(2), max: +s[s.length - 1].toFixed(2) },
      document_bytes: fanIn.memory.bytes,
      ...cpu,
    };
  } finally {
    for (const e of eds) e.close();
    await server.stop();
  }
}

// ---- phase 1: fan-out to EDITORS editors of one document ----
async function fanout() {
  const server = await startServer({ workers: WORKERS });
  const eds = [];
  try {
    for (let i = 0; i < EDITORS; i++) eds.push(editor(server, 'fanout', i));
    await until(() => eds.every((e) => e.provider.synced), 'every editor synced');
    const lat = [];
    let delivered = 0, measuring = false;
    eds.forEach((e, i) => {
      e.ydoc.getMap('lat').observe((ev, tr) => {
        if (tr.local || !measuring) return;
        const now = performance.now();
        for (const k of ev.keysChanged) {
          if (k === String(i)) continue;
          const v = e.ydoc.getMap('lat').get(k);
          if (v && typeof v.t === 'number') { lat.push(now - v.t); delivered++; }
        }
      });
    });
    await sleep(500);
    const done = cpuWindow(server.proc.pid);
    measuring = true;
    const t0 = performance.now();
    let sent = 0;
    while (performance.now() - t0 < DURATION * 1000) {
      // open loop: catch up to the schedule
      const due = Math.floor(((performance.now() - t0) / 1000) * RATE);
      while (sent < due) {
        const e = eds[sent % EDITORS], k = String(sent % EDITORS);
        e.ydoc.transact(() => {
          const t = e.ydoc.getText('t');
          t.insert(t.length, 'x');
          e.ydoc.getMap('lat').set(k, { t: performance.now(), s: sent });
        });
        sent++;
      }
      await sleep(1);
    }
    const sendS = (performance.now() - t0) / 1000;
    const expected = sent * (EDITORS - 1);
    const tDrain = performance.now();
    while (delivered < expected && performance.now() - tDrain < 10_000) await sleep(20);
    const cpu = done();
    const s = lat.sort((a, b) => a - b);
    // a key overwritten before an editor saw it is seen once for both sets:
    // count those as not delivered (they lower the delivered count only)
    return {
      clients: 'yjs', editors: EDITORS, rate: RATE, duration_s: +sendS.toFixed(2), sent,
      expected, delivered, delivered_per_s: Math.round(delivered / sendS),
      latency_ms: { p50: +percentile(s, 50).toFixed(2), p99: +percentile(s, 99).toFixed(2), max: +s[s.length - 1].toFixed(2) },
      converged: eds.every((e) => e.ydoc.getText('t').length === eds[0].ydoc.getText('t').length),
      ...cpu,
    };
  } finally {
    for (const e of eds) e.close();
    await server.stop();
  }
}

// ---- phase 2: stored size before and after compaction ----
async function storage() {
  const dataDir = mkdtempSync(join(tmpdir(), 'rtsync-bench-collab-'));
  try {
    process.env.RTSYNC_COLLAB_COMPACT_UPDATES = '1000000';
    process.env.RTSYNC_COLLAB_COMPACT_BYTES = String(1 << 30);
    const s1 = await startServer({ dataDir });
    const w = editor(s1, 'store', 0);
    await until(() => w.provider.synced, 'sync');
    const t = w.ydoc.getText('t'), m = w.ydoc.getMap('m');
    let rawBytes = 0;
    w.ydoc.on('update', (u) => { rawBytes += u.length; });
    for (let i = 0; i < EDITS; i++) {
      if (i % 3 === 2) m.set('count', i);
      else if (i % 7 === 6 && t.length) t.delete(t.length - 1, 1);
      else t.insert(t.length, String.fromCharCode(97 + (i % 26)));
      if (t.length > 2000) t.delete(0, 1000);
      if (i % 2000 === 1999) await until(() => w.provider.ws && w.provider.ws.bufferedAmount === 0, 'drain');
    }
    const clock = Y.decodeStateVector(Y.encodeStateVector(w.ydoc)).get(w.ydoc.clientID);
    let before;
    for (;;) {
      before = await info(s1, 'store');
      if (before.state_vector[String(w.ydoc.clientID)] === clock && before.stored.updates >= 1) break;
      await sleep(100);
    }
    // the appends reach the store after the fan-out: wait until they stop
    for (let last = -1; before.stored.updates !== last;) {
      last = before.stored.updates;
      await sleep(1000);
      before = await info(s1, 'store');
    }
    const yjsState = Y.encodeStateAsUpdate(w.ydoc).length;
    const want = t.toString();
    w.close();
    await s1.stop();
    // compaction on: the next server compacts the log when it loads it
    delete process.env.RTSYNC_COLLAB_COMPACT_UPDATES;
    delete process.env.RTSYNC_COLLAB_COMPACT_BYTES;
    const s2 = await startServer({ dataDir });
    const tl0 = performance.now();
    const late0 = editor(s2, 'store', 1);
    await until(() => late0.provider.synced && late0.ydoc.getText('t').length === want.length, 'late joiner (log)');
    const loadLogMs = performance.now() - tl0;
    let after;
    for (let k = 0; k < 200; k++) {
      after = await info(s2, 'store');
      if (after.stored.updates <= 1) break;
      await sleep(100);
    }
    late0.close();
    await s2.stop();
    const s3 = await startServer({ dataDir });
    const tl1 = performance.now();
    const late1 = editor(s3, 'store', 2);
    await until(() => late1.provider.synced && late1.ydoc.getText('t').length === want.length, 'late joiner (compacted)');
    const loadCompactedMs = performance.now() - tl1;
    const same = late1.ydoc.getText('t').toString() === want;
    late1.close();
    await s3.stop();
    return {
      edits: EDITS, update_bytes: rawBytes, yjs_state_bytes: yjsState,
      before: before.stored, after: after.stored, content_equal: same,
      late_join_ms: { log: +loadLogMs.toFixed(1), compacted: +loadCompactedMs.toFixed(1) },
    };
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
  }
}

const PHASE = argv.includes('--phase') ? argv[argv.indexOf('--phase') + 1] : 'both';
const fan = PHASE === 'storage' ? null : CLIENTS === 'yjs' ? await fanout() : await fanoutRaw();
const store = PHASE === 'fanout' ? null : await storage();
console.log(JSON.stringify({ fanout: fan, storage: store }));
process.exit(0);
