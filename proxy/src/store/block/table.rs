//! The batch table of a compressed segment: every stored batch in the
//! order it was written, so that it can be rebuilt exactly (for the
//! sinks) and its sequence number found (for queries and the writer's
//! deduplication).
//!
//! ```text
//! 'T'
//! first      varint (the part's first batch, numbered from 0 in the segment)
//! agents     count, each str
//! batches    count, each:
//!   agent (index into agents), session, seq, received_ms,
//!   row start, row length             varints (the batch's row record)
//!   samples, runs                     varints
//!   runs, each: zigzag(step), repeat  varints
//! ```
//!
//! The runs spell the series of the batch's samples in order: starting
//! from −1, each run adds `step` to the previous series number `repeat`
//! times. A batch of series 0, 1, …, 999 is one run; the same series ten
//! times over is two.

use std::ops::Range;
use std::sync::Arc;

use wasmtap_protocol::codec::{Reader, put_str, put_varint};

use super::BlockError;
use super::ints::{unzigzag, zigzag};

/// The first byte of a table record's payload.
pub const KIND: u8 = b'T';
/// Batches per table record.
pub const PART: usize = 4_096;

/// One stored batch, without its samples.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchMeta {
    /// The agent.
    pub agent: Arc<str>,
    /// The session it arrived on.
    pub session: u64,
    /// The agent's batch sequence number.
    pub seq: u64,
    /// Arrival time, ms since the epoch.
    pub received_ms: u64,
    /// Where its row record was in the row file.
    pub rows: Range<u64>,
    /// Samples in it.
    pub samples: u64,
    /// The series of its samples, as runs (see the module docs).
    pub runs: Vec<(i64, u64)>,
}

/// `series` as runs.
pub fn runs_of(series: impl Iterator<Item = u64>) -> Vec<(i64, u64)> {
    let mut runs: Vec<(i64, u64)> = Vec::new();
    let mut prev = -1i64;
    for s in series {
        let step = (s as i64).wrapping_sub(prev);
        match runs.last_mut() {
            Some((last, n)) if *last == step => *n += 1,
            _ => runs.push((step, 1)),
        }
        prev = s as i64;
    }
    runs
}

impl BatchMeta {
    /// The series of its samples, in order.
    pub fn series(&self) -> impl Iterator<Item = u64> + '_ {
        let steps = self.runs.iter().flat_map(|&(step, n)| {
            std::iter::repeat_n(step, usize::try_from(n).unwrap_or(usize::MAX))
        });
        steps.scan(-1i64, |prev, step| {
            *prev = prev.wrapping_add(step);
            Some(*prev as u64)
        })
    }
}

/// Appends a table record's payload for `batches`, the first numbered `first`.
pub fn encode(first: u64, batches: &[BatchMeta], out: &mut Vec<u8>) {
    out.push(KIND);
    put_varint(out, first);
    let mut agents: Vec<&Arc<str>> = Vec::new();
    let ids: Vec<usize> = batches
        .iter()
        .map(|b| match agents.iter().position(|a| **a == b.agent) {
            Some(i) => i,
            None => {
                agents.push(&b.agent);
                agents.len() - 1
            }
        })
        .collect();
    put_varint(out, agents.len() as u64);
    for a in agents {
        put_str(out, a);
    }
    put_varint(out, batches.len() as u64);
    for (b, id) in batches.iter().zip(ids) {
        for v in
            [id as u64, b.session, b.seq, b.received_ms, b.rows.start, b.rows.end - b.rows.start]
        {
            put_varint(out, v);
        }
        put_varint(out, b.samples);
        put_varint(out, b.runs.len() as u64);
        for (step, n) in &b.runs {
            put_varint(out, zigzag(*step));
            put_varint(out, *n);
        }
    }
}

/// Reads a table record's payload: the number of its first batch, and its batches.
pub fn decode(payload: &[u8]) -> Result<(u64, Vec<BatchMeta>), BlockError> {
    let mut r = Reader::new(payload);
    if r.u8()? != KIND {
        return Err(BlockError::Malformed("not a table"));
    }
    let first = r.varint()?;
    let mut agents: Vec<Arc<str>> = Vec::with_capacity(r.count()?);
    for _ in 0..agents.capacity() {
        agents.push(Arc::from(r.str()?));
    }
    let mut batches = Vec::with_capacity(r.count()?);
    for _ in 0..batches.capacity() {
        let agent = usize::try_from(r.varint()?)
            .ok()
            .and_then(|i| agents.get(i))
            .ok_or(BlockError::Malformed("agent"))?
            .clone();
        let (session, seq, received_ms) = (r.varint()?, r.varint()?, r.varint()?);
        let start = r.varint()?;
        let end = start.checked_add(r.varint()?).ok_or(BlockError::Malformed("row range"))?;
        let samples = r.varint()?;
        let mut runs = Vec::with_capacity(r.count()?);
        let mut total = 0u64;
        for _ in 0..runs.capacity() {
            let step = unzigzag(r.varint()?);
            let n = r.varint()?;
            total = total.checked_add(n).ok_or(BlockError::Malformed("runs"))?;
            runs.push((step, n));
        }
        if total != samples {
            return Err(BlockError::Malformed("runs do not add up to the samples"));
        }
        batches.push(BatchMeta {
            agent,
            session,
            seq,
            received_ms,
            rows: start..end,
            samples,
            runs,
        });
    }
    r.finish()?;
    Ok((first, batches))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn meta(agent: &str, series: &[u64]) -> BatchMeta {
        BatchMeta {
            agent: Arc::from(agent),
            session: 3,
            seq: 9,
            received_ms: 1_795_651_200_000,
            rows: 100..400,
            samples: series.len() as u64,
            runs: runs_of(series.iter().copied()),
        }
    }

    #[test]
    fn regular_batches_are_one_or_two_runs() {
        let ascending: Vec<u64> = (0..1_000).collect();
        assert_eq!(runs_of(ascending.iter().copied()), [(1, 1_000)]);
        assert_eq!(runs_of([5, 5, 5].into_iter()), [(6, 1), (0, 2)]);
        assert!(runs_of(std::iter::empty()).is_empty());
    }

    proptest! {
        #[test]
        fn parts_round_trip(batches in prop::collection::vec(
            (prop_oneof![Just("a"), Just("b")], prop::collection::vec(0u64..50, 0..40)), 0..20),
            first in any::<u64>(),
        ) {
            let metas: Vec<BatchMeta> = batches.iter().map(|(a, s)| meta(a, s)).collect();
            for (m, (_, s)) in metas.iter().zip(&batches) {
                prop_assert_eq!(&m.series().collect::<Vec<_>>(), s);
            }
            let mut out = Vec::new();
            encode(first, &metas, &mut out);
            prop_assert_eq!(decode(&out), Ok((first, metas)));
            for cut in 0..out.len() {
                prop_assert!(decode(&out[..cut]).is_err());
            }
        }
    }
}
