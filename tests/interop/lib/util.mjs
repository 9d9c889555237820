// Shared helpers: event recorders, timeouts, client factories with cleanup.

import WebSocket from 'ws';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
// CommonJS builds: work the same on Node 18/20/22 and avoid ESM interop surprises.
const realtimeJs = require('@supabase/realtime-js');
export const RealtimeClient = realtimeJs.RealtimeClient;
export const REALTIME_SUBSCRIBE_STATES = realtimeJs.REALTIME_SUBSCRIBE_STATES;

export { WebSocket };
export const VSNS = ['1.0.0', '2.0.0'];

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** Reject after `ms` with a descriptive error. */
export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

/**
 * Records events and lets a test wait for the first (past or future) event
 * that matches a predicate.
 */
export class Recorder {
  constructor(name = 'event') {
    this.name = name;
    this.events = [];
    this.waiters = [];
  }

  push(ev) {
    this.events.push(ev);
    for (const w of [...this.waiters]) {
      if (w.pred(ev)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.resolve(ev);
      }
    }
  }

  get handler() {
    return (ev) => this.push(ev);
  }

  /** Wait for an event matching pred among those recorded from index `from` on. */
  waitFor(pred = () => true, ms = 5000, what = '', from = 0) {
    for (let i = from; i < this.events.length; i++) {
      if (pred(this.events[i])) return Promise.resolve(this.events[i]);
    }
    return new Promise((resolve, reject) => {
      const w = { pred, resolve };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`timed out after ${ms} ms waiting for ${this.name}${what ? ` (${what})` : ''}; ` +
          `recorded ${this.events.length}: ${safeJson(this.events.slice(-10))}`));
      }, ms);
      this.waiters.push(w);
    });
  }

  /** Wait for an event recorded after this call. */
  waitNext(pred = () => true, ms = 5000, what = '') {
    return this.waitFor(pred, ms, what, this.events.length);
  }

  filter(pred) {
    return this.events.filter(pred);
  }
}

export function safeJson(v) {
  try {
    return JSON.stringify(v, (k, x) => {
      if (x instanceof ArrayBuffer) return `<ArrayBuffer ${Buffer.from(x).toString('hex')}>`;
      if (Buffer.isBuffer(x)) return `<Buffer ${x.toString('hex')}>`;
      if (x instanceof Error) return `Error(${x.message})`;
      return x;
    });
  } catch {
    return String(v);
  }
}

/**
 * Per-test resource scope: everything registered is cleaned up in reverse
 * order when the test ends (pass or fail).
 */
export function scope(t) {
  const cleanups = [];
  const s = {
    defer(fn) { cleanups.push(fn); },
    async close() {
      while (cleanups.length) {
        const fn = cleanups.pop();
        try { await withTimeout(Promise.resolve().then(fn), 5000, 'cleanup'); } catch { /* best effort */ }
      }
    },
  };
  t.after(() => s.close());
  return s;
}

/**
 * A RealtimeClient (realtime-js) against the server, using `ws` as transport
 * so it works on Node 18/20 (no global WebSocket) as well as on Node 22.
 */
export function realtimeClient(sc, server, { vsn = '2.0.0', apikey, heartbeatIntervalMs, timeout = 10000, endpoint, ...rest } = {}) {
  const client = new RealtimeClient(endpoint || server.realtimeUrl, {
    transport: WebSocket,
    params: { apikey: apikey || server.token({ role: 'anon' }) },
    vsn,
    timeout,
    ...(heartbeatIntervalMs ? { heartbeatIntervalMs } : {}),
    reconnectAfterMs: () => 1000,
    // A logger keeps realtime-js from writing warnings (e.g. the REST fallback
    // notice) to the console; RTSYNC_INTEROP_CLIENT_LOG=1 prints everything.
    logger: process.env.RTSYNC_INTEROP_CLIENT_LOG
      ? (kind, msg, data) => console.error(`[realtime-js ${vsn}] ${kind}: ${msg}`, data === undefined ? '' : safeJson(data))
      : () => {},
    ...rest,
  });
  sc.defer(async () => {
    for (const ch of client.getChannels()) {
      try { ch.teardown(); } catch { /* ignore */ }
    }
    await client.disconnect();
  });
  return client;
}

/**
 * subscribe() wrapped in a promise: resolves on SUBSCRIBED, rejects on the
 * first other status. All statuses are recorded in channel._statuses.
 */
export function subscribe(channel, ms = 10000) {
  const statuses = new Recorder(`status of ${channel.topic}`);
  channel._statuses = statuses;
  channel.subscribe((status, err) => statuses.push({ status, err }));
  return statuses.waitFor(() => true, ms + 2000, 'first subscribe status').then((ev) => {
    if (ev.status !== 'SUBSCRIBED') {
      const e = new Error(`expected SUBSCRIBED on ${channel.topic}, got ${ev.status}${ev.err ? `: ${ev.err.message}` : ''}`);
      e.statusEvent = ev;
      throw e;
    }
    return channel;
  });
}

/** Subscribe and return the recorder of statuses without asserting the outcome. */
export function subscribeRecording(channel) {
  const statuses = new Recorder(`status of ${channel.topic}`);
  channel._statuses = statuses;
  channel.subscribe((status, err) => statuses.push({ status, err }));
  return statuses;
}

let topicCounter = 0;
/** A topic name unique within this process (keeps tests independent on a shared server). */
export function uniqueTopic(prefix = 'room') {
  topicCounter += 1;
  return `${prefix}-${process.pid}-${topicCounter}-${Math.random().toString(36).slice(2, 8)}`;
}

/**
 * A supabase-js client of the server (realtime over `ws`, no session storage),
 * disconnected when the test ends.
 */
export function supabaseClient(sc, server, { vsn = '2.0.0', key } = {}) {
  const { createClient } = require('@supabase/supabase-js');
  const sb = createClient(server.httpUrl, key || server.token({ role: 'anon' }), {
    auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
    realtime: { transport: WebSocket, vsn, timeout: 10_000, logger: () => {}, reconnectAfterMs: () => 1000 },
  });
  sc.defer(async () => {
    await withTimeout(sb.removeAllChannels(), 5000, 'removeAllChannels').catch(() => {});
    await sb.realtime.disconnect();
  });
  return sb;
}
