use super::*;
use wasmtap_protocol::message::{Sample, Value};

fn batch(seq: u64, n: usize) -> Batch {
    Batch {
        seq,
        samples: (0..n)
            .map(|i| Sample {
                collector: "c".into(),
                time_ms: seq * 1000 + i as u64,
                labels: vec![("i".into(), i.to_string())].into(),
                values: vec![("v".into(), Value::Gauge(i as f64))],
            })
            .collect(),
    }
}

fn fill(spool: &mut Spool, batches: usize, samples: usize) -> Vec<u64> {
    (0..batches)
        .map(|_| {
            let seq = spool.next_seq();
            spool.append(batch(seq, samples)).expect("append");
            seq
        })
        .collect()
}

fn pending(spool: &Spool) -> Vec<u64> {
    let mut out = Vec::new();
    let mut cursor = None;
    while let Some(seq) = spool.next_pending(cursor) {
        out.push(seq);
        cursor = Some(seq);
    }
    out
}

#[test]
fn batches_survive_a_restart_until_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seqs = {
        let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("open");
        let seqs = fill(&mut spool, 5, 3);
        spool.ack(seqs[1]).expect("ack");
        seqs
    };
    assert_eq!(seqs[0], 1 << 16, "a fresh spool starts from the clock");
    let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("reopen");
    assert_eq!(pending(&spool), seqs[2..]);
    assert_eq!(spool.stats().pending_samples, 9);
    let b = spool.get(seqs[3]).expect("read").expect("pending");
    assert_eq!(*b, batch(seqs[3], 3));
    assert!(spool.next_seq() > seqs[4], "sequence numbers continue");
    spool.ack(seqs[4]).expect("ack");
    assert!(pending(&spool).is_empty());
    assert_eq!(spool.get(seqs[4]).expect("read"), None);
}

#[test]
fn a_torn_tail_is_truncated_and_the_rest_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seqs = {
        let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("open");
        fill(&mut spool, 3, 2)
    };
    let seg = list_segments(dir.path()).expect("list")[0];
    let path = segment_path(dir.path(), seg);
    let len = std::fs::metadata(&path).expect("meta").len();
    OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(len - 5)).expect("tear");
    let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("reopen");
    assert_eq!(pending(&spool), seqs[..2]);
    assert!(std::fs::metadata(&path).expect("meta").len() < len - 5, "torn record cut off");
    let more = fill(&mut spool, 1, 1);
    assert!(more[0] > seqs[1]);
    assert_eq!(pending(&spool), [seqs[0], seqs[1], more[0]]);
}

#[test]
fn sequence_numbers_at_the_top_of_the_range_do_not_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("open");
        spool.append(Batch { seq: u64::MAX - 1, samples: batch(1, 1).samples }).expect("append");
    }
    let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("reopen");
    assert_eq!(pending(&spool), [u64::MAX - 1]);
    assert_eq!((spool.next_seq(), spool.next_seq()), (u64::MAX, u64::MAX), "saturated");
    // An acknowledgement of everything there could be, as a rogue proxy
    // sent them to agents that did not check yet.
    spool.ack(u64::MAX).expect("ack");
    drop(spool);
    let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("reopen");
    assert!(pending(&spool).is_empty());
    assert_eq!(spool.next_seq(), u64::MAX);
}

#[test]
fn over_the_cap_the_oldest_are_dropped_and_counted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let cap = 64 * 1024;
    let mut spool = Spool::open(dir.path(), cap, 1).expect("open");
    let seqs = fill(&mut spool, 400, 20);
    let stats = spool.stats();
    assert!(stats.bytes <= cap + spool.segment_cap(), "{stats:?}");
    assert!(stats.dropped_batches > 0, "{stats:?}");
    assert_eq!(stats.dropped_batches + stats.pending_batches, 400);
    assert_eq!(stats.dropped_samples, stats.dropped_batches * 20);
    let left = pending(&spool);
    assert_eq!(left, seqs[seqs.len() - left.len()..], "the newest are kept, in order");
    for seq in &left {
        assert!(spool.get(*seq).expect("read").is_some(), "readable from disk or memory");
    }
}

