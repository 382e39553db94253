//! The spool: every batch is written here, durably, before it is sent, and
//! stays until a proxy acknowledges it.
//!
//! `<data_dir>/spool/` holds segment files `NNNNNNNNNNNNNNNNNNNN.seg`, each a
//! sequence of [checksummed records](wasmtap_protocol::record) whose payload
//! is a kind byte and a body: `1` a postcard [`Batch`], `2` an acknowledgement
//! (`u64` LE: every batch up to it is stored). A batch record is synced
//! before [`Spool::append`] returns, so a crash loses at most the batch being
//! written; an acknowledgement is not (losing one only means a resend, and
//! the proxy drops duplicates). On open the segments are replayed
//! (`recover.rs`): a torn tail is truncated, and a damaged record in the
//! middle of a segment costs only that record, which is counted
//! ([`SpoolStats::corrupt_batches`]) and logged with the sequence numbers
//! around it. A pending batch that cannot be read back when it is due to
//! be sent is counted the same way and dropped from the pending batches,
//! never acknowledged away unnoticed.
//!
//! The spool is bounded: when its files grow past the cap, the oldest
//! segment is deleted and its unacknowledged batches are counted as dropped
//! and logged. Batch sequence numbers continue across restarts; a fresh
//! spool starts them from the clock (`now_ms << 16`), so a lost spool never
//! makes new batches look like old ones. Numbers taken while the clock was
//! ahead, which a proxy refuses, are renumbered before they are sent
//! (`renumber.rs`): the pending batches are rewritten into a new segment
//! that begins with a record of kind `3` (`u64` LE: the highest number
//! issued before it), which supersedes every earlier segment.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use wasmtap_protocol::message::{self, Batch};
use wasmtap_protocol::record;

mod read_back;
mod recover;
mod renumber;
#[cfg(test)]
mod tests;

/// Default cap on the spool's files.
pub const DEFAULT_CAP_BYTES: u64 = 256 << 20;
/// Largest segment file before a new one is started.
pub const MAX_SEGMENT_BYTES: u64 = 4 << 20;
/// Batch bodies kept in memory (newest first) so sending seldom reads disk.
pub const CACHE_BYTES: usize = 16 << 20;
/// Largest record read back.
const MAX_RECORD: u32 = 64 << 20;
/// Failed attempts to read a pending batch back before it counts as lost.
pub const MAX_READ_ATTEMPTS: u8 = 3;
const KIND_BATCH: u8 = 1;
const KIND_ACK: u8 = 2;
const KIND_RENUMBERED: u8 = 3;
/// The name a segment has while renumbering writes it.
const TMP_SUFFIX: &str = ".seg.tmp";

/// Spool failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// Filesystem error.
    #[error("spool {path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A pending batch's record no longer holds it.
    #[error("spool {path}: record at {offset} is damaged or not the batch")]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Where the record starts.
        offset: u64,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> SpoolError + '_ {
    move |source| SpoolError::Io { path: path.to_owned(), source }
}

/// A batch waiting for its acknowledgement.
#[derive(Debug, Clone)]
struct Pending {
    seq: u64,
    samples: usize,
    segment: u64,
    offset: u64,
    /// The record's bytes on disk.
    len: usize,
    cached: Option<Arc<Batch>>,
    /// The batch's encoded size (memory cache accounting).
    size: usize,
    read_failures: u8,
}

impl Pending {
    /// `batch`, just written as a record of `len` bytes at `offset` of
    /// `segment`; kept in memory when `cache`.
    fn written(batch: Batch, segment: u64, offset: u64, len: usize, cache: bool) -> Self {
        Self {
            seq: batch.seq,
            samples: batch.samples.len(),
            segment,
            offset,
            len,
            size: len - record::OVERHEAD - 1,
            cached: cache.then(|| Arc::new(batch)),
            read_failures: 0,
        }
    }
}

#[derive(Debug)]
struct Segment {
    id: u64,
    path: PathBuf,
    bytes: u64,
    max_seq: u64,
}

/// What the spool holds and has lost.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStats {
    /// Batches not yet acknowledged.
    pub pending_batches: u64,
    /// Samples in those batches.
    pub pending_samples: u64,
    /// Bytes of segment files on disk.
    pub bytes: u64,
    /// Batches dropped unacknowledged because the spool was full.
    pub dropped_batches: u64,
    /// Samples in those batches.
    pub dropped_samples: u64,
    /// Unacknowledged batches lost to damaged records: found at start
    /// (at least one per damaged span; exact between two intact batches)
    /// or when a pending batch could not be read back.
    pub corrupt_batches: u64,
    /// Samples in the lost batches, where known (those read back).
    pub corrupt_samples: u64,
    /// Pending batches given new sequence numbers because theirs lay
    /// beyond a proxy's clock plus the allowed skew.
    pub renumbered_batches: u64,
}

