// Quotas under a flooding client (bench/README.md, "Quotas under a flooding
// client"; the limits: docs/limits.md).
//
//   node bench/limits.mjs BUILD/rtsync [--observers 100] [--rate 100] [--duration 5]
//        [--flooders 4] [--workers 2] [--flood-nice 0] [--phases baseline,events,...] [--json]
//
// One server (port 0, a temporary data directory, limits set low enough to
// trip: LIMITS below). --observers well-behaved clients (each its own user)
// are joined to one channel; one more connection publishes a timestamped
// broadcast to it --rate times a second (open loop). Each phase runs
// --duration s: the baseline with nobody else, then one phase per quota with
// --flooders clients (worker threads, so their sending does not share the
// observers' event loop) doing what that quota refuses, as fast as they are
// answered. After a phase the publisher stops, the observers get up to 3 s to
// drain, the flooders stop. --flood-nice N runs the flooder threads at nice N
// (this machine has 2 cores: at 0 they compete with the observers' thread for
// a CPU, and the observers' latency then includes waiting for one).
//
// One row per phase: the observers' send-to-receive latency p50/p99/max (one
// clock: the publisher and the observers share this thread), messages lost
// (sent x observers - delivered), observer sockets closed, the flooders'
// refusals and the error texts / close reasons / HTTP statuses they saw, the
// phase's increase of rtsync_limit_refusals_total by limit (GET /metrics), the
// server's CPU, this process's CPU and the rest of the machine's ("others"),
// 100 % = one core. --json prints one JSON line (and the table on stderr).
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync, rmSync, mkdtempSync } from 'node:fs';
import { tmpdir, cpus, setPriority } from 'node:os';
import { join } from 'node:path';
import { performance, monitorEventLoopDelay } from 'node:perf_hooks';
import { Worker, isMainThread, parentPort, workerData } from 'node:worker_threads';

const nm = new URL('../tests/interop/node_modules/', import.meta.url);
const { default: WebSocket } = await import(new URL('ws/wrapper.mjs', nm)).catch(() => {
  console.error('bench/limits.mjs needs the ws client of tests/interop/node_modules (npm ci in tests/interop)');
  process.exit(2);
});

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// The limits of the run. The observers' publisher sends --rate events a second
// on one channel (under the event rates), each observer holds one socket and
// one channel, and the broadcast payload is ~60 bytes (under the size limit).
const LIMITS = {
  'max-connections-per-user': 3,
  'max-joins-per-second': 5,
  'max-channels': 4,
  'max-events-per-second': 1000,
  'max-channel-events-per-second': 500,
  'max-presence-events-per-second': 3,
  'max-payload-bytes': 1000,
  'rest-max-requests-per-second': 5,
};

// phase -> the limit= label of rtsync_limit_refusals_total it trips
const PHASES = {
  baseline: null,
  events: 'channel_events_per_second',
  joins: 'joins_per_second',
  channels: 'channels',
  payload: 'payload_bytes',
  presence: 'presence_per_second',
  conns: 'connections_per_user',
  rest: 'rest_requests_per_second',
};

const joinPayload = (ack = false) => ({
  config: { broadcast: { self: false, ack }, presence: { key: '', enabled: false }, postgres_changes: [], private: false },
});

/** A socket speaking vsn 2.0.0 JSON arrays; resolves once open, rejects with err.status on a refused upgrade. */
function connect(url) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.binaryType = 'nodebuffer';
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => {
        const e = new Error(`HTTP ${res.statusCode} ${body}`);
        e.status = res.statusCode;
        e.body = body;
        reject(e);
        ws.terminate();
      });
    });
    ws.once('error', (e) => reject(e));
  });
}
const send = (ws, joinRef, ref, topic, event, payload) => {
  if (ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify([joinRef, ref, topic, event, payload]));
};