#[test]
fn acknowledged_segments_are_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spool = Spool::open(dir.path(), 64 * 1024, 1).expect("open");
    let seqs = fill(&mut spool, 200, 20);
    assert!(list_segments(dir.path()).expect("list").len() > 2);
    spool.ack(*seqs.last().expect("some")).expect("ack");
    assert_eq!(list_segments(dir.path()).expect("list").len(), 1);
    assert_eq!(spool.stats().pending_batches, 0);
}

#[test]
fn batches_evicted_from_memory_are_read_back_from_disk() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut spool = Spool::open(dir.path(), 1 << 30, 1).expect("open");
    let first = fill(&mut spool, 1, 10)[0];
    // About 27 bytes a sample: well past the memory cache.
    let _ = fill(&mut spool, 40, 20_000);
    assert!(spool.pending.front().is_some_and(|p| p.cached.is_none()), "evicted");
    assert_eq!(*spool.get(first).expect("read").expect("pending"), batch(first, 10));
}

/// The only segment file in `dir` with the offsets of its records.
fn only_segment(dir: &Path) -> (PathBuf, Vec<usize>) {
    let ids = list_segments(dir).expect("list");
    let with_data: Vec<PathBuf> = ids
        .iter()
        .map(|id| segment_path(dir, *id))
        .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.len() > 0))
        .collect();
    assert_eq!(with_data.len(), 1, "one segment with data");
    let bytes = std::fs::read(&with_data[0]).expect("read");
    let offsets = record::scan(&bytes, MAX_RECORD).map(|(o, _)| o).collect();
    (with_data[0].clone(), offsets)
}

fn damage(path: &Path, at: usize, with: &[u8]) {
    let mut bytes = std::fs::read(path).expect("read");
    for (i, b) in with.iter().enumerate() {
        bytes[at + i] ^= b;
    }
    std::fs::write(path, bytes).expect("write");
}

#[test]
fn a_flipped_byte_in_the_middle_of_a_segment_costs_only_its_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seqs = {
        let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("open");
        fill(&mut spool, 10, 3)
    };
    let (path, offsets) = only_segment(dir.path());
    let len = std::fs::metadata(&path).expect("meta").len();
    // One byte in the middle of the fifth batch's payload.
    damage(&path, (offsets[4] + offsets[5]) / 2, &[0x20]);
    let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("reopen");
    let mut expected = seqs.clone();
    expected.remove(4);
    assert_eq!(pending(&spool), expected, "every later batch is kept");
    assert_eq!(spool.stats().corrupt_batches, 1);
    assert_eq!(std::fs::metadata(&path).expect("meta").len(), len, "nothing cut off");
    for seq in &expected {
        assert_eq!(*spool.get(*seq).expect("read").expect("pending"), batch(*seq, 3));
    }
}

#[test]
fn a_damaged_length_is_resynchronised_on_the_next_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seqs = {
        let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("open");
        fill(&mut spool, 10, 3)
    };
    let (path, offsets) = only_segment(dir.path());
    // The length's top byte: gigabytes, over the record limit.
    damage(&path, offsets[4] + 3, &[0x80]);
    let spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("reopen");
    let mut expected = seqs.clone();
    expected.remove(4);
    assert_eq!(pending(&spool), expected);
    assert_eq!(spool.stats().corrupt_batches, 1);
}

#[test]
fn a_damaged_run_of_records_is_counted_by_the_sequence_numbers_around_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seqs = {
        let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("open");
        fill(&mut spool, 10, 3)
    };
    let (path, offsets) = only_segment(dir.path());
    // Garbage over the third to sixth records, headers included.
    let span = offsets[6] - offsets[2];
    damage(&path, offsets[2], &vec![0x5a; span]);
    let spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("reopen");
    assert_eq!(pending(&spool), [&seqs[..2], &seqs[6..]].concat());
    assert_eq!(spool.stats().corrupt_batches, 4);
}

