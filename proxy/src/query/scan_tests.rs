//! Queries over compressed and row segments find exactly what a plain
//! filter over every stored batch finds, and skip what they need not read.

use std::collections::BTreeMap;

use wasmtap_protocol::access_key::ProjectId;
use wasmtap_protocol::message::{Batch, Sample, Value};

use super::Filter;
use super::scan::{self, Found, Stats};
use crate::display;
use crate::store::{Fsync, Store, StoreConfig, StoredBatch};
use crate::tail::Tail;

const T0: u64 = 1_795_651_200_000;

fn batch(agent: &str, seq: u64) -> StoredBatch {
    let t = T0 + seq * 1_000;
    let cpu = |c: u64| Sample {
        collector: "cpu".into(),
        time_ms: t,
        labels: vec![("cpu".into(), c.to_string()), ("host".into(), agent.into())].into(),
        values: vec![
            ("user".into(), Value::Gauge((seq * 3 + c) as f64 / 100.0)),
            ("ticks".into(), Value::Counter((seq * 100 + c) as f64)),
        ],
    };
    let os = Sample {
        collector: "os".into(),
        time_ms: t + 1,
        labels: vec![].into(),
        values: vec![("kernel".into(), Value::Text(format!("6.{}", seq / 10)))],
    };
    StoredBatch {
        agent: agent.into(),
        session: 1,
        received_ms: t,
        batch: Batch { seq, samples: vec![cpu(0), os, cpu(1)] },
    }
}

fn project() -> ProjectId {
    ProjectId::new("demo").expect("valid")
}

/// A store with compressed segments and a row segment being written.
fn store(dir: &std::path::Path) -> Store {
    let config = StoreConfig {
        fsync: Fsync::Off,
        segment_bytes: 2_000,
        retention: None,
        compress: true,
        ..StoreConfig::default()
    };
    let store = Store::open_with(dir, config).expect("open");
    for seq in 1..=60 {
        for agent in ["a", "b"] {
            store.append(&project(), batch(agent, seq)).expect("append");
        }
    }
    store.settle();
    store
}

fn run(dir: &std::path::Path, filter: &Filter) -> (Vec<String>, Stats) {
    let mut out = Vec::new();
    let mut emit = |f: &Found<'_>| {
        display::write_json_lines(f, &mut out);
        Ok(())
    };
    let stats = scan::projects(dir, &[project()], filter, None, &mut emit).expect("query");
    let mut lines: Vec<String> =
        String::from_utf8(out).expect("utf-8").lines().map(str::to_owned).collect();
    lines.sort();
    (lines, stats)
}

/// What a plain filter over every batch finds.
fn plain(store: &Store, filter: &Filter) -> Vec<String> {
    let mut tail = Tail::new(store, BTreeMap::new());
    let mut lines = Vec::new();
    loop {
        let read = tail.read(1 << 20).expect("read");
        let done = read.complete && read.entries.is_empty();
        for e in read.entries {
            let r = &e.record;
            for s in r.batch.samples.iter().filter(|s| filter.sample(&r.agent, s)) {
                let kept = filter.values(s);
                for l in display::json_lines("demo", &r.agent, r.batch.seq, &kept) {
                    lines.push(l.to_string());
                }
            }
        }
        if done {
            lines.sort();
            return lines;
        }
    }
}

#[test]
fn queries_find_exactly_what_a_plain_filter_finds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    let list = crate::store::catalog::list(&dir.path().join("demo")).expect("list");
    assert!(list.iter().filter(|s| s.block).count() >= 3, "{list:?}");
    assert!(list.last().is_some_and(|s| s.rows), "the newest is rows");
    let label = |k: &str, v: &str| (k.to_owned(), v.to_owned());
    let filters = [
        Filter::default(),
        Filter { agent: Some("b".into()), ..Filter::default() },
        Filter { collector: Some("os".into()), ..Filter::default() },
        Filter { labels: vec![label("cpu", "1")], field: Some("user".into()), ..Filter::default() },
        Filter { field: Some("ticks".into()), agent: Some("a".into()), ..Filter::default() },
        Filter { since_ms: Some(T0 + 20_000), until_ms: Some(T0 + 31_000), ..Filter::default() },
        Filter { field: Some("nothing".into()), ..Filter::default() },
        Filter { labels: vec![label("host", "a"), label("cpu", "0")], ..Filter::default() },
    ];
    for f in &filters {
        let (lines, _) = run(dir.path(), f);
        assert_eq!(lines, plain(&store, f), "{f:?}");
    }
    let (all, _) = run(dir.path(), &Filter::default());
    assert_eq!(all.len(), 60 * 2 * 5);
}

#[test]
fn segments_and_chunks_outside_the_filter_are_not_read() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _store = store(dir.path());
    let (_, all) = run(dir.path(), &Filter::default());
    assert_eq!(all.skipped, 0);
    let early = Filter { until_ms: Some(T0 + 3_000), ..Filter::default() };
    let (lines, stats) = run(dir.path(), &early);
    assert_eq!(lines.len(), 2 * 2 * 5);
    assert!(stats.skipped >= all.segments - 2, "{stats:?} of {all:?}");
    let one = Filter {
        agent: Some("a".into()),
        labels: vec![("cpu".into(), "0".into())],
        field: Some("user".into()),
        ..Filter::default()
    };
    let (lines, stats) = run(dir.path(), &one);
    assert_eq!(lines.len(), 60);
    // One chunk per compressed segment: the one series asked for.
    assert_eq!(stats.chunks, all.segments - 1, "{stats:?}");
}

#[test]
fn a_record_being_written_at_the_end_is_not_read_and_not_called_damage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = store(dir.path());
    let (before, _) = run(dir.path(), &Filter::default());
    let newest = crate::store::catalog::list(&dir.path().join("demo"))
        .expect("list")
        .pop()
        .expect("a segment");
    let path = crate::store::catalog::row_path(&dir.path().join("demo"), newest.id);
    let mut half = Vec::new();
    wasmtap_protocol::record::append_with(&mut half, |out| {
        crate::store::format::encode(&batch("a", 61), out)
    });
    half.truncate(half.len() / 2);
    let mut f = std::fs::OpenOptions::new().append(true).open(&path).expect("open");
    std::io::Write::write_all(&mut f, &half).expect("write");
    let (after, stats) = run(dir.path(), &Filter::default());
    assert_eq!(after, before);
    assert_eq!(stats.damaged, 0);
    drop(store);
}
