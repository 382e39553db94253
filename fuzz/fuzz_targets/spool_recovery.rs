//! The agent's spool recovery, through its public API: segment files of
//! batch and acknowledgement records as the agent writes them (each
//! segment one run: consecutive sequence numbers), records of a kind no
//! version writes, and wholly arbitrary segments, damaged by flips,
//! overwrites, insertions and cuts, then opened with `Spool::open`.
//!
//! Always: opening succeeds without a panic; every pending batch reads
//! back (`Spool::get`) as a batch with its own sequence number; the spool
//! then takes a new batch and an acknowledgement of everything, and opens
//! again with nothing pending.
//!
//! Unless the damage forged a record (the scanner model finds one
//! anywhere but at the start of an untouched record) or the scanner gave
//! up its search: the pending counters agree with what reads back; the
//! pending batches are exactly the untouched batches
//! beyond the highest untouched acknowledgement, in order and bit for bit;
//! and if damage destroyed an unacknowledged batch and left a trace of it
//! anywhere but in the torn tail of the newest segment, it is counted
//! (`SpoolStats::corrupt_batches`): at least one, exactly the number
//! destroyed between two intact batches of a segment, plus at most one for
//! each other damaged span.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wasmtap_host::spool::Spool;
use wasmtap_protocol::message::{self, Batch, Sample, Value};
use wasmtap_protocol::record;
use wasmtap_protocol_fuzz::damage::{self, Op, Span};
use wasmtap_protocol_fuzz::records as model;

/// The spool's largest record (`MAX_RECORD` in `host/src/spool.rs`).
const MAX_RECORD: u32 = 64 << 20;
const KIND_BATCH: u8 = 1;
const KIND_ACK: u8 = 2;

#[derive(Debug, Arbitrary)]
enum RecordSpec {
    /// The segment's next batch, with these values.
    Batch(Vec<(u16, f64)>),
    /// An acknowledgement `back` below the newest batch so far.
    Ack { back: u8 },
    /// An intact record of a kind no version of the agent writes.
    Foreign { kind: u8, body: Vec<u8> },
}

#[derive(Debug, Arbitrary)]
enum SegmentSpec {
    /// Records as the agent writes them, then damage.
    Records { skip: u8, records: Vec<RecordSpec>, ops: Vec<Op> },
    /// Arbitrary bytes.
    Raw(Vec<u8>),
}

#[derive(Debug, Arbitrary)]
struct Input {
    first_seq: u64,
    segments: Vec<SegmentSpec>,
}

/// What a record in a segment is, and where it lies after the damage.
#[derive(Debug)]
struct Written {
    span: Span,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Batch(Batch),
    Ack(u64),
    Foreign,
}

#[derive(Debug)]
struct Segment {
    bytes: Vec<u8>,
    records: Vec<Written>,
    raw: bool,
}

fn batch(seq: u64, values: Vec<(u16, f64)>) -> Batch {
    let samples = values
        .into_iter()
        .take(4)
        .map(|(t, v)| Sample {
            collector: "c".into(),
            time_ms: u64::from(t),
            labels: vec![("i".to_owned(), t.to_string())].into(),
            values: vec![("v".into(), Value::Gauge(v))],
        })
        .collect();
    Batch { seq, samples }
}

