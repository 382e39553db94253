//! Compressed store segments: batches made from arbitrary samples are
//! turned into a block, the block and its index are damaged by flips,
//! overwrites and cuts, then read back every way the proxy reads them.
//!
//! - Undamaged, every batch is rebuilt bit for bit and the index read
//!   from its bytes equals the one written.
//! - Damaged, nothing panics: loading the block, rebuilding every batch,
//!   rebuilding the index, reading each chunk's columns, reading the index
//!   file.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use wasmtap_protocol::message::{self, Batch, Sample, Value};
use wasmtap_proxy::store::block::load::Block;
use wasmtap_proxy::store::block::{Builder, Index, chunk};
use wasmtap_proxy::store::{StoredBatch, format};

#[derive(Debug, Arbitrary)]
enum ValueSpec {
    Gauge(f64),
    Counter(i32, u8),
    Text(String),
}

#[derive(Debug, Arbitrary)]
struct SampleSpec {
    collector: u8,
    label: u8,
    time_ms: u64,
    values: Vec<(u8, ValueSpec)>,
}

#[derive(Debug, Arbitrary)]
struct Input {
    batches: Vec<(u8, Vec<SampleSpec>)>,
    flips: Vec<(u16, u8)>,
    cut: Option<u16>,
    index_flips: Vec<(u16, u8)>,
}

fn stored(i: usize, agent: u8, samples: Vec<SampleSpec>) -> StoredBatch {
    let samples = samples
        .into_iter()
        .take(12)
        .map(|s| Sample {
            collector: format!("c{}", s.collector % 3).into(),
            time_ms: s.time_ms,
            labels: vec![("l".to_owned(), (s.label % 4).to_string())].into(),
            values: s
                .values
                .into_iter()
                .take(4)
                .map(|(name, v)| {
                    let v = match v {
                        ValueSpec::Gauge(x) => Value::Gauge(x),
                        ValueSpec::Counter(m, e) => Value::Counter(f64::from(m) / 10f64.powi(i32::from(e % 4))),
                        ValueSpec::Text(t) => Value::Text(t),
                    };
                    (format!("f{}", name % 3).into(), v)
                })
                .collect(),
        })
        .collect();
    StoredBatch {
        agent: format!("a{}", agent % 3),
        session: 1,
        received_ms: i as u64,
        batch: Batch { seq: i as u64, samples },
    }
}

fuzz_target!(|input: Input| {
    let records: Vec<StoredBatch> =
        input.batches.into_iter().take(24).enumerate().map(|(i, (a, s))| stored(i, a, s)).collect();
    let mut builder = Builder::new(7);
    for (i, r) in records.iter().enumerate() {
        let mut payload = Vec::new();
        format::encode(r, &mut payload);
        let at = i as u64 * 10;
        builder.add(at..at + 10, &payload).expect("a record of the current format");
    }
    let (mut bytes, index) = builder.finish(records.len() as u64 * 10);
    let index_bytes = index.to_bytes();
    assert_eq!(Index::from_bytes(&index_bytes), Ok(index.clone()));

    let damaged = !input.flips.is_empty() || input.cut.is_some();
    for (at, mask) in input.flips.into_iter().take(8) {
        if !bytes.is_empty() && mask != 0 {
            let i = usize::from(at) % bytes.len();
            bytes[i] ^= mask;
        }
    }
    if let Some(at) = input.cut {
        bytes.truncate(usize::from(at) % (bytes.len() + 1));
    }
    if let Ok((scanned, _)) = Index::from_block(7, &bytes) {
        for c in &scanned.chunks {
            let start = c.offset as usize + wasmtap_protocol::record::OVERHEAD;
            let Some(payload) = bytes.get(start..(c.offset + c.len) as usize) else { continue };
            let Ok(parsed) = chunk::parse(payload) else { continue };
            let Ok(raw) = parsed.inflate(payload) else { continue };
            let mut cursor = chunk::Cursor::new(&parsed, |_| true);
            let mut values = Vec::new();
            while let Ok(Some(_)) = cursor.next(&raw, &parsed.def.fields, &mut values) {}
        }
    }
    if let Ok(mut block) = Block::load(7, bytes) {
        for k in 0..block.batches() {
            let back = block.rebuild(k);
            if !damaged {
                let back = back.expect("readable").expect("intact").record;
                assert_eq!(message::encode(&back), message::encode(&records[k]), "batch {k}");
            }
        }
    } else {
        assert!(damaged, "an undamaged block loads");
    }

    let mut idx = index_bytes;
    for (at, mask) in input.index_flips.into_iter().take(4) {
        if !idx.is_empty() {
            let i = usize::from(at) % idx.len();
            idx[i] ^= mask;
        }
    }
    let _ = Index::from_bytes(&idx);
});
