// The dashboard, the demo and rtsync.js in headless Chromium (tests/browser/run.sh).
// One server (examples/schema.sql) for the file; each test opens its own
// browser context (its own tabs, storage and BroadcastChannel scope) and
// closes it. Screenshots go to $RTSYNC_BROWSER_SHOTS.
import { test, before, after } from 'node:test'
import assert from 'node:assert/strict'
import { createRequire } from 'node:module'
import { join } from 'node:path'
import { spawn } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { startServer, mintToken } from '../interop/lib/server.mjs'

const require = createRequire(join(process.cwd(), 'web', 'package.json'))
const { chromium } = require('playwright-core')
const shots = process.env.RTSYNC_BROWSER_SHOTS

let server, browser
const user = () => mintToken({ role: 'authenticated', claims: { sub: '1' } })
const service = () => mintToken({ role: 'service_role' })

before(async () => {
  server = await startServer({ args: ['--schema', 'examples/schema.sql'] })
  browser = await chromium.launch({
    executablePath: process.env.RTSYNC_CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  })
})

after(async () => {
  if (browser) await browser.close()
  if (server) await server.stop()
})

async function rest(method, path, body, token = service()) {
  const r = await fetch(`${server.httpUrl}${path}`, {
    method,
    headers: { apikey: token, Authorization: `Bearer ${token}`, 'Content-Type': 'application/json', Prefer: 'return=representation' },
    body: body === undefined ? undefined : JSON.stringify(body),
  })
  const text = await r.text()
  return { status: r.status, body: text ? JSON.parse(text) : null }
}

async function metric(name) {
  const text = await (await fetch(`${server.httpUrl}/metrics`)).text()
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text)
  return m ? Number(m[1]) : NaN
}

async function waitFor(fn, what, ms = 8000) {
  const end = Date.now() + ms
  let last
  while (Date.now() < end) {
    last = await fn()
    if (last) return last
    await new Promise((r) => setTimeout(r, 50))
  }
  throw new Error(`timed out waiting for ${what} (last: ${JSON.stringify(last)})`)
}

async function open(ctx, path, key = user()) {
  const page = await ctx.newPage()
  page.on('pageerror', (e) => console.error(`[page error] ${e.message}`))
  await page.goto(`${server.httpUrl}${path}#key=${key}`)
  await page.waitForFunction(() => document.querySelector('#status')?.textContent === 'Connected', null, { timeout: 10000 })
  return page
}

// A browser context closed when the test ends, passed or not.
async function newContext(t, opts) {
  const ctx = await browser.newContext(opts)
  t.after(() => ctx.close())
  return ctx
}

const shot = (page, name) => page.screenshot({ path: join(shots, `${name}.png`) })

let nextId = 1000
const ids = () => ++nextId

test('the dashboard loads, says Connected and shows the live metrics', async (t) => {
  const ctx = await newContext(t, { viewport: { width: 1360, height: 860 } })
  const page = await open(ctx, '/')
  assert.equal(new URL(page.url()).hash, '', 'the key leaves the URL once read')
  // the metric cards follow /metrics: this page's socket shows up
  await page.waitForFunction(() => Number(document.querySelector('#metric-conns').textContent) >= 1)
  assert.match(await page.textContent('#metric-uptime'), /s|min|h/)
  // the live table browser lists the table's rows under the viewer's key
  await page.waitForSelector('#table-rows tr[data-key="1"]')
  const before = await page.$$eval('#table-rows tr', (t) => t.length)
  const id = ids()
  await rest('POST', '/rest/v1/bookings', { id, property_id: 2, guest_name: 'Dash Board', check_in: '2027-02-01', check_out: '2027-02-03', nights: 2, total: 171 })
  await page.waitForSelector(`#table-rows tr[data-key="${id}"].flash-new`)
  assert.equal(await page.$$eval('#table-rows tr', (t) => t.length), before + 1)
  // the inspector joins a channel and shows its presence
  await page.click('#inspect-form button')
  await page.waitForSelector('#inspect-presence li')
  await page.waitForTimeout(1200) // a sparkline point or two
  await shot(page, 'dashboard')
  // the pages and the client come from the binary with their types
  const js = await fetch(`${server.httpUrl}/rtsync.js`)
  assert.equal(js.headers.get('content-type'), 'text/javascript; charset=utf-8')
  const again = await fetch(`${server.httpUrl}/rtsync.js`, { headers: { 'If-None-Match': js.headers.get('etag') } })
  assert.equal(again.status, 304)
})

