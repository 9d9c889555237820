// Child process holding a realtime-js client that joins a channel and tracks
// presence, so the parent test can kill it abruptly (SIGKILL).
//   node presence-child.mjs <realtimeUrl> <apikey> <vsn> <topic> <key> <metaJson>
// Prints "READY" on stdout once the track is acknowledged.

import { createRequire } from 'node:module';
import WebSocket from 'ws';

const require = createRequire(import.meta.url);
const { RealtimeClient } = require('@supabase/realtime-js');

const [url, apikey, vsn, topic, key, metaJson] = process.argv.slice(2);
const client = new RealtimeClient(url, {
  transport: WebSocket, params: { apikey }, vsn, logger: () => {}, reconnectAfterMs: () => 1000,
});
const ch = client.channel(topic, { config: { presence: { key } } });
ch.on('presence', { event: 'sync' }, () => {});
ch.subscribe(async (status, err) => {
  if (status === 'SUBSCRIBED') {
    const res = await ch.track(JSON.parse(metaJson));
    process.stdout.write(res === 'ok' ? 'READY\n' : `TRACK-FAILED ${res}\n`);
  } else {
    process.stdout.write(`STATUS ${status} ${err ? err.message : ''}\n`);
  }
});
// Stay alive until killed (the parent never lets this run long).
setTimeout(() => process.exit(3), 60_000);
