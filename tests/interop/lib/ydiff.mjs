// Differential test of the C merge of Yjs updates (src/collab/ydoc.c)
// against the yjs npm package: random edit histories of three documents
// (text with formats and embeds, arrays with nested maps, maps, XML), every
// update they emit fed to tests/collab/ymerge in a shuffled order with
// duplicates and Y.mergeUpdates-merged batches, and every state it returns
// (whole, with deleted content dropped, from a state vector on) checked
// against a Y.Doc that applied the updates itself: same content, same state
// vector and delete set (Y.equalSnapshots).
//
// Used by collab-differential.test.mjs; also runs alone:
//   node tests/interop/lib/ydiff.mjs YMERGE_BINARY [histories] [seed]
import { spawnSync } from 'node:child_process';
import { pathToFileURL } from 'node:url';
import * as Y from 'yjs';

let seed = 1;
const rnd = () => { seed = (seed * 1664525 + 1013904223) >>> 0; return seed / 2 ** 32; };
const int = (n) => Math.floor(rnd() * n);
const pick = (a) => a[int(a.length)];
const ALPHA = ['a', 'b', 'c', ' ', 'é', '中', '😀', '\n'];
const str = () => Array.from({ length: 1 + int(4) }, () => pick(ALPHA)).join('');
const anyVal = () => pick([() => int(1000) - 500, () => str(), () => rnd() < 0.5, () => null,
  () => ({ k: str(), n: [int(9), { deep: str() }] }), () => new Uint8Array([int(256), int(256)]), () => rnd() * 1e6])();

function edit(doc) {
  const t = doc.getText('t'), a = doc.getArray('a'), m = doc.getMap('m'), x = doc.getXmlFragment('x');
  const op = int(12);
  if (op < 4) {
    // positions on code point boundaries: Yjs replaces a split surrogate
    // pair by U+FFFD halves, and which copy of the content wins then
    // depends on arrival order (yjs issue 248), in Yjs as in the C merge
    const s = t.toString(), len = s.length;
    const at = (i) => (i > 0 && i < len && s.charCodeAt(i - 1) >= 0xd800 && s.charCodeAt(i - 1) <= 0xdbff ? i + 1 : i);
    if (len && rnd() < 0.35) { const i = at(int(len)); const e = at(Math.min(len, i + 1 + int(4))); if (e > i) t.delete(i, e - i); }
    else if (len && rnd() < 0.15) { const i = at(int(len)); const e = at(Math.min(len, i + 1 + int(3))); if (e > i) t.format(i, e - i, { bold: rnd() < 0.7 ? true : null }); }
    else if (rnd() < 0.05) { const e = doc.getText('e'); e.insertEmbed(int(e.length + 1), { image: str() }); } // own text: an embed is not in toString()
    else t.insert(at(int(len + 1)), str(), rnd() < 0.2 ? { italic: true } : undefined);
  } else if (op < 7) {
    const len = a.length;
    if (len && rnd() < 0.3) { const i = int(len); a.delete(i, 1 + int(Math.min(3, len - i))); }
    else if (rnd() < 0.15) { const ym = new Y.Map(); a.insert(int(len + 1), [ym]); ym.set('x', anyVal()); }
    else if (len && rnd() < 0.2) { const v = a.get(int(len)); if (v instanceof Y.Map) v.set(pick(['x', 'y']), anyVal()); else a.push([anyVal()]); }
    else a.insert(int(len + 1), Array.from({ length: 1 + int(3) }, anyVal));
  } else if (op < 10) {
    const k = pick(['k1', 'k2', 'k3', 'k4']);
    const cur = m.get(k);
    if (cur instanceof Y.Map && rnd() < 0.4) cur.set(pick(['p', 'q']), rnd() < 0.2 ? new Y.Array() : anyVal());
    else if (cur instanceof Y.Array && rnd() < 0.4) { if (cur.length && rnd() < 0.3) cur.delete(int(cur.length), 1); else cur.insert(int(cur.length + 1), [anyVal()]); }
    else if (cur instanceof Y.Text && rnd() < 0.4) { if (cur.length && rnd() < 0.3) cur.delete(int(cur.length), 1); else cur.insert(int(cur.length + 1), 'xyz'.slice(int(3))); }
    else if (rnd() < 0.2) m.delete(k);
    else if (rnd() < 0.2) { const ty = pick([() => new Y.Map(), () => new Y.Array(), () => new Y.Text()])(); m.set(k, ty); if (ty instanceof Y.Map) ty.set('n', anyVal()); else if (ty instanceof Y.Array) ty.push([anyVal()]); else ty.insert(0, str()); }
    else m.set(k, anyVal());
  } else {
    const len = x.length;
    if (len && rnd() < 0.3) x.delete(int(len), 1);
    else if (len && rnd() < 0.3) { const e = x.get(int(len)); if (e instanceof Y.XmlElement) e.setAttribute('a', str()); else if (e instanceof Y.XmlText) e.insert(0, str()); }
    else x.insert(int(len + 1), [rnd() < 0.5 ? new Y.XmlElement(pick(['p', 'h1'])) : new Y.XmlText(str())]);
  }
}