test('a row inserted through REST shows in the demo with its KPI change within 200 ms', async (t) => {
  const ctx = await newContext(t, { viewport: { width: 1360, height: 900 } })
  const page = await open(ctx, '/demo')
  await page.waitForFunction(() => !document.querySelector('#kpi-bookings').classList.contains('skeleton'))
  await page.waitForFunction(() => !document.querySelector('#kpi-revenue').classList.contains('skeleton'))
  // three inserts, each timed in the page from before its request to the KPI's change; the
  // median must be under 200 ms (one slow sample on a loaded machine does not decide)
  const before = Number(await page.textContent('#kpi-bookings'))
  const times = []
  let id
  for (let i = 0; i < 3; i++) {
    id = ids()
    const guest = ['Rita', 'Remy', 'Rosa'][i] + ' REST'
    times.push(await page.evaluate(async ({ id, key, guest }) => {
      const node = document.querySelector('#kpi-bookings')
      const was = node.textContent
      const changed = new Promise((resolve) => {
        const mo = new MutationObserver(() => { if (node.textContent !== was) { mo.disconnect(); resolve(performance.now()) } })
        mo.observe(node, { childList: true, characterData: true, subtree: true })
      })
      const t0 = performance.now()
      const r = await fetch('/rest/v1/bookings', {
        method: 'POST',
        headers: { apikey: key, Authorization: `Bearer ${key}`, 'Content-Type': 'application/json' },
        body: JSON.stringify({ id, property_id: 1, guest_name: guest, check_in: '2027-03-01', check_out: '2027-03-04', nights: 3, total: 420 }),
      })
      if (r.status !== 201) throw new Error(`insert: ${r.status}`)
      return (await changed) - t0
    }, { id, key: service(), guest }))
  }
  const median = [...times].sort((x, y) => x - y)[1]
  console.log(`# REST insert to KPI change: ${times.map((x) => x.toFixed(1)).join(', ')} ms (median ${median.toFixed(1)})`)
  assert.ok(median < 200, `the KPI changed ${median.toFixed(1)} ms (median) after the insert`)
  assert.equal(Number(await page.textContent('#kpi-bookings')), before + 3)
  await page.waitForSelector(`#recent tr[data-key="${id}"]`)
  await page.waitForSelector('.toast:has-text("New booking: Rosa REST")') // someone else's change
  assert.match(await page.textContent('#kpi-bookings-at'), /updated/)
  await page.waitForTimeout(300)
  await shot(page, 'demo')
})

