// The demo at /demo on the examples/ schema (docs/dashboard.md, "The demo").
import uPlot from 'uplot'
import 'uplot/dist/uPlot.min.css'
import * as Y from 'yjs'
import { WebsocketProvider } from 'y-websocket'
import { RtSync } from './rtsync.js'
import { $, el, takeKey, claimsOf, signInBox, statusPill, toast, ago, pulse } from './ui.js'

const key = takeKey()
signInBox(key)
$('#signin-open').addEventListener('click', () => $('#signin').showModal())
const claims = key ? claimsOf(key) : null
const me = sessionStorage.getItem('rtsync-demo-name') ||
  `${(claims && claims.sub) || 'guest'}-${Math.random().toString(36).slice(2, 5)}`
sessionStorage.setItem('rtsync-demo-name', me)
$('#who').textContent = me

if (!key) throw new Error('no key: sign in')
const rt = new RtSync(location.origin, { apikey: key })
window.rtsync = rt
statusPill($('#status'), rt)

const money = (v) => (v === null || v === undefined ? '—' : `€${Number(v).toLocaleString('en', { maximumFractionDigits: 0 })}`)

/* ---- KPIs and the chart: live queries on one channel ---- */

const live = rt.channel('demo:kpi', {
  live: [
    { id: 'bookings', table: 'bookings', query: 'select=count()' },
    { id: 'revenue', table: 'bookings', query: 'select=revenue:total.sum(),nights:nights.sum()' },
    { id: 'expenses', table: 'expenses', query: 'select=spent:amount.sum()' },
    { id: 'units', table: 'properties', query: 'select=units:units.sum()' },
    { id: 'by_category', table: 'expenses', query: 'select=category,amount:amount.sum()&order=category' },
    { id: 'recent', table: 'bookings', query: 'select=id,guest_name,property_id,nights,total,status&order=id.desc&limit=8' },
  ],
})
const at = {}
const setKpi = (id, text) => {
  const node = $(`#kpi-${id}`)
  const was = node.textContent
  node.classList.remove('skeleton')
  if (was !== text) { node.textContent = text; if (!node.dataset.first) node.dataset.first = '1'; else pulse(node) }
  at[id] = Date.now()
  node.dataset.updated = String(at[id])
  $(`#kpi-${id}-at`).textContent = `updated ${ago(at[id])}`
}
const results = {}
let chart = null
function render(id) {
  const r = results
  if (id === 'bookings' && r.bookings) setKpi('bookings', String(r.bookings[0] ? r.bookings[0].count : 0))
  if (id === 'revenue' && r.revenue) setKpi('revenue', money(r.revenue[0] && r.revenue[0].revenue))
  if (id === 'expenses' && r.expenses) setKpi('expenses', money(r.expenses[0] && r.expenses[0].spent))
  if ((id === 'revenue' || id === 'units') && r.revenue && r.units) {
    const nights = (r.revenue[0] && r.revenue[0].nights) || 0
    const units = (r.units[0] && r.units[0].units) || 0
    setKpi('occupancy', units ? `${Math.min(100, (100 * nights) / (units * 31)).toFixed(1)}%` : '—')
  }
  if (id === 'by_category' && r.by_category) drawChart(r.by_category)
  if (id === 'recent' && r.recent) {
    const known = new Set([...$('#recent').children].map((tr) => tr.dataset.key))
    $('#recent').replaceChildren(...r.recent.map((b) => {
      const tr = el('tr', { 'data-key': String(b.id) }, ...[b.id, b.guest_name, b.property_id, b.nights, money(b.total), b.status].map((v) => el('td', { text: String(v) })))
      if (known.size && !known.has(String(b.id))) tr.classList.add('flash-new')
      return tr
    }))
  }
}
function drawChart(rows) {
  const box = $('#chart')
  box.classList.remove('skeleton')
  $('#chart-at').dataset.updated = String((at.chart = Date.now()))
  $('#chart-at').textContent = `updated ${ago(at.chart)}`
  const xs = rows.map((_, i) => i)
  const ys = rows.map((g) => g.amount || 0)
  const labels = rows.map((g) => g.category)
  if (!chart || chart._n !== rows.length) {
    if (chart) chart.destroy()
    box.replaceChildren()
    chart = new uPlot({
      width: Math.max(320, box.clientWidth - 8), height: 230, legend: { show: false }, cursor: { show: false },
      scales: { x: { time: false, range: [-0.6, Math.max(0.6, rows.length - 0.4)] }, y: { range: (u, lo, hi) => [0, Math.max(10, hi * 1.15)] } },
      axes: [
        { stroke: '#8b95ab', grid: { show: false }, splits: () => xs, values: (u, v) => v.map((i) => labels[i] || '') },
        { stroke: '#8b95ab', grid: { stroke: '#263049' }, values: (u, v) => v.map((n) => `€${n}`) },
      ],
      series: [{}, { label: 'amount', stroke: '#4f7cff', fill: 'rgba(79,124,255,.55)', paths: uPlot.paths.bars({ size: [0.6, 80] }), points: { show: false } }],
    }, [xs, ys], box)
    chart._n = rows.length
  } else {
    chart.setData([xs, ys])
    chart.redraw()
  }
  chart._labels = labels
  pulse(box)
}
live.on('live', (id, rows) => { results[id] = rows; render(id) })
live.on('live_error', (q) => toast(`live query ${q.id}: ${q.message}`, 'error'))
live.subscribe().catch((e) => toast(e.message, 'error'))
setInterval(() => {
  for (const id of ['bookings', 'revenue', 'expenses', 'occupancy']) $(`#kpi-${id}-at`).textContent = `updated ${ago(at[id])}`
  $('#chart-at').textContent = `updated ${ago(at.chart)}`
}, 1000)

