// The operations dashboard served at / (docs/dashboard.md).
import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'
import { RtSync } from './rtsync.js'
import { $, el, takeKey, claimsOf, signInBox, statusPill, toast, ago, parseMetrics, metricSum, pulse } from './ui.js'

const key = takeKey()
signInBox(key)
$('#signin-open').addEventListener('click', () => $('#signin').showModal())
const claims = key ? claimsOf(key) : null
$('#who').textContent = claims ? `${claims.role}${claims.sub ? ` · ${claims.sub}` : ''}` : 'not signed in'

const rt = key ? new RtSync(location.origin, { apikey: key }) : null
window.rtsync = rt
if (rt) statusPill($('#status'), rt)
else { $('#status').textContent = 'Signed out'; $('#status').dataset.status = 'offline' }

/* ---- metric cards with sparklines ---- */

const N = 60
const cards = {
  latency: { title: 'Fan-out latency', unit: 'mean over the last second', fmt: (v) => (v === null ? '—' : v < 1 ? `${(v * 1000).toFixed(0)} µs` : `${v.toFixed(2)} ms`) },
  rate: { title: 'Messages / s', unit: 'msg/s', fmt: (v) => v.toFixed(0) },
  conns: { title: 'Connections', unit: 'sockets', fmt: (v) => v.toFixed(0) },
  subs: { title: 'Subscriptions', unit: 'channels', fmt: (v) => v.toFixed(0) },
  uptime: { title: 'Uptime', unit: '', fmt: (v) => (v < 120 ? `${v.toFixed(0)} s` : v < 7200 ? `${(v / 60).toFixed(0)} min` : `${(v / 3600).toFixed(1)} h`) },
}
const times = []
for (const [id, c] of Object.entries(cards)) {
  c.data = []
  const value = el('div', { class: 'value skeleton', id: `metric-${id}` }, '\u00a0')
  const spark = el('div', { class: 'spark' })
  const updated = el('div', { class: 'updated' }, '—')
  $('#metrics').append(el('section', { class: 'card metric', 'data-metric': id }, el('h3', { text: c.title }), value, el('div', { class: 'unit', text: c.unit }), spark, updated))
  Object.assign(c, { value, spark, updated })
  c.plot = new uPlot({
    width: 180, height: 40, cursor: { show: false }, legend: { show: false }, select: { show: false },
    scales: { x: { time: false } }, axes: [{ show: false }, { show: false }],
    series: [{}, { stroke: '#4f7cff', fill: 'rgba(79,124,255,.15)', width: 1.5, points: { show: false } }],
  }, [[], []], spark)
}

let prev = null
async function pollMetrics() {
  try {
    const r = await fetch('/metrics')
    const mm = parseMetrics(await r.text())
    const now = Date.now()
    const cur = {
      t: now,
      out: metricSum(mm, 'rtsync_messages_out_total'),
      lsum: metricSum(mm, 'rtsync_fanout_latency_seconds_sum'),
      lcount: metricSum(mm, 'rtsync_fanout_latency_seconds_count'),
    }
    const vals = {
      conns: metricSum(mm, 'rtsync_websockets'),
      subs: metricSum(mm, 'rtsync_channels'),
      uptime: metricSum(mm, 'rtsync_uptime_seconds'),
      rate: prev ? Math.max(0, (cur.out - prev.out) / ((now - prev.t) / 1000)) : 0,
      latency: prev && cur.lcount > prev.lcount ? ((cur.lsum - prev.lsum) / (cur.lcount - prev.lcount)) * 1000
        : cur.lcount ? (cur.lsum / cur.lcount) * 1000 : null, // nothing fanned out yet
    }
    prev = cur
    times.push(times.length ? times[times.length - 1] + 1 : 0)
    if (times.length > N) times.shift()
    for (const [id, c] of Object.entries(cards)) {
      c.data.push(vals[id])
      if (c.data.length > N) c.data.shift()
      const text = c.fmt(vals[id])
      if (c.value.textContent !== text) { c.value.textContent = text; pulse(c.value) }
      c.value.classList.remove('skeleton')
      c.at = now
      c.updated.textContent = `updated ${ago(c.at)}`
      c.plot.setData([times.slice(-c.data.length), c.data])
    }
  } catch (_) { /* the status pill says why */ }
}
pollMetrics()
setInterval(pollMetrics, 1000)
setInterval(() => { for (const c of Object.values(cards)) c.updated.textContent = `updated ${ago(c.at)}` }, 1000)

/* ---- channel and presence inspector ---- */

