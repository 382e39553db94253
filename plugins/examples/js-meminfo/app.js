// The js-meminfo example collector: memory and swap use from /proc/meminfo.
//
// StarlingMonkey has no file API of its own, so the file is read through the
// WASI filesystem imports that wit/world.wit adds to the agent's world.

import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import { log } from 'wasmtap:collector/host@0.2.0';

// Values name their field by its index in FIELDS.
const FIELDS = [
  { name: 'total', kind: 'gauge', unit: 'bytes', help: 'Usable RAM' },
  { name: 'available', kind: 'gauge', unit: 'bytes', help: 'RAM available for new work without swapping' },
  { name: 'used', kind: 'gauge', unit: 'bytes', help: 'RAM in use: total minus available' },
  { name: 'used_percent', kind: 'gauge', unit: 'percent', help: 'RAM in use, in percent of total', precision: 2 },
  { name: 'swap_total', kind: 'gauge', unit: 'bytes', help: 'Swap space' },
  { name: 'swap_used', kind: 'gauge', unit: 'bytes', help: 'Swap space in use' },
  { name: 'dirty', kind: 'gauge', unit: 'bytes', help: 'Memory waiting to be written back to disk' },
];
const INDEX = Object.fromEntries(FIELDS.map((f, i) => [f.name, i]));

/** The text of `path`, read through the granted directory that holds it. */
function readText(path) {
  for (const [dir, root] of getDirectories()) {
    const prefix = root.endsWith('/') ? root : `${root}/`;
    if (!path.startsWith(prefix)) continue;
    const file = dir.openAt({}, path.slice(prefix.length), {}, { read: true });
    const chunks = [];
    for (let offset = 0n; ;) {
      const [bytes, end] = file.read(65536n, offset);
      chunks.push(bytes);
      offset += BigInt(bytes.length);
      if (end || bytes.length === 0) break;
    }
    const all = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
    chunks.reduce((at, c) => (all.set(c, at), at + c.length), 0);
    return new TextDecoder().decode(all);
  }
  throw `reading ${path}: not granted (add its directory to [grants] read)`;
}

/** `Key: value kB` lines of /proc/meminfo as bytes by key. */
export function parse(text) {
  const out = {};
  for (const line of text.split('\n')) {
    const m = /^(\w+(?:\(\w+\))?):\s+(\d+)(?: kB)?$/.exec(line.trim());
    if (m) out[m[1]] = Number(m[2]) * (line.trim().endsWith('kB') ? 1024 : 1);
  }
  return out;
}

export function describe() {
  return { name: 'js-meminfo', version: '0.1.0', defaultIntervalMs: 10000n, fields: FIELDS };
}

export function init(config) {
  if (config.length > 0) throw `unknown config keys: ${config.map(([k]) => k).join(', ')}`;
}

let warned = false;

export function collect() {
  const m = parse(readText('/proc/meminfo'));
  if (m.MemTotal === undefined) throw '/proc/meminfo has no MemTotal';
  let available = m.MemAvailable;
  if (available === undefined) {
    // Kernels before 3.14: estimate as free plus page cache.
    available = (m.MemFree ?? 0) + (m.Cached ?? 0);
    if (!warned) log('warn', 'no MemAvailable in /proc/meminfo; estimating it as MemFree + Cached');
    warned = true;
  }
  const used = Math.max(m.MemTotal - available, 0);
  const values = {
    total: m.MemTotal,
    available,
    used,
    used_percent: m.MemTotal > 0 ? (100 * used) / m.MemTotal : 0,
    swap_total: m.SwapTotal ?? 0,
    swap_used: Math.max((m.SwapTotal ?? 0) - (m.SwapFree ?? 0), 0),
    dirty: m.Dirty ?? 0,
  };
  const numbers = Object.entries(values).map(([k, value]) => ({ field: INDEX[k], value }));
  return [{ labels: [], numbers, texts: [] }];
}
