// rtsync.js — the browser client of rtsync (docs/browser-client.md).
//
// Every tab of one browser shares one WebSocket to the server. One tab, the
// leader, holds it; it is elected through the Web Locks API (a lease in
// localStorage where Web Locks is missing) and the tabs talk over a
// BroadcastChannel (localStorage events where that is missing). Each tab runs
// any number of virtual Phoenix sessions ("ports"): the leader multiplexes
// them over its socket — one server channel per topic, joined once whatever
// the number of ports on it, with refs and join_refs rewritten, postgres_changes
// bindings merged, live query ids kept apart per port, broadcasts between tabs
// of the browser delivered locally. When the leader goes away another tab takes
// over and joins every topic again after the last position each port saw, so
// a change is neither lost nor repeated.
//
// Two faces: SharedWebSocket, a WebSocket-like class to pass as `transport` to
// realtime-js / supabase-js, and RtSync, a small API of its own (channels,
// live queries, notifications, writes with an IndexedDB offline queue).

import { OfflineQueue } from './idb-queue.js'

const HEARTBEAT_MS = 25000
const TAB_PING_MS = 2000
// a tab not heard from this long is gone (a crash: a closed tab says bye);
// long enough for the once-a-minute timers of throttled background tabs
const TAB_DEAD_MS = 150000
const LEASE_MS = 3000
const MAX_FRAME = 4 * 1024 * 1024 // bound on what a port may hand the leader

const uid = () =>
  (globalThis.crypto && crypto.randomUUID ? crypto.randomUUID() : Math.random().toString(36).slice(2) + Date.now().toString(36))

const posNum = (p) => {
  if (p === undefined || p === null) return null
  const s = String(p)
  return /^[0-9]{1,19}$/.test(s) ? BigInt(s) : null
}
const minPos = (list, dflt) => {
  let r = null
  for (const p of list) if (p !== null && (r === null || p < r)) r = p
  return r === null ? dflt : r
}
const posMax = (a, b) => (a === null ? b : b === null ? a : a > b ? a : b)

/* ------------------------------------------------------------------ */
/* Tab bus: BroadcastChannel, or localStorage events as the fallback.  */

// The fallback can be chosen for a page (tests, old browsers): localStorage
// 'rtsync:fallback' = 'storage' uses the lease and storage events even where
// Web Locks and BroadcastChannel exist.
const preferStorage = () => {
  try { return typeof localStorage !== 'undefined' && localStorage.getItem('rtsync:fallback') === 'storage' } catch (_) { return false }
}

class TabBus {
  constructor(name) {
    this.handlers = new Set()
    this.name = name
    if (typeof BroadcastChannel !== 'undefined' && !preferStorage()) {
      this.bc = new BroadcastChannel(name)
      this.bc.onmessage = (e) => this._deliver(e.data)
    } else {
      this.key = `${name}:bus`
      this._onStorage = (e) => {
        if (e.key !== this.key || !e.newValue) return
        try { this._deliver(JSON.parse(e.newValue).m) } catch (_) { /* not ours */ }
      }
      addEventListener('storage', this._onStorage)
    }
  }
  post(m) {
    if (this.bc) this.bc.postMessage(m)
    else localStorage.setItem(this.key, JSON.stringify({ m, n: uid() }))
  }
  on(fn) { this.handlers.add(fn) }
  _deliver(m) { if (m && typeof m === 'object') for (const fn of this.handlers) fn(m) }
  close() {
    if (this.bc) this.bc.close()
    else removeEventListener('storage', this._onStorage)
  }
}

/* ------------------------------------------------------------------ */
/* Leader election: Web Locks, or a renewed lease in localStorage.     */

function elect(name, tabId, onLeader) {
  if (typeof navigator !== 'undefined' && navigator.locks && !preferStorage()) {
    let release
    const held = new Promise((r) => { release = r })
    navigator.locks.request(`${name}:leader`, () => { onLeader(); return held }).catch(() => {})
    return () => release()
  }
  const key = `${name}:lease`
  let leading = false
  const tick = () => {
    const now = Date.now()
    let lease = null
    try { lease = JSON.parse(localStorage.getItem(key) || 'null') } catch (_) { lease = null }
    if (leading || !lease || lease.until < now || lease.tab === tabId) {
      localStorage.setItem(key, JSON.stringify({ tab: tabId, until: now + LEASE_MS }))
      if (!leading) {
        // another candidate may have written at the same moment: read back
        setTimeout(() => {
          let l = null
          try { l = JSON.parse(localStorage.getItem(key) || 'null') } catch (_) { l = null }
          if (!leading && l && l.tab === tabId) { leading = true; onLeader() }
        }, 50)
      }
    }
  }
  tick()
  const timer = setInterval(tick, LEASE_MS / 3)
  return () => {
    clearInterval(timer)
    if (leading) localStorage.removeItem(key)
  }
}

/* ------------------------------------------------------------------ */
/* The multiplexer the leader runs over its one socket.                */

const bindingKey = (b) => JSON.stringify([b.event || '*', b.schema || 'public', b.table || '', b.filter || ''])

class Mux {
  constructor(hub) {
    this.hub = hub
    this.topics = new Map() // topic -> state
    this.pending = new Map() // server ref -> {port, ref, topic, kind}
    this.ref = 0
    this.ws = null
    this.status = 'connecting'
    this.backoff = 0
    this.closed = false
    // taking over from another tab: give the other tabs a moment to say what
    // they hold, so the first join resumes from all of their positions
    this.startTimer = setTimeout(() => this.connect(), hub.leaderTab ? 250 : 0)
  }

  nextRef() { return String(++this.ref) }