async function takeover(t, fallback, crash = false) {
  await waitFor(async () => (await metric('rtsync_websockets')) === 0, 'no sockets from earlier tests')
  const ctx = await newContext(t, { viewport: { width: 1100, height: 700 } })
  if (fallback) await ctx.addInitScript(() => localStorage.setItem('rtsync:fallback', 'storage'))
  const key = user()
  const tabs = []
  for (let i = 0; i < 3; i++) tabs.push(await open(ctx, '/', key))
  for (const tab of tabs) {
    await tab.evaluate(async (topic) => {
      window.got = []
      const ch = window.rtsync.channel(topic, {
        changes: [{ event: 'INSERT', schema: 'public', table: 'expenses' }],
        live: [{ id: 'n', table: 'expenses', query: 'select=count()' }],
      })
      ch.on('change', (d) => window.got.push(d.record.id))
      ch.on('live', (id, rows) => { window.liveCount = rows[0].count })
      await ch.subscribe()
    }, `handoff-${fallback ? 'ls' : 'wl'}${crash ? '-crash' : ''}`)
  }
  assert.equal(await waitFor(async () => (await metric('rtsync_websockets')) === 1 && 1, 'one socket'), 1)
  const leaders = []
  for (const tab of tabs) leaders.push(await tab.evaluate(() => window.rtsync.isLeader))
  assert.equal(leaders.filter(Boolean).length, 1, `one leader: ${leaders}`)
  const lease = await tabs[0].evaluate(() => Object.keys(localStorage).some((k) => k.endsWith(':lease')))
  assert.equal(lease, fallback, fallback ? 'the leader holds a lease in localStorage' : 'Web Locks: no lease')
  const expense = (id) => rest('POST', '/rest/v1/expenses', { id, property_id: 1, category: 'supplies', amount: 5, spent_on: '2027-01-01', note: 'handoff' })
  const sent = []
  for (let i = 0; i < 5; i++) { const id = ids(); sent.push(id); assert.equal((await expense(id)).status, 201) }
  for (const tab of tabs) await tab.waitForFunction((n) => window.got.length >= n, sent.length)
  const leader = tabs[leaders.indexOf(true)]
  const rest2 = tabs.filter((tab) => tab !== leader)
  if (crash) {
    // the renderer dies: no pagehide, no goodbye; the browser frees the lock
    const cdp = await ctx.newCDPSession(leader)
    const crashed = leader.waitForEvent('crash')
    cdp.send('Page.crash').catch(() => {}) // answered by nobody: the page is gone
    await crashed
  } else {
    // pagehide runs (runBeforeUnload), then the page is gone
    await Promise.all([leader.waitForEvent('close'), leader.close({ runBeforeUnload: true })])
  }
  const closedAt = Date.now()
  const how = `${fallback ? 'localStorage' : 'Web Locks'}${crash ? ', leader crashed' : ''}`
  // how long the browser is without a socket: a change right after the close, until it shows
  const first = ids(); sent.push(first)
  assert.equal((await expense(first)).status, 201)
  await Promise.all(rest2.map((tab) => tab.waitForFunction((id) => window.got.includes(id), first, { timeout: 10000 })))
  console.log(`# ${how}: a change made as the leader closed shows in the other tabs after ${Date.now() - closedAt} ms`)
  // changes keep coming while the next leader takes over
  for (let i = 0; i < 9; i++) {
    const id = ids(); sent.push(id)
    assert.equal((await expense(id)).status, 201)
    await new Promise((r) => setTimeout(r, 60))
  }
  for (const tab of rest2) {
    await tab.waitForFunction((n) => window.got.length >= n, sent.length, { timeout: 10000 })
    await tab.waitForTimeout(300) // a repeat would show now
    assert.deepEqual(await tab.evaluate(() => window.got), sent, 'every change once, in order')
  }
  console.log(`# ${how}: every change in the other tabs ${Date.now() - closedAt} ms after the leader closed`)
  // the live query resumed too: its count is the table's
  const total = (await rest('GET', '/rest/v1/expenses?select=count()')).body[0].count
  for (const tab of rest2) await tab.waitForFunction((n) => window.liveCount === n, total)
  const newLeaders = await Promise.all(rest2.map((tab) => tab.evaluate(() => window.rtsync.isLeader)))
  assert.equal(newLeaders.filter(Boolean).length, 1, 'one tab took over')
  assert.equal(await waitFor(async () => (await metric('rtsync_websockets')) === 1 && 1, 'one socket after the takeover'), 1)
  for (const tab of rest2) assert.equal(await tab.textContent('#status'), 'Connected')
  if (!fallback && !crash) await shot(rest2[0], 'tabs-takeover')
}

test('three tabs share one WebSocket; when the leader closes another takes over with nothing missed or repeated', (t) => takeover(t, false))

test('the same with the fallback: a lease in localStorage and storage events', (t) => takeover(t, true))

test('the same when the leader tab crashes (no goodbye)', (t) => takeover(t, false, true))