// map key order follows integration order, which is not part of the state
const canon = (v) => (Array.isArray(v) ? v.map(canon) : v && typeof v === 'object' && !(v instanceof Uint8Array)
  ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canon(v[k])])) : v);
const content = (doc) => JSON.stringify(canon({
  t: doc.getText('t').toDelta(), e: doc.getText('e').toDelta(), a: doc.getArray('a').toJSON(), m: doc.getMap('m').toJSON(),
  x: doc.getXmlFragment('x').toString(),
}));

let bin;
function ymerge(records) {
  const parts = [];
  for (const r of records) { const h = Buffer.alloc(4); h.writeUInt32LE(r.length); parts.push(h, Buffer.from(r)); }
  const res = spawnSync(bin, [], { input: Buffer.concat(parts), maxBuffer: 1 << 28 });
  if (res.status !== 0) throw new Error(`ymerge exit ${res.status}: ${res.stderr}`);
  const out = []; let p = 0; const b = res.stdout;
  while (p < b.length) { const n = b.readUInt32LE(p); out.push(new Uint8Array(b.subarray(p + 4, p + 4 + n))); p += 4 + n; }
  if (out.length !== 7) throw new Error(`ymerge wrote ${out.length} records`);
  return out;
}

// The JSON the server gives for the shared types (docs/collab.md, REST):
// doc.toJSON() of the types as the editing clients named them, binary as
// base64, texts as strings or (delta) as toDelta().
const b64 = (u) => Buffer.from(u).toString('base64');
const plain = (v) => (v instanceof Uint8Array ? b64(v) : Array.isArray(v) ? v.map(plain)
  : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).filter(([, x]) => x !== undefined).map(([k, x]) => [k, plain(x)])) : v);
const KINDS = { t: 'text', e: 'text', a: 'array', m: 'map', x: 'xml' };
// toJSON() of a value, with every Y.Text as its delta when delta is set
const yjson = (v, delta) => (v instanceof Y.XmlFragment || v instanceof Y.XmlElement || v instanceof Y.XmlText ? v.toString()
  : v instanceof Y.Text ? (delta ? v.toDelta().map((op) => ({ ...op, insert: yjson(op.insert, delta) })) : v.toString())
  : v instanceof Y.Map ? Object.fromEntries([...v.entries()].map(([k, x]) => [k, yjson(x, delta)]))
  : v instanceof Y.Array ? v.toArray().map((x) => yjson(x, delta)) : v);
function typesJson(doc, delta) {
  const present = [...doc.share.keys()]; // before the getters below add roots
  const o = {};
  for (const k of present) {
    const kind = KINDS[k];
    if (kind === 'text') o[k] = yjson(doc.getText(k), delta);
    else if (kind === 'array') o[k] = yjson(doc.getArray(k), delta);
    else if (kind === 'map') o[k] = yjson(doc.getMap(k), delta);
    else o[k] = doc.getXmlFragment(k).toString();
  }
  return JSON.stringify(canon(plain(o)));
}
// A root whose items are all gone (deleted content, gc'd by the client
// that deleted it in the same transaction or by a compaction) keeps no
// trace of its kind: "", [] and {} are one value then (docs/collab.md).
const emptyAlike = (s) => JSON.stringify(Object.fromEntries(Object.entries(JSON.parse(s))
  .map(([k, v]) => [k, v === '' || (Array.isArray(v) && !v.length) || (v && typeof v === 'object' && !Object.keys(v).length) ? null : v])));

// The clocks an update holds as GC structs, and as GC structs or deleted
// content: "client:clock" per clock unit.
function collapsed(u) {
  const gc = new Set(), dropped = new Set();
  for (const st of Y.decodeUpdate(u).structs) {
    const isGc = st instanceof Y.GC, isDel = isGc || (st instanceof Y.Item && st.content instanceof Y.ContentDeleted);
    for (let k = 0; k < st.length; k++) {
      const id = `${st.id.client}:${st.id.clock + k}`;
      if (isGc) gc.add(id);
      if (isDel) dropped.add(id);
    }
  }
  return { gc, dropped };
}
const sameSet = (a, b) => a.size === b.size && [...a].every((x) => b.has(x));

const docOf = (...updates) => { const d = new Y.Doc(); for (const u of updates) Y.applyUpdate(d, u); return d; };
const svMap = (sv) => [...Y.decodeStateVector(sv).entries()].sort((p, q) => p[0] - q[0]).join(';');

