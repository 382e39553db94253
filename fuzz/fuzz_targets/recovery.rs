//! Store and spool recovery: a segment of real store records (some in the
//! first record framing, without the sync marker), damaged by flips,
//! overwrites, insertions and cuts, read back by the store's recovery.
//!
//! - Nothing panics, and the result agrees with a naive model of the
//!   scanner (`src/records.rs`) unless the search gave up at its budget.
//! - Unless the damage forged a record (the model finds one anywhere but
//!   at the start of an untouched record), every record the damage did not
//!   touch is read back, in order, and nothing else.
//!
//! The spool uses the same scanner; `spool_recovery` opens a damaged spool
//! through the agent's own code.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wasmtap_protocol::message::{Batch, Sample, Value};
use wasmtap_protocol::record;
use wasmtap_protocol_fuzz::damage::{self, Op, Span};
use wasmtap_protocol_fuzz::records as model;
use wasmtap_proxy::store::recover::recover;
use wasmtap_proxy::store::{MAX_RECORD, StoredBatch, format};

#[derive(Debug, Arbitrary)]
enum ValueSpec {
    Gauge(f64),
    Counter(f64),
    Text(String),
}

#[derive(Debug, Arbitrary)]
struct SampleSpec {
    collector: String,
    labels: Vec<(String, String)>,
    time_ms: u64,
    values: Vec<(String, ValueSpec)>,
}

#[derive(Debug, Arbitrary)]
struct RecordSpec {
    agent: String,
    seq: u64,
    received_ms: u64,
    legacy: bool,
    samples: Vec<SampleSpec>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    records: Vec<RecordSpec>,
    ops: Vec<Op>,
}

fn stored(spec: RecordSpec) -> StoredBatch {
    let samples = spec
        .samples
        .into_iter()
        .take(8)
        .map(|SampleSpec { collector, labels, time_ms, values }| Sample {
            collector: collector.into(),
            time_ms,
            labels: labels.into(),
            values: values
                .into_iter()
                .map(|(name, v)| {
                    let v = match v {
                        ValueSpec::Gauge(x) => Value::Gauge(x),
                        ValueSpec::Counter(x) => Value::Counter(x),
                        ValueSpec::Text(t) => Value::Text(t),
                    };
                    (name.into(), v)
                })
                .collect(),
        })
        .collect();
    StoredBatch {
        agent: spec.agent,
        session: 1,
        received_ms: spec.received_ms,
        batch: Batch { seq: spec.seq, samples },
    }
}

fn encoded(r: &StoredBatch) -> Vec<u8> {
    let mut out = Vec::new();
    format::encode(r, &mut out);
    out
}

fuzz_target!(|input: Input| {
    let mut bytes = Vec::new();
    let mut spans = Vec::new();
    let mut records = Vec::new();
    let mut legacy = false;
    for spec in input.records.into_iter().take(16) {
        let is_legacy = spec.legacy;
        let r = stored(spec);
        let start = bytes.len();
        if is_legacy {
            let payload = encoded(&r);
            bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
            bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
            bytes.extend_from_slice(&payload);
            legacy = true;
        } else {
            record::append_with(&mut bytes, |out| format::encode(&r, out));
        }
        spans.push(Span::new(start, bytes.len()));
        records.push(r);
    }
    damage::apply(&mut bytes, &mut spans, |s| s, input.ops.into_iter().take(8));

    let got = recover(&bytes);
    if !got.gave_up {
        // The model's records, decoded until the first that does not decode.
        let model::Scanned { records: m_records, damaged: m_damaged, valid_len: m_valid } =
            model::scan(&bytes, MAX_RECORD);
        let mut decoded = Vec::new();
        let mut stop = None;
        for (offset, payload) in &m_records {
            match format::decode(payload) {
                Ok(r) => decoded.push(encoded(&r)),
                Err(_) => {
                    stop = Some(*offset);
                    break;
                }
            }
        }
        let got_records: Vec<Vec<u8>> = got.records.iter().map(encoded).collect();
        assert_eq!(got_records, decoded, "records differ from the model");
        assert_eq!(got.unreadable.is_some(), stop.is_some());
        match stop {
            Some(offset) => {
                assert_eq!(got.valid_len, offset);
                let before: Vec<_> =
                    m_damaged.iter().filter(|d| d.offset < offset).copied().collect();
                assert_eq!(got.damaged, before);
            }
            None => {
                assert_eq!(got.valid_len, m_valid);
                assert_eq!(got.damaged, m_damaged);
            }
        }
    }

    // Did the damage forge a record (one the model finds anywhere but at
    // the start of an untouched record)? Otherwise nothing untouched may
    // be lost. Records in the first framing can only be skipped by their
    // length, so damage to one may cost the ones after it: not checked.
    let alive: Vec<usize> = spans.iter().filter(|s| s.alive).map(|s| s.start).collect();
    let m_records = model::scan(&bytes, MAX_RECORD).records;
    if legacy || got.gave_up || m_records.iter().any(|(offset, _)| !alive.contains(offset)) {
        return;
    }
    assert!(got.unreadable.is_none(), "{:?}", got.unreadable);
    let expected: Vec<Vec<u8>> =
        records.iter().zip(&spans).filter(|(_, s)| s.alive).map(|(r, _)| encoded(r)).collect();
    let got_records: Vec<Vec<u8>> = got.records.iter().map(encoded).collect();
    assert_eq!(got_records, expected, "an undamaged record was lost");
});