// ---------------------------------------------------------------- flooders
// A flooder runs in a worker thread until told to stop, then posts
// {refusals, seen: {text: count}, errors}. Refusals are the answers of the
// quota its phase trips; seen counts every error text, close reason and HTTP
// status it met (other quotas included).
async function flooder({ phase, wsUrl, httpUrl, token, id, nice }) {
  // Linux: the priority of pid 0 is this thread's own, not the process's
  if (nice) setPriority(0, nice);
  let stop = false;
  parentPort.on('message', (m) => { if (m === 'stop') stop = true; });
  const seen = {};
  let refusals = 0, errors = 0;
  const saw = (text) => { seen[text] = (seen[text] || 0) + 1; };
  let ref = 0;
  const nextRef = () => String(++ref);

  /** A connection with a frame listener; resolves when it closes. */
  async function session(run) {
    let ws;
    try {
      ws = await connect(wsUrl);
    } catch (e) {
      if (e.status) { saw(`HTTP ${e.status} ${e.body}`); } else { errors++; saw(`connect error ${e.code || e.message}`); }
      await sleep(10);
      return;
    }
    const closed = new Promise((r) => ws.once('close', (code, reason) => r({ code, reason: reason.toString() })));
    ws.on('error', () => {});
    try {
      await run(ws, closed);
    } catch { errors++; }
    if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.terminate();
    const c = await closed;
    if (c.code !== 1006 && c.code !== 1005) saw(`closed ${c.code}${c.reason ? ` ${c.reason}` : ''}`);
  }
  /** Resolves with the first frame for which pick() is truthy, or null on close / timeout. */
  const waitFrame = (ws, closed, pick, ms = 5000) => new Promise((resolve) => {
    const on = (data) => {
      let m;
      try { m = JSON.parse(data.toString()); } catch { return; }
      const [join_ref, r, topic, event, payload] = m;
      const v = pick({ join_ref, ref: r, topic, event, payload });
      if (v) { done(); resolve(v); }
    };
    const timer = setTimeout(() => { done(); resolve(null); }, ms);
    const done = () => { clearTimeout(timer); ws.off('message', on); };
    ws.on('message', on);
    closed.then(() => { done(); resolve(null); });
  });
  const joinOn = async (ws, closed, topic, ack = false) => {
    const r = nextRef();
    const reply = waitFrame(ws, closed, (f) => f.event === 'phx_reply' && f.ref === r && f);
    send(ws, r, r, topic, 'phx_join', joinPayload(ack));
    const f = await reply;
    return f && f.payload.status === 'ok' ? r : (f ? (saw(`join ${JSON.stringify(f.payload.response)}`), null) : null);
  };
  /** Counts system shutdown messages on ws (the channel quota answers). */
  const onShutdown = (ws, cb) => ws.on('message', (data) => {
    const s = data.toString();
    if (!s.includes('"system"')) return;
    const [, , , event, payload] = JSON.parse(s);
    if (event === 'system' && payload.status === 'error') cb(payload.message);
  });

  const topicBase = `realtime:flood-${process.pid}-${id}`;
  let n = 0;
  while (!stop) {
    n++;
    if (phase === 'events') {
      // broadcasts as fast as the socket takes them, on one channel; once it is
      // shut down, a new socket
      await session(async (ws, closed) => {
        const topic = `${topicBase}-${n}`;
        const jr = await joinOn(ws, closed, topic);
        if (!jr) return;
        let shut = false;
        onShutdown(ws, (msg) => { shut = true; refusals++; saw(`system ${msg}`); });
        while (!stop && !shut && ws.readyState === WebSocket.OPEN) {
          for (let i = 0; i < 50; i++) send(ws, jr, null, topic, 'broadcast', { type: 'broadcast', event: 'spam', payload: { i } });
          await sleep(1);
        }
      });
    } else if (phase === 'joins') {
      // joins in bursts of 10 on one socket until it is closed
      await session(async (ws, closed) => {
        ws.on('message', (data) => {
          const [, , , event, payload] = JSON.parse(data.toString());
          if (event === 'phx_reply' && payload.status === 'error') {
            const reason = payload.response?.reason ?? JSON.stringify(payload.response);
            if (/ClientJoinRateLimitReached/.test(reason)) refusals++;
            saw(`join ${reason}`);
          }
        });
        let k = 0;
        while (!stop && ws.readyState === WebSocket.OPEN) {
          for (let i = 0; i < 10; i++) {
            const r = nextRef();
            send(ws, r, r, `${topicBase}-${n}-${k++ % 4}`, 'phx_join', joinPayload());
          }
          await Promise.race([closed, sleep(5)]);
        }
      });
    } else if (phase === 'channels') {
      // 4 channels then more, each refused; a new socket once the join rate's
      // burst is spent (it would close the socket)
      await session(async (ws, closed) => {
        for (let i = 0; i < LIMITS['max-channels'] + 1 && !stop; i++) {
          const r = nextRef();
          const reply = waitFrame(ws, closed, (f) => f.event === 'phx_reply' && f.ref === r && f);
          send(ws, r, r, `${topicBase}-${n}-${i}`, 'phx_join', joinPayload());
          const f = await reply;
          if (!f) return;
          if (f.payload.status !== 'ok') {
            const reason = f.payload.response?.reason ?? JSON.stringify(f.payload.response);
            if (/ChannelRateLimitReached/.test(reason)) refusals++;
            saw(`join ${reason}`);
          }
        }
      });
    } else if (phase === 'payload') {
      // acked broadcasts of 2,000 bytes (over 1,000), 200 a second (under the
      // event rates) on each socket
      await session(async (ws, closed) => {
        const topic = `${topicBase}-${n}`;
        const jr = await joinOn(ws, closed, topic, true);
        if (!jr) return;
        ws.on('message', (data) => {
          const [, , , event, payload] = JSON.parse(data.toString());
          if (event === 'phx_reply' && payload.status === 'error') {
            if (payload.response === 'payload_size_exceeded') refusals++;
            saw(`reply ${JSON.stringify(payload.response)}`);
          } else if (event === 'system') saw(`system ${payload.message}`);
        });
        const big = 'x'.repeat(2000);
        while (!stop && ws.readyState === WebSocket.OPEN) {
          for (let i = 0; i < 2; i++) send(ws, jr, nextRef(), topic, 'broadcast', { type: 'broadcast', event: 'big', payload: { s: big } });
          await sleep(10);
        }
      });
    } else if (phase === 'presence') {
      // presence tracks in a burst on one channel: shut down past the
      // connection's rate; then a new socket
      await session(async (ws, closed) => {
        const topic = `${topicBase}-${n}`;
        const jr = await joinOn(ws, closed, topic);
        if (!jr) return;
        const shut = new Promise((resolve) => onShutdown(ws, (msg) => {
          if (/presence/.test(msg)) refusals++;
          saw(`system ${msg}`);
          resolve();
        }));
        for (let i = 0; i < 10; i++) send(ws, jr, nextRef(), topic, 'presence', { type: 'presence', event: 'track', payload: { i } });
        await Promise.race([shut, closed, sleep(2000)]);
      });
    } else if (phase === 'conns') {
      // one user's sockets: 3 held open, then upgrades that are refused
      const held = [];
      for (let i = 0; i < LIMITS['max-connections-per-user'] && !stop; i++) {
        // the flooders of this phase are one user: some of these are refused too
        try { held.push(await connect(wsUrl)); } catch (e) { if (e.status === 429) refusals++; saw(e.status ? `HTTP ${e.status} ${e.body}` : `error ${e.code}`); }
      }
      while (!stop) {
        const tries = Array.from({ length: 4 }, () => connect(wsUrl).then((ws) => { saw('upgrade accepted'); ws.terminate(); },
          (e) => { if (e.status === 429) refusals++; else errors++; saw(e.status ? `HTTP ${e.status} ${e.body}` : `error ${e.code}`); }));
        await Promise.all(tries);
      }
      for (const ws of held) ws.terminate();
    } else if (phase === 'rest') {
      // 8 requests in flight at a time, one user
      const get = () => fetch(`${httpUrl}/rest/v1/items`, { headers: { Authorization: `Bearer ${token}`, apikey: token } })
        .then(async (r) => {
          const body = await r.text();
          if (r.status === 429) { refusals++; saw(`HTTP 429 ${JSON.parse(body).message} (Retry-After: ${r.headers.get('retry-after')})`); } else saw(`HTTP ${r.status}`);
        }, () => { errors++; });
      while (!stop) await Promise.all(Array.from({ length: 8 }, get));
    } else break;
  }
  parentPort.postMessage({ refusals, seen, errors });
}

