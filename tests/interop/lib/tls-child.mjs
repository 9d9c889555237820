// supabase-js against a TLS rtsync, in a process started with
// NODE_EXTRA_CA_CERTS naming the test CA (Node reads it only at start-up):
//   node tls-child.mjs <https-url> <service-key> <topic>
// REST insert and select over https (fetch), a postgres_changes INSERT and a
// broadcast over wss; prints one JSON line of results and exits 0, or exits 1.

import { createRequire } from 'node:module';
import WebSocket from 'ws';

const require = createRequire(import.meta.url);
const { createClient } = require('@supabase/supabase-js');

const [url, key, topic] = process.argv.slice(2);
const sb = createClient(url, key, {
  auth: { persistSession: false, autoRefreshToken: false, detectSessionInUrl: false },
  realtime: { transport: WebSocket, timeout: 10_000, logger: () => {}, reconnectAfterMs: () => 1000 },
});
const fail = (why) => { process.stderr.write(`${why}\n`); process.exit(1); };
setTimeout(() => fail('timeout'), 20_000).unref();

const result = {};
let onChange;
const changed = new Promise((r) => { onChange = r; });
const ch = sb.channel(topic, { config: { broadcast: { self: true, ack: true } } })
  .on('postgres_changes', { event: '*', schema: 'public', table: 'notes' }, (p) => onChange(p.eventType));
await new Promise((resolve, reject) => ch.subscribe((status, err) => {
  if (status === 'SUBSCRIBED') resolve();
  else reject(new Error(`${status} ${err ? err.message : ''}`));
})).catch((e) => fail(`subscribe: ${e.message}`));
result.subscribed = true;
const ins = await sb.from('notes').insert({ id: 1, body: 'over tls' });
result.insert = ins.status;
const sel = await sb.from('notes').select('id,body');
if (sel.error) fail(`select: ${sel.error.message}`);
result.select = sel.data;
result.change = await changed;
result.broadcast = await ch.send({ type: 'broadcast', event: 'hi', payload: { x: 1 } });
await sb.removeAllChannels();
await sb.realtime.disconnect();
process.stdout.write(`${JSON.stringify(result)}\n`);
process.exit(0);
