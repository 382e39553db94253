use std::collections::BTreeMap;
use std::fs::OpenOptions;

use wasmtap_protocol::message::{Sample, Value};
use wasmtap_protocol::record;

use super::catalog::row_path;
use super::*;
use crate::tail::Tail;

/// Every batch of `project` in `store`, read back as the sinks read it.
pub(crate) fn read_all(store: &Store, project: &ProjectId) -> Vec<StoredBatch> {
    let mut tail = Tail::new(store, BTreeMap::new());
    let mut out = Vec::new();
    loop {
        let read = tail.read(1 << 20).expect("read");
        let done = read.complete && read.entries.is_empty();
        out.extend(
            read.entries.into_iter().filter(|e| e.project == *project).map(|e| (*e.record).clone()),
        );
        if done {
            return out;
        }
    }
}

/// The row files of the demo project under `dir`, in order.
fn row_files(dir: &Path) -> Vec<PathBuf> {
    let dir = dir.join("demo");
    let list = catalog::list(&dir).expect("list");
    list.into_iter().filter(|s| s.rows).map(|s| row_path(&dir, s.id)).collect()
}

fn record(agent: &str, seq: u64, received_ms: u64) -> StoredBatch {
    StoredBatch {
        agent: agent.into(),
        session: 1,
        received_ms,
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

/// The path of the demo project's first segment under `dir`, its directory created.
fn first_segment(dir: &Path) -> PathBuf {
    let project_dir = dir.join("demo");
    std::fs::create_dir_all(&project_dir).expect("mkdir");
    row_path(&project_dir, 1)
}

fn project() -> ProjectId {
    ProjectId::new("demo").expect("valid")
}

fn seqs(store: &Store) -> Vec<u64> {
    read_all(store, &project()).iter().map(|r| r.batch.seq).collect()
}

#[test]
fn append_and_read_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let p = project();
    assert_eq!(store.append(&p, record("a", 1, 5)).expect("append"), Appended::Stored);
    store.append(&p, record("a", 2, 5)).expect("append");
    assert_eq!(read_all(&store, &p), vec![record("a", 1, 5), record("a", 2, 5)]);
    assert_eq!(store.projects().expect("list"), vec![p]);
}

#[test]
fn resent_batches_are_stored_once_even_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project();
    {
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(store.append(&p, record("a", 1, 5)).expect("append"), Appended::Stored);
        assert_eq!(store.append(&p, record("a", 1, 5)).expect("append"), Appended::Duplicate);
    }
    let store = Store::open(dir.path()).expect("reopen");
    assert_eq!(store.append(&p, record("a", 1, 5)).expect("append"), Appended::Duplicate);
    assert_eq!(store.append(&p, record("b", 1, 5)).expect("append"), Appended::Stored, "per agent");
    assert_eq!(store.append(&p, record("a", 2, 5)).expect("append"), Appended::Stored);
    assert_eq!(seqs(&store), [1, 1, 2]);
}

#[test]
fn duplicates_inside_one_group_are_written_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let p = project();
    // Submitted back to back, these land in the same group (or the next).
    let receipts: Vec<Receipt> =
        (0..50).map(|i| store.submit(&p, std::sync::Arc::new(record("a", i % 10, 5)))).collect();
    let stored = receipts
        .into_iter()
        .map(|r| r.blocking_recv().expect("answered").expect("ok"))
        .filter(|a| *a == Appended::Stored)
        .count();
    assert_eq!(stored, 10);
    let mut got = seqs(&store);
    got.sort_unstable();
    assert_eq!(got, (0..10).collect::<Vec<_>>());
}

#[test]
fn a_torn_tail_is_cut_on_reopen_and_appends_continue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project();
    {
        let store = Store::open(dir.path()).expect("open");
        store.append(&p, record("a", 1, 5)).expect("append");
        store.append(&p, record("a", 2, 5)).expect("append");
    }
    let path = row_files(dir.path()).pop().expect("one");
    let len = std::fs::metadata(&path).expect("meta").len();
    OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(len - 3)).expect("tear");
    let store = Store::open(dir.path()).expect("open");
    // The torn batch 2 is gone, so it is not a duplicate: its resend is stored.
    assert_eq!(store.append(&p, record("a", 2, 5)).expect("append"), Appended::Stored);
    store.append(&p, record("a", 3, 5)).expect("append");
    assert_eq!(seqs(&store), [1, 2, 3]);
}

