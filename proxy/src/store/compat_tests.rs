//! A store written before segments were compressed (the fixture in
//! `proxy/tests/fixtures/store-v2`) reads as it did, before and after its
//! closed segments are compressed, and a sink resumes from an old position.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use wasmtap_protocol::access_key::ProjectId;

use super::catalog;
use super::{Store, StoreConfig};
use crate::display;
use crate::query::{Filter, scan};
use crate::tail::{Position, Tail};

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/store-v2")
}

/// A copy of the fixture's store in a temporary directory.
fn copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let shop = dir.path().join("shop");
    std::fs::create_dir_all(&shop).expect("mkdir");
    for entry in std::fs::read_dir(fixture().join("shop")).expect("fixture") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, shop.join(path.file_name().expect("name"))).expect("copy");
    }
    dir
}

fn shop() -> ProjectId {
    ProjectId::new("shop").expect("valid")
}

/// `query --json` of the whole project, as lines.
fn query(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut emit = |f: &scan::Found<'_>| {
        display::write_json_lines(f, &mut out);
        Ok(())
    };
    scan::projects(dir, &[shop()], &Filter::default(), None, &mut emit).expect("query");
    String::from_utf8(out).expect("utf-8").lines().map(str::to_owned).collect()
}

fn expected(name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(fixture().join(name)).expect("fixture");
    text.lines().map(str::to_owned).collect()
}

/// What a sink reads from `at`: (segment, offset, end, agent, seq, numeric values).
fn tail_from(store: &Store, at: Position) -> Vec<serde_json::Value> {
    let mut tail = Tail::new(store, BTreeMap::from([(shop(), at)]));
    let mut out = Vec::new();
    loop {
        let read = tail.read(1 << 20).expect("read");
        let done = read.complete && read.entries.is_empty();
        for e in read.entries {
            out.push(serde_json::json!({
                "segment": e.start.segment, "offset": e.start.offset, "end": e.end.offset,
                "agent": e.record.agent, "seq": e.record.batch.seq,
                "numeric": super::numeric_values(&e.record),
            }));
        }
        if done {
            return out;
        }
    }
}

#[test]
fn the_row_format_reads_the_same_before_and_after_compression() {
    let dir = copy();
    let config = StoreConfig { retention: None, ..StoreConfig::default() };
    // Before any store is opened: row segments only, the old order.
    assert_eq!(query(dir.path()), expected("expected-query.jsonl"));
    let mut tail_lines = expected("expected-tail.jsonl");
    let position: serde_json::Value = serde_json::from_str(&tail_lines.remove(0)).expect("json");
    let at = Position {
        segment: position["segment"].as_u64().expect("segment"),
        offset: position["offset"].as_u64().expect("offset"),
    };
    let records: Vec<serde_json::Value> =
        tail_lines.iter().map(|l| serde_json::from_str(l).expect("json")).collect();
    let store = Store::open_with(dir.path(), config).expect("open");
    store.settle();
    let segments = catalog::list(&dir.path().join("shop")).expect("list");
    let forms: Vec<(u64, bool, bool)> = segments.iter().map(|s| (s.id, s.rows, s.block)).collect();
    assert_eq!(
        forms,
        [(1, false, true), (2, false, true), (3, true, false)],
        "closed ones compressed"
    );
    // The same values, grouped by series in compressed segments.
    let mut now = query(dir.path());
    let mut before = expected("expected-query.jsonl");
    now.sort();
    before.sort();
    assert_eq!(now, before);
    // A sink at an old position (inside segment 2, now compressed) reads
    // exactly the records it would have read.
    assert_eq!(tail_from(&store, at), records);
}
