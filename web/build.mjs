// Bundles web/src into web/dist, the files the server embeds (web/embed.sh):
// the browser client rtsync.js (an ES module apps import), the dashboard and
// the demo with their libraries (uPlot, yjs, y-websocket) resolved from the
// lock file. Output is deterministic for the same sources.
import { build } from 'esbuild'
import { copyFileSync, mkdirSync, rmSync } from 'node:fs'

const out = 'dist'
rmSync(out, { recursive: true, force: true })
mkdirSync(out, { recursive: true })

const common = {
  bundle: true,
  format: 'esm',
  target: ['es2020'],
  minify: true,
  legalComments: 'none',
  logLevel: 'warning',
}
await build({ ...common, entryPoints: ['src/rtsync.js'], outfile: `${out}/rtsync.js`, minify: false })
await build({ ...common, entryPoints: ['src/dashboard.js'], outfile: `${out}/dashboard.js` })
await build({ ...common, entryPoints: ['src/demo.js'], outfile: `${out}/demo.js` })
await build({ ...common, entryPoints: ['src/app.css'], outfile: `${out}/app.css` })
for (const f of ['index.html', 'demo.html', 'favicon.svg']) copyFileSync(`src/${f}`, `${out}/${f}`)