#[test]
fn segments_roll_and_old_ones_expire() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig {
        segment_bytes: 200,
        retention: Some(Duration::from_secs(3600)),
        ..StoreConfig::default()
    };
    let store = Store::open_with(dir.path(), config).expect("open");
    let p = project();
    let now = crate::now_ms();
    // Two hours old, then fresh: the old ones fill closed segments.
    for seq in 0..6 {
        store.append(&p, record("a", seq, now - 7_200_000)).expect("append");
    }
    for seq in 6..12 {
        store.append(&p, record("a", seq, now)).expect("append");
    }
    store.settle();
    let got = seqs(&store);
    assert!(!got.contains(&0), "expired batches are gone: {got:?}");
    assert!((6..12).all(|s| got.contains(&s)), "fresh batches stay: {got:?}");
    assert!(catalog::list(&dir.path().join("demo")).expect("list").len() > 1);
    // Deduplication outlives retention.
    assert_eq!(store.append(&p, record("a", 0, now)).expect("append"), Appended::Duplicate);
}

#[test]
fn a_damaged_record_in_the_middle_costs_only_that_record_and_is_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = project();
    {
        let store = Store::open(dir.path()).expect("open");
        for seq in 1..=6 {
            store.append(&p, record("a", seq, 5)).expect("append");
        }
    }
    let path = row_files(dir.path()).pop().expect("one");
    let mut bytes = std::fs::read(&path).expect("read");
    let offsets: Vec<usize> = record::scan(&bytes, MAX_RECORD).map(|(o, _)| o).collect();
    let len = bytes.len();
    bytes[(offsets[2] + offsets[3]) / 2] ^= 0x08;
    std::fs::write(&path, &bytes).expect("damage");
    // As after a crash before any checkpoint: every record is replayed.
    std::fs::remove_file(dir.path().join("demo").join(checkpoint::FILE)).expect("rm");
    let store = Store::open(dir.path()).expect("reopen");
    // Opening the project's log (at its first batch) finds the damage.
    assert_eq!(store.append(&p, record("a", 7, 5)).expect("append"), Appended::Stored);
    assert_eq!(seqs(&store), [1, 2, 4, 5, 6, 7], "later records are kept");
    assert_eq!(store.damage().get(&p), (1, (offsets[3] - offsets[2]) as u64));
    assert!(std::fs::metadata(&path).expect("meta").len() > len as u64, "nothing cut off");
    // The lost batch is not known to be stored: a resend is stored again.
    assert_eq!(store.append(&p, record("a", 3, 5)).expect("append"), Appended::Stored);
}

#[test]
fn damage_in_a_closed_segment_keeps_the_rest_of_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Kept as rows: compression would have replaced the closed segment.
    let config = StoreConfig {
        segment_bytes: 300,
        compress: false,
        retention: None,
        ..StoreConfig::default()
    };
    let p = project();
    {
        let store = Store::open_with(dir.path(), config).expect("open");
        for seq in 1..=12 {
            store.append(&p, record("a", seq, 5)).expect("append");
        }
    }
    let files = row_files(dir.path());
    assert!(files.len() >= 2, "{files:?}");
    let path = &files[0];
    let mut bytes = std::fs::read(path).expect("read");
    // The first record's length: implausible, so the scan resynchronises.
    bytes[3] = 0xff;
    std::fs::write(path, &bytes).expect("damage");
    // As after a crash before any checkpoint: every record is replayed.
    std::fs::remove_file(dir.path().join("demo").join(checkpoint::FILE)).expect("rm");
    let store = Store::open_with(dir.path(), config).expect("reopen");
    store.append(&p, record("a", 13, 5)).expect("append");
    assert_eq!(seqs(&store), (2..=13).collect::<Vec<_>>());
    assert_eq!(store.damage().get(&p).0, 1);
}

#[test]
fn segments_of_the_first_record_format_are_read_and_appended_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let segment = first_segment(dir.path());
    let mut old = Vec::new();
    record::encode(&wasmtap_protocol::message::encode(&record("a", 1, 5)), &mut old);
    std::fs::write(&segment, &old).expect("write");
    let store = Store::open(dir.path()).expect("open");
    let p = project();
    assert_eq!(store.append(&p, record("a", 1, 5)).expect("append"), Appended::Duplicate);
    assert_eq!(store.append(&p, record("a", 2, 5)).expect("append"), Appended::Stored);
    assert_eq!(read_all(&store, &p), vec![record("a", 1, 5), record("a", 2, 5)]);
}

#[test]
fn an_undecodable_record_is_refused_not_cut_off() {
    let dir = tempfile::tempdir().expect("tempdir");
    let segment = first_segment(dir.path());
    let mut bytes = Vec::new();
    record::append_with(&mut bytes, |out| format::encode(&record("a", 1, 5), out));
    // A record from a newer format: intact, checksum and all.
    record::encode(&[0x00, 0x09, 1, 2, 3], &mut bytes);
    std::fs::write(&segment, &bytes).expect("write");
    let store = Store::open(dir.path()).expect("open");
    let p = project();
    let e = store.append(&p, record("a", 2, 5)).expect_err("refused");
    assert!(matches!(e, StoreError::Unreadable { .. }), "{e}");
    assert!(e.to_string().contains("version 9"), "{e}");
    assert_eq!(std::fs::read(&segment).expect("read"), bytes, "nothing cut");
}