/// The spool directory, open.
#[derive(Debug)]
pub struct Spool {
    dir: PathBuf,
    cap: u64,
    segments: VecDeque<Segment>,
    active: File,
    pending: VecDeque<Pending>,
    cached_bytes: usize,
    acked: u64,
    next_seq: u64,
    stats: SpoolStats,
    /// Whether the refusal to renumber (see `renumber.rs`) was logged.
    future_logged: bool,
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

fn list_segments(dir: &Path) -> Result<Vec<u64>, SpoolError> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
        let name = entry.map_err(io_err(dir))?.file_name();
        if let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".seg")?.parse().ok()) {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    Ok(ids)
}

impl Spool {
    /// Opens (creating) the spool in `dir`, capped at `cap` bytes; `now_ms`
    /// seeds the sequence numbers of a fresh spool.
    pub fn open(dir: &Path, cap: u64, now_ms: u64) -> Result<Self, SpoolError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let recover::Recovered {
            mut segments,
            batches: mut pending,
            acked,
            max_seq,
            corrupt_batches,
        } = recover::recover(dir)?;
        pending.retain(|p| p.seq > acked);
        let next_id = segments.back().map_or(1, |s| s.id + 1);
        let path = segment_path(dir, next_id);
        let active = open_append(&path)?;
        segments.push_back(Segment { id: next_id, path, bytes: 0, max_seq: 0 });
        // Saturating: a stored record (an acknowledgement an older agent
        // took from a rogue proxy, say) may hold u64::MAX.
        let next_seq = max_seq.saturating_add(1).max(now_ms << 16);
        let mut spool = Self {
            dir: dir.to_owned(),
            cap,
            segments,
            active,
            pending,
            cached_bytes: 0,
            acked,
            next_seq,
            stats: SpoolStats { corrupt_batches, ..SpoolStats::default() },
            future_logged: false,
        };
        spool.recount_pending();
        spool.delete_acked_segments();
        spool.refresh_bytes();
        if spool.stats.pending_batches > 0 {
            tracing::info!(
                batches = spool.stats.pending_batches,
                samples = spool.stats.pending_samples,
                "spool: unacknowledged batches from a previous run will be resent"
            );
        }
        Ok(spool)
    }

    /// The sequence number the next batch gets.
    pub fn next_seq(&mut self) -> u64 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.saturating_add(1);
        seq
    }

    /// Writes `batch` durably and adds it to the pending batches.
    pub fn append(&mut self, batch: Batch) -> Result<(), SpoolError> {
        let bytes = batch_record(&batch);
        if self.active_bytes() > 0 && self.active_bytes() + bytes.len() as u64 > self.segment_cap()
        {
            self.roll()?;
        }
        let seg = self.segments.back_mut().ok_or_else(|| missing_active(&self.dir))?;
        let offset = seg.bytes;
        if let Err(e) = self.active.write_all(&bytes).and_then(|()| self.active.sync_data()) {
            // Leave no partial record in the middle of the segment.
            let _ = self.active.set_len(offset);
            return Err(io_err(&seg.path)(e));
        }
        seg.bytes += bytes.len() as u64;
        seg.max_seq = seg.max_seq.max(batch.seq);
        let pending = Pending::written(batch, seg.id, offset, bytes.len(), true);
        self.cached_bytes += pending.size;
        self.stats.pending_batches += 1;
        self.stats.pending_samples += pending.samples as u64;
        self.pending.push_back(pending);
        self.trim_cache();
        self.enforce_cap();
        self.refresh_bytes();
        Ok(())
    }

    /// Records that every batch up to `seq` is stored by a proxy.
    pub fn ack(&mut self, seq: u64) -> Result<(), SpoolError> {
        if seq <= self.acked {
            return Ok(());
        }
        self.acked = seq;
        while self.pending.front().is_some_and(|p| p.seq <= seq) {
            self.pop_pending();
        }
        let bytes = u64_record(KIND_ACK, seq);
        let seg = self.segments.back_mut().ok_or_else(|| missing_active(&self.dir))?;
        self.active.write_all(&bytes).map_err(io_err(&seg.path))?;
        seg.bytes += bytes.len() as u64;
        self.delete_acked_segments();
        self.refresh_bytes();
        Ok(())
    }

    /// The oldest pending batch after `after` (all of them for `None`).
    pub fn next_pending(&self, after: Option<u64>) -> Option<u64> {
        let i = match after {
            None => 0,
            Some(seq) => self.pending.partition_point(|p| p.seq <= seq),
        };
        self.pending.get(i).map(|p| p.seq)
    }

    /// Counters for logs and self-observation.
    pub fn stats(&self) -> SpoolStats {
        self.stats
    }

    fn active_bytes(&self) -> u64 {
        self.segments.back().map_or(0, |s| s.bytes)
    }

    fn segment_cap(&self) -> u64 {
        (self.cap / 4).clamp(4096, MAX_SEGMENT_BYTES)
    }

    fn roll(&mut self) -> Result<(), SpoolError> {
        let id = self.segments.back().map_or(1, |s| s.id + 1);
        let path = segment_path(&self.dir, id);
        self.active = open_append(&path)?;
        self.segments.push_back(Segment { id, path, bytes: 0, max_seq: 0 });
        self.delete_acked_segments();
        Ok(())
    }

    /// Deletes every closed segment whose batches are all acknowledged.
    fn delete_acked_segments(&mut self) {
        while self.segments.len() > 1
            && self.segments.front().is_some_and(|s| s.max_seq <= self.acked)
        {
            if let Some(s) = self.segments.pop_front() {
                remove(&s.path);
            }
        }
    }

    /// Drops the oldest segments while the spool is over its cap.
    fn enforce_cap(&mut self) {
        while self.segments.len() > 1
            && self.segments.iter().map(|s| s.bytes).sum::<u64>() > self.cap
        {
            let Some(s) = self.segments.pop_front() else { break };
            let (mut batches, mut samples) = (0u64, 0u64);
            while self.pending.front().is_some_and(|p| p.segment == s.id) {
                if let Some(p) = self.pop_pending() {
                    batches += 1;
                    samples += p.samples as u64;
                }
            }
            remove(&s.path);
            self.stats.dropped_batches += batches;
            self.stats.dropped_samples += samples;
            if batches > 0 {
                tracing::warn!(
                    dropped_batches = batches,
                    dropped_samples = samples,
                    total_dropped_samples = self.stats.dropped_samples,
                    cap_bytes = self.cap,
                    "spool full: dropped the oldest unacknowledged batches"
                );
            }
        }
    }

    fn trim_cache(&mut self) {
        for p in self.pending.iter_mut() {
            if self.cached_bytes <= CACHE_BYTES {
                break;
            }
            if p.cached.take().is_some() {
                self.cached_bytes -= p.size;
            }
        }
    }

    /// Removes the oldest pending batch, keeping the cache size and the
    /// counters in step.
    fn pop_pending(&mut self) -> Option<Pending> {
        self.remove_pending(0)
    }

    /// Removes pending batch `i`, keeping the cache size and the counters in step.
    fn remove_pending(&mut self, i: usize) -> Option<Pending> {
        let p = self.pending.remove(i)?;
        if p.cached.is_some() {
            self.cached_bytes -= p.size;
        }
        self.stats.pending_batches -= 1;
        self.stats.pending_samples -= p.samples as u64;
        Some(p)
    }

    /// Sets the pending counts and the cache's size from `pending`.
    fn recount_pending(&mut self) {
        self.stats.pending_batches = self.pending.len() as u64;
        self.stats.pending_samples = self.pending.iter().map(|p| p.samples as u64).sum();
        self.cached_bytes =
            self.pending.iter().filter(|p| p.cached.is_some()).map(|p| p.size).sum();
    }

    fn refresh_bytes(&mut self) {
        self.stats.bytes = self.segments.iter().map(|s| s.bytes).sum();
    }
}