test('offline edits show as pending and sync on reconnect, each once', async (t) => {
  const ctx = await newContext(t, { viewport: { width: 1360, height: 900 } })
  const page = await open(ctx, '/demo')
  await page.waitForFunction(() => !document.querySelector('#kpi-bookings').classList.contains('skeleton'))
  await ctx.setOffline(true)
  await page.waitForFunction(() => document.querySelector('#status').dataset.status === 'offline')
  assert.ok(await page.isVisible('#offline-banner'))
  const guests = [`Olga Offline ${Date.now()}`, `Otto Offline ${Date.now()}`]
  for (const g of guests) {
    await page.fill('#b-guest', g)
    await page.click('#b-add')
  }
  await page.waitForFunction(() => document.querySelector('#pending').dataset.count === '2')
  assert.equal(await page.textContent('#pending'), '2 pending writes')
  // kept in IndexedDB with their idempotency keys
  const queued = await page.evaluate(() => window.rtsync.queue.all())
  assert.equal(queued.length, 2)
  assert.ok(queued.every((w) => /^rtsync-js:/.test(w.idempotency_key)))
  await shot(page, 'demo-offline')
  // meanwhile someone else books: the page gets it on reconnect, resumed from its position
  const remote = ids()
  assert.equal((await rest('POST', '/rest/v1/bookings', { id: remote, property_id: 3, guest_name: 'Rex Remote', check_in: '2027-05-01', check_out: '2027-05-02', nights: 1, total: 210 })).status, 201)
  await ctx.setOffline(false)
  await page.waitForFunction(() => document.querySelector('#status').dataset.status === 'connected', null, { timeout: 15000 })
  await page.waitForFunction(() => document.querySelector('#pending').hidden, null, { timeout: 15000 })
  for (const g of guests) {
    const r = await rest('GET', `/rest/v1/bookings?guest_name=eq.${encodeURIComponent(g)}&select=id`)
    assert.equal(r.body.length, 1, `${g} written once`)
  }
  assert.equal((await page.evaluate(() => window.rtsync.queue.all())).length, 0)
  await page.waitForSelector('.toast:has-text("New booking: Rex Remote")')
  await page.waitForSelector(`#recent tr[data-key="${remote}"]`)
  const count = (await rest('GET', '/rest/v1/bookings?select=count()')).body[0].count
  await page.waitForFunction((n) => document.querySelector('#kpi-bookings').textContent === String(n), count)
  await shot(page, 'demo-synced')
})

test('a notification shows as a toast in one tab and its badge clears in the other when read', async (t) => {
  const ctx = await newContext(t, { viewport: { width: 1360, height: 860 } })
  const key = user()
  const a = await open(ctx, '/', key)
  const b = await open(ctx, '/', key)
  await a.waitForSelector('#notify-list li')
  await b.waitForSelector('#notify-list li')
  // start from an inbox without unread notifications
  await rest('POST', '/notify/v1/inbox/read-all', undefined, key)
  for (const tab of [a, b]) await tab.waitForFunction(() => document.querySelector('#badge').hidden)
  const sent = await rest('POST', '/notify/v1/send', { user: '1', title: 'Pool pump replaced at Dune House', message: 'Maintenance done', type: 'success' })
  assert.equal(sent.status, 201)
  await a.waitForSelector('.toast:has-text("Pool pump replaced")')
  for (const tab of [a, b]) await tab.waitForFunction(() => document.querySelector('#badge').dataset.count === '1')
  await shot(a, 'notification-toast')
  const id = sent.body.ids[0]
  await a.click(`#notify-list li[data-id="${id}"] button`)
  await b.waitForFunction(() => document.querySelector('#badge').hidden && document.querySelector('#badge').dataset.count === '0')
  await b.waitForSelector(`#notify-list li.read[data-id="${id}"]`)
  await shot(b, 'notification-read')
})