#[test]
fn a_copy_in_the_same_group_and_later_batches_of_a_failed_session_share_its_fate() {
    // The project's directory is a file: opening its log fails for every job.
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("demo"), b"not a directory").expect("write");
    let store = Store::open(dir.path()).expect("open");
    let p = project();
    let receipts: Vec<Receipt> = [1, 1, 2]
        .iter()
        .map(|&s| store.submit(&p, std::sync::Arc::new(record("a", s, 5))))
        .collect();
    for r in receipts {
        assert!(r.blocking_recv().expect("answered").is_err(), "nothing is acknowledged");
    }
    // Once the directory is usable, the same session's next batch still
    // fails: it must not be stored ahead of the ones that failed.
    std::fs::remove_file(dir.path().join("demo")).expect("rm");
    let e = store.append(&p, record("a", 3, 5)).expect_err("earlier batch failed");
    assert!(matches!(e, StoreError::EarlierFailed), "{e}");
    let mut other_session = record("a", 1, 5);
    other_session.session = 2;
    assert_eq!(store.append(&p, other_session).expect("new session"), Appended::Stored);
}

#[test]
fn resent_batches_are_duplicates_after_their_segments_are_compressed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig { segment_bytes: 200, retention: None, ..StoreConfig::default() };
    let p = project();
    {
        let store = Store::open_with(dir.path(), config).expect("open");
        for seq in 1..=20 {
            store.append(&p, record("a", seq, 5)).expect("append");
        }
        store.settle();
    }
    let list = catalog::list(&dir.path().join("demo")).expect("list");
    assert!(list.iter().filter(|s| s.block && !s.rows).count() >= 3, "{list:?}");
    let store = Store::open_with(dir.path(), config).expect("reopen");
    assert_eq!(store.append(&p, record("a", 2, 5)).expect("append"), Appended::Duplicate);
    assert_eq!(store.append(&p, record("a", 21, 5)).expect("append"), Appended::Stored);
    assert_eq!(seqs(&store), (1..=21).collect::<Vec<_>>());
}

#[test]
fn what_a_crash_during_compression_leaves_is_finished_at_the_next_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rows = StoreConfig {
        segment_bytes: 200,
        compress: false,
        retention: None,
        ..StoreConfig::default()
    };
    let p = project();
    {
        let store = Store::open_with(dir.path(), rows).expect("open");
        for seq in 1..=12 {
            store.append(&p, record("a", seq, 5)).expect("append");
        }
    }
    let demo = dir.path().join("demo");
    assert!(catalog::list(&demo).expect("list").len() >= 3);
    // Segment 1: compressed, but the crash came before its row file was
    // removed and its index written.
    let kept = std::fs::read(row_path(&demo, 1)).expect("read");
    compact::compact(&demo, 1).expect("compress");
    std::fs::write(row_path(&demo, 1), kept).expect("restore");
    std::fs::remove_file(catalog::index_path(&demo, 1)).expect("rm");
    // Segment 2: a block half written.
    std::fs::write(demo.join(format!("{:020}.blk.tmp", 2)), b"half").expect("write");
    let store = Store::open_with(dir.path(), StoreConfig { compress: true, ..rows }).expect("open");
    store.settle();
    let list = catalog::list(&demo).expect("list");
    let (newest, closed) = list.split_last().expect("segments");
    assert!(closed.iter().all(|s| s.block && !s.rows), "{list:?}");
    assert!(newest.rows && !newest.block);
    assert!(catalog::leftovers(&demo).expect("list").is_empty());
    assert_eq!(seqs(&store), (1..=12).collect::<Vec<_>>());
    // The index is rebuilt (and written) when it is needed.
    assert!(blocks::index(&demo, 1).expect("index").is_some());
    assert!(catalog::index_path(&demo, 1).exists());
}