enum Record {
    Batch(Batch),
    Ack(u64),
    /// Every earlier record, in this segment and before it, is superseded
    /// by the records after this one; numbers up to the value were issued.
    Renumbered(u64),
}

fn decode_record(payload: &[u8]) -> Option<Record> {
    match payload.split_first()? {
        (&KIND_BATCH, body) => message::decode(body).ok().map(Record::Batch),
        (&KIND_ACK, body) => Some(Record::Ack(u64::from_le_bytes(body.try_into().ok()?))),
        (&KIND_RENUMBERED, body) => {
            Some(Record::Renumbered(u64::from_le_bytes(body.try_into().ok()?)))
        }
        _ => None,
    }
}

/// A batch record: its bytes on disk.
fn batch_record(batch: &Batch) -> Vec<u8> {
    let mut bytes = Vec::new();
    record::append_with(&mut bytes, |out| {
        out.push(KIND_BATCH);
        out.extend_from_slice(&message::encode(batch));
    });
    bytes
}

/// A record of `kind` whose body is `value` (u64 LE).
fn u64_record(kind: u8, value: u64) -> Vec<u8> {
    let mut payload = vec![kind];
    payload.extend_from_slice(&value.to_le_bytes());
    let mut bytes = Vec::new();
    record::encode(&payload, &mut bytes);
    bytes
}

fn open_append(path: &Path) -> Result<File, SpoolError> {
    let f = OpenOptions::new().create(true).append(true).open(path).map_err(io_err(path))?;
    if let Some(dir) = path.parent() {
        // Make the new file's directory entry durable too.
        File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))?;
    }
    Ok(f)
}

fn remove(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), error = %e, "spool: cannot delete a segment");
    }
}

fn missing_active(dir: &Path) -> SpoolError {
    io_err(dir)(std::io::Error::other("no active segment"))
}
