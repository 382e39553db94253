//! Reading the spool back at start: the batches still pending, the last
//! acknowledgement, a torn tail cut off, and damaged records skipped,
//! counted and logged with the sequence numbers around them.
//!
//! Each segment is written by one run of the agent (a start always opens a
//! new one), so its batches have consecutive sequence numbers: the
//! batches lost to damage between two intact batches of a segment are
//! exactly the numbers missing between them. Damage with an intact batch
//! on one side only counts as one batch at least.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};

use wasmtap_protocol::record;

use super::{
    MAX_RECORD, Pending, Record, Segment, SpoolError, TMP_SUFFIX, decode_record, io_err,
    list_segments, segment_path,
};

/// What the segments on disk hold.
#[derive(Debug, Default)]
pub(super) struct Recovered {
    pub(super) segments: VecDeque<Segment>,
    /// Every intact batch, acknowledged or not, oldest first.
    pub(super) batches: VecDeque<Pending>,
    pub(super) acked: u64,
    pub(super) max_seq: u64,
    /// Unacknowledged batches lost to damage (at least).
    pub(super) corrupt_batches: u64,
}

/// Bytes of one segment that were skipped.
#[derive(Debug, Clone, Copy)]
struct Span {
    offset: usize,
    len: usize,
}

/// What one segment held besides its pending batches.
#[derive(Debug)]
struct Found {
    id: u64,
    spans: Vec<Span>,
    /// Its intact batches: (offset, seq).
    batches: Vec<(usize, u64)>,
}

/// Reads every segment of `dir`, oldest first.
pub(super) fn recover(dir: &Path) -> Result<Recovered, SpoolError> {
    remove_unfinished(dir)?;
    let ids = list_segments(dir)?;
    let last = ids.last().copied();
    let mut out = Recovered::default();
    let mut found: Vec<Found> = Vec::new();
    let mut superseded: Vec<PathBuf> = Vec::new();
    for id in ids {
        let path = segment_path(dir, id);
        let mut bytes = Vec::new();
        File::open(&path).and_then(|mut f| f.read_to_end(&mut bytes)).map_err(io_err(&path))?;
        let mut seg = Segment { id, path: path.clone(), bytes: bytes.len() as u64, max_seq: 0 };
        let (mut spans, mut seqs) = (Vec::new(), Vec::new());
        let mut records = record::scan(&bytes, MAX_RECORD);
        while let Some((offset, payload)) = records.next() {
            let len = records.valid_len() - offset;
            match decode_record(payload) {
                Some(Record::Batch(b)) => {
                    seg.max_seq = seg.max_seq.max(b.seq);
                    out.max_seq = out.max_seq.max(b.seq);
                    seqs.push((offset, b.seq));
                    out.batches.push_back(Pending {
                        seq: b.seq,
                        samples: b.samples.len(),
                        segment: id,
                        offset: offset as u64,
                        len,
                        cached: None,
                        size: payload.len() - 1,
                        read_failures: 0,
                    });
                }
                Some(Record::Ack(seq)) => {
                    out.acked = out.acked.max(seq);
                    out.max_seq = out.max_seq.max(seq);
                }
                Some(Record::Renumbered(issued)) => {
                    superseded.extend(out.segments.drain(..).map(|s| s.path));
                    out.batches.clear();
                    (out.acked, out.max_seq) = (0, issued);
                    found.clear();
                    spans.clear();
                    seqs.clear();
                    seg.max_seq = issued;
                }
                // Intact but not a spool record (a newer agent's, say): skipped like damage.
                None => spans.push(Span { offset, len }),
            }
        }
        spans.extend(records.damaged().iter().map(|d| Span { offset: d.offset, len: d.len }));
        let valid = records.valid_len();
        if valid < bytes.len() {
            if Some(id) == last && !records.gave_up() {
                tracing::warn!(path = %path.display(), cut = bytes.len() - valid, "spool: truncating a torn tail");
                let f = OpenOptions::new().write(true).open(&path).map_err(io_err(&path))?;
                f.set_len(valid as u64).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))?;
                seg.bytes = valid as u64;
            } else {
                // Not the segment a crash could have torn: damage, kept on disk.
                spans.push(Span { offset: valid, len: bytes.len() - valid });
            }
        }
        spans.sort_unstable_by_key(|s| s.offset);
        found.push(Found { id, spans, batches: seqs });
        out.segments.push_back(seg);
    }
    for path in superseded {
        tracing::info!(path = %path.display(), "spool: deleting a segment superseded by renumbering");
        super::remove(&path);
    }
    for Found { id, spans, batches } in found {
        // Damaged spans between the same two intact batches (on both sides
        // of an intact acknowledgement, say) share one loss: the numbers
        // between the two, counted with the first of them.
        let mut last_between = None;
        for span in spans {
            let mut lost = count_lost(span, &batches, out.acked);
            let between = lost.after.zip(lost.before);
            if between.is_some() {
                if between == last_between {
                    lost.batches = 0;
                }
                last_between = between;
            }
            out.corrupt_batches += lost.batches;
            tracing::warn!(
                path = %segment_path(dir, id).display(),
                offset = span.offset,
                bytes = span.len,
                after_seq = lost.after,
                before_seq = lost.before,
                lost_batches = lost.batches,
                "spool: damaged records skipped; the records after them are kept"
            );
        }
    }
    Ok(out)
}