#[test]
fn start_up_replays_only_what_follows_the_checkpoint_and_an_older_one_costs_a_replay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = StoreConfig { segment_bytes: 200, retention: None, ..StoreConfig::default() };
    let p = project();
    let demo = dir.path().join("demo");
    let saved = demo.join(checkpoint::FILE);
    {
        let store = Store::open_with(dir.path(), config).expect("open");
        for seq in 1..=10 {
            store.append(&p, record("a", seq, 5)).expect("append");
        }
        store.settle();
    }
    let older = std::fs::read(&saved).expect("checkpoint written at close");
    {
        let store = Store::open_with(dir.path(), config).expect("open");
        for seq in 11..=20 {
            store.append(&p, record("a", seq, 5)).expect("append");
        }
        store.settle();
    }
    // A crash lost the newer checkpoint: the older one costs a replay.
    std::fs::write(&saved, &older).expect("write");
    {
        let store = Store::open_with(dir.path(), config).expect("open");
        for seq in [15, 5, 20] {
            assert_eq!(store.append(&p, record("a", seq, 5)).expect("append"), Appended::Duplicate);
        }
        assert_eq!(store.append(&p, record("a", 21, 5)).expect("append"), Appended::Stored);
    }
    // What the checkpoint covers is not replayed: the oldest segment turned
    // to junk goes unnoticed by deduplication, and its batches are still
    // known (a replay would lose them, as below). The segment's index is not
    // a witness: the maintenance thread reads every closed segment's index
    // for retention and usage, concurrently with start-up.
    let first = catalog::block_path(&demo, 1);
    std::fs::write(&first, b"junk").expect("write");
    std::fs::remove_file(catalog::index_path(&demo, 1)).expect("rm");
    {
        let store = Store::open_with(dir.path(), config).expect("open");
        assert_eq!(store.append(&p, record("a", 1, 5)).expect("append"), Appended::Duplicate);
    }
    // Without a checkpoint every segment is read: the junk costs its batches.
    std::fs::write(&saved, b"damaged").expect("write");
    let store = Store::open_with(dir.path(), config).expect("open");
    assert_eq!(store.append(&p, record("a", 12, 5)).expect("append"), Appended::Duplicate);
    assert_eq!(store.append(&p, record("a", 1, 5)).expect("append"), Appended::Stored);
}

#[test]
fn retention_deletes_the_oldest_closed_segments_across_projects_and_never_the_newest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let now = crate::now_ms();
    let (old, new) = (ProjectId::new("old").expect("valid"), ProjectId::new("new").expect("valid"));
    let fill = |config: StoreConfig| {
        let store = Store::open_with(dir.path(), config).expect("open");
        for seq in 0..20 {
            // Project `old` got its batches a day ago; `new` now.
            store.append(&old, record("a", seq, now - 86_400_000 + seq)).expect("append");
            store.append(&new, record("a", seq, now - 1_000 + seq)).expect("append");
        }
        store.settle();
        store
    };
    let segments = |p: &ProjectId| catalog::list(&dir.path().join(p.as_str())).expect("list");
    let keep = StoreConfig { segment_bytes: 200, retention: None, ..StoreConfig::default() };
    let store = fill(keep);
    let (old_n, new_n) = (segments(&old).len(), segments(&new).len());
    assert!(old_n >= 4 && new_n >= 4, "{old_n} {new_n}");
    let total = store.usage().total_bytes();
    drop(store);
    // A cap a little under the total: `old`'s oldest segments go first.
    let cap = total - 300;
    let store =
        Store::open_with(dir.path(), StoreConfig { max_bytes: Some(cap), ..keep }).expect("open");
    store.settle();
    assert!(store.usage().total_bytes() <= cap);
    assert_eq!(segments(&new).len(), new_n, "only `old` lost segments");
    let left = segments(&old);
    assert!(left.len() < old_n && left[0].id > 1, "{left:?}");
    let expired = store.usage().get(&old).expired_size;
    assert_eq!(expired.0 as usize, old_n - left.len());
    drop(store);
    // A cap no store meets, and an hour's retention: only the newest
    // segment of each project is left, however old.
    let tight =
        StoreConfig { max_bytes: Some(1), retention: Some(Duration::from_secs(3600)), ..keep };
    let store = Store::open_with(dir.path(), tight).expect("open");
    store.settle();
    for p in [&old, &new] {
        let left = segments(p);
        assert_eq!(left.len(), 1, "{p}: {left:?}");
        assert!(left[0].rows, "the segment being written is kept");
    }
    assert!(store.usage().get(&old).expired_age.0 >= 1, "a day old: by age first");
    assert!(store.usage().get(&new).expired_size.0 >= 1, "fresh: by size");
    let mut text = crate::exposition::Exposition::new(crate::exposition::Format::Prometheus);
    store.usage().render(&mut text);
    let text = text.finish();
    for line in [
        "wasmtap_proxy_store_max_bytes 1.0",
        "wasmtap_proxy_store_retention_seconds 3600.0",
        "wasmtap_proxy_store_expired_segments_total{project=\"new\",reason=\"size\"}",
        "wasmtap_proxy_store_row_segments{project=\"old\"} 1.0",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    // What is left reads: the newest batches, without a gap.
    let got: Vec<u64> = read_all(&store, &new).iter().map(|r| r.batch.seq).collect();
    let first = got.first().copied().expect("some kept");
    assert_eq!(got, (first..20).collect::<Vec<_>>());
}
