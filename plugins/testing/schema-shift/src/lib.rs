//! Test collector `schema-shift`: `describe` returns different fields on
//! every call. The host reads the schema once, so only the first matters:
//! a gauge `describe_calls` (index 0) and a text `note` (index 1). Later
//! calls return a text at index 0, a counter at index 1 and an extra field,
//! all with other names.
//!
//! `collect` reports, whatever the host kept, a number at index 0 (how many
//! times `describe` ran in this instance: 1 if the host called it once) and
//! a text at index 1. If the host ever adopted a later schema, the number
//! would land on a text field and be dropped.

use std::sync::atomic::{AtomicU32, Ordering};

use wasmtap_collector::bindings::wasmtap::collector::types::{Number, Text};
use wasmtap_collector::{Descriptor, Guest, Sample, Schema};

struct SchemaShift;

static DESCRIBES: AtomicU32 = AtomicU32::new(0);

/// The schema `describe` returns on its `call`-th call (0 for the first).
pub fn schema(call: u32) -> Schema {
    let mut s = Schema::new();
    if call == 0 {
        s.gauge("describe_calls", "calls", "Times describe ran in this instance");
        s.text("note", "What collect saw");
    } else {
        s.text(&format!("shifted_{call}"), "A field from a later describe");
        s.counter(&format!("shifted_{call}_count"), "", "A field from a later describe");
        s.gauge(&format!("extra_{call}"), "", "A field only later describes have");
    }
    s
}

impl Guest for SchemaShift {
    fn describe() -> Descriptor {
        let call = DESCRIBES.fetch_add(1, Ordering::Relaxed);
        schema(call).into_descriptor("schema-shift", env!("CARGO_PKG_VERSION"), 1_000)
    }

    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let calls = DESCRIBES.load(Ordering::Relaxed);
        Ok(vec![Sample {
            labels: Vec::new(),
            numbers: vec![Number { field: 0, value: f64::from(calls) }],
            texts: vec![Text { field: 1, value: format!("describe ran {calls} times") }],
        }])
    }
}

wasmtap_collector::export!(SchemaShift);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_call_differs() {
        let names = |c| schema(c).fields().iter().map(|f| f.name.clone()).collect::<Vec<_>>();
        assert_eq!(names(0), ["describe_calls", "note"]);
        assert_ne!(names(1), names(2));
        assert_ne!(names(0), names(1));
    }
}
