use std::io::Write as _;

use wasmtap_protocol::message::{Batch, Sample, Value};

use super::*;
use crate::store::{Fsync, StoreConfig};

fn project() -> ProjectId {
    ProjectId::new("demo").expect("valid")
}

fn record(seq: u64) -> StoredBatch {
    StoredBatch {
        agent: "a".into(),
        session: 1,
        received_ms: 5,
        batch: Batch {
            seq,
            samples: vec![Sample {
                collector: "load".into(),
                time_ms: seq,
                labels: vec![].into(),
                values: vec![("load1".into(), Value::Gauge(0.5))],
            }],
        },
    }
}

/// A store whose segments close after about three records.
fn store(dir: &Path) -> Store {
    let config = StoreConfig { fsync: Fsync::Off, segment_bytes: 200, retention: None };
    Store::open_with(dir, config).expect("open")
}

fn append(store: &Store, seqs: std::ops::RangeInclusive<u64>) {
    for seq in seqs {
        store.append(&project(), record(seq)).expect("append");
    }
}

/// Reads until the tail has nothing more; the sequence numbers read.
fn drain(tail: &mut Tail) -> Vec<u64> {
    let mut out = Vec::new();
    loop {
        let read = tail.read(150).expect("read");
        out.extend(read.entries.iter().map(|e| e.record.batch.seq));
        if read.complete && read.entries.is_empty() {
            return out;
        }
    }
}

fn segment_files(dir: &Path) -> Vec<PathBuf> {
    segments(&dir.join("demo")).expect("list").into_iter().map(|(_, p)| p).collect()
}

/// The sequence numbers in a segment file.
fn seqs_in(path: &Path) -> Vec<u64> {
    let bytes = std::fs::read(path).expect("read");
    let records = record::scan(&bytes, MAX_RECORD);
    records.map(|(_, p)| crate::store::format::decode(p).expect("decode").batch.seq).collect()
}

#[test]
fn reads_every_record_across_segments_in_order_and_goes_on_from_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    append(&store, 1..=20);
    assert!(segment_files(dir.path()).len() > 3, "several segments");
    let mut tail = Tail::new(&store, BTreeMap::new());
    assert_eq!(drain(&mut tail), (1..=20).collect::<Vec<_>>());
    append(&store, 21..=25);
    assert_eq!(drain(&mut tail), (21..=25).collect::<Vec<_>>());
    // A reader at the position this one reached reads only what follows.
    let mut later = Tail::new(&store, tail.positions().clone());
    append(&store, 26..=26);
    assert_eq!(drain(&mut later), [26]);
    assert_eq!(tail.skipped, Skipped::default());
    let mut from_now = Tail::at_end(&store).expect("at end");
    append(&store, 27..=28);
    assert_eq!(drain(&mut from_now), [27, 28]);
}

#[test]
fn damage_in_a_closed_segment_costs_only_the_damaged_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    append(&store, 1..=12);
    let first = &segment_files(dir.path())[0];
    let mut bytes = std::fs::read(first).expect("read");
    // Records of these sizes are all as long as the first.
    let one =
        record::HEADER + u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    assert!(bytes.len() >= 3 * one, "three records or more in the first segment");
    bytes[one + 3] ^= 0x10; // the second record's length
    std::fs::write(first, &bytes).expect("write");
    let mut tail = Tail::new(&store, BTreeMap::new());
    let read = drain(&mut tail);
    assert_eq!(read, [1].into_iter().chain(3..=12).collect::<Vec<_>>());
    assert_eq!(tail.skipped.corrupt_bytes, one as u64);
}

#[test]
fn segments_deleted_by_retention_are_passed_over_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    append(&store, 1..=3);
    let mut tail = Tail::new(&store, BTreeMap::new());
    assert_eq!(drain(&mut tail), [1, 2, 3]);
    append(&store, 4..=30);
    let files = segment_files(dir.path());
    assert!(files.len() >= 4, "{files:?}");
    let mut expected: Vec<u64> = (4..=30).collect();
    for f in &files[1..3] {
        let gone = seqs_in(f);
        expected.retain(|s| !gone.contains(s));
        std::fs::remove_file(f).expect("rm");
    }
    assert_eq!(drain(&mut tail), expected);
    assert_eq!(tail.skipped.expired_segments, 2);
}

#[test]
fn a_torn_tail_is_left_to_the_writer_and_what_it_writes_there_is_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    append(&store(dir.path()), 1..=2);
    let last = segment_files(dir.path()).pop().expect("a segment");
    let mut f = std::fs::OpenOptions::new().append(true).open(&last).expect("open");
    f.write_all(&[40, 0, 0, 0, 1, 2, 3]).expect("half a record");
    drop(f);
    let store = store(dir.path());
    let mut tail = Tail::new(&store, BTreeMap::new());
    let mut from_now = Tail::at_end(&store).expect("at end");
    assert_eq!(drain(&mut tail), [1, 2]);
    assert_eq!(drain(&mut from_now), Vec::<u64>::new());
    // The writer cuts the torn record off and writes in its place.
    append(&store, 3..=3);
    assert_eq!(drain(&mut tail), [3]);
    assert_eq!(drain(&mut from_now), [3]);
    assert_eq!(tail.skipped, Skipped::default());
}

#[test]
fn since_reads_from_recent_segments_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    append(&store, 1..=4);
    let mut all = Tail::since(&store, 0).expect("since");
    assert_eq!(drain(&mut all), [1, 2, 3, 4]);
    let mut none = Tail::since(&store, crate::now_ms() + 3_600_000).expect("since");
    assert_eq!(drain(&mut none), Vec::<u64>::new());
}
