// Pieces the dashboard and the demo share: the key (from the URL fragment or
// the sign-in box), the status pill, toasts, small DOM helpers, the
// Prometheus text parser for /metrics.

export const $ = (sel, root = document) => root.querySelector(sel)

export function el(tag, attrs = {}, ...kids) {
  const e = document.createElement(tag)
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v
    else if (k === 'text') e.textContent = v
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v)
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v)
  }
  for (const k of kids) if (k !== null && k !== undefined) e.append(k.nodeType ? k : document.createTextNode(String(k)))
  return e
}

// The JWT the page acts with: #key=… in the fragment (never sent to the
// server, so never in its logs), else the one kept from an earlier visit.
export function takeKey() {
  const m = /(?:^|[#&])key=([^&]+)/.exec(location.hash)
  if (m) {
    const k = decodeURIComponent(m[1])
    localStorage.setItem('rtsync-key', k)
    history.replaceState(null, '', location.pathname + location.search)
    return k
  }
  return localStorage.getItem('rtsync-key')
}

export function claimsOf(jwt) {
  try {
    const b = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/')
    return JSON.parse(decodeURIComponent(escape(atob(b + '='.repeat((4 - (b.length % 4)) % 4)))))
  } catch (_) {
    return null
  }
}

// The sign-in box: a dialog that takes a JWT, keeps it, reloads the page.
export function signInBox(current) {
  const dlg = el('dialog', { id: 'signin', class: 'signin' })
  const input = el('textarea', { id: 'signin-key', rows: 4, placeholder: 'eyJhbGciOi…', spellcheck: 'false' })
  const err = el('p', { class: 'error', id: 'signin-error' })
  const form = el('form', { method: 'dialog' },
    el('h2', { text: 'Sign in' }),
    el('p', { text: 'Paste a JWT signed with the server\'s secret (rtsync token, or the key make run prints).' }),
    input, err,
    el('div', { class: 'row' },
      el('button', { type: 'button', class: 'ghost', text: 'Cancel', onclick: () => dlg.close() }),
      el('button', { type: 'submit', id: 'signin-submit', text: 'Sign in' })))
  form.addEventListener('submit', (e) => {
    const k = input.value.trim()
    const c = claimsOf(k)
    if (!c || !c.role) { e.preventDefault(); err.textContent = 'That is not a JWT with a role claim.'; return }
    localStorage.setItem('rtsync-key', k)
    location.reload()
  })
  dlg.append(form)
  document.body.append(dlg)
  if (!current) setTimeout(() => dlg.showModal(), 0)
  return dlg
}

const STATUS_TEXT = { connected: 'Connected', connecting: 'Connecting…', offline: 'Offline', error: 'Connection error' }

export function statusPill(node, client) {
  const show = (s) => {
    node.dataset.status = s
    node.textContent = STATUS_TEXT[s] || s
    document.body.dataset.status = s
  }
  show(client.status)
  client.on('status', show)
}

let toastBox
export function toast(text, kind = 'info', ms = 4000) {
  if (!toastBox) { toastBox = el('div', { class: 'toasts', 'aria-live': 'polite' }); document.body.append(toastBox) }
  const t = el('div', { class: `toast ${kind}`, role: 'status' }, text)
  toastBox.append(t)
  setTimeout(() => { t.classList.add('out'); setTimeout(() => t.remove(), 400) }, ms)
  return t
}

export function ago(ts) {
  if (!ts) return '—'
  const s = Math.max(0, Math.round((Date.now() - ts) / 1000))
  return s < 2 ? 'just now' : s < 60 ? `${s} s ago` : `${Math.floor(s / 60)} min ago`
}

// Prometheus text → Map name -> [{labels, value}]
export function parseMetrics(text) {
  const out = new Map()
  for (const line of text.split('\n')) {
    if (!line || line[0] === '#') continue
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{([^}]*)\})?\s+(\S+)/.exec(line)
    if (!m) continue
    const labels = {}
    if (m[3]) for (const kv of m[3].matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) labels[kv[1]] = kv[2]
    if (!out.has(m[1])) out.set(m[1], [])
    out.get(m[1]).push({ labels, value: Number(m[4]) })
  }
  return out
}

export const metricSum = (mm, name) => (mm.get(name) || []).reduce((a, s) => a + s.value, 0)

export function pulse(node) {
  node.classList.remove('pulse')
  void node.offsetWidth // restart the animation
  node.classList.add('pulse')
}
