// OfflineQueue: the writes a page made, kept in IndexedDB until the server
// has answered them, in the order they were made (an auto-increment key).
// Each item keeps the idempotency key it was given when it was queued, so a
// write sent again after a reload or a lost connection is applied once.
// Falls back to memory where IndexedDB is unavailable (private modes).

const STORE = 'writes'

function req(r) {
  return new Promise((resolve, reject) => {
    r.onsuccess = () => resolve(r.result)
    r.onerror = () => reject(r.error)
  })
}

export class OfflineQueue {
  constructor(name) {
    this.name = name
    this.size = 0
    this.mem = null
    this.ready = this._open().catch(() => { this.mem = []; this.size = 0 })
  }

  async _open() {
    if (typeof indexedDB === 'undefined') throw new Error('no IndexedDB')
    const open = indexedDB.open(this.name, 1)
    open.onupgradeneeded = () => open.result.createObjectStore(STORE, { keyPath: 'id', autoIncrement: true })
    this.db = await req(open)
    this.size = await req(this.db.transaction(STORE).objectStore(STORE).count())
  }

  async push(item) {
    await this.ready
    if (this.mem) { this.mem.push({ ...item, id: (this.memSeq = (this.memSeq || 0) + 1) }); this.size = this.mem.length; return }
    const { id, ...rest } = item
    await req(this.db.transaction(STORE, 'readwrite').objectStore(STORE).add(rest))
    this.size++
  }

  async peek() {
    await this.ready
    if (this.mem) return this.mem[0] || null
    const c = await req(this.db.transaction(STORE).objectStore(STORE).openCursor())
    return c ? c.value : null
  }

  async all() {
    await this.ready
    if (this.mem) return [...this.mem]
    return req(this.db.transaction(STORE).objectStore(STORE).getAll())
  }

  async shift(id) {
    await this.ready
    if (this.mem) { this.mem = this.mem.filter((x) => x.id !== id); this.size = this.mem.length; return }
    await req(this.db.transaction(STORE, 'readwrite').objectStore(STORE).delete(id))
    this.size = await req(this.db.transaction(STORE).objectStore(STORE).count())
  }
}