  connect() {
    if (this.closed) return
    if (typeof navigator !== 'undefined' && navigator.onLine === false) {
      this.setStatus('offline')
      return
    }
    this.setStatus('connecting')
    let ws
    try { ws = new WebSocket(this.hub.socketUrl) } catch (e) { this.setStatus('error'); this.retry(); return }
    this.ws = ws
    ws.onopen = () => {
      if (ws !== this.ws) return
      this.backoff = 0
      this.setStatus('connected')
      this.hbRef = null
      this.hb = setInterval(() => {
        // the last heartbeat is unanswered: the server or the path is gone
        if (this.hbRef) { try { ws.close(4000, 'heartbeat timeout') } catch (_) {} ; this.dropSocket(); this.retry(); return }
        this.hbRef = this.nextRef()
        this.send({ topic: 'phoenix', event: 'heartbeat', payload: {}, ref: this.hbRef })
      }, HEARTBEAT_MS)
      for (const t of this.topics.values()) this.joinServer(t)
    }
    ws.onmessage = (e) => {
      if (ws !== this.ws || typeof e.data !== 'string') return
      let m
      try { m = JSON.parse(e.data) } catch (_) { return }
      if (m && typeof m === 'object') this.fromServer(m)
    }
    ws.onerror = () => { if (ws === this.ws) this.setStatus('error') }
    ws.onclose = () => {
      if (ws !== this.ws) return
      this.dropSocket()
      this.retry()
    }
  }

  dropSocket() {
    clearInterval(this.hb)
    const ws = this.ws
    this.ws = null
    if (ws) { ws.onclose = ws.onmessage = ws.onerror = ws.onopen = null; try { ws.close() } catch (_) {} }
    for (const t of this.topics.values()) { t.joined = false; t.serverJoinRef = null }
    // pushes in flight are answered by nobody: their ports time out as on a lost socket
    this.pending.clear()
  }

  retry() {
    if (this.closed) return
    if (typeof navigator !== 'undefined' && navigator.onLine === false) { this.setStatus('offline'); return }
    if (this.status !== 'error') this.setStatus('connecting')
    const cap = Math.min(10000, 250 * 2 ** this.backoff++)
    clearTimeout(this.retryTimer)
    this.retryTimer = setTimeout(() => this.connect(), Math.random() * cap) // full jitter
  }

  goOffline() { this.dropSocket(); this.setStatus('offline') }
  goOnline() { if (!this.ws && !this.closed) { this.backoff = 0; this.connect() } }

  setStatus(s) {
    if (this.status === s) return
    this.status = s
    this.hub.leaderStatus(s)
  }

  send(m) {
    if (this.ws && this.ws.readyState === 1) { this.ws.send(JSON.stringify(m)); return true }
    return false
  }

  close() {
    this.closed = true
    clearTimeout(this.retryTimer)
    clearTimeout(this.startTimer)
    this.dropSocket()
  }

  /* -- the ports' side -- */

  topicState(topic) {
    let t = this.topics.get(topic)
    if (!t) {
      t = {
        topic, members: new Map(), bindings: [], serverBindings: [], config: null, accessToken: undefined,
        joined: false, serverJoinRef: null, pos: null, livePos: null, presence: {}, reply: null,
        system: [], track: null, live: new Map(), liveOpts: {}, waiting: [], oldJoinRefs: new Set(),
      }
      this.topics.set(topic, t)
    }
    return t
  }

  // A port joins topic: reg = {joinRef, payload, pos, livePos, live, track, replied}
  portJoin(port, topic, reg) {
    const t = this.topicState(topic)
    const cfg = (reg.payload && reg.payload.config) || {}
    const own = cfg.rtsync || {} // a port (phoenix.js, say) may resume on its own
    const m = {
      joinRef: reg.joinRef, cfg,
      pos: posNum(reg.pos !== null && reg.pos !== undefined ? reg.pos : own.resume_after),
      livePos: posNum(reg.livePos !== null && reg.livePos !== undefined ? reg.livePos : own.live && own.live.resume_after),
      bindings: (cfg.postgres_changes || []).map(bindingKey), replied: !!reg.replied,
    }
    t.members.set(port, m)
    // a port behind what this socket has delivered on the topic: join again
    // from its position (the ports ahead drop what they already have)
    const behind = t.joined && ((m.pos !== null && t.pos !== null && m.pos < t.pos) ||
      (m.livePos !== null && t.livePos !== null && m.livePos < t.livePos))
    // live queries: those the port subscribed, and those of its join config
    const inJoin = cfg.rtsync && cfg.rtsync.live
    const queries = [...(reg.live || []), ...(inJoin && Array.isArray(inJoin.queries) && !reg.live ? inJoin.queries : [])]
    for (const q of queries) if (q && typeof q.id === 'string') t.live.set(`${port}.${q.id}`, { ...q, id: `${port}.${q.id}` })
    if (reg.liveOpts) t.liveOpts = reg.liveOpts
    else if (inJoin) { const { queries: _q, resume_after: _r, ...opts } = inJoin; if (Object.keys(opts).length) t.liveOpts = opts }
    if (reg.track) t.track = reg.track
    if (!t.config) {
      t.config = { ...cfg }
      if (reg.payload && reg.payload.access_token) t.accessToken = reg.payload.access_token
    }
    let grew = false
    for (const b of cfg.postgres_changes || []) {
      const k = bindingKey(b)
      if (!t.bindings.some((x) => bindingKey(x) === k)) { t.bindings.push(b); grew = true }
    }
    if (!this.ws || this.ws.readyState !== 1) return
    if (t.joined && inJoin && !reg.live && queries.length) {
      const qs = queries.filter((q) => q && typeof q.id === 'string').map((q) => t.live.get(`${port}.${q.id}`))
      this.send({ topic, event: 'live_subscribe', payload: { queries: qs }, ref: this.nextRef(), join_ref: t.serverJoinRef })
    }
    if (!t.joined && t.serverJoinRef) return // the join in flight answers everyone
    if (!t.joined) { this.joinServer(t); return }
    if (grew || behind) { this.rejoin(t); return }
    this.answerJoin(t, port)
  }

  portLeave(port, topic, ref) {
    const t = this.topics.get(topic)
    if (!t) return
    t.members.delete(port)
    for (const id of [...t.live.keys()]) if (id.startsWith(`${port}.`)) t.live.delete(id)
    if (ref) this.hub.toPort(port, { join_ref: null, ref, topic, event: 'phx_reply', payload: { status: 'ok', response: {} } })
    if (t.members.size === 0) {
      this.leaveServer(t)
      this.topics.delete(topic)
    }
  }

  portGone(port) {
    for (const t of [...this.topics.values()]) if (t.members.has(port)) this.portLeave(port, t.topic, null)
  }