if (!isMainThread) {
  await flooder(workerData);
} else {
  await main();
}

// ---------------------------------------------------------------- main
async function main() {
  const argv = process.argv.slice(2);
  if (!argv[0] || argv[0].startsWith('--')) {
    console.error('usage: node bench/limits.mjs RTSYNC_BINARY [--observers 100] [--rate 100] [--duration 5] [--flooders 4] [--workers 2] [--flood-nice 0] [--phases baseline,events,joins,channels,payload,presence,conns,rest] [--json]');
    process.exit(2);
  }
  process.env.RTSYNC_BIN = argv[0];
  const arg = (name, def) => { const i = argv.indexOf(`--${name}`); return i > 0 ? argv[i + 1] : def; };
  const OBSERVERS = Number(arg('observers', 100)), RATE = Number(arg('rate', 100));
  const DURATION = Number(arg('duration', 5)), FLOODERS = Number(arg('flooders', 4));
  const WORKERS = Number(arg('workers', 2)), FLOOD_NICE = Number(arg('flood-nice', 0));
  const phases = arg('phases', Object.keys(PHASES).join(',')).split(',');
  for (const p of phases) if (!(p in PHASES)) { console.error(`unknown phase ${p}`); process.exit(2); }
  const JSON_OUT = argv.includes('--json');

  const { startServer } = await import(new URL('../tests/interop/lib/server.mjs', import.meta.url));
  const dir = mkdtempSync(join(tmpdir(), 'rtsync-limits-bench-'));
  const schema = join(dir, 'schema.sql');
  writeFileSync(schema, 'CREATE TABLE items (id bigint PRIMARY KEY, name text);\n');
  const server = await startServer({
    workers: WORKERS,
    args: [...Object.entries(LIMITS).flatMap(([k, v]) => [`--${k}`, String(v)]), '--schema', schema],
  });
  let users = 0;
  const userToken = (sub = `bench-user-${++users}`) => server.token({ role: 'authenticated', claims: { sub } });
  const wsUrl = (tok) => `${server.wsUrl}/realtime/v1/websocket?apikey=${tok}&vsn=2.0.0`;

  const rows = [];
  try {
    // observers: one socket and one channel each, every delivery timed
    const topic = `realtime:observed-${process.pid}`;
    const obs = [];
    let cur = null; // the phase being measured: {lat, delivered, first}
    let closedObservers = 0;
    for (let i = 0; i < OBSERVERS; i++) {
      const ws = await connect(wsUrl(userToken()));
      ws.on('error', () => {});
      ws.once('close', () => { closedObservers++; });
      const joined = new Promise((resolve, reject) => {
        ws.on('message', (data) => {
          const now = performance.now();
          const [, r, , event, payload] = JSON.parse(data.toString());
          if (event === 'phx_reply' && r === '1') (payload.status === 'ok' ? resolve : reject)(payload);
          else if (event === 'broadcast' && cur && payload.payload.ph === cur.id) {
            const l = now - payload.payload.t;
            cur.lat.push(l);
            if (l > cur.worst) { cur.worst = l; cur.worstAt = payload.payload.t - cur.t0; }
            cur.delivered++;
          }
        });
      });
      send(ws, '1', '1', topic, 'phx_join', joinPayload());
      await joined;
      obs.push(ws);
    }
    const pub = await connect(wsUrl(userToken()));
    pub.on('error', () => {});
    pub.once('close', () => { closedObservers++; }); // counted with the observers: it must stay too
    await new Promise((resolve) => {
      pub.on('message', (data) => { if (JSON.parse(data.toString())[1] === '1') resolve(); });
      send(pub, '1', '1', topic, 'phx_join', joinPayload());
    });

    for (const [id, phase] of phases.entries()) {
      const before = await refusalsByLimit(server.httpUrl);
      const flooders = [];
      if (PHASES[phase]) {
        const floodUser = userToken();
        for (let i = 0; i < FLOODERS; i++) {
          // conns: every flooder is the same user; else each its own
          const tok = phase === 'conns' ? floodUser : userToken();
          const w = new Worker(new URL(import.meta.url), {
            workerData: { phase, wsUrl: wsUrl(tok), httpUrl: server.httpUrl, token: tok, id: i, nice: FLOOD_NICE },
          });
          flooders.push({ w, result: new Promise((resolve, reject) => { w.once('message', resolve); w.once('error', reject); }) });
        }
        await sleep(300); // the flood under way before measuring
      }
      cur = { id, lat: [], delivered: 0, worst: 0, worstAt: 0, t0: performance.now() };
      const closedBefore = closedObservers;
      const cpu = cpuWindow(server.proc.pid);
      const loop = monitorEventLoopDelay({ resolution: 1 });
      loop.enable();
      const t0 = performance.now();
      let sent = 0;
      while (performance.now() - t0 < DURATION * 1000) {
        const due = Math.floor(((performance.now() - t0) / 1000) * RATE);
        while (sent < due) {
          send(pub, '1', null, topic, 'broadcast', { type: 'broadcast', event: 'tick', payload: { ph: id, s: sent, t: performance.now() } });
          sent++;
        }
        await sleep(1);
      }
      const expected = sent * OBSERVERS;
      const tDrain = performance.now();
      while (cur.delivered < expected && performance.now() - tDrain < 3000) await sleep(10);
      const usage = cpu();
      loop.disable();
      for (const f of flooders) f.w.postMessage('stop');
      const results = await Promise.all(flooders.map((f) => f.result));
      await Promise.all(flooders.map((f) => f.w.terminate()));
      const after = await refusalsByLimit(server.httpUrl);
      const metric = {};
      for (const [k, v] of Object.entries(after)) if (v - (before[k] || 0) > 0) metric[k] = v - (before[k] || 0);
      const seen = {};
      for (const r of results) for (const [k, v] of Object.entries(r.seen)) seen[k] = (seen[k] || 0) + v;
      const s = cur.lat.sort((a, b) => a - b);
      const pct = (p) => (s.length ? +s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))].toFixed(2) : null);
      rows.push({
        phase, limit: PHASES[phase], observers: OBSERVERS, sent, expected, delivered: cur.delivered,
        lost: expected - cur.delivered, observers_closed: closedObservers - closedBefore,
        latency_ms: { p50: pct(50), p99: pct(99), max: s.length ? +s[s.length - 1].toFixed(2) : null },
        max_sent_at_s: +(cur.worstAt / 1000).toFixed(2),
        // this thread's own stalls (the observers' and the publisher's loop): a
        // latency larger than these was not this process's doing
        generator_loop_delay_ms: { p99: +(loop.percentile(99) / 1e6).toFixed(1), max: +(loop.max / 1e6).toFixed(1) },
        flooders: flooders.length, flood_refusals: results.reduce((a, r) => a + r.refusals, 0),
        flood_errors: results.reduce((a, r) => a + r.errors, 0), seen, metric_refusals: metric, ...usage,
      });
      cur = null;
      printRow(rows[rows.length - 1], rows.length === 1, JSON_OUT ? console.error : console.log);
    }
    for (const ws of [...obs, pub]) ws.close();
  } finally {
    await server.stop();
    rmSync(dir, { recursive: true, force: true });
  }
  if (JSON_OUT) {
    console.log(JSON.stringify({ limits: LIMITS, observers: OBSERVERS, rate: RATE, duration_s: DURATION, flooders: FLOODERS, workers: WORKERS, flood_nice: FLOOD_NICE, server_exit: server.exited.code, phases: rows }));
  }
}

