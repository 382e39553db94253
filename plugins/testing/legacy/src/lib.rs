//! A collector built against `wasmtap:collector@0.1.0` (`wit/v0.1.0`), not
//! the SDK: the agent must keep loading collectors written before 0.2.0.
//! It reports a gauge with many decimals (shipped unrounded: 0.1.0 fields
//! have no precision), a counter that counts its calls in the persisted
//! state, and a text, and logs through the 0.1.0 host import.

wit_bindgen::generate!({ path: "../../../wit/v0.1.0", world: "collector" });

use wasmtap::collector::host::{self, Level};
use wasmtap::collector::types::{Field, FieldKind, Number, Text};

struct Legacy;

fn field(name: &str, kind: FieldKind, unit: &str) -> Field {
    Field { name: name.into(), kind, unit: unit.into(), help: format!("legacy {name}") }
}

impl Guest for Legacy {
    fn describe() -> Descriptor {
        Descriptor {
            name: "legacy".into(),
            version: "0.1.0".into(),
            default_interval_ms: 1000,
            fields: vec![
                field("ratio", FieldKind::Gauge, "percent"),
                field("calls", FieldKind::Counter, ""),
                field("world", FieldKind::Text, ""),
            ],
        }
    }

    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        host::log(Level::Info, "legacy collector ready");
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let calls = host::state_get("calls")
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map_or(0, u64::from_le_bytes)
            + 1;
        host::state_set("calls", &calls.to_le_bytes())?;
        Ok(vec![Sample {
            labels: vec![("from".into(), "v0.1.0".into())],
            numbers: vec![
                Number { field: 0, value: 100.0 / 3.0 },
                Number { field: 1, value: calls as f64 },
            ],
            texts: vec![Text { field: 2, value: "0.1.0".into() }],
        }])
    }
}

export!(Legacy);