  joinServer(t) {
    if (!this.ws || this.ws.readyState !== 1) return
    const jr = this.nextRef()
    t.serverJoinRef = jr
    t.joined = false
    t.reply = null
    t.system = []
    const config = { ...(t.config || {}) }
    // every tab of the browser is a different client: the server never echoes
    // to this socket, and the leader delivers a tab's broadcast to the others
    config.broadcast = { ...(config.broadcast || {}), self: false, ack: true }
    if (t.bindings.length) config.postgres_changes = t.bindings
    const rt = { ...(config.rtsync || {}) }
    delete rt.live
    const resume = minPos([...t.members.values()].map((o) => o.pos), t.pos)
    if (resume !== null) rt.resume_after = String(resume)
    if (t.live.size) {
      // the ports' live queries, from where they are: a diff since that
      // position rather than a whole result (docs/live.md, "Resume")
      rt.live = { ...t.liveOpts, queries: [...t.live.values()] }
      const lresume = minPos([...t.members.values()].map((o) => o.livePos), t.livePos)
      if (lresume !== null) rt.live.resume_after = String(lresume)
    }
    if (Object.keys(rt).length) config.rtsync = rt
    else delete config.rtsync
    const payload = { config }
    if (t.accessToken) payload.access_token = t.accessToken
    this.pending.set(jr, { kind: 'join', topic: t.topic })
    this.send({ topic: t.topic, event: 'phx_join', payload, ref: jr, join_ref: jr })
  }

  // Leaves the server channel of t (joined again by the caller or not). The
  // 1.0.0 serializer carries no join_ref, so the leave's reply and the old
  // channel's phx_close (whose ref is its join ref) are told apart by ref.
  leaveServer(t) {
    if (!t.serverJoinRef) return
    const ref = this.nextRef()
    this.pending.set(ref, { kind: 'leave', topic: t.topic })
    t.oldJoinRefs.add(t.serverJoinRef)
    this.send({ topic: t.topic, event: 'phx_leave', payload: {}, ref, join_ref: t.serverJoinRef })
  }

  rejoin(t) {
    this.leaveServer(t)
    t.joined = false
    t.serverJoinRef = null
    this.joinServer(t)
  }

  afterJoin(t) {
    if (t.track) this.send({ topic: t.topic, event: 'presence', payload: t.track, ref: this.nextRef(), join_ref: t.serverJoinRef })
    for (const port of t.members.keys()) this.answerJoin(t, port)
    for (const [port, f] of t.waiting.splice(0)) if (t.members.has(port)) this.forward(t, port, f, f.payload)
  }

  // The join reply one port expects: its own bindings, with the server's ids.
  answerJoin(t, port) {
    const m = t.members.get(port)
    if (!m || !t.reply) return
    if (!m.replied) {
      const response = { ...(t.reply.response || {}) }
      if (Array.isArray(response.postgres_changes)) {
        const byKey = new Map(response.postgres_changes.map((b) => [bindingKey(b), b]))
        response.postgres_changes = (m.cfg.postgres_changes || []).map((b) => byKey.get(bindingKey(b))).filter(Boolean)
      }
      m.replied = true
      this.hub.toPort(port, { join_ref: m.joinRef, ref: m.joinRef, topic: t.topic, event: 'phx_reply', payload: { status: t.reply.status, response } })
      for (const s of t.system) this.hub.toPort(port, { ...s, join_ref: m.joinRef })
    }
    if (t.presenceSeen) this.hub.toPort(port, { join_ref: m.joinRef, ref: null, topic: t.topic, event: 'presence_state', payload: t.presence })
  }

  // A frame from a port (normalized object form).
  fromPort(port, f) {
    const { topic, event } = f
    if (topic === 'phoenix' && event === 'heartbeat') {
      this.hub.toPort(port, { join_ref: null, ref: f.ref, topic, event: 'phx_reply', payload: { status: 'ok', response: {} } })
      return
    }
    if (event === 'phx_join') {
      this.portJoin(port, topic, { joinRef: f.join_ref || f.ref, payload: f.payload || {} })
      return
    }
    if (event === 'phx_leave') { this.portLeave(port, topic, f.ref); return }
    const t = this.topics.get(topic)
    const m = t && t.members.get(port)
    if (!m) {
      if (f.ref) this.hub.toPort(port, { join_ref: f.join_ref, ref: f.ref, topic, event: 'phx_reply', payload: { status: 'error', response: { reason: 'unmatched topic' } } })
      return
    }
    let payload = f.payload
    if (event === 'broadcast') {
      // the other tabs of this browser on the topic get it here; the server sends it to every other socket
      for (const [p, o] of t.members) {
        if (p === port && !(o.cfg.broadcast && o.cfg.broadcast.self)) continue
        this.hub.toPort(p, { join_ref: o.joinRef, ref: null, topic, event: 'broadcast', payload })
      }
    } else if (event === 'presence' && payload && payload.event === 'track') {
      t.track = payload
    } else if (event === 'live_subscribe' && payload && Array.isArray(payload.queries)) {
      payload = { ...payload, queries: payload.queries.map((q) => ({ ...q, id: `${port}.${q && q.id}` })) }
      for (const q of payload.queries) t.live.set(q.id, q)
      const { queries, resume_after, ...opts } = payload
      if (Object.keys(opts).length) t.liveOpts = opts
    } else if (event === 'live_unsubscribe' && payload && Array.isArray(payload.ids)) {
      payload = { ...payload, ids: payload.ids.map((id) => `${port}.${id}`) }
      for (const id of payload.ids) t.live.delete(id)
    } else if (event === 'access_token' && payload) {
      t.accessToken = payload.access_token
    }
    if (!t.joined) {
      // joining (or waiting for the socket): sent once the server has joined
      if (t.waiting.length < 256) t.waiting.push([port, { ...f, payload }])
      else if (f.ref) this.hub.toPort(port, { join_ref: f.join_ref, ref: f.ref, topic, event: 'phx_reply', payload: { status: 'error', response: { reason: 'not connected' } } })
      return
    }
    this.forward(t, port, f, payload)
  }

