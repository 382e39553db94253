// The {{name}} collector: time since boot, from /proc/uptime, and the space
// left on the root filesystem, from the agent's `filesystem` import.
//
// jco componentize wraps this module into a component of the world in
// wit/world.wit: the agent's `wasmtap:collector/collector@0.2.1`. Granted
// files are read through the agent's `files` import.

import { read } from 'wasmtap:collector/files@0.2.1';
import { usage } from 'wasmtap:collector/filesystem@0.2.1';

// Values name their field by its index in FIELDS.
const UPTIME = 0;
const ROOT_AVAILABLE = 1;
// `precision`: decimal places the host keeps (leave it out to keep all).
const FIELDS = [
  { name: 'uptime_seconds', kind: 'gauge', unit: 'seconds', help: 'Time since boot', precision: 2 },
  {
    name: 'root_available_bytes',
    kind: 'gauge',
    unit: 'bytes',
    help: 'Space unprivileged users may still use on the root filesystem',
    precision: 0,
  },
];

/** The text of `path`, read by the agent in one call (inside [grants] read). */
function readText(path) {
  try {
    return new TextDecoder().decode(read(path));
  } catch (e) {
    // The agent's `file-error`: `not-found`, or `refused`/`failed` with a reason.
    const why = e.payload ?? e;
    throw `reading ${path}: ${why.tag ?? why}${why.val ? `: ${why.val}` : ''}`;
  }
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
  // Inside the manifest's `usage` grant; u64 fields arrive as BigInt.
  let root;
  try {
    root = usage('/');
  } catch (e) {
    throw `usage of /: ${e.payload ?? e}`;
  }
  const numbers = [
    { field: UPTIME, value: seconds },
    { field: ROOT_AVAILABLE, value: Number(root.availableBytes) },
  ];
  return [{ labels: [], numbers, texts: [] }];
}
