use std::io::Write as _;

use wasmtap_protocol::message::{Batch, Sample, Value};

use super::*;
use crate::store::catalog::{self, row_path};
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

/// A store whose segments close after about three records and stay rows.
fn store(dir: &Path) -> Store {
    let config = StoreConfig {
        fsync: Fsync::Off,
        segment_bytes: 200,
        retention: None,
        compress: false,
        ..StoreConfig::default()
    };
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
    let dir = dir.join("demo");
    let list = catalog::list(&dir).expect("list");
    list.into_iter().map(|s| row_path(&dir, s.id)).collect()
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

/// A record of two series, one with a text and a NaN now and then.
fn rich(seq: u64) -> StoredBatch {
    let mut r = record(seq);
    r.batch.samples.push(Sample {
        collector: "cpu".into(),
        time_ms: 1_795_651_200_000 + seq * 1_000,
        labels: vec![("cpu".into(), (seq % 2).to_string())].into(),
        values: vec![
            ("user".into(), Value::Gauge(if seq == 7 { f64::NAN } else { seq as f64 / 10.0 })),
            ("model".into(), Value::Text(format!("m{}", seq / 5))),
        ],
    });
    r
}

/// A store whose closed segments are compressed.
fn compressing(dir: &Path) -> Store {
    let config = StoreConfig {
        fsync: Fsync::Off,
        segment_bytes: 400,
        retention: None,
        compress: true,
        ..StoreConfig::default()
    };
    Store::open_with(dir, config).expect("open")
}

/// Everything a reader returns until it has nothing more.
fn entries(tail: &mut Tail) -> Vec<Entry> {
    let mut out = Vec::new();
    loop {
        let read = tail.read(300).expect("read");
        let done = read.complete && read.entries.is_empty();
        out.extend(read.entries);
        if done {
            return out;
        }
    }
}

/// Entries as comparable bytes (NaNs bit for bit): positions and the batch.
fn bytes_of(entries: &[Entry]) -> Vec<(Position, Position, Vec<u8>)> {
    entries
        .iter()
        .map(|e| (e.start, e.end, wasmtap_protocol::message::encode(&*e.record)))
        .collect()
}

#[test]
fn compressed_segments_read_back_bit_for_bit_from_any_position() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = compressing(dir.path());
    for seq in 1..=30 {
        store.append(&project(), rich(seq)).expect("append");
    }
    let mut before = Tail::new(&store, BTreeMap::new());
    let as_rows = entries(&mut before);
    let written: Vec<Vec<u8>> =
        (1..=30).map(|s| wasmtap_protocol::message::encode(&rich(s))).collect();
    let read: Vec<Vec<u8>> = bytes_of(&as_rows).into_iter().map(|(_, _, b)| b).collect();
    assert_eq!(read, written);
    store.settle();
    let list = catalog::list(&dir.path().join("demo")).expect("list");
    assert!(list.iter().filter(|s| s.block && !s.rows).count() >= 3, "{list:?}");
    let mut after = Tail::new(&store, BTreeMap::new());
    assert_eq!(bytes_of(&entries(&mut after)), bytes_of(&as_rows));
    assert_eq!(after.skipped, Skipped::default());
    // From a position inside a compressed segment.
    let from = as_rows[7].start;
    assert!(list.iter().any(|s| s.id == from.segment && s.block));
    let mut middle = Tail::new(&store, BTreeMap::from([(project(), from)]));
    assert_eq!(bytes_of(&entries(&mut middle)), bytes_of(&as_rows[7..]));
}

#[test]
fn a_reader_inside_a_segment_that_is_then_compressed_goes_on_from_there() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = compressing(dir.path());
    store.append(&project(), rich(1)).expect("append");
    let mut tail = Tail::new(&store, BTreeMap::new());
    let first = entries(&mut tail);
    assert_eq!(first.len(), 1);
    for seq in 2..=20 {
        store.append(&project(), rich(seq)).expect("append");
    }
    store.settle();
    let segment = catalog::list(&dir.path().join("demo")).expect("list")[0];
    assert_eq!((segment.id, segment.rows, segment.block), (1, false, true), "compressed");
    let rest: Vec<u64> = entries(&mut tail).iter().map(|e| e.record.batch.seq).collect();
    assert_eq!(rest, (2..=20).collect::<Vec<_>>());
    assert_eq!(tail.skipped, Skipped::default());
}

#[test]
fn a_damaged_chunk_costs_its_samples_and_expired_blocks_are_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = compressing(dir.path());
    for seq in 1..=30 {
        store.append(&project(), rich(seq)).expect("append");
    }
    store.settle();
    let demo = dir.path().join("demo");
    let blocks: Vec<u64> =
        catalog::list(&demo).expect("list").iter().filter(|s| s.block).map(|s| s.id).collect();
    assert!(blocks.len() >= 3, "{blocks:?}");
    // The cpu chunk of the first block.
    let index = crate::store::blocks::index(&demo, blocks[0]).expect("index").expect("there");
    let cpu = index.chunks.iter().find(|c| c.def.collector == "cpu").expect("cpu chunk");
    let path = catalog::block_path(&demo, blocks[0]);
    let mut bytes = std::fs::read(&path).expect("read");
    bytes[(cpu.offset + cpu.len - 2) as usize] ^= 0x01;
    std::fs::write(&path, &bytes).expect("write");
    let damaged: Vec<u64> = (0..index.header.batches).collect();
    // The second block is deleted, as retention would.
    let lost = crate::store::blocks::index(&demo, blocks[1]).expect("index").expect("there");
    std::fs::remove_file(catalog::block_path(&demo, blocks[1])).expect("rm");
    std::fs::remove_file(catalog::index_path(&demo, blocks[1])).expect("rm");
    let mut tail = Tail::new(&store, BTreeMap::new());
    let got = entries(&mut tail);
    let first_block = damaged.len();
    // The damaged chunk held one cpu series: the batches of the first
    // block with a sample of it come back without that sample.
    let victim = &cpu.def.labels;
    let mut hit = 0;
    for (e, seq) in got[..first_block].iter().zip(1..) {
        let names: Vec<&str> = e.record.batch.samples.iter().map(|s| &*s.collector).collect();
        if rich(seq).batch.samples[1].labels.to_vec() == *victim {
            assert_eq!(names, ["load"], "batch {seq}");
            hit += 1;
        } else {
            assert_eq!(names, ["load", "cpu"], "batch {seq}");
        }
    }
    assert!(hit > 0);
    let expect = 30 - lost.header.batches as usize;
    assert_eq!(got.len(), expect);
    assert!(got[first_block..].iter().all(|e| e.record.batch.samples.len() == 2));
    assert_eq!(tail.skipped.unreadable_records, hit);
    assert_eq!(tail.skipped.expired_segments, 1);
}