  forward(t, port, f, payload) {
    const { topic, event } = f
    const ref = this.nextRef()
    if (f.ref) {
      if (this.pending.size >= 4096) { // the oldest push never answered: forget it
        for (const [r, p] of this.pending) if (p.kind === 'push') { this.pending.delete(r); break }
      }
      this.pending.set(ref, { kind: 'push', port, ref: f.ref, topic, event })
    }
    this.send({ topic, event, payload, ref, join_ref: t.serverJoinRef })
  }

  /* -- the server's side -- */

  fromServer(m) {
    const { topic, event, payload } = m
    if (event === 'phx_reply' && m.ref && this.pending.has(m.ref)) {
      const p = this.pending.get(m.ref)
      this.pending.delete(m.ref)
      const t = this.topics.get(p.topic)
      if (p.kind === 'leave') return
      if (p.kind === 'join') {
        if (!t || t.serverJoinRef !== m.ref) return
        t.reply = payload
        if (payload && payload.status === 'ok') {
          t.joined = true
          this.afterJoin(t)
        } else {
          for (const [port, o] of t.members) this.hub.toPort(port, { join_ref: o.joinRef, ref: o.joinRef, topic: t.topic, event: 'phx_reply', payload })
          this.topics.delete(t.topic)
        }
        return
      }
      let out = payload
      if (p.event === 'live_subscribe' && out && out.response && Array.isArray(out.response.ids)) {
        out = { ...out, response: { ...out.response, ids: out.response.ids.map((id) => String(id).slice(p.port.length + 1)) } }
      }
      const o = t && t.members.get(p.port)
      this.hub.toPort(p.port, { join_ref: o ? o.joinRef : null, ref: p.ref, topic, event: 'phx_reply', payload: out })
      return
    }
    if (event === 'phx_reply') { // to the leader's own pushes (heartbeats, replays)
      if (topic === 'phoenix' && m.ref === this.hbRef) this.hbRef = null
      return
    }
    const t = this.topics.get(topic)
    if (!t) return
    if (m.join_ref && t.serverJoinRef && m.join_ref !== t.serverJoinRef) return // an earlier join's
    if (event === 'phx_close' || event === 'phx_error') {
      if (m.ref && t.oldJoinRefs.has(m.ref)) { t.oldJoinRefs.delete(m.ref); return } // a channel this leader left
      for (const [port, o] of t.members) this.hub.toPort(port, { join_ref: o.joinRef, ref: null, topic, event, payload })
      this.topics.delete(topic)
      return
    }
    if (event === 'presence_state') { t.presence = payload || {}; t.presenceSeen = true }
    if (event === 'presence_diff' && payload) {
      for (const [k, v] of Object.entries(payload.leaves || {})) {
        const cur = t.presence[k]
        if (!cur) continue
        const gone = new Set((v.metas || []).map((x) => x.phx_ref))
        cur.metas = cur.metas.filter((x) => !gone.has(x.phx_ref))
        if (!cur.metas.length) delete t.presence[k]
      }
      for (const [k, v] of Object.entries(payload.joins || {})) {
        t.presence[k] = { metas: [...((t.presence[k] && t.presence[k].metas) || []), ...(v.metas || [])] }
      }
    }
    if (event === 'system' && !t.reply) return
    if (event === 'system' && t.system.length < 8 && [...t.members.values()].some((o) => !o.replied)) t.system.push({ ...m, ref: null })
    if (event === 'postgres_changes') {
      const p = posNum(payload && payload.data && payload.data.position)
      if (p !== null) t.pos = posMax(t.pos, p)
      const ids = (payload && payload.ids) || []
      for (const [port, o] of t.members) {
        const mine = (t.reply && t.reply.response && t.reply.response.postgres_changes || [])
          .filter((b) => o.bindings.includes(bindingKey(b)) && ids.includes(b.id)).map((b) => b.id)
        if (ids.length && !mine.length) continue
        if (p !== null) o.pos = posMax(o.pos, p)
        this.hub.toPort(port, { join_ref: o.joinRef, ref: null, topic, event, payload: ids.length ? { ...payload, ids: mine } : payload })
      }
      return
    }
    if (event === 'postgres_changes_batch') {
      const p = posNum(payload && payload.position)
      if (p !== null) { t.pos = posMax(t.pos, p); for (const o of t.members.values()) o.pos = posMax(o.pos, p) }
    }
    if (event === 'system' && payload && payload.position !== undefined) {
      const p = posNum(payload.position)
      if (p !== null) { t.pos = posMax(t.pos, p); for (const o of t.members.values()) if (o.pos === null) o.pos = p }
    }
    if (event === 'live_query' && payload && Array.isArray(payload.queries)) {
      const p = posNum(payload.position)
      if (p !== null) t.livePos = posMax(t.livePos, p)
      for (const [port, o] of t.members) {
        const pre = `${port}.`
        const qs = payload.queries.filter((q) => typeof q.id === 'string' && q.id.startsWith(pre))
          .map((q) => ({ ...q, id: q.id.slice(pre.length) }))
        if (p !== null) o.livePos = posMax(o.livePos, p)
        if (qs.length) this.hub.toPort(port, { join_ref: o.joinRef, ref: null, topic, event, payload: { ...payload, queries: qs } })
      }
      return
    }
    for (const [port, o] of t.members) this.hub.toPort(port, { join_ref: o.joinRef, ref: null, topic, event, payload })
  }
}

/* ------------------------------------------------------------------ */
/* The hub: one per page and server, elects, routes between ports.     */

const hubs = new Map()

class Hub {
  static for(socketUrl) {
    let h = hubs.get(socketUrl)
    if (!h) { h = new Hub(socketUrl); hubs.set(socketUrl, h) }
    return h
  }

