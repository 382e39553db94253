//! A block rebuilds every batch bit for bit; damage costs only the record it hits.

use proptest::prelude::*;
use wasmtap_protocol::message::{self, Batch, Sample, Value};
use wasmtap_protocol::record::{self, OVERHEAD};

use super::load::Block;
use super::*;
use crate::store::StoredBatch;

fn sample(collector: &str, label: &str, time_ms: u64, values: Vec<(&str, Value)>) -> Sample {
    Sample {
        collector: collector.into(),
        time_ms,
        labels: vec![("cpu".to_owned(), label.to_owned())].into(),
        values: values.into_iter().map(|(n, v)| (n.into(), v)).collect(),
    }
}

/// Batches of two agents: cpu per core (gauge, counter), an `os` text
/// now and then, a load average with a NaN.
fn batches(n: u64) -> Vec<StoredBatch> {
    (0..n)
        .map(|i| {
            let t = 1_795_651_200_000 + i * 1_000;
            let mut samples: Vec<Sample> = (0..4)
                .map(|c| {
                    sample(
                        "cpu",
                        &c.to_string(),
                        t,
                        vec![
                            ("user", Value::Gauge((i * 7 + c) as f64 / 100.0)),
                            ("ticks", Value::Counter((i * 1_000 + c) as f64)),
                        ],
                    )
                })
                .collect();
            if i % 3 == 0 {
                samples.push(sample(
                    "os",
                    "-",
                    t + 1,
                    vec![("kernel", Value::Text(format!("6.{}", i / 6)))],
                ));
            }
            let load = if i == 5 { f64::NAN } else { i as f64 / 3.0 };
            samples.insert(1, sample("load", "-", t + 2, vec![("load1", Value::Gauge(load))]));
            StoredBatch {
                agent: if i % 2 == 0 { "web-1".into() } else { "web-2".into() },
                session: 7,
                received_ms: t + 50,
                batch: Batch { seq: i / 2 + 1, samples },
            }
        })
        .collect()
}

/// The block of `records` with made-up row positions of 100 bytes each.
fn build(records: &[StoredBatch]) -> (Vec<u8>, Index) {
    let mut b = Builder::new(3);
    for (i, r) in records.iter().enumerate() {
        let at = i as u64 * 100;
        let mut payload = Vec::new();
        crate::store::format::encode(r, &mut payload);
        b.add(at..at + 100, &payload).expect("a record");
    }
    b.finish(records.len() as u64 * 100)
}

fn rebuilt(block: &mut Block) -> Vec<Option<(StoredBatch, u64)>> {
    (0..block.batches())
        .map(|k| block.rebuild(k).expect("readable").map(|r| (r.record, r.lost)))
        .collect()
}

/// Compared as postcard bytes, so NaNs compare bit for bit.
fn same(a: &StoredBatch, b: &StoredBatch) -> bool {
    message::encode(a) == message::encode(b)
}

#[test]
fn every_batch_is_rebuilt_exactly_and_the_index_matches_the_block() {
    let records = batches(40);
    let (bytes, index) = build(&records);
    let (rebuilt_index, damaged) = Index::from_block(3, &bytes).expect("scan");
    assert!(damaged.is_empty());
    assert_eq!(rebuilt_index, index);
    assert_eq!(Index::from_bytes(&index.to_bytes()), Ok(index.clone()));
    let h = index.header;
    assert_eq!((h.segment, h.row_len, h.batches, h.series), (3, 4_000, 40, 2 * 6));
    assert_eq!(h.values, records.iter().map(crate::store::numeric_values).sum::<u64>());
    let mut block = Block::load(3, bytes).expect("load");
    for (r, back) in records.iter().zip(rebuilt(&mut block)) {
        let (back, lost) = back.expect("intact");
        assert_eq!(lost, 0);
        assert!(same(r, &back), "{r:?}\n{back:?}");
    }
    // From the middle, and back again.
    assert_eq!(block.batch_at(1_050), 11);
    let again = block.rebuild(11).expect("read").expect("intact");
    assert!(same(&records[11], &again.record));
    assert_eq!(again.rows, 1_100..1_200);
    let first = block.rebuild(0).expect("read").expect("intact");
    assert!(same(&records[0], &first.record));
}

