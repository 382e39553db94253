"""The {{name}} collector: time since boot, from /proc/uptime, and the space
left on the root filesystem, from the agent's `filesystem` import.

componentize-py wraps this module into a component of the world
`wasmtap:collector/collector@0.2.1` (wit/collector.wit). The generated
`wit_world` package holds the WIT types; `wit_world.imports.host` is the
agent's log and persisted state, `wit_world.imports.filesystem` its statvfs
of granted paths.
"""

from typing import List, Tuple

import wit_world
from componentize_py_types import Err
from wit_world.imports import filesystem
from wit_world.imports.types import Descriptor, Field, FieldKind, Number, Sample

# Values name their field by its index in FIELDS.
UPTIME = 0
ROOT_AVAILABLE = 1
# The last value is the precision: decimal places the host keeps (None: all).
FIELDS = [
    Field("uptime_seconds", FieldKind.GAUGE, "seconds", "Time since boot", 2),
    Field(
        "root_available_bytes",
        FieldKind.GAUGE,
        "bytes",
        "Space unprivileged users may still use on the root filesystem",
        0,
    ),
]


class WitWorld(wit_world.WitWorld):
    def describe(self) -> Descriptor:
        return Descriptor("{{name}}", "0.1.0", 10_000, FIELDS)

    def init(self, config: List[Tuple[str, str]]) -> None:
        if config:
            raise Err("unknown config keys: " + ", ".join(k for k, _ in config))

    def collect(self) -> List[Sample]:
        try:
            with open("/proc/uptime") as f:
                seconds = float(f.read().split()[0])
        except (OSError, ValueError, IndexError) as e:
            raise Err(f"reading /proc/uptime: {e}")
        # Inside the manifest's `usage` grant; an error raises Err(reason).
        root = filesystem.usage("/")
        numbers = [Number(UPTIME, seconds), Number(ROOT_AVAILABLE, float(root.available_bytes))]
        return [Sample(labels=[], numbers=numbers, texts=[])]