  constructor(socketUrl) {
    this.socketUrl = socketUrl
    this.tabId = uid().slice(0, 8)
    this.name = `rtsync:${socketUrl.replace(/[?&]vsn=[^&]*/, '')}`
    this.ports = new Map() // local ports: id -> Port
    this.isLeader = false
    this.leaderTab = null
    this.status = 'connecting'
    this.statusListeners = new Set()
    this.tabs = new Map() // leader: tab -> last seen
    this.bus = new TabBus(this.name)
    this.bus.on((m) => this.onBus(m))
    this.release = elect(this.name, this.tabId, () => this.becomeLeader())
    this.bus.post({ t: 'who', tab: this.tabId })
    this.pinger = setInterval(() => this.ping(), TAB_PING_MS)
    if (typeof addEventListener === 'function') {
      addEventListener('pagehide', () => this.shutdown())
      // back from the back/forward cache: this hub said bye, start afresh
      addEventListener('pageshow', (e) => { if (e.persisted) location.reload() })
      addEventListener('offline', () => { if (this.mux) this.mux.goOffline() })
      addEventListener('online', () => { if (this.mux) this.mux.goOnline() })
    }
  }

  onStatus(fn) { this.statusListeners.add(fn); return () => this.statusListeners.delete(fn) }

  setStatus(s) {
    if (s === this.status) return
    this.status = s
    for (const fn of this.statusListeners) fn(s)
    for (const p of this.ports.values()) p.onStatus(s)
  }

  leaderStatus(s) {
    this.setStatus(s)
    this.bus.post({ t: 'status', from: this.tabId, status: s })
  }

  becomeLeader() {
    if (this.closed) return
    this.isLeader = true
    this.mux = new Mux(this)
    this.leaderTab = this.tabId
    for (const p of this.ports.values()) this.registerLocal(p)
    this.bus.post({ t: 'leader', tab: this.tabId, status: this.mux.status })
  }

  registerLocal(p) {
    for (const [topic, reg] of p.regs) this.mux.portJoin(p.id, topic, reg)
    for (const f of p.queue.splice(0)) this.mux.fromPort(p.id, f)
  }

  // A port sends a frame toward the server.
  up(port, f) {
    if (this.isLeader) { this.mux.fromPort(port.id, f); return }
    if (!this.leaderTab) { port.queue.push(f); return }
    this.bus.post({ t: 'up', to: this.leaderTab, tab: this.tabId, port: port.id, f })
  }

  // The leader hands a frame to a port, local or in another tab.
  toPort(portId, f) {
    const local = this.ports.get(portId)
    if (local) { local.deliver(f); return }
    this.bus.post({ t: 'down', port: portId, f })
  }

  hello() {
    const ports = [...this.ports.values()].map((p) => ({
      port: p.id,
      regs: [...p.regs].map(([topic, reg]) => [topic, reg]),
      queue: p.queue.splice(0),
    }))
    this.bus.post({ t: 'hello', to: this.leaderTab, tab: this.tabId, ports })
  }

  ping() {
    if (this.isLeader) {
      const now = Date.now()
      for (const [tab, seen] of this.tabs) {
        if (now - seen > TAB_DEAD_MS) {
          this.tabs.delete(tab)
          for (const t of [...this.mux.topics.values()]) for (const port of [...t.members.keys()]) if (port.startsWith(`${tab}:`)) this.mux.portLeave(port, t.topic, null)
        }
      }
      this.bus.post({ t: 'leader', tab: this.tabId, status: this.mux.status, beat: true })
    } else if (this.leaderTab) {
      this.bus.post({ t: 'alive', to: this.leaderTab, tab: this.tabId })
    }
  }

  onBus(m) {
    switch (m.t) {
      case 'who':
        if (this.isLeader) this.bus.post({ t: 'leader', tab: this.tabId, status: this.mux.status })
        break
      case 'leader':
        if (this.isLeader || m.tab === this.tabId) break
        if (m.tab !== this.leaderTab || m.rehello === this.tabId) {
          this.leaderTab = m.tab
          this.hello()
        }
        if (m.status) this.setStatus(m.status)
        break
      case 'status':
        if (!this.isLeader && m.from === this.leaderTab) this.setStatus(m.status)
        break
      case 'hello':
        if (!this.isLeader || m.to !== this.tabId) break
        this.tabs.set(m.tab, Date.now())
        for (const p of m.ports || []) {
          if (typeof p.port !== 'string' || !p.port.startsWith(`${m.tab}:`)) continue
          for (const [topic, reg] of p.regs || []) if (typeof topic === 'string' && reg) this.mux.portJoin(p.port, topic, reg)
          for (const f of p.queue || []) this.mux.fromPort(p.port, f)
        }
        break
      case 'alive':
        if (this.isLeader && m.to === this.tabId) {
          if (!this.tabs.has(m.tab)) { this.bus.post({ t: 'leader', tab: this.tabId, status: this.mux.status, rehello: m.tab }); break }
          this.tabs.set(m.tab, Date.now())
        }
        break
      case 'up':
        if (!this.isLeader || m.to !== this.tabId || typeof m.port !== 'string' || !m.port.startsWith(`${m.tab}:`)) break
        if (!m.f || typeof m.f.topic !== 'string' || typeof m.f.event !== 'string') break
        this.tabs.set(m.tab, Date.now())
        this.mux.fromPort(m.port, m.f)
        break
      case 'down': {
        const p = this.ports.get(m.port)
        if (p && m.f) p.deliver(m.f)
        break
      }
      case 'bye':
        if (this.isLeader && typeof m.port === 'string') this.mux.portGone(m.port)
        if (m.leader && m.tab === this.leaderTab) this.leaderTab = null
        break
    }
  }

  addPort(p) {
    this.ports.set(p.id, p)
    p.onStatus(this.status)
  }

  removePort(p) {
    this.ports.delete(p.id)
    if (this.isLeader) this.mux.portGone(p.id)
    else this.bus.post({ t: 'bye', tab: this.tabId, port: p.id })
  }

  shutdown() {
    if (this.closed) return
    this.closed = true
    clearInterval(this.pinger)
    if (!this.isLeader) for (const p of this.ports.values()) this.bus.post({ t: 'bye', tab: this.tabId, port: p.id })
    else { this.mux.close(); this.bus.post({ t: 'bye', tab: this.tabId, leader: true }) }
    this.release()
    this.bus.close()
    hubs.delete(this.socketUrl)
  }
}

/* ------------------------------------------------------------------ */
/* A port: one virtual Phoenix session of this tab.                    */

let portSeq = 0