/* ---- writes, offline queue, toasts for others' changes ---- */

const mine = new Set()
const showPending = (n) => {
  const p = $('#pending')
  p.hidden = !n
  p.textContent = `${n} pending write${n === 1 ? '' : 's'}`
  p.dataset.count = String(n)
}
rt.on('pending', showPending)
rt.on('write', (item, res) => {
  const ok = res && !res.error
  $('#writes').prepend(el('li', { class: ok ? 'ok' : 'error' }, el('b', { text: ok ? (res.replayed ? 'replayed' : 'synced') : 'refused' }), `${item.table} ${item.record && item.record.id}${ok ? '' : ` ${res.error.reason}`}`))
})
const newId = () => Date.now() % 1e9 * 10 + Math.floor(Math.random() * 10)
$('#booking-form').addEventListener('submit', (e) => {
  e.preventDefault()
  const nights = Number($('#b-nights').value) || 1
  const property = Number($('#b-property').value)
  const rate = { 1: 140, 2: 85.5, 3: 210 }[property] || 100
  const record = { id: newId(), property_id: property, guest_name: $('#b-guest').value || 'Guest', check_in: '2027-01-02', check_out: '2027-01-04', nights, total: nights * rate, status: 'confirmed' }
  mine.add(`bookings:${record.id}`)
  rt.write({ type: 'insert', table: 'bookings', record })
})
$('#expense-form').addEventListener('submit', (e) => {
  e.preventDefault()
  const record = { id: newId(), property_id: Number($('#e-property').value), category: $('#e-category').value, amount: Number($('#e-amount').value) || 1, spent_on: new Date().toISOString().slice(0, 10), note: 'demo' }
  mine.add(`expenses:${record.id}`)
  rt.write({ type: 'insert', table: 'expenses', record })
})
const changes = rt.channel('demo:changes', { changes: [{ event: 'INSERT', schema: 'public', table: 'bookings' }, { event: 'INSERT', schema: 'public', table: 'expenses' }] })
changes.on('change', (d) => {
  const r = d.record || {}
  if (mine.has(`${d.table}:${r.id}`)) return
  toast(d.table === 'bookings' ? `New booking: ${r.guest_name}, ${r.nights} nights (${money(r.total)})` : `New expense: ${r.category} ${money(r.amount)}`, 'success')
})
changes.subscribe().catch(() => {})

/* ---- presence avatars and cursors ---- */

const initials = (k) => k.replace(/[^A-Za-z0-9]/g, '').slice(-2).toUpperCase() || '?'
const room = rt.channel('demo:room', { presenceKey: me })
const cursors = new Map()
room.on('presence', (state) => {
  $('#avatars').replaceChildren(...Object.keys(state).map((k) => el('li', { title: k }, el('span', { class: `avatar${k === me ? ' me' : ''}`, text: initials(k) }))))
})
room.on('broadcast', (ev, p) => {
  if (ev !== 'cursor' || !p || p.name === me) return
  let c = cursors.get(p.name)
  if (!c) {
    c = { node: el('div', { class: 'cursor' }) }
    c.node.innerHTML = '<svg width="14" height="18" viewBox="0 0 14 18"><path d="M1 1l12 9-6 1-3 6z" fill="#e6a23c" stroke="#fff"/></svg>'
    c.node.append(el('span', { text: p.name }))
    document.body.append(c.node)
    cursors.set(p.name, c)
  }
  c.node.style.transform = `translate(${p.x * innerWidth}px, ${p.y * innerHeight}px)`
  c.seen = Date.now()
})
setInterval(() => { for (const [k, c] of cursors) if (Date.now() - c.seen > 5000) { c.node.remove(); cursors.delete(k) } }, 1000)
let lastMove = 0
addEventListener('mousemove', (e) => {
  const now = Date.now()
  if (now - lastMove < 40 || room.state !== 'joined') return
  lastMove = now
  room.send('cursor', { name: me, x: e.clientX / innerWidth, y: e.clientY / innerHeight })
})
room.subscribe().then(() => room.track({ name: me, online_at: new Date().toISOString() })).catch(() => {})

/* ---- the collaborative notes: a Yjs document over /collab/v1 ---- */

const ydoc = new Y.Doc()
const ytext = ydoc.getText('notes')
const wsBase = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/collab/v1`
const provider = new WebsocketProvider(wsBase, 'demo-notes', ydoc, { params: { apikey: key } })
provider.on('status', ({ status }) => { $('#notes-status').textContent = status })
provider.on('connection-close', (e) => { if (e && e.code === 1006) $('#notes-status').textContent = 'needs an authenticated key' })
const area = $('#notes')
ytext.observe((ev) => {
  if (ev.transaction.local) return
  const { selectionStart: s, selectionEnd: t } = area
  area.value = ytext.toString()
  area.setSelectionRange(s, t)
})
area.addEventListener('input', () => {
  const a = ytext.toString()
  const b = area.value
  let i = 0
  while (i < a.length && i < b.length && a[i] === b[i]) i++
  let j = 0
  while (j < a.length - i && j < b.length - i && a[a.length - 1 - j] === b[b.length - 1 - j]) j++
  ydoc.transact(() => {
    if (a.length - i - j) ytext.delete(i, a.length - i - j)
    if (b.length - i - j) ytext.insert(i, b.slice(i, b.length - j))
  })
})
window.demo = { ydoc, provider, rt }