#[test]
fn a_damaged_chunk_costs_only_its_samples() {
    let records = batches(40);
    let (mut bytes, index) = build(&records);
    // The load series of web-1 (load is the second sample of each batch).
    let victim = index
        .chunks
        .iter()
        .find(|c| c.def.collector == "load" && c.def.agent == "web-1")
        .expect("chunk");
    bytes[(victim.offset + victim.len / 2) as usize] ^= 0x20;
    let (scanned, damaged) = Index::from_block(3, &bytes).expect("scan");
    assert_eq!(damaged.len(), 1);
    assert_eq!(scanned.chunks.len(), index.chunks.len() - 1);
    let mut block = Block::load(3, bytes).expect("load");
    for (r, back) in records.iter().zip(rebuilt(&mut block)) {
        let (back, lost) = back.expect("table intact");
        let mut expect = r.clone();
        if r.agent == "web-1" {
            expect.batch.samples.remove(1);
            assert_eq!(lost, 1);
        }
        assert!(same(&expect, &back), "{expect:?}\n{back:?}");
    }
}

#[test]
fn a_damaged_table_part_costs_its_batches_and_a_damaged_header_is_recomputed() {
    let records = batches(40);
    let (mut bytes, index) = build(&records);
    let table = index.tables[0];
    bytes[(table.offset + table.len - 1) as usize] ^= 1;
    bytes[OVERHEAD + 2] ^= 1; // inside the header record
    let (scanned, _) = Index::from_block(3, &bytes).expect("scan");
    let mut expect = index.header;
    // Without the table, the rows and arrival times are unknown.
    (expect.row_len, expect.newest_received, expect.batches) = (0, 0, 0);
    assert_eq!(scanned.header, expect);
    let mut block = Block::load(3, bytes).expect("load");
    assert!(rebuilt(&mut block).iter().all(Option::is_none));
}

#[test]
fn an_index_that_is_damaged_is_refused() {
    let (_, index) = build(&batches(5));
    let mut bytes = index.to_bytes();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 4;
    assert!(Index::from_bytes(&bytes).is_err());
    assert!(Index::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    let mut longer = index.to_bytes();
    record::encode(b"x", &mut longer);
    assert!(Index::from_bytes(&longer).is_err());
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<f64>().prop_map(Value::Gauge),
        (-10_000i64..10_000).prop_map(|m| Value::Counter(m as f64 / 100.0)),
        ".{0,6}".prop_map(Value::Text),
    ]
}

proptest! {
    #[test]
    fn any_batches_round_trip_bit_for_bit(
        raw in prop::collection::vec((
            prop_oneof![Just("a"), Just("b")],
            prop::collection::vec((
                prop_oneof![Just("cpu"), Just("disk")],
                prop_oneof![Just("0"), Just("1")],
                any::<u64>(),
                prop::collection::vec((prop_oneof![Just("x"), Just("y")], value()), 0..3),
            ), 0..12),
        ), 0..30),
    ) {
        let records: Vec<StoredBatch> = raw.into_iter().enumerate().map(|(i, (agent, samples))| StoredBatch {
            agent: agent.into(),
            session: i as u64,
            received_ms: i as u64 * 13,
            batch: Batch {
                seq: i as u64,
                samples: samples.into_iter().map(|(c, l, t, v)| sample(c, l, t, v)).collect(),
            },
        }).collect();
        let (bytes, index) = build(&records);
        prop_assert_eq!(Index::from_block(3, &bytes).expect("scan").0, index);
        let mut block = Block::load(3, bytes).expect("load");
        for (r, back) in records.iter().zip(rebuilt(&mut block)) {
            let (back, lost) = back.expect("intact");
            prop_assert_eq!(lost, 0);
            prop_assert!(same(r, &back));
        }
    }
}

