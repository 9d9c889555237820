// Bundled by browser.test.mjs for the page: the official realtime-js client
// with rtsync.js's SharedWebSocket as its transport.
import { RealtimeClient } from '@supabase/realtime-js'
import { SharedWebSocket } from '../../web/src/rtsync.js'

window.RealtimeClient = RealtimeClient
window.SharedWebSocket = SharedWebSocket
