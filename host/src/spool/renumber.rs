//! Sequence numbers from the future, and how they get new ones.
//!
//! A batch's sequence number carries a clock reading in its upper 48 bits
//! (`now_ms << 16` when the spool opened, then one more per batch), and a
//! proxy refuses a batch whose time part lies beyond its own clock plus the
//! allowed skew (such a number would raise the agent's deduplication floor
//! for ever). An agent that once ran with its clock ahead therefore holds
//! pending batches, and a next number, that a proxy with a right clock
//! refuses on every session until the clock catches up, which after a
//! clock set years ahead is never.
//!
//! So once a handshake has succeeded, and before any batch is sent, the
//! uplink calls [`Spool::renumber_future`] with the proxy's clock (from its
//! authenticated ServerHello) and the default skew. If the next number lies
//! beyond that clock plus the skew, the pending batches beyond it get new
//! numbers, in their order; the spool is rewritten into a new segment that
//! supersedes the old ones (`recover.rs`), and the next number follows.
//!
//! Why this stores no batch twice and loses none, as far as the spool can
//! know:
//!
//! - Deduplication is by (agent, number). A renumbered batch is stored
//!   twice only if a proxy stored it under its old number and the
//!   acknowledgement never arrived. A proxy refuses a number whose time
//!   part lies beyond its clock plus the skew, so a proxy whose clock is
//!   right never stored one of them. A proxy whose clock was ahead as well
//!   could have: that is the one way to a duplicate, and it takes two wrong
//!   clocks and a lost acknowledgement. Keeping the numbers instead would
//!   hold delivery until the clock catches up, and the spool's cap would
//!   drop the oldest batches meanwhile: a loss.
//! - If a proxy ever *acknowledged* a number beyond the limit, its clock
//!   was ahead, and every number up to the acknowledged one counts as
//!   stored. The segments holding those numbers are deleted, so the spool
//!   no longer knows which numbers below the limit it issued: a new one
//!   could be one the proxy already holds, and the proxy would answer
//!   `Duplicate` and drop the batch. Then nothing is renumbered: the spool
//!   logs an error once, and delivery waits for the clock to catch up
//!   (a delay, not a loss, unless the cap is reached meanwhile).
//! - New numbers lie above every number at or below the limit that the
//!   spool knows it issued: the acknowledged one (a deleted segment's
//!   numbers are at most that), the batches on disk, and the floor of a
//!   previous renumbering; and they are at least `now_ms << 16`. What the
//!   spool cannot know is the number of a batch that left it
//!   unacknowledged (dropped by the cap, or unreadable) while every later
//!   one lies beyond the limit; a new number can meet it only if its time
//!   part lies within the skew ahead of the proxy's clock, and it matters
//!   only if a proxy stored that batch and its acknowledgement was lost.
//!
//! Why before sending and not when a proxy refuses: the refusal is a
//! generic protocol error, and the check needs nothing from it. The
//! proxy's own clock is at hand after the handshake, which also proves
//! that this agent's clock is now within the skew of it.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;

use super::{
    KIND_ACK, KIND_RENUMBERED, Pending, Segment, Spool, SpoolError, TMP_SUFFIX, batch_record,
    io_err, remove, segment_path, u64_record,
};

/// The highest sequence number a proxy whose clock reads `now_ms` accepts.
pub(super) fn highest_accepted(now_ms: u64, max_skew_ms: u64) -> u64 {
    now_ms.saturating_add(max_skew_ms).saturating_mul(1 << 16) | 0xffff
}

/// A rewritten spool, not yet in place.
struct Rewritten {
    file: File,
    pending: VecDeque<Pending>,
    bytes: u64,
    next: u64,
    renumbered: u64,
}