let inspected = null
$('#inspect-form').addEventListener('submit', async (e) => {
  e.preventDefault()
  if (!rt) return
  if (inspected) inspected.leave()
  const topic = $('#inspect-topic').value.trim()
  if (!topic) return
  const log = $('#inspect-log')
  log.replaceChildren()
  const ch = rt.channel(topic, { presenceKey: `dashboard-${Math.random().toString(36).slice(2, 6)}`, private: $('#inspect-private').checked })
  inspected = ch
  const line = (kind, text) => {
    log.prepend(el('li', { class: kind }, el('time', { text: new Date().toLocaleTimeString() }), el('b', { text: kind }), text))
    while (log.children.length > 100) log.lastChild.remove()
  }
  ch.on('broadcast', (ev, p) => line('broadcast', `${ev} ${JSON.stringify(p)}`))
  ch.on('presence', (state) => {
    const list = $('#inspect-presence')
    list.replaceChildren(...Object.entries(state).map(([k, v]) => el('li', {}, el('span', { class: 'avatar', text: k.slice(0, 2).toUpperCase() }), `${k} (${v.metas.length})`)))
    line('presence', `${Object.keys(state).length} present`)
  })
  ch.on('closed', (p) => line('closed', JSON.stringify(p || {})))
  try {
    await ch.subscribe()
    line('joined', topic)
    ch.track({ viewer: 'dashboard', at: new Date().toISOString() })
  } catch (err) {
    line('error', err.message)
  }
})
$('#inspect-send').addEventListener('click', () => {
  if (!inspected) return
  let p
  try { p = JSON.parse($('#inspect-payload').value || '{}') } catch (_) { toast('The payload is not JSON', 'error'); return }
  inspected.send($('#inspect-event').value || 'message', p)
  toast('Broadcast sent')
})

/* ---- live table browser ---- */

let tableCh = null
async function openTable(name) {
  if (!rt || !name) return
  if (tableCh) tableCh.leave()
  const body = $('#table-rows')
  const head = $('#table-head')
  body.replaceChildren(el('tr', {}, el('td', { class: 'skeleton', colspan: 6 }, '\u00a0')))
  $('#table-error').textContent = ''
  let rows
  try {
    rows = await rt.rest(`/rest/v1/${encodeURIComponent(name)}?select=*&limit=200`)
  } catch (e) {
    body.replaceChildren()
    $('#table-error').textContent = `${e.status || ''} ${(e.body && e.body.message) || e.message}`
    return
  }
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))]
  // rows are matched by their id column; a table without one by the whole row
  const keyOf = (r) => ('id' in r ? String(r.id) : JSON.stringify(r))
  const byKey = new Map()
  const render = () => {
    head.replaceChildren(...cols.map((c) => el('th', { text: c })))
    const all = [...byKey.values()]
    body.replaceChildren(...all.map((r) => r.tr))
    $('#table-count').textContent = `${all.length} rows`
  }
  const rowEl = (r) => el('tr', { 'data-key': keyOf(r) }, ...cols.map((c) => el('td', { text: r[c] === null || r[c] === undefined ? '' : typeof r[c] === 'object' ? JSON.stringify(r[c]) : String(r[c]) })))
  for (const r of rows) byKey.set(keyOf(r), { row: r, tr: rowEl(r) })
  render()
  tableCh = rt.channel(`dashboard-table:${name}`, { changes: [{ event: '*', schema: 'public', table: name }] })
  tableCh.on('change', (d) => {
    const r = d.type === 'DELETE' ? d.old_record : d.record
    if (!r) return
    for (const c of Object.keys(r)) if (!cols.includes(c)) cols.push(c)
    const k = keyOf(r)
    if (d.type === 'DELETE') {
      const cur = byKey.get(k)
      if (cur) { cur.tr.classList.add('gone'); setTimeout(() => { byKey.delete(k); render() }, 600) }
      return
    }
    const tr = rowEl(r)
    tr.classList.add(d.type === 'INSERT' ? 'flash-new' : 'flash')
    byKey.set(k, { row: r, tr })
    render()
  })
  tableCh.subscribe().catch((e) => { $('#table-error').textContent = e.message })
}
$('#table-select').addEventListener('change', (e) => openTable(e.target.value))
$('#table-form').addEventListener('submit', (e) => { e.preventDefault(); openTable($('#table-custom').value.trim()) })
if (rt) openTable($('#table-select').value)

/* ---- notifications ---- */

async function notifications() {
  if (!rt || !claims || !claims.sub) { $('#notify-panel').hidden = true; return }
  const badge = $('#badge')
  const list = $('#notify-list')
  const setBadge = (n) => { badge.textContent = String(n); badge.dataset.count = String(n); badge.hidden = !n }
  const refresh = async () => {
    try {
      const inbox = await rt.rest('/notify/v1/inbox?limit=20')
      setBadge(inbox.unread)
      if (!inbox.items.length) { list.replaceChildren(el('li', { class: 'empty', text: 'No notifications yet.' })); return }
      list.replaceChildren(...inbox.items.map((n) => el('li', { class: n.read ? 'read' : 'unread', 'data-id': n.id },
        el('b', { text: n.title }), el('span', { text: n.message || '' }),
        n.read ? null : el('button', { class: 'ghost small', text: 'Mark read', onclick: () => markRead(n.id) }))))
    } catch (e) { list.replaceChildren(el('li', { class: 'error', text: e.message })) }
  }
  const markRead = (id) => rt.rest(`/notify/v1/inbox/${id}/read`, { method: 'POST' }).catch((e) => toast(e.message, 'error'))
  $('#read-all').addEventListener('click', () => rt.rest('/notify/v1/inbox/read-all', { method: 'POST' }).catch((e) => toast(e.message, 'error')))
  const ch = rt.notifications(claims.sub)
  ch.on('broadcast', (ev, p) => {
    if (ev === 'notification' && p && p.notification) {
      toast(p.notification.title, p.notification.type || 'info')
      setBadge(p.unread)
      refresh()
    } else if (ev === 'inbox_state' && p) {
      setBadge(p.unread)
      refresh()
    }
  })
  try { await ch.subscribe() } catch (e) { $('#notify-list').replaceChildren(el('li', { class: 'error', text: e.message })) }
  refresh()
}
notifications()
