// The {{name}} collector: time since boot, from /proc/uptime.
//
// jco componentize wraps this module into a component of the world in
// wit/world.wit: the agent's `wasmtap:collector/collector@0.2.1` plus WASI
// filesystem imports to read granted files with.

import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';

// Values name their field by its index in FIELDS.
const UPTIME = 0;
// `precision`: decimal places the host keeps (leave it out to keep all).
const FIELDS = [{ name: 'uptime', kind: 'gauge', unit: 'seconds', help: 'Time since boot', precision: 2 }];

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

export function describe() {
  return { name: '{{name}}', version: '0.1.0', defaultIntervalMs: 10000n, fields: FIELDS };
}

export function init(config) {
  if (config.length > 0) throw `unknown config keys: ${config.map(([k]) => k).join(', ')}`;
}

export function collect() {
  const seconds = Number.parseFloat(readText('/proc/uptime').split(' ')[0]);
  if (!Number.isFinite(seconds)) throw 'bad /proc/uptime';
  return [{ labels: [], numbers: [{ field: UPTIME, value: seconds }], texts: [] }];
}