class Port {
  constructor(hub, sink) {
    this.hub = hub
    this.id = `${hub.tabId}:${++portSeq}`
    this.sink = sink // {frame(f), status(s)}
    this.regs = new Map() // topic -> {joinRef, payload, pos, livePos, live, liveOpts, track, replied}
    this.queue = []
    hub.addPort(this)
  }

  onStatus(s) { if (this.sink.status) this.sink.status(s) }

  send(f) {
    const { topic, event } = f
    if (event === 'phx_join') {
      const old = this.regs.get(topic)
      this.regs.set(topic, {
        joinRef: f.join_ref || f.ref, payload: f.payload || {}, pos: old ? old.pos : null,
        livePos: old ? old.livePos : null, live: [], replied: false,
      })
    } else if (event === 'phx_leave') {
      this.regs.delete(topic)
    } else {
      const r = this.regs.get(topic)
      if (r && event === 'live_subscribe' && f.payload && Array.isArray(f.payload.queries)) {
        const ids = new Set(f.payload.queries.map((q) => q && q.id))
        r.live = [...r.live.filter((q) => !ids.has(q.id)), ...f.payload.queries]
        const { queries, resume_after, ...opts } = f.payload
        if (Object.keys(opts).length) r.liveOpts = opts
      } else if (r && event === 'live_unsubscribe' && f.payload && Array.isArray(f.payload.ids)) {
        r.live = r.live.filter((q) => !f.payload.ids.includes(q.id))
      } else if (r && event === 'presence' && f.payload && f.payload.event === 'track') {
        r.track = f.payload
      }
    }
    this.hub.up(this, f)
  }

  // A frame for this port from the leader: positions are checked here, so a
  // change the port already has is not handed over twice after a rejoin.
  deliver(f) {
    const r = this.regs.get(f.topic)
    if (f.event === 'phx_reply' && r && f.ref === r.joinRef) {
      if (r.replied) return
      r.replied = true
    }
    if (r && f.event === 'postgres_changes') {
      const p = posNum(f.payload && f.payload.data && f.payload.data.position)
      if (p !== null) {
        if (r.pos !== null && p <= posNum(r.pos)) return
        r.pos = String(p)
      }
    } else if (r && f.event === 'postgres_changes_batch') {
      const p = posNum(f.payload && f.payload.position)
      if (p !== null) {
        if (r.pos !== null && p <= posNum(r.pos)) return
        r.pos = String(p)
      }
    } else if (r && f.event === 'live_query') {
      const p = posNum(f.payload && f.payload.position)
      if (p !== null) {
        const qs = f.payload.queries.filter((q) => q.kind !== 'diff' || r.livePos === null || p > posNum(r.livePos))
        if (!qs.length) return
        f = { ...f, payload: { ...f.payload, queries: qs } }
        if (r.livePos === null || p > posNum(r.livePos)) r.livePos = String(p)
      }
    } else if (r && f.event === 'system' && f.payload && f.payload.position !== undefined && r.pos === null) {
      r.pos = String(f.payload.position) // "Subscribed to PostgreSQL" at position N
    } else if (f.event === 'phx_close' || f.event === 'phx_error') {
      if (r && (f.join_ref === r.joinRef || !f.join_ref)) this.regs.delete(f.topic)
    }
    this.sink.frame(f)
  }

  close() { this.hub.removePort(this) }
}

/* ------------------------------------------------------------------ */
/* SharedWebSocket: the drop-in transport for realtime-js/supabase-js. */

const te = typeof TextEncoder !== 'undefined' ? new TextEncoder() : null
const td = typeof TextDecoder !== 'undefined' ? new TextDecoder() : null

// realtime-js 2.0.0 sends user broadcasts as binary frames (kind 3).
function decodeBinaryPush(buf) {
  const b = new Uint8Array(buf)
  if (b.length < 7 || b[0] !== 3) return null
  const lens = [b[1], b[2], b[3], b[4], b[5]]
  const enc = b[6]
  let off = 7
  const str = (n) => { const s = td.decode(b.subarray(off, off + n)); off += n; return s }
  if (off + lens.reduce((a, c) => a + c, 0) > b.length) return null
  const join_ref = str(lens[0])
  const ref = str(lens[1])
  const topic = str(lens[2])
  const event = str(lens[3])
  const metaText = str(lens[4])
  const rest = b.subarray(off)
  let payload
  try { payload = enc === 1 ? JSON.parse(td.decode(rest)) : null } catch (_) { return null }
  if (enc !== 1) return null // binary user payloads do not cross the JSON socket
  let meta = {}
  try { meta = metaText ? JSON.parse(metaText) : {} } catch (_) { return null }
  return { join_ref: join_ref || null, ref: ref || null, topic, event: 'broadcast', payload: { ...meta, type: 'broadcast', event, payload } }
}

export class SharedWebSocket {
  static CONNECTING = 0
  static OPEN = 1
  static CLOSING = 2
  static CLOSED = 3

  constructor(url, protocols) {
    const u = new URL(url, typeof location !== 'undefined' ? location.href : undefined)
    this.vsn = u.searchParams.get('vsn') || '1.0.0'
    u.searchParams.set('vsn', '1.0.0')
    this.url = url
    this.protocol = ''
    this.extensions = ''
    this.binaryType = 'arraybuffer'
    this.bufferedAmount = 0
    this.readyState = 0
    this.onopen = this.onmessage = this.onclose = this.onerror = null
    this._listeners = {}
    this.hub = Hub.for(u.toString())
    this.port = new Port(this.hub, {
      frame: (f) => this._emit('message', { data: this._encode(f) }),
      status: (s) => { this.status = s },
    })
    setTimeout(() => {
      if (this.readyState !== 0) return
      this.readyState = 1
      this._emit('open', {})
    }, 0)
  }

  get isLeader() { return this.hub.isLeader }

  _encode(f) {
    if (this.vsn.startsWith('2.')) return JSON.stringify([f.join_ref ?? null, f.ref ?? null, f.topic, f.event, f.payload])
    return JSON.stringify({ join_ref: f.join_ref ?? null, ref: f.ref ?? null, topic: f.topic, event: f.event, payload: f.payload })
  }