let clientBundle
async function clientCode() {
  if (!clientBundle) {
    const { build } = require('esbuild')
    const out = await build({
      entryPoints: [join(process.cwd(), 'tests/browser/realtime-entry.js')], bundle: true, format: 'iife', write: false,
      nodePaths: [join(process.cwd(), 'web/node_modules')], logLevel: 'warning', platform: 'browser',
    })
    clientBundle = out.outputFiles[0].text
  }
  return clientBundle
}

test('realtime-js with SharedWebSocket as its transport: two tabs, one socket, broadcast between them, merged postgres_changes bindings', async (t) => {
  const code = await clientCode()
  await waitFor(async () => (await metric('rtsync_websockets')) === 0, 'no sockets from earlier tests')
  const ctx = await newContext(t, { bypassCSP: true })
  const key = user()
  const tab = async (table) => {
    const page = await ctx.newPage()
    page.on('pageerror', (e) => console.error(`[page error] ${e.message}`))
    await page.goto(`${server.httpUrl}/healthz`) // any page of the origin: the tabs share its storage
    await page.addScriptTag({ content: code })
    await page.evaluate(async ({ key, table }) => {
      window.events = { changes: [], pings: [] }
      const client = new window.RealtimeClient(`ws://${location.host}/realtime/v1`, { params: { apikey: key }, transport: window.SharedWebSocket })
      const ch = client.channel('rjs-shared')
      ch.on('postgres_changes', { event: 'INSERT', schema: 'public', table }, (p) => window.events.changes.push(`${p.table}:${p.new.id}`))
        .on('broadcast', { event: 'ping' }, ({ payload }) => window.events.pings.push(payload.n))
      await new Promise((resolve, reject) => ch.subscribe((s, err) => (s === 'SUBSCRIBED' ? resolve() : s !== 'CLOSED' && reject(err || new Error(s)))))
      window.ch = ch
    }, { key, table })
    return page
  }
  const a = await tab('expenses')
  const b = await tab('bookings') // the same topic with another binding: the leader joins with both
  assert.equal(await waitFor(async () => (await metric('rtsync_websockets')) === 1 && 1, 'one socket for both tabs'), 1)
  const e = ids(), bk = ids()
  assert.equal((await rest('POST', '/rest/v1/expenses', { id: e, property_id: 1, category: 'linen', amount: 9, spent_on: '2027-01-01' })).status, 201)
  assert.equal((await rest('POST', '/rest/v1/bookings', { id: bk, property_id: 1, guest_name: 'RJS', check_in: '2027-04-01', check_out: '2027-04-02', nights: 1, total: 140 })).status, 201)
  await a.waitForFunction(() => window.events.changes.length >= 1)
  await b.waitForFunction(() => window.events.changes.length >= 1)
  await a.waitForTimeout(300)
  assert.deepEqual(await a.evaluate(() => window.events.changes), [`expenses:${e}`])
  assert.deepEqual(await b.evaluate(() => window.events.changes), [`bookings:${bk}`])
  // a tab's broadcast reaches the other tab of the browser (the server sends it to other sockets only)
  assert.equal(await a.evaluate(() => window.ch.send({ type: 'broadcast', event: 'ping', payload: { n: 1 } })), 'ok')
  await b.waitForFunction(() => window.events.pings.includes(1))
  // and one from elsewhere reaches both
  const r = await fetch(`${server.httpUrl}/realtime/v1/api/broadcast`, {
    method: 'POST', headers: { apikey: service(), 'Content-Type': 'application/json' },
    body: JSON.stringify({ messages: [{ topic: 'rjs-shared', event: 'ping', payload: { n: 2 } }] }),
  })
  assert.equal(r.status, 202)
  for (const p of [a, b]) await p.waitForFunction(() => window.events.pings.includes(2))
  assert.deepEqual(await a.evaluate(() => window.events.pings), [2], 'no echo of its own broadcast (self: false)')
})

