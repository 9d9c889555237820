// A bare WebSocket speaking the Phoenix wire format by hand (V1 JSON objects,
// V2 JSON arrays and V2 binary kinds 3/4), for checks the official clients
// cannot express.

import WebSocket from 'ws';
import { Recorder, withTimeout } from './util.mjs';

/** Encode a V2 kind-3 user broadcast push (client -> server). */
export function encodeUserBroadcastPush({ joinRef = '', ref = '', topic, event, meta = '', encoding = 1, payload }) {
  const jr = Buffer.from(joinRef ?? '', 'utf8');
  const rf = Buffer.from(ref ?? '', 'utf8');
  const tp = Buffer.from(topic, 'utf8');
  const ev = Buffer.from(event, 'utf8');
  const md = Buffer.from(meta, 'utf8');
  const body = Buffer.isBuffer(payload) ? payload : Buffer.from(payload, 'utf8');
  const header = Buffer.from([3, jr.length, rf.length, tp.length, ev.length, md.length, encoding]);
  return Buffer.concat([header, jr, rf, tp, ev, md, body]);
}

/** Decode a server binary frame; returns null for kinds other than 4. */
export function decodeBinary(buf) {
  const b = Buffer.from(buf);
  const kind = b[0];
  if (kind !== 4) return { kind, bytes: b };
  const topicLen = b[1], eventLen = b[2], metaLen = b[3], encoding = b[4];
  let off = 5;
  const topic = b.subarray(off, off + topicLen).toString('utf8'); off += topicLen;
  const event = b.subarray(off, off + eventLen).toString('utf8'); off += eventLen;
  const meta = b.subarray(off, off + metaLen).toString('utf8'); off += metaLen;
  const payloadBytes = b.subarray(off);
  return { kind, topic, event, meta, metaLen, encoding, payloadBytes, bytes: b };
}

export class RawClient {
  /**
   * Open a WebSocket. Resolves once open; rejects on HTTP errors with
   * err.status / err.body / err.headers set.
   */
  static connect(server, { vsn = '2.0.0', path = '/realtime/v1/websocket', apikey, query, omitVsn = false } = {}) {
    const params = new URLSearchParams();
    if (apikey !== null) params.set('apikey', apikey || server.token({ role: 'anon' }));
    if (!omitVsn) params.set('vsn', vsn);
    if (query) for (const [k, v] of Object.entries(query)) params.set(k, v);
    const url = `${server.wsUrl}${path}?${params}`;
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      const c = new RawClient(ws, vsn);
      ws.once('open', () => resolve(c));
      ws.once('unexpected-response', (req, res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => { body += d; });
        res.on('end', () => {
          const err = new Error(`WebSocket upgrade refused: HTTP ${res.statusCode} ${body}`);
          err.status = res.statusCode;
          err.body = body;
          err.headers = res.headers;
          reject(err);
          ws.terminate();
        });
      });
      ws.on('error', (e) => reject(e));
    });
  }

  constructor(ws, vsn) {
    this.ws = ws;
    this.vsn = vsn;
    this.refCounter = 0;
    this.frames = new Recorder('frames');
    this.openedAt = Date.now();
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => resolve({ code, reason: reason.toString(), at: Date.now() }));
    });
    ws.on('error', () => { /* surfaced via close */ });
    ws.on('message', (data, isBinary) => {
      if (isBinary) {
        this.frames.push({ binary: true, ...decodeBinary(data) });
        return;
      }
      const text = data.toString('utf8');
      let raw;
      try { raw = JSON.parse(text); } catch { this.frames.push({ text, unparsable: true }); return; }
      let msg;
      if (Array.isArray(raw)) {
        const [join_ref, ref, topic, event, payload] = raw;
        msg = { join_ref, ref, topic, event, payload };
      } else {
        msg = { ...raw };
      }
      this.frames.push({ binary: false, text, raw, ...msg });
    });
  }

  makeRef() {
    this.refCounter += 1;
    return String(this.refCounter);
  }

  /** Send a logical message in this socket's serializer. Returns the ref used. */
  send({ join_ref = null, ref, topic, event, payload = {} }) {
    if (ref === undefined) ref = this.makeRef();
    let text;
    if (this.vsn === '1.0.0') {
      const o = { topic, event, payload, ref };
      if (join_ref !== null && join_ref !== undefined) o.join_ref = join_ref;
      text = JSON.stringify(o);
    } else {
      text = JSON.stringify([join_ref, ref, topic, event, payload]);
    }
    this.ws.send(text);
    return ref;
  }

  sendRaw(data, opts) {
    this.ws.send(data, opts);
  }

  /** Wait for the reply to `ref`. */
  reply(ref, ms = 5000) {
    return this.frames.waitFor((f) => !f.binary && f.event === 'phx_reply' && f.ref === ref, ms, `phx_reply ref=${ref}`);
  }

  async heartbeat(ms = 5000) {
    const ref = this.send({ topic: 'phoenix', event: 'heartbeat', payload: {} });
    return this.reply(ref, ms);
  }

  /** Join; returns {joinRef, reply}. */
  async join(topic, payload = { config: { broadcast: { self: false, ack: false }, presence: { key: '', enabled: false }, postgres_changes: [], private: false } }, ms = 12000) {
    const joinRef = this.makeRef();
    this.send({ join_ref: joinRef, ref: joinRef, topic, event: 'phx_join', payload });
    const reply = await this.reply(joinRef, ms);
    return { joinRef, reply };
  }

  next(pred, ms = 5000, what = '') {
    return this.frames.waitFor(pred, ms, what);
  }

  nextNew(pred, ms = 5000, what = '') {
    return this.frames.waitNext(pred, ms, what);
  }

  isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  async close() {
    if (this.ws.readyState === WebSocket.CLOSED) return;
    this.ws.close(1000);
    try {
      await withTimeout(this.closed, 3000, 'raw close');
    } catch {
      this.ws.terminate();
    }
  }
}

export function rawConnect(sc, server, opts) {
  return RawClient.connect(server, opts).then((c) => {
    sc.defer(() => c.close());
    return c;
  });
}

/**
 * Attempt a WebSocket upgrade and return {status, headers, body} of the HTTP
 * response when the server refuses it (or {status: 101} if it accepts).
 */
export function tryUpgrade(server, { path = '/realtime/v1/websocket', query = {} } = {}) {
  const params = new URLSearchParams(query);
  const url = `${server.wsUrl}${path}?${params}`;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    ws.once('open', () => { resolve({ status: 101 }); ws.terminate(); });
    ws.once('unexpected-response', (req, res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => { body += d; });
      res.on('end', () => { resolve({ status: res.statusCode, headers: res.headers, body }); ws.terminate(); });
    });
    ws.on('error', (e) => reject(e));
  });
}