  _decode(data) {
    if (typeof data !== 'string') {
      const buf = data instanceof ArrayBuffer ? data : data && data.buffer
      return buf ? decodeBinaryPush(buf) : null
    }
    if (data.length > MAX_FRAME) return null
    let m
    try { m = JSON.parse(data) } catch (_) { return null }
    if (Array.isArray(m)) return m.length === 5 ? { join_ref: m[0], ref: m[1], topic: m[2], event: m[3], payload: m[4] } : null
    return m && typeof m === 'object' ? m : null
  }

  send(data) {
    if (this.readyState !== 1) throw new Error('SharedWebSocket is not open')
    const f = this._decode(data)
    if (f && typeof f.topic === 'string' && typeof f.event === 'string') this.port.send(f)
  }

  close(code = 1000, reason = '') {
    if (this.readyState >= 2) return
    this.readyState = 3
    this.port.close()
    setTimeout(() => this._emit('close', { code, reason, wasClean: true }), 0)
  }

  addEventListener(type, fn) { (this._listeners[type] ||= new Set()).add(fn) }
  removeEventListener(type, fn) { this._listeners[type] && this._listeners[type].delete(fn) }
  _emit(type, ev) {
    const h = this[`on${type}`]
    if (typeof h === 'function') h.call(this, ev)
    for (const fn of this._listeners[type] || []) fn.call(this, ev)
  }
}

/* ------------------------------------------------------------------ */
/* RtSync: rtsync's own small API on a port.                           */

class Emitter {
  constructor() { this._h = new Map() }
  on(ev, fn) { if (!this._h.has(ev)) this._h.set(ev, new Set()); this._h.get(ev).add(fn); return () => this.off(ev, fn) }
  off(ev, fn) { const s = this._h.get(ev); if (s) s.delete(fn) }
  emit(ev, ...a) { for (const fn of this._h.get(ev) || []) { try { fn(...a) } catch (e) { console.error(e) } } }
}

// Applies a live_query entry to a local result (docs/live.md).
export function applyLive(state, q) {
  if (q.kind === 'result') {
    state.keys = [...q.keys]
    state.rows = [...q.rows]
    return state
  }
  if (q.kind !== 'diff') return state
  const gone = new Set(q.ops.filter((o) => o.op === 'leave' || o.op === 'move').map((o) => o.key))
  const keys = []
  const rows = []
  for (let i = 0; i < state.keys.length; i++) if (!gone.has(state.keys[i])) { keys.push(state.keys[i]); rows.push(state.rows[i]) }
  const ins = q.ops.filter((o) => o.op === 'enter' || o.op === 'move').sort((a, b) => a.index - b.index)
  for (const o of ins) { keys.splice(o.index, 0, o.key); rows.splice(o.index, 0, o.row) }
  for (const o of q.ops) if (o.op === 'change') { const i = keys.indexOf(o.key); if (i >= 0) rows[i] = o.row }
  state.keys = keys
  state.rows = rows
  return state
}

export class Channel extends Emitter {
  constructor(client, topic, opts = {}) {
    super()
    this.client = client
    this.topic = `realtime:${topic}`
    this.name = topic
    this.opts = opts
    this.state = 'closed'
    this.refs = new Map()
    this.presence = {}
    this.live = new Map() // id -> {keys, rows, def}
  }

  subscribe() {
    const jr = this.client.ref()
    this.joinRef = jr
    this.state = 'joining'
    const config = {
      broadcast: { self: !!this.opts.self, ack: false },
      presence: { key: this.opts.presenceKey || '', enabled: !!this.opts.presenceKey },
      postgres_changes: this.opts.changes || [],
      private: !!this.opts.private,
    }
    if (this.opts.live && this.opts.live.length) {
      for (const q of this.opts.live) this.live.set(q.id, { keys: [], rows: [], def: q, ready: false })
    }
    const payload = { config }
    if (this.client.accessToken) payload.access_token = this.client.accessToken
    return new Promise((resolve, reject) => {
      this.refs.set(jr, (p) => {
        if (p.status === 'ok') {
          this.state = 'joined'
          this.joinResponse = p.response
          if (this.live.size) this.push('live_subscribe', { queries: [...this.live.values()].map((l) => l.def) }).catch(() => {})
          this.emit('joined', p.response)
          resolve(this)
        } else {
          this.state = 'errored'
          reject(new Error((p.response && p.response.reason) || 'join refused'))
        }
      })
      this.client.port.send({ join_ref: jr, ref: jr, topic: this.topic, event: 'phx_join', payload })
    })
  }

  push(event, payload, timeoutMs = 10000) {
    const ref = this.client.ref()
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.refs.delete(ref); reject(new Error('timeout')) }, timeoutMs)
      this.refs.set(ref, (p) => {
        clearTimeout(timer)
        if (p.status === 'ok') resolve(p.response)
        else { const e = new Error((p.response && p.response.reason) || 'error'); e.response = p.response; reject(e) }
      })
      this.client.port.send({ join_ref: this.joinRef, ref, topic: this.topic, event, payload })
    })
  }

  send(event, payload) {
    this.client.port.send({ join_ref: this.joinRef, ref: null, topic: this.topic, event: 'broadcast', payload: { type: 'broadcast', event, payload } })
  }

  track(meta) { return this.push('presence', { type: 'presence', event: 'track', payload: meta }).catch(() => {}) }

  liveQuery(def) {
    this.live.set(def.id, { keys: [], rows: [], def, ready: false })
    if (this.state === 'joined') return this.push('live_subscribe', { queries: [def] })
    return Promise.resolve()
  }

  leave() {
    this.client.port.send({ join_ref: this.joinRef, ref: this.client.ref(), topic: this.topic, event: 'phx_leave', payload: {} })
    this.state = 'closed'
    this.client.channels.delete(this.topic)
  }

  _frame(f) {
    if (f.event === 'phx_reply') {
      const cb = this.refs.get(f.ref)
      if (cb) { this.refs.delete(f.ref); cb(f.payload || {}) }
      return
    }
    const p = f.payload
    switch (f.event) {
      case 'broadcast':
        this.emit('broadcast', p && p.event, p && p.payload)
        break
      case 'postgres_changes':
        if (p && p.data) this.emit('change', p.data)
        break
      case 'postgres_changes_batch':
        for (const d of (p && p.changes) || []) this.emit('change', d)
        break
      case 'presence_state':
        this.presence = JSON.parse(JSON.stringify(p || {}))
        this.emit('presence', this.presence)
        break
      case 'presence_diff':
        for (const [k, v] of Object.entries((p && p.leaves) || {})) {
          const cur = this.presence[k]
          if (!cur) continue
          const gone = new Set((v.metas || []).map((x) => x.phx_ref))
          cur.metas = cur.metas.filter((x) => !gone.has(x.phx_ref))
          if (!cur.metas.length) delete this.presence[k]
        }
        for (const [k, v] of Object.entries((p && p.joins) || {})) {
          this.presence[k] = { metas: [...((this.presence[k] && this.presence[k].metas) || []), ...(v.metas || [])] }
        }
        this.emit('presence', this.presence)
        break
      case 'live_query':
        for (const q of (p && p.queries) || []) {
          const l = this.live.get(q.id)
          if (!l) continue
          if (q.kind === 'error') { this.emit('live_error', q); continue }
          applyLive(l, q)
          l.ready = true
          l.position = p.position
          l.updatedAt = Date.now()
          this.emit('live', q.id, l.rows, l)
        }
        break
      case 'phx_close':
      case 'phx_error':
        this.state = 'closed'
        this.emit('closed', p)
        break
      case 'system':
        this.emit('system', p)
        break
      default:
        this.emit(f.event, p)
    }
  }
}