/** Runs n random histories from seedArg; returns a summary, throws on the first disagreement. */
export function runDifferential(ymergeBin, n, seedArg) {
bin = ymergeBin;
seed = Number(seedArg) >>> 0;
let checked = 0, totalIn = 0, totalOut = 0, totalGc = 0, totalGcStructs = 0;
for (let h = 0; h < n; h++) {
  // three editors, or up to ten for text typed concurrently
  const docs = Array.from({ length: h % 3 ? 3 : 3 + int(8) }, (_, i) => i).map((i) => { const d = new Y.Doc(); d.clientID = 1 + i + int(1 << 30); return d; });
  const updates = [];
  for (const d of docs) d.on('update', (u) => updates.push(u));
  const steps = 5 + int(60);
  let mid = null;
  for (let s = 0; s < steps; s++) {
    const d = pick(docs);
    d.transact(() => { for (let k = 1 + int(3); k > 0; k--) edit(d); });
    if (rnd() < 0.25) { const [p, q] = [pick(docs), pick(docs)]; if (p !== q) Y.applyUpdate(q, Y.encodeStateAsUpdate(p, Y.encodeStateVector(q))); }
    if (s === steps >> 1) mid = Y.encodeStateAsUpdate(pick(docs));
  }
  // the input: shuffled, some twice, some batches merged by Yjs
  let input = updates.map((u) => u);
  for (let i = input.length - 1; i > 0; i--) { const j = int(i + 1); [input[i], input[j]] = [input[j], input[i]]; }
  for (let k = int(4); k > 0 && input.length; k--) input.push(pick(input));
  if (input.length > 3 && rnd() < 0.5) { const n = 2 + int(3); input = [Y.mergeUpdates(input.slice(0, n)), ...input.slice(n)]; }
  // Yjs too gives the content of a surrogate pair split between structs to
  // whichever copy arrives first (U+FFFD halves), so the reference applies
  // the updates in the order the C merge gets them
  const ref = docOf(...input);
  const partial = docOf(mid);
  const [merged, mergedGc, sv, diff, json, jsonDelta, jsonGc] = ymerge([...input, Y.encodeStateVector(partial)]);
  const wantJson = typesJson(ref, false), wantDelta = typesJson(ref, true);
  const want = content(ref);
  const dec = (b) => JSON.stringify(canon(JSON.parse(Buffer.from(b).toString())));
  if (emptyAlike(dec(json)) !== emptyAlike(wantJson)) throw new Error(`history ${h} (seed ${seedArg}): JSON of the types\n want ${wantJson}\n got  ${dec(json)}`);
  if (emptyAlike(dec(jsonDelta)) !== emptyAlike(wantDelta)) throw new Error(`history ${h} (seed ${seedArg}): JSON with deltas\n want ${wantDelta}\n got  ${dec(jsonDelta)}`);
  if (emptyAlike(dec(jsonGc)) !== emptyAlike(wantJson)) throw new Error(`history ${h} (seed ${seedArg}): JSON after gc\n want ${wantJson}\n got  ${dec(jsonGc)}`);
  const fail = (what, got) => { throw new Error(`history ${h} (seed ${seedArg}): ${what}\n want ${want}\n got  ${got}`); };
  for (const [name, u] of [['merged', merged], ['merged with gc', mergedGc]]) {
    const d = docOf(u);
    if (content(d) !== want) fail(name, content(d));
    if (!Y.equalSnapshots(Y.snapshot(d), Y.snapshot(ref))) fail(`${name}: snapshot (state vector, delete set)`, '');
    if (d.store.pendingStructs || d.store.pendingDs) fail(`${name}: left structs pending`, '');
    // re-applying the reference changes nothing
    const before = Y.encodeStateVector(d); Y.applyUpdate(d, Y.encodeStateAsUpdate(ref));
    if (svMap(before) !== svMap(Y.encodeStateVector(d))) fail(`${name}: lacked structs of the reference`, '');
  }
  if (svMap(sv) !== svMap(Y.encodeStateVector(ref))) fail('state vector', svMap(sv));
  // full gc: what Yjs's own gc collapses (deleted content, the items of
  // deleted types as GC structs) is what the C gc collapses
  const ours = collapsed(mergedGc), theirs = collapsed(Y.encodeStateAsUpdate(ref));
  if (!sameSet(ours.gc, theirs.gc)) fail(`gc: GC structs ${ours.gc.size}, yjs ${theirs.gc.size}`, '');
  if (!sameSet(ours.dropped, theirs.dropped)) fail(`gc: dropped clocks ${ours.dropped.size}, yjs ${theirs.dropped.size}`, '');
  totalGcStructs += ours.gc.size;
  Y.applyUpdate(partial, diff);
  if (content(partial) !== want) fail('partial state + diff', content(partial));
  checked++;
  totalIn += updates.reduce((n, u) => n + u.length, 0);
  totalOut += merged.length;
  totalGc += mergedGc.length;
}
return { checked, totalIn, totalOut, totalGc, totalGcStructs };
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const [b, n = '200', s = String(Date.now() % 1e9)] = process.argv.slice(2);
  if (!b) { console.error('usage: ydiff.mjs YMERGE_BINARY [histories] [seed]'); process.exit(2); }
  const r = runDifferential(b, Number(n), s);
  console.log(`differential: ${r.checked} histories agree with yjs (seed ${s}); update bytes ${r.totalIn}, merged ${r.totalOut}, merged with gc ${r.totalGc} (${r.totalGcStructs} clocks as GC structs)`);
}
