// A supabase-js client of rtsync: joins "room1", tracks presence, sends a
// cursor broadcast, and prints what it receives.
//
//   ANON_KEY=<key printed by `make run`> node room.mjs [name]
//
// Environment: RTSYNC_URL (default http://127.0.0.1:4000), ANON_KEY (required),
// DURATION_MS (stop after this long; default: run until Ctrl-C).
// Output: one JSON object per line, e.g. {"event":"cursor","from":"bob","payload":{…}}.
import { createClient } from '@supabase/supabase-js'
import WebSocket from 'ws'

const name = process.argv[2] ?? 'alice'
const url = process.env.RTSYNC_URL ?? 'http://127.0.0.1:4000'
const key = process.env.ANON_KEY
if (!key) {
  console.error('set ANON_KEY to the anon key printed by `make run`')
  process.exit(2)
}

const supabase = createClient(url, key, { realtime: { transport: WebSocket } })
const room = supabase.channel('room1', { config: { presence: { key: name } } })
const out = (obj) => console.log(JSON.stringify(obj))

room
  .on('broadcast', { event: 'cursor' }, ({ payload }) => out({ event: 'cursor', ...payload }))
  .on('presence', { event: 'sync' }, () =>
    out({ event: 'presence', online: Object.keys(room.presenceState()).sort() }))
  .subscribe(async (status, err) => {
    out({ event: 'status', status, error: err?.message })
    if (status !== 'SUBSCRIBED') return
    await room.track({ online_at: new Date().toISOString() })
    // Keep sending, so a client that joins later sees cursors too.
    const send = () => room.send({ type: 'broadcast', event: 'cursor', payload: { from: name, x: 10, y: 20 } })
    await send()
    setInterval(send, 500).unref()
  })

const stop = async () => {
  await supabase.removeAllChannels()
  process.exit(0)
}
process.on('SIGINT', stop)
if (process.env.DURATION_MS) setTimeout(stop, Number(process.env.DURATION_MS))