/// Builds one segment from `spec`; `seq` is the sequence number the next
/// batch takes, `newest` the newest batch written so far (for acks).
fn build(spec: SegmentSpec, seq: &mut Option<u64>, newest: &mut Option<u64>) -> Segment {
    let (skip, specs, ops) = match spec {
        SegmentSpec::Raw(bytes) => return Segment { bytes, records: Vec::new(), raw: true },
        SegmentSpec::Records { skip, records, ops } => (skip, records, ops),
    };
    // A new run of the agent continues after the last number, or later.
    *seq = seq.and_then(|s| s.checked_add(u64::from(skip)));
    let (mut bytes, mut records) = (Vec::new(), Vec::new());
    for spec in specs.into_iter().take(12) {
        let start = bytes.len();
        let kind = match spec {
            RecordSpec::Batch(values) => {
                // Past u64::MAX no batch is written.
                let Some(s) = *seq else { continue };
                let b = batch(s, values);
                record::append_with(&mut bytes, |out| {
                    out.push(KIND_BATCH);
                    out.extend_from_slice(&message::encode(&b));
                });
                *newest = Some(s);
                *seq = s.checked_add(1);
                Kind::Batch(b)
            }
            RecordSpec::Ack { back } => {
                let Some(n) = *newest else { continue };
                let acked = n.saturating_sub(u64::from(back));
                let mut payload = vec![KIND_ACK];
                payload.extend_from_slice(&acked.to_le_bytes());
                record::encode(&payload, &mut bytes);
                Kind::Ack(acked)
            }
            RecordSpec::Foreign { kind, body } => {
                // 0 and 0x80.. : kinds no version writes (nor will soon).
                let kind = if kind < 0x80 { 0 } else { kind };
                let mut payload = vec![kind];
                payload.extend(body.into_iter().take(32));
                record::encode(&payload, &mut bytes);
                Kind::Foreign
            }
        };
        records.push(Written { span: Span::new(start, bytes.len()), kind });
    }
    damage::apply(&mut bytes, &mut records, |r| &mut r.span, ops.into_iter().take(6));
    Segment { bytes, records, raw: false }
}

/// Whether the model finds a record anywhere but at the start of an
/// untouched one (the damage forged one), or the real scanner gave up.
fn unpredictable(seg: &Segment) -> bool {
    let mut scan = record::scan(&seg.bytes, MAX_RECORD);
    for _ in scan.by_ref() {}
    if scan.gave_up() {
        return true;
    }
    let m = model::scan(&seg.bytes, MAX_RECORD);
    m.records.iter().any(|(offset, _)| {
        seg.raw || !seg.records.iter().any(|r| r.span.alive && r.span.start == *offset)
    })
}

/// The pending sequence numbers as `next_pending` walks them (stopping
/// where one does not increase, or past `limit` of them).
fn pending(spool: &Spool, limit: u64) -> Vec<u64> {
    let (mut out, mut cursor) = (Vec::new(), None);
    while let Some(seq) = spool.next_pending(cursor) {
        if out.len() as u64 > limit || cursor.is_some_and(|c| seq <= c) {
            break;
        }
        out.push(seq);
        cursor = Some(seq);
    }
    out
}

