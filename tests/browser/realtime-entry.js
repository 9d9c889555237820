// Bundled by browser.test.mjs for the page: the official realtime-js and
// supabase-js clients, and rtsync.js's SharedWebSocket to pass as their transport.
import { RealtimeClient } from '@supabase/realtime-js'
import { createClient } from '@supabase/supabase-js'
import { SharedWebSocket } from '../../web/src/rtsync.js'

window.RealtimeClient = RealtimeClient
window.createClient = createClient
window.SharedWebSocket = SharedWebSocket