async function refusalsByLimit(httpUrl) {
  const text = await (await fetch(`${httpUrl}/metrics`)).text();
  const out = {};
  for (const m of text.matchAll(/^rtsync_limit_refusals_total\{limit="([^"]+)"\} (\d+)$/gm)) out[m[1]] = Number(m[2]);
  return out;
}

function printRow(r, header, out) {
  if (header) {
    out('| phase | observers p50 / p99 / max | generator loop stall max | lost (of) | observer sockets closed | flooders\' refusals | what they were told (count) | rtsync_limit_refusals_total | server CPU | generator CPU | others |');
    out('|---|---|---:|---|---:|---:|---|---|---:|---:|---:|');
  }
  const told = Object.entries(r.seen).sort((a, b) => b[1] - a[1]).slice(0, 4).map(([k, v]) => `${k} (${v})`).join('; ') || '—';
  const metric = Object.entries(r.metric_refusals).map(([k, v]) => `${k} +${v}`).join(', ') || '—';
  const l = r.latency_ms;
  out(`| ${r.phase} | ${l.p50} / ${l.p99} / ${l.max} ms | ${r.generator_loop_delay_ms.max} ms | ${r.lost} (${r.expected}) | ${r.observers_closed} | ${r.flood_refusals} | ${told} | ${metric} | ${r.server_pct} % | ${r.generator_pct} % | ${r.others_pct} % |`);
}

// ---- CPU accounting (as rtbench and bench/collab.mjs: 100 % = one core) ----
function cpuWindow(pid) {
  const TICK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  const machineBusyTicks = () => {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
    return f[0] + f[1] + f[2] + f[5] + f[6] + f[7]; // user nice system irq softirq steal
  };
  const procTicks = () => {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return Number(f[11]) + Number(f[12]); // utime stime
  };
  const t0 = performance.now(), m0 = machineBusyTicks(), s0 = procTicks(), c0 = process.cpuUsage();
  return () => {
    const secs = (performance.now() - t0) / 1000;
    const pct = (ticks) => (100 * ticks) / TICK / secs;
    const c1 = process.cpuUsage(c0); // every thread of this process: the observers and the flooders
    const srv = pct(procTicks() - s0), machine = pct(machineBusyTicks() - m0);
    const self = (100 * (c1.user + c1.system)) / 1e6 / secs;
    return { server_pct: +srv.toFixed(1), generator_pct: +self.toFixed(1),
      others_pct: +Math.max(0, machine - srv - self).toFixed(1), cores: cpus().length };
  };
}