test('two browsers on the demo see each other: presence avatars, cursors, shared notes', async (t) => {
  const ctxA = await newContext(t, { viewport: { width: 1360, height: 900 } })
  const ctxB = await newContext(t, { viewport: { width: 1360, height: 900 } })
  const a = await open(ctxA, '/demo')
  const b = await open(ctxB, '/demo')
  for (const p of [a, b]) await p.waitForFunction(() => document.querySelectorAll('#avatars li').length >= 2)
  const nameA = await a.textContent('#who')
  assert.ok(await b.$(`#avatars li[title="${nameA}"]`), 'B sees A among the viewers')
  await a.mouse.move(400, 300)
  await a.mouse.move(420, 320, { steps: 5 })
  await b.waitForSelector(`.cursor:has-text("${nameA}")`)
  // the notes are one Yjs document
  for (const p of [a, b]) await p.waitForFunction(() => document.querySelector('#notes-status').textContent === 'connected')
  await a.fill('#notes', 'Check-in at 15:00')
  await b.waitForFunction(() => document.querySelector('#notes').value === 'Check-in at 15:00')
  await b.focus('#notes')
  await b.keyboard.press('End')
  await b.keyboard.type(', keys in the box')
  await a.waitForFunction(() => document.querySelector('#notes').value === 'Check-in at 15:00, keys in the box')
  await b.mouse.move(700, 500)
  await a.waitForSelector('.cursor')
  await shot(a, 'demo-presence')
})

test('the dashboard URL rtsync serve prints (make run) opens the dashboard signed in', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'rtsync-browser-run-'))
  const proc = spawn(process.env.RTSYNC_BIN, ['serve', '--listen', '127.0.0.1:0', '--data-dir', dir, '--schema', 'examples/schema.sql', '--log-level', 'warn'], { stdio: ['ignore', 'pipe', 'inherit'] })
  const exited = new Promise((resolve) => proc.on('exit', (code) => resolve(code)))
  if (process.env.RTSYNC_INTEROP_PIDDIR) writeFileSync(join(process.env.RTSYNC_INTEROP_PIDDIR, String(proc.pid)), process.env.RTSYNC_BIN)
  t.after(async () => { if (proc.exitCode === null) proc.kill('SIGKILL'); await exited; rmSync(dir, { recursive: true, force: true }) })
  let out = ''
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`no dashboard line in: ${out}`)), 10000)
    proc.stdout.on('data', (d) => {
      out += d
      const m = /^ {2}dashboard {3}(http:\/\/\S+)$/m.exec(out)
      if (m) { clearTimeout(timer); resolve(m[1]) }
    })
  })
  assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/#key=[\w-]+\.[\w-]+\.[\w-]+$/)
  const ctx = await newContext(t, { viewport: { width: 1360, height: 860 } })
  const page = await ctx.newPage()
  await page.goto(url)
  await page.waitForFunction(() => document.querySelector('#status').textContent === 'Connected', null, { timeout: 10000 })
  assert.equal(await page.textContent('#who'), 'authenticated · 1')
  await page.waitForSelector('#notify-list li') // the key has a sub: the inbox of user 1
  await page.waitForSelector('#table-rows tr[data-key="1"]')
  assert.equal(await page.isVisible('#signin'), false, 'no sign-in box: the key worked')
  await ctx.close()
  proc.kill('SIGTERM')
  assert.equal(await exited, 0, 'the server stops cleanly (no sanitizer report)')
})