#[test]
fn damage_on_both_sides_of_an_acknowledgement_is_counted_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seqs = {
        let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("open");
        let mut seqs = fill(&mut spool, 2, 3);
        spool.ack(seqs[0]).expect("ack");
        seqs.extend(fill(&mut spool, 2, 3));
        seqs
    };
    // Batch 0, batch 1, the acknowledgement of batch 0, batch 2, batch 3.
    let (path, offsets) = only_segment(dir.path());
    assert_eq!(offsets.len(), 5);
    damage(&path, (offsets[1] + offsets[2]) / 2, &[0x20]);
    damage(&path, (offsets[3] + offsets[4]) / 2, &[0x20]);
    let spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("reopen");
    assert_eq!(pending(&spool), [seqs[3]]);
    // Two damaged spans between batches 0 and 3: batches 1 and 2 lost, once.
    assert_eq!(spool.stats().corrupt_batches, 2);
}

#[test]
fn damage_to_acknowledged_batches_costs_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seqs = {
        let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("open");
        let seqs = fill(&mut spool, 6, 3);
        spool.ack(seqs[3]).expect("ack");
        seqs
    };
    let (path, offsets) = only_segment(dir.path());
    damage(&path, (offsets[1] + offsets[2]) / 2, &[0x01]);
    let spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("reopen");
    assert_eq!(pending(&spool), seqs[4..]);
    assert_eq!(spool.stats().corrupt_batches, 0);
}

#[test]
fn a_batch_that_cannot_be_read_back_is_counted_and_never_acknowledged_away_unnoticed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seqs = {
        let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("open");
        fill(&mut spool, 5, 3)
    };
    // Reopened: nothing is cached, every batch is read back from disk.
    let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("reopen");
    let (path, offsets) = only_segment(dir.path());
    damage(&path, (offsets[2] + offsets[3]) / 2, &[0x04]);
    assert_eq!(spool.get(seqs[2]).expect("counted, not an error"), None);
    let stats = spool.stats();
    assert_eq!((stats.corrupt_batches, stats.corrupt_samples), (1, 3));
    assert_eq!((stats.pending_batches, stats.pending_samples), (4, 12));
    assert_eq!(pending(&spool), [seqs[0], seqs[1], seqs[3], seqs[4]]);
    assert!(spool.get(seqs[3]).expect("read").is_some(), "the next one reads");
    spool.ack(seqs[4]).expect("ack");
    assert_eq!(spool.stats().corrupt_batches, 1);
    assert_eq!(spool.stats().pending_batches, 0);
}

#[test]
fn a_segment_deleted_under_the_agent_counts_its_batches_as_lost() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seqs = {
        let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("open");
        fill(&mut spool, 3, 2)
    };
    let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, 1).expect("reopen");
    let (path, _) = only_segment(dir.path());
    std::fs::remove_file(&path).expect("rm");
    for seq in &seqs {
        assert_eq!(spool.get(*seq).expect("counted"), None);
    }
    assert_eq!(spool.stats().corrupt_samples, 6);
}

/// A right clock, one an hour ahead, and the skew a proxy allows (ms).
const NOW: u64 = 10_000_000;
const AHEAD: u64 = NOW + 3_600_000;
const SKEW: u64 = 120_000;

/// The pending batches with their numbers left out, in order.
fn contents(spool: &mut Spool) -> Vec<Batch> {
    pending(spool)
        .into_iter()
        .map(|seq| Batch { seq: 0, ..(*spool.get(seq).expect("read").expect("pending")).clone() })
        .collect()
}