fuzz_target!(|input: Input| {
    let dir = tempfile::tempdir().expect("tempdir");
    let (mut seq, mut newest) = (Some(input.first_seq), None);
    let segments: Vec<Segment> =
        input.segments.into_iter().take(4).map(|spec| build(spec, &mut seq, &mut newest)).collect();
    for (i, seg) in segments.iter().enumerate() {
        let path = dir.path().join(format!("{:020}.seg", i + 1));
        std::fs::write(path, &seg.bytes).expect("write segment");
    }

    let mut spool = Spool::open(dir.path(), 1 << 30, 1).expect("open");
    let stats = spool.stats();
    let seqs = pending(&spool, stats.pending_batches);
    let mut got = Vec::new();
    for &s in &seqs {
        let b = spool.get(s).expect("read back").expect("pending batch reads back");
        assert_eq!(b.seq, s);
        got.push(b);
    }
    assert_eq!(spool.stats().corrupt_batches, stats.corrupt_batches, "every batch read back");

    if !segments.iter().any(unpredictable) {
        // Every pending batch walked, in order, and the counters agree.
        assert_eq!(seqs.len() as u64, stats.pending_batches, "{seqs:?} {stats:?}");
        let samples: u64 = got.iter().map(|b| b.samples.len() as u64).sum();
        assert_eq!(samples, stats.pending_samples, "{stats:?}");
        let acked = segments
            .iter()
            .flat_map(|s| &s.records)
            .filter_map(|r| match r.kind {
                Kind::Ack(a) if r.span.alive => Some(a),
                _ => None,
            })
            .max()
            .unwrap_or(0);
        let expected: Vec<&Batch> = segments
            .iter()
            .flat_map(|s| &s.records)
            .filter_map(|r| match &r.kind {
                Kind::Batch(b) if r.span.alive && b.seq > acked => Some(b),
                _ => None,
            })
            .collect();
        let got_bytes: Vec<Vec<u8>> = got.iter().map(|b| message::encode(&**b)).collect();
        let expected_bytes: Vec<Vec<u8>> = expected.iter().map(|b| message::encode(*b)).collect();
        assert_eq!(got_bytes, expected_bytes, "pending batches differ from the untouched ones");

        // Destroyed unacknowledged batches that left a trace, but those in
        // the newest segment's torn tail (which a crash mid-write leaves too).
        // Damaged spans with an intact batch on one side at most count one
        // each at most; those between two share the loss between them.
        let (mut between, mut destroyed, mut edges) = (0u64, 0u64, 0u64);
        for (i, seg) in segments.iter().enumerate() {
            let scanned = model::scan(&seg.bytes, MAX_RECORD);
            let last = i + 1 == segments.len();
            let tail = if last { scanned.valid_len } else { usize::MAX };
            let mut spans: Vec<usize> = scanned.damaged.iter().map(|d| d.offset).collect();
            spans.extend(seg.records.iter().filter_map(|r| match r.kind {
                Kind::Foreign if r.span.alive => Some(r.span.start),
                _ => None,
            }));
            if !last && scanned.valid_len < seg.bytes.len() {
                spans.push(scanned.valid_len);
            }
            let intact: Vec<usize> = seg
                .records
                .iter()
                .filter(|r| r.span.alive && matches!(r.kind, Kind::Batch(_)))
                .map(|r| r.span.start)
                .collect();
            let inside =
                |at: usize| intact.iter().any(|&s| s < at) && intact.iter().any(|&s| s > at);
            edges += spans.iter().filter(|&&at| !inside(at)).count() as u64;
            let batches: Vec<(bool, u64, &Written)> = seg
                .records
                .iter()
                .filter_map(|r| match &r.kind {
                    Kind::Batch(b) => Some((r.span.alive, b.seq, r)),
                    _ => None,
                })
                .collect();
            for (j, &(alive, s, r)) in batches.iter().enumerate() {
                // A batch cut off whole leaves nothing to find (a segment
                // may end anywhere between two records).
                if alive || r.span.gone || s <= acked || r.span.start >= tail {
                    continue;
                }
                destroyed += 1;
                let before = batches[..j].iter().any(|b| b.0);
                let after = batches[j + 1..].iter().any(|b| b.0);
                between += u64::from(before && after);
            }
        }
        let counted = stats.corrupt_batches;
        assert!(
            counted >= between,
            "{between} destroyed between intact batches, {counted} counted"
        );
        assert!(
            counted <= between + edges,
            "{counted} counted: more than {between} between intact batches and {edges} other damaged spans"
        );
        assert!(destroyed == 0 || counted > 0, "{destroyed} destroyed, none counted");
    }

    // The spool goes on: a new batch, everything acknowledged, and a
    // reopened spool has nothing pending. (Not where the numbers ran out
    // at u64::MAX, which a stored acknowledgement may already claim: there
    // the spool must only not panic.)
    let next = spool.next_seq();
    let saturated = next == u64::MAX;
    assert!(saturated || seqs.last().is_none_or(|&last| next > last), "{next} after {seqs:?}");
    spool.append(batch(next, vec![(1, 1.0)])).expect("append");
    spool.ack(next).expect("ack");
    assert!(saturated || spool.next_pending(None).is_none(), "{:?}", spool.stats());
    drop(spool);
    let mut spool = Spool::open(dir.path(), 1 << 30, 1).expect("reopen");
    assert!(saturated || spool.next_pending(None).is_none(), "{:?}", spool.stats());
    assert!(saturated || spool.next_seq() > next, "sequence numbers continue");
});