#[test]
fn a_chunk_that_does_not_add_up_is_an_error_never_a_panic() {
    let (bytes, index) = build(&batches(12));
    let c = &index.chunks[0];
    let payload = &bytes[(c.offset as usize + OVERHEAD)..(c.offset + c.len) as usize];
    let kinds = super::chunk::parse(payload).expect("chunk").def.fields;
    for i in 0..payload.len() {
        for bit in [0x01, 0x10, 0x80] {
            let mut p = payload.to_vec();
            p[i] ^= bit;
            let Ok(chunk) = super::chunk::parse(&p) else { continue };
            let Ok(raw) = chunk.inflate(&p) else { continue };
            let mut cursor = super::chunk::Cursor::new(&chunk, |_| true);
            let mut values = Vec::new();
            while let Ok(Some(_)) = cursor.next(&raw, &kinds, &mut values) {}
        }
    }
}

/// The kind byte of every chunk record in `bytes`.
fn chunk_kinds(bytes: &[u8], index: &Index) -> Vec<u8> {
    index.chunks.iter().map(|c| bytes[c.offset as usize + OVERHEAD]).collect()
}

#[test]
fn a_block_whose_chunks_deflate_each_column_on_its_own_still_reads() {
    // The block of `batches(40)` as the proxy wrote it before chunks were
    // compressed with zstd.
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/block-columns/003.blk");
    let old = std::fs::read(&path).expect("fixture");
    let (index, damaged) = Index::from_block(3, &old).expect("scan");
    assert!(damaged.is_empty());
    let kinds = chunk_kinds(&old, &index);
    assert!(!kinds.is_empty() && kinds.iter().all(|k| *k == chunk::KIND_DEFLATE), "{kinds:?}");
    let records = batches(40);
    let mut block = Block::load(3, old.clone()).expect("load");
    for (r, back) in records.iter().zip(rebuilt(&mut block)) {
        let (back, lost) = back.expect("intact");
        assert_eq!(lost, 0);
        assert!(same(r, &back), "{r:?}\n{back:?}");
    }

    // Today's block of the same batches has zstd chunks.
    let (new, index) = build(&records);
    assert!(chunk_kinds(&new, &index).iter().all(|k| *k == chunk::KIND));
}

#[test]
fn an_index_read_by_selection_keeps_only_the_wanted_chunks() {
    use super::chunk::SeriesView;
    use super::index::Select;
    struct Load;
    impl Select for Load {
        fn block(&self, _: &Header) -> bool {
            true
        }
        fn chunk(&self, s: &SeriesView<'_>, _: u64, _: u64) -> bool {
            s.collector == "load" && s.labels().eq([("cpu", "-")]) && s.field_names().eq(["load1"])
        }
    }
    struct Nothing;
    impl Select for Nothing {
        fn block(&self, _: &Header) -> bool {
            false
        }
        fn chunk(&self, _: &SeriesView<'_>, _: u64, _: u64) -> bool {
            unreachable!("no entry is read once the block is not wanted")
        }
    }
    let (_, index) = build(&batches(40));
    let bytes = index.to_bytes();
    let load = Index::from_bytes_where(&bytes, &Load).expect("reads");
    let expected: Vec<_> = index.chunks.iter().filter(|c| c.def.collector == "load").collect();
    assert_eq!(expected.len(), 2, "one series of `load` per agent");
    assert_eq!(
        load.chunks.iter().collect::<Vec<_>>(),
        expected,
        "the same entries, defined the same"
    );
    assert_eq!((load.header, load.tables.clone()), (index.header, index.tables.clone()));
    let none = Index::from_bytes_where(&bytes, &Nothing).expect("reads");
    assert!(none.chunks.is_empty() && none.header == index.header);
    // Damage is found in entries that are not kept, too.
    let mut cut = bytes.clone();
    cut.truncate(bytes.len() - 3);
    assert!(Index::from_bytes_where(&cut, &Load).is_err());
}
