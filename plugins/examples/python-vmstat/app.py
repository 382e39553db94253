"""The python-vmstat example collector: paging, swapping and OOM kills from
/proc/vmstat, as totals (counters) and per-second rates (gauges).

The rates need the previous reading: it is kept in the agent's persisted
state (`host.state_get` / `host.state_set`), so they survive agent restarts.
"""

import json
import time
from typing import Dict, List, Optional, Tuple

import wit_world
from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.types import Descriptor, Field, FieldKind, Number, Sample

# /proc/vmstat key -> (unit, help). Each gets a counter and a `_rate` gauge.
COUNTERS = {
    "pgfault": ("faults", "Page faults"),
    "pgmajfault": ("faults", "Major page faults (the page was read from disk)"),
    "pswpin": ("pages", "Pages swapped in"),
    "pswpout": ("pages", "Pages swapped out"),
    "oom_kill": ("kills", "Processes killed by the out-of-memory killer"),
}

FIELDS: List[Field] = []
for _key, (_unit, _help) in COUNTERS.items():
    FIELDS.append(Field(_key, FieldKind.COUNTER, _unit, _help, 0))
    # Rates are kept to two decimal places: finer digits are noise.
    FIELDS.append(Field(_key + "_rate", FieldKind.GAUGE, _unit + "/s", _help + " per second", 2))
INDEX = {f.name: i for i, f in enumerate(FIELDS)}
STATE_KEY = "previous"


def parse(text: str) -> Dict[str, float]:
    """The counters of COUNTERS found in /proc/vmstat's `name value` lines."""
    values = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) == 2 and parts[0] in COUNTERS:
            try:
                values[parts[0]] = float(int(parts[1]))
            except ValueError:
                raise Err(f"bad /proc/vmstat value {line!r}")
    return values


def rates(prev: Optional[dict], now: float, values: Dict[str, float]) -> Dict[str, float]:
    """Per-second rates since `prev`; none for a counter that went down."""
    if not prev or now <= prev.get("time", now):
        return {}
    dt = now - prev["time"]
    before = prev.get("values", {})
    return {k: (v - before[k]) / dt for k, v in values.items() if k in before and v >= before[k]}


class WitWorld(wit_world.WitWorld):
    def describe(self) -> Descriptor:
        return Descriptor("python-vmstat", "0.1.0", 10_000, FIELDS)

    def init(self, config: List[Tuple[str, str]]) -> None:
        if config:
            raise Err("unknown config keys: " + ", ".join(k for k, _ in config))

    def collect(self) -> List[Sample]:
        try:
            with open("/proc/vmstat") as f:
                values = parse(f.read())
        except OSError as e:
            raise Err(f"reading /proc/vmstat: {e}")
        now = time.time()
        stored = host.state_get(STATE_KEY)
        prev = json.loads(stored) if stored else None
        try:
            host.state_set(STATE_KEY, json.dumps({"time": now, "values": values}).encode())
        except Err as e:
            host.log(host.Level.WARN, f"cannot keep the reading for rates: {e.value}")
        numbers = [Number(INDEX[k], v) for k, v in values.items()]
        numbers += [Number(INDEX[k + "_rate"], r) for k, r in rates(prev, now, values).items()]
        return [Sample(labels=[], numbers=numbers, texts=[])]