#[test]
fn numbers_taken_while_the_clock_was_ahead_are_renumbered_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A run with a right clock: two batches, the first acknowledged.
    let early = {
        let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, NOW).expect("open");
        let seqs = fill(&mut spool, 2, 1);
        spool.ack(seqs[0]).expect("ack");
        seqs
    };
    // A run started with the clock an hour ahead, that reached no proxy.
    let late = {
        let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, AHEAD).expect("open");
        fill(&mut spool, 3, 2)
    };
    assert_eq!(late[0] >> 16, AHEAD);
    let now = NOW + 1_000;
    let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, now).expect("clock right again");
    let before = contents(&mut spool);
    assert_eq!(spool.renumber_future(now, SKEW).expect("renumber"), Some(3));
    let seqs = pending(&spool);
    assert_eq!(seqs, [early[1], now << 16, (now << 16) + 1, (now << 16) + 2]);
    assert!(seqs.iter().all(|s| *s <= renumber::highest_accepted(now, SKEW)));
    assert_eq!(contents(&mut spool), before, "the same batches in the same order");
    assert_eq!(spool.stats().renumbered_batches, 3);
    assert_eq!(spool.stats().pending_batches, 4);
    assert_eq!(spool.renumber_future(now, SKEW).expect("again"), None, "nothing left beyond");
    let next = spool.next_seq();
    assert_eq!(next, seqs[3] + 1, "new batches follow");
    spool.append(batch(next, 1)).expect("append after renumbering");

    // A restart finds the new numbers only.
    drop(spool);
    let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, now).expect("reopen");
    assert_eq!(pending(&spool), [&seqs[..], &[next]].concat());
    assert_eq!(contents(&mut spool)[..4], before);
    assert!(spool.next_seq() > next);
    spool.ack(next).expect("ack");
    assert_eq!(spool.stats().pending_batches, 0);
}

/// A proxy whose clock was ahead too acknowledged a number beyond the
/// limit: new numbers below it could be ones it holds, so none are given.
#[test]
fn numbers_a_proxy_acknowledged_beyond_the_limit_are_kept() {
    let dir = tempfile::tempdir().expect("tempdir");
    let seqs = {
        let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, AHEAD).expect("open");
        let seqs = fill(&mut spool, 3, 1);
        spool.ack(seqs[0]).expect("ack");
        seqs
    };
    let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, NOW).expect("reopen");
    assert_eq!(spool.renumber_future(NOW, SKEW).expect("checked"), None);
    assert_eq!(pending(&spool), seqs[1..]);
    assert_eq!(spool.stats().renumbered_batches, 0);
    // Within the skew of a clock as far ahead, nothing is beyond.
    assert_eq!(spool.renumber_future(AHEAD, SKEW).expect("checked"), None);
}

/// The new segment supersedes the old ones once it has its name: a crash
/// before that leaves the old numbers, a crash after it the new ones only.
#[test]
fn a_crash_while_renumbering_leaves_one_numbering() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = {
        let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, AHEAD).expect("open");
        fill(&mut spool, 3, 2)
    };
    let copies: Vec<(PathBuf, Vec<u8>)> = list_segments(dir.path())
        .expect("list")
        .into_iter()
        .map(|id| segment_path(dir.path(), id))
        .map(|p| (p.clone(), std::fs::read(&p).expect("read")))
        .collect();
    // Before the rename: an unfinished segment is ignored and deleted.
    let unfinished = dir.path().join(format!("{:020}{TMP_SUFFIX}", 99));
    std::fs::write(&unfinished, &copies[0].1).expect("write");
    let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, NOW).expect("reopen");
    assert!(!unfinished.exists());
    assert_eq!(pending(&spool), old);
    let before = contents(&mut spool);
    assert_eq!(spool.renumber_future(NOW, SKEW).expect("renumber"), Some(3));
    let new = pending(&spool);
    assert!(new.iter().all(|s| *s < old[0]));
    // After it, the old segments were not deleted yet.
    for (path, bytes) in &copies {
        std::fs::write(path, bytes).expect("restore");
    }
    drop(spool);
    let mut spool = Spool::open(dir.path(), DEFAULT_CAP_BYTES, NOW).expect("reopen");
    assert_eq!(pending(&spool), new, "the new numbers only");
    assert_eq!(contents(&mut spool), before);
    assert!(copies.iter().all(|(p, _)| !p.exists()), "superseded segments deleted");
    assert_eq!(spool.stats().corrupt_batches, 0);
}