/**
 * new RtSync(url, {apikey}) — url is the server's http(s) origin.
 *   .status                 'connecting' | 'connected' | 'offline' | 'error'
 *   .on('status', fn)       status changes
 *   .channel(name, {changes, presenceKey, private, live, self}) → Channel
 *   .write({type, table, record, key, base, strategy}) → Promise (queued offline)
 *   .notifications(userId) → Channel (private, notification/inbox_state events)
 */
export class RtSync extends Emitter {
  constructor(url, opts = {}) {
    super()
    const base = new URL(url, typeof location !== 'undefined' ? location.href : undefined)
    this.httpUrl = base.origin
    this.apikey = opts.apikey
    this.accessToken = opts.accessToken || null
    const ws = new URL('/realtime/v1/websocket', base)
    ws.protocol = base.protocol === 'https:' ? 'wss:' : 'ws:'
    ws.searchParams.set('apikey', opts.apikey)
    ws.searchParams.set('vsn', '1.0.0')
    this.hub = Hub.for(ws.toString())
    this.channels = new Map()
    this.seq = 0
    this.status = this.hub.status
    this.port = new Port(this.hub, {
      frame: (f) => { const c = this.channels.get(f.topic); if (c) c._frame(f) },
      status: (s) => {
        const was = this.status
        this.status = s
        this.emit('status', s)
        if (s === 'connected' && was !== 'connected' && this.queue) this.flush()
      },
    })
    this.queue = opts.offlineQueue === false ? null : new OfflineQueue(opts.queueName || `rtsync-queue:${this.httpUrl}`)
    if (this.queue) this.queue.ready.then(() => { this.emit('pending', this.queue.size); if (this.status === 'connected') this.flush() })
  }

  get isLeader() { return this.hub.isLeader }
  ref() { return `${this.port.id}/${++this.seq}` }

  channel(name, opts) {
    const c = new Channel(this, name, opts)
    this.channels.set(c.topic, c)
    return c
  }

  notifications(userId) {
    return this.channel(`notifications:${userId}`, { private: true })
  }

  // REST helper with the client's key.
  async rest(path, init = {}) {
    const headers = { apikey: this.apikey, Authorization: `Bearer ${this.accessToken || this.apikey}`, ...(init.headers || {}) }
    const r = await fetch(`${this.httpUrl}${path}`, { ...init, headers })
    const text = await r.text()
    let body = null
    try { body = text ? JSON.parse(text) : null } catch (_) { body = text }
    if (!r.ok) { const e = new Error((body && body.message) || r.statusText); e.status = r.status; e.body = body; throw e }
    return body
  }

  /* -- writes: through the IndexedDB queue, in order, with idempotency keys -- */

  get pending() { return this.queue ? this.queue.size : 0 }

  async write(w) {
    const item = { ...w, idempotency_key: w.idempotency_key || `rtsync-js:${uid()}` }
    if (!this.queue) return this._sendWrite(item)
    await this.queue.push(item)
    this.emit('pending', this.queue.size)
    this.flush()
    return item.idempotency_key
  }

  _writeChannel() {
    if (!this._wch) {
      this._wch = this.channel(`rtsync-writes:${this.port.id}`)
      this._wjoin = this._wch.subscribe().catch((e) => { this._wch = null; throw e })
    }
    return this._wjoin.then(() => this._wch)
  }

  async _sendWrite(item) {
    const ch = await this._writeChannel()
    const { id, ...body } = item
    return ch.push('write', body)
  }

  async flush() {
    if (!this.queue || this._flushing || this.status !== 'connected') return
    this._flushing = true
    if (typeof navigator !== 'undefined' && navigator.locks) {
      // one tab at a time sends the browser's queue, so the order holds
      try { await navigator.locks.request(`${this.queue.name}:flush`, () => this._flushLocked()) } finally { this._flushing = false }
      return
    }
    try { await this._flushLocked() } finally { this._flushing = false }
  }

  async _flushLocked() {
    {
      for (;;) {
        const item = await this.queue.peek()
        if (!item) break
        if (this.status !== 'connected') break
        let res
        try {
          res = await this._sendWrite(item)
        } catch (e) {
          if (e.message === 'timeout' || e.message === 'not connected' || e.message === 'unmatched topic') {
            if (e.message !== 'timeout') { this._wch = null }
            // kept: sent again, with its key, when the connection returns
            clearTimeout(this._retry)
            this._retry = setTimeout(() => this.flush(), 2000)
            break
          }
          res = { error: e.response || { reason: e.message } } // refused: dropped, reported
        }
        await this.queue.shift(item.id)
        this.emit('pending', this.queue.size)
        this.emit('write', item, res)
      }
    }
  }

  close() {
    for (const c of this.channels.values()) c.leave()
    this.port.close()
  }
}

export { TabBus, OfflineQueue }