test('supabase-js with realtime: { transport: SharedWebSocket }: two tabs, one socket, a write from one reaches both', async (t) => {
  const code = await clientCode()
  await waitFor(async () => (await metric('rtsync_websockets')) === 0, 'no sockets from earlier tests')
  const ctx = await newContext(t, { bypassCSP: true })
  const key = user()
  const tabs = []
  for (let i = 0; i < 2; i++) {
    const page = await ctx.newPage()
    page.on('pageerror', (e) => console.error(`[page error] ${e.message}`))
    await page.goto(`${server.httpUrl}/healthz`)
    await page.addScriptTag({ content: code })
    await page.evaluate(async (key) => {
      window.seen = []
      const supabase = window.createClient(location.origin, key, { realtime: { transport: window.SharedWebSocket } })
      window.supabase = supabase
      await new Promise((resolve, reject) => supabase.channel('sb-bookings')
        .on('postgres_changes', { event: 'INSERT', schema: 'public', table: 'bookings', filter: 'property_id=eq.2' }, (c) => window.seen.push(c.new.guest_name))
        .subscribe((s, err) => (s === 'SUBSCRIBED' ? resolve() : s !== 'CLOSED' && reject(err || new Error(s)))))
    }, key)
    tabs.push(page)
  }
  assert.equal(await waitFor(async () => (await metric('rtsync_websockets')) === 1 && 1, 'one socket for both tabs'), 1)
  const err = await tabs[0].evaluate(async (id) => {
    const r = await window.supabase.from('bookings').insert({ id, property_id: 2, guest_name: 'Sam Supabase', check_in: '2027-06-01', check_out: '2027-06-03', nights: 2, total: 171 })
    await window.supabase.from('bookings').insert({ id: id + 1, property_id: 3, guest_name: 'Not Matching', check_in: '2027-06-01', check_out: '2027-06-03', nights: 2, total: 420 })
    return r.error
  }, (nextId += 2) - 1)
  assert.equal(err, null)
  for (const p of tabs) await p.waitForFunction(() => window.seen.length >= 1)
  await tabs[0].waitForTimeout(300)
  for (const p of tabs) assert.deepEqual(await p.evaluate(() => window.seen), ['Sam Supabase'], 'the filter holds, once per tab')
})

test('without a key the page asks for one; the sign-in box takes a JWT and refuses anything else', async (t) => {
  const ctx = await newContext(t, { viewport: { width: 1100, height: 700 } })
  const page = await ctx.newPage()
  await page.goto(`${server.httpUrl}/`)
  await page.waitForSelector('#signin[open]')
  assert.equal(await page.textContent('#status'), 'Signed out')
  await page.fill('#signin-key', 'not a token')
  await page.click('#signin-submit')
  assert.match(await page.textContent('#signin-error'), /not a JWT/)
  await shot(page, 'signin')
  await page.fill('#signin-key', mintToken({ role: 'service_role' }))
  await Promise.all([page.waitForNavigation(), page.click('#signin-submit')])
  await page.waitForFunction(() => document.querySelector('#status').textContent === 'Connected')
  assert.equal(await page.textContent('#who'), 'service_role')
  assert.equal(await page.isVisible('#notify-panel'), false, 'no inbox without a sub')
})

test('a write queued offline outlives its tab: the next page of the origin sends it, once', async (t) => {
  const ctx = await newContext(t, { viewport: { width: 1360, height: 900 } })
  const keep = await ctx.newPage() // the context lives on when the demo's tab closes
  await keep.goto(`${server.httpUrl}/healthz`)
  const page = await open(ctx, '/demo')
  await ctx.setOffline(true)
  await page.waitForFunction(() => document.querySelector('#status').dataset.status === 'offline')
  const guest = `Pia Persistent ${Date.now()}`
  await page.fill('#b-guest', guest)
  await page.click('#b-add')
  await page.waitForFunction(() => document.querySelector('#pending').dataset.count === '1')
  await Promise.all([page.waitForEvent('close'), page.close({ runBeforeUnload: true })])
  await ctx.setOffline(false)
  assert.equal((await rest('GET', `/rest/v1/bookings?guest_name=eq.${encodeURIComponent(guest)}&select=id`)).body.length, 0, 'not sent yet')
  const next = await open(ctx, '/demo')
  await next.waitForFunction(() => document.querySelector('#pending').hidden, null, { timeout: 15000 })
  await waitFor(async () => (await rest('GET', `/rest/v1/bookings?guest_name=eq.${encodeURIComponent(guest)}&select=id`)).body.length === 1, 'the queued booking')
  await next.waitForTimeout(500)
  assert.equal((await rest('GET', `/rest/v1/bookings?guest_name=eq.${encodeURIComponent(guest)}&select=id`)).body.length, 1, 'once')
})