impl Spool {
    /// Gives new numbers to the pending batches that a proxy whose clock
    /// reads `now_ms` would refuse (time part beyond `now_ms + max_skew_ms`),
    /// and moves the next number back within its reach, when that is safe
    /// (see the module documentation). Returns how many batches were
    /// renumbered if the spool was rewritten, `None` if nothing changed.
    pub fn renumber_future(
        &mut self,
        now_ms: u64,
        max_skew_ms: u64,
    ) -> Result<Option<u64>, SpoolError> {
        let limit = highest_accepted(now_ms, max_skew_ms);
        if self.next_seq <= limit {
            self.future_logged = false;
            return Ok(None);
        }
        let ahead_ms = ((self.next_seq - 1) >> 16).saturating_sub(now_ms);
        if self.acked > limit {
            if !std::mem::replace(&mut self.future_logged, true) {
                tracing::error!(
                    acknowledged_seq = self.acked,
                    ahead_ms,
                    max_skew_ms,
                    pending_batches = self.stats.pending_batches,
                    "spool: sequence numbers lie {ahead_ms} ms beyond the proxy's clock, more than the allowed skew ({max_skew_ms} ms), \
                     and a proxy whose clock was ahead too acknowledged some of them; they are kept (new ones could meet numbers \
                     that proxy already holds), so proxies with a right clock refuse them until this agent's numbers are no longer \
                     ahead. Check the clocks (NTP) of this host and of the proxies"
                );
            }
            return Ok(None);
        }
        let issued = self
            .segments
            .iter()
            .map(|s| s.max_seq)
            .chain(self.pending.iter().map(|p| p.seq))
            .filter(|s| *s <= limit)
            .fold(self.acked, u64::max);
        let first = issued.saturating_add(1).max(now_ms << 16);
        let renumbered = self.rewrite(limit, first)?;
        self.stats.renumbered_batches += renumbered;
        self.future_logged = false;
        tracing::warn!(
            renumbered_batches = renumbered,
            ahead_ms,
            max_skew_ms,
            first_seq = first,
            total_renumbered_batches = self.stats.renumbered_batches,
            "spool: sequence numbers taken while this agent's clock was {ahead_ms} ms ahead lie beyond the proxy's clock \
             plus the allowed skew ({max_skew_ms} ms) and would be refused; the pending batches were renumbered from now, \
             in their order. Check this host's clock (NTP)"
        );
        Ok(Some(renumbered))
    }

    /// Writes every pending batch, those beyond `limit` numbered from
    /// `first`, into a new segment that supersedes all the others, then
    /// puts it in place. Returns how many were renumbered.
    fn rewrite(&mut self, limit: u64, first: u64) -> Result<u64, SpoolError> {
        let id = self.segments.back().map_or(1, |s| s.id + 1);
        let path = segment_path(&self.dir, id);
        let tmp = self.dir.join(format!("{id:020}{TMP_SUFFIX}"));
        let new = match self.write_renumbered(&tmp, id, limit, first) {
            Ok(new) => new,
            Err(e) => {
                remove(&tmp);
                return Err(e);
            }
        };
        // The commit point: from here on the new segment supersedes the
        // old ones, at the next start too.
        if let Err(e) = std::fs::rename(&tmp, &path) {
            remove(&tmp);
            return Err(io_err(&path)(e));
        }
        if let Err(e) = File::open(&self.dir).and_then(|d| d.sync_all()) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "spool: cannot sync the directory after renumbering");
        }
        for s in self.segments.drain(..) {
            remove(&s.path);
        }
        let Rewritten { file, pending, bytes, next, renumbered } = new;
        self.segments.push_back(Segment { id, path, bytes, max_seq: next - 1 });
        self.active = file;
        self.pending = pending;
        self.recount_pending();
        self.next_seq = next;
        self.trim_cache();
        self.refresh_bytes();
        Ok(renumbered)
    }

    /// Writes the new segment under its temporary name, synced.
    fn write_renumbered(
        &mut self,
        tmp: &Path,
        id: u64,
        limit: u64,
        first: u64,
    ) -> Result<Rewritten, SpoolError> {
        remove(tmp);
        // Append mode, like every active segment: the handle stays the
        // active one once the file is renamed into place.
        let file =
            OpenOptions::new().create_new(true).append(true).open(tmp).map_err(io_err(tmp))?;
        let mut out = BufWriter::new(&file);
        let marker = u64_record(KIND_RENUMBERED, first - 1);
        out.write_all(&marker).map_err(io_err(tmp))?;
        let mut offset = marker.len() as u64;
        let (mut next, mut renumbered) = (first, 0);
        let was: Vec<(u64, bool)> =
            self.pending.iter().map(|p| (p.seq, p.cached.is_some())).collect();
        let mut pending = VecDeque::with_capacity(was.len());
        for (seq, cached) in was {
            // A batch that cannot be read back is counted as lost there.
            let Some(batch) = self.get(seq)? else { continue };
            let mut batch = Arc::unwrap_or_clone(batch);
            if seq > limit {
                batch.seq = next;
                next += 1;
                renumbered += 1;
            }
            let bytes = batch_record(&batch);
            out.write_all(&bytes).map_err(io_err(tmp))?;
            pending.push_back(Pending::written(batch, id, offset, bytes.len(), cached));
            offset += bytes.len() as u64;
        }
        if self.acked > 0 {
            let ack = u64_record(KIND_ACK, self.acked);
            out.write_all(&ack).map_err(io_err(tmp))?;
            offset += ack.len() as u64;
        }
        out.flush().map_err(io_err(tmp))?;
        drop(out);
        file.sync_all().map_err(io_err(tmp))?;
        Ok(Rewritten { file, pending, bytes: offset, next, renumbered })
    }
}
