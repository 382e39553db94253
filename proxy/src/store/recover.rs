//! Reading a segment back: intact records, damaged spans skipped (and
//! counted per project for `/metrics`), and the torn tail a crash leaves.

use std::collections::BTreeMap;
use std::sync::{Mutex, PoisonError};

use wasmtap_protocol::access_key::ProjectId;
use wasmtap_protocol::record::{self, Damage};

use super::{MAX_RECORD, StoredBatch, format};
use crate::exposition::{self, Kind};

/// One segment's bytes, read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recovered {
    /// The intact records, in order.
    pub records: Vec<StoredBatch>,
    /// The end of the last intact record.
    pub valid_len: usize,
    /// Spans skipped between intact records.
    pub damaged: Vec<Damage>,
    /// Why an intact record could not be decoded (written by a newer
    /// proxy, say); reading stopped there, and nothing may be cut.
    pub unreadable: Option<String>,
    /// The search for a record after damage stopped at its budget: the
    /// bytes after `valid_len` are not known to be a torn tail.
    pub gave_up: bool,
}

impl Recovered {
    /// Whether the bytes after [`Recovered::valid_len`] are a torn tail
    /// that may be cut off (given `total` bytes were read).
    pub fn torn_tail(&self, total: usize) -> bool {
        self.valid_len < total && self.unreadable.is_none() && !self.gave_up
    }
}

/// Reads `bytes` as a segment: every intact record, skipping damage.
pub fn recover(bytes: &[u8]) -> Recovered {
    let mut out = Recovered::default();
    let mut records = record::scan(bytes, MAX_RECORD);
    while let Some((offset, payload)) = records.next() {
        match format::decode(payload) {
            Ok(r) => out.records.push(r),
            Err(e) => {
                out.unreadable = Some(format!("record at byte {offset}: {e}"));
                out.valid_len = offset;
                out.damaged = records.damaged().to_vec();
                return out;
            }
        }
    }
    out.valid_len = records.valid_len();
    out.damaged = records.damaged().to_vec();
    out.gave_up = records.gave_up();
    out
}

/// A metric family: name, help and which count it shows.
type Family = (&'static str, &'static str, fn(&(u64, u64)) -> u64);

/// Damage found per project since the proxy started.
#[derive(Debug, Default)]
pub struct DamageCounters {
    by_project: Mutex<BTreeMap<ProjectId, (u64, u64)>>,
}

impl DamageCounters {
    /// Counts one damaged span of `bytes` in `project`'s store.
    pub fn add(&self, project: &ProjectId, bytes: usize) {
        let mut map = self.by_project.lock().unwrap_or_else(PoisonError::into_inner);
        let entry = map.entry(project.clone()).or_default();
        entry.0 += 1;
        entry.1 += bytes as u64;
    }

    /// Damaged spans and their bytes in `project`'s store.
    pub fn get(&self, project: &ProjectId) -> (u64, u64) {
        let map = self.by_project.lock().unwrap_or_else(PoisonError::into_inner);
        map.get(project).copied().unwrap_or_default()
    }

    /// The `wasmtap_proxy_store_damaged_*` families, one sample per project
    /// with damage.
    pub fn render(&self, out: &mut exposition::Exposition) {
        let map = self.by_project.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let families: [Family; 2] = [
            (
                "wasmtap_proxy_store_damaged_spans_total",
                "Damaged spans of stored records skipped on reading (each may hold several records).",
                |c| c.0,
            ),
            (
                "wasmtap_proxy_store_damaged_bytes_total",
                "Bytes of the damaged spans skipped.",
                |c| c.1,
            ),
        ];
        for (name, help, get) in families {
            exposition::family(out, name, help, Kind::Counter);
            for (project, counts) in &map {
                let labels = [("project".to_owned(), project.as_str().to_owned())];
                exposition::sample(out, name, &labels, get(counts) as f64, None);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtap_protocol::message::{Batch, Sample, Value};

    fn stored(seq: u64) -> StoredBatch {
        StoredBatch {
            agent: "a".into(),
            session: 1,
            received_ms: 5,
            batch: Batch {
                seq,
                samples: vec![Sample {
                    collector: "load".into(),
                    time_ms: 1,
                    labels: vec![].into(),
                    values: vec![("load1".into(), Value::Gauge(0.5))],
                }],
            },
        }
    }

    #[test]
    fn damage_in_the_middle_costs_only_its_record() {
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for seq in 1..=5 {
            starts.push(bytes.len());
            record::append_with(&mut bytes, |out| format::encode(&stored(seq), out));
        }
        bytes[starts[2] + 20] ^= 0x40;
        let r = recover(&bytes);
        let seqs: Vec<u64> = r.records.iter().map(|r| r.batch.seq).collect();
        assert_eq!(seqs, [1, 2, 4, 5]);
        assert_eq!(r.damaged, [Damage { offset: starts[2], len: starts[3] - starts[2] }]);
        assert!(!r.torn_tail(bytes.len()));
        bytes.truncate(bytes.len() - 3);
        let r = recover(&bytes);
        assert_eq!(r.records.len(), 3);
        assert!(r.torn_tail(bytes.len()));
        assert_eq!(r.valid_len, starts[4]);
    }

    #[test]
    fn counters_render_per_project() {
        let c = DamageCounters::default();
        let p = ProjectId::new("shop").expect("valid");
        c.add(&p, 40);
        c.add(&p, 2);
        assert_eq!(c.get(&p), (2, 42));
        let mut text = crate::exposition::Exposition::new(crate::exposition::Format::Prometheus);
        c.render(&mut text);
        let text = text.finish();
        assert!(
            text.contains("wasmtap_proxy_store_damaged_spans_total{project=\"shop\"} 2.0"),
            "{text}"
        );
        assert!(
            text.contains("wasmtap_proxy_store_damaged_bytes_total{project=\"shop\"} 42.0"),
            "{text}"
        );
    }
}