/// Deletes segments that renumbering began and never finished (`*.seg.tmp`).
fn remove_unfinished(dir: &Path) -> Result<(), SpoolError> {
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let path = entry.map_err(io_err(dir))?.path();
        if path.to_str().is_some_and(|p| p.ends_with(TMP_SUFFIX)) {
            super::remove(&path);
        }
    }
    Ok(())
}

/// What a damaged span cost.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Lost {
    /// The intact batch before it in its segment.
    after: Option<u64>,
    /// The intact batch after it in its segment.
    before: Option<u64>,
    /// Unacknowledged batches it held (a lower bound without both neighbours).
    batches: u64,
}

/// The batches `span` held, from the sequence numbers of the intact
/// batches around it (`seqs`, in file order) and the acknowledgement.
fn count_lost(span: Span, seqs: &[(usize, u64)], acked: u64) -> Lost {
    let i = seqs.partition_point(|(offset, _)| *offset < span.offset);
    let after = i.checked_sub(1).and_then(|j| seqs.get(j)).map(|(_, s)| *s);
    let before = seqs.get(i).map(|(_, s)| *s);
    let batches = match (after, before) {
        // Everything up to the next batch is acknowledged: nothing is lost.
        (_, Some(b)) if b <= acked.saturating_add(1) => 0,
        (Some(a), Some(b)) => b.saturating_sub(a.max(acked).saturating_add(1)),
        _ => 1,
    };
    Lost { after, before, batches }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lost_batches_come_from_the_neighbours_sequence_numbers() {
        let seqs = [(0, 10), (100, 11), (300, 15), (400, 16)];
        let span = |offset| Span { offset, len: 50 };
        let lost = count_lost(span(200), &seqs, 0);
        assert_eq!(lost, Lost { after: Some(11), before: Some(15), batches: 3 });
        assert_eq!(count_lost(span(200), &seqs, 12).batches, 2, "acknowledged ones are not lost");
        assert_eq!(count_lost(span(200), &seqs, 14).batches, 0);
        assert_eq!(count_lost(span(50), &seqs, 0).batches, 0, "consecutive: an ack record");
        assert_eq!(
            count_lost(span(500), &seqs, 0),
            Lost { after: Some(16), before: None, batches: 1 }
        );
        assert_eq!(count_lost(span(0), &[], 0).batches, 1);
        assert_eq!(count_lost(span(0), &[(100, 5)], 4).batches, 0, "all before 5 acknowledged");
    }
}
