// The C merge of Yjs updates (src/collab/ydoc.c, through the ymerge filter
// built beside the server) against the yjs package on random edit
// histories: see lib/ydiff.mjs.
import { it } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { runDifferential } from './lib/ydiff.mjs';

const bin = process.env.RTSYNC_YMERGE || join(dirname(process.env.RTSYNC_BIN || ''), 'tests/collab/ymerge');

it('merged states, states with gc and diffs agree with yjs on random histories', { timeout: 300_000 }, () => {
  assert.ok(existsSync(bin), `${bin} missing (make unit-bins builds it)`);
  const seed = process.env.RTSYNC_YDIFF_SEED || String(Date.now() % 1e9);
  const r = runDifferential(bin, Number(process.env.RTSYNC_YDIFF_HISTORIES || 300), seed);
  assert.equal(r.checked, Number(process.env.RTSYNC_YDIFF_HISTORIES || 300));
  console.log(`seed ${seed}: ${r.checked} histories, update bytes ${r.totalIn}, merged ${r.totalOut}, with gc ${r.totalGc}`);
});
