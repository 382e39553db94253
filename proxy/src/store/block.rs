//! Compressed segments: what a closed segment of row records
//! (`NNN.seg`) becomes, `NNN.blk`, with its index `NNN.idx`.
//!
//! A `.blk` file is a sequence of [checksummed records](wasmtap_protocol::record),
//! like a row segment, each a unit of recovery: damage costs the record it
//! hits and nothing else. Their payloads start with a kind byte:
//!
//! - `H` (first): the [`Header`]: the segment, how long its row file was,
//!   counts, and its range of sample and arrival times.
//! - `T`: a part of the batch table (`table.rs`): per batch, in the order
//!   the batches were stored, the agent, session, sequence number, arrival
//!   time, where its row record was in the row file, and the order of its
//!   samples' series. Sinks rebuild each stored batch from it exactly as
//!   it was written (`load.rs`), and the writer reads the sequence
//!   numbers from it when it replays.
//! - `Z`: a chunk of one series' samples (`chunk.rs`): the series
//!   (agent, collector, labels, fields) and its columns, each compressed
//!   with zstd: batch numbers and times as deltas of deltas (`ints.rs`),
//!   each field's numbers as decimal deltas or XORed bits (`values.rs`),
//!   texts as strings. Blocks written before have `C` chunks, the same
//!   with each column deflated; they are read as they were.
//!
//! The index (`index.rs`) lists where each table part and chunk is, with
//! each chunk's series and time range, so that a query reads only the
//! chunks it needs. It is written beside the block and rebuilt from it
//! when missing or damaged. `build.rs` turns row records into a block.

pub mod build;
pub mod chunk;
pub mod index;
mod ints;
pub mod load;
pub mod table;
mod values;

#[cfg(test)]
mod tests;

use wasmtap_protocol::codec::{self, Reader, put_varint};

pub use build::Builder;
pub use chunk::SeriesDef;
pub use index::Index;

/// The first byte of the header record's payload.
pub const HEADER_KIND: u8 = b'H';
/// The format version this proxy writes and reads.
pub const VERSION: u8 = 1;

/// A block that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// Truncated or invalid bytes.
    #[error("damaged block record: {0}")]
    Decode(#[from] codec::DecodeError),
    /// A number column is malformed.
    #[error("damaged block record: {0}")]
    Values(#[from] values::ValueError),
    /// Something else does not add up.
    #[error("damaged block record: {0}")]
    Malformed(&'static str),
    /// Written by a newer proxy.
    #[error("block format version {0} is not known to this proxy")]
    UnknownVersion(u8),
}

/// What a block holds, in its first record (and its index).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Header {
    /// The segment's number.
    pub segment: u64,
    /// Bytes of the row file the block was made from: positions in the
    /// segment (a sink's, say) are byte offsets in that file.
    pub row_len: u64,
    /// Batches stored.
    pub batches: u64,
    /// Series.
    pub series: u64,
    /// Samples.
    pub samples: u64,
    /// Numeric values.
    pub values: u64,
    /// Earliest and latest sample time (ms); `min > max` when empty.
    pub min_time: u64,
    /// Latest sample time.
    pub max_time: u64,
    /// Arrival time of the newest batch (ms since the epoch).
    pub newest_received: u64,
    /// Bytes of damaged row records that could not be carried over.
    pub damaged_bytes: u64,
}

impl Header {
    /// Appends the header record's payload.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&[HEADER_KIND, VERSION]);
        self.encode_fields(out);
    }

    pub(super) fn encode_fields(&self, out: &mut Vec<u8>) {
        for v in [
            self.segment,
            self.row_len,
            self.batches,
            self.series,
            self.samples,
            self.values,
            self.min_time,
            self.max_time,
            self.newest_received,
            self.damaged_bytes,
        ] {
            put_varint(out, v);
        }
    }

    /// Reads a header record's payload.
    pub fn decode(payload: &[u8]) -> Result<Self, BlockError> {
        let mut r = Reader::new(payload);
        if r.u8()? != HEADER_KIND {
            return Err(BlockError::Malformed("not a header"));
        }
        check_version(r.u8()?)?;
        let h = Self::decode_fields(&mut r)?;
        r.finish()?;
        Ok(h)
    }

    pub(super) fn decode_fields(r: &mut Reader<'_>) -> Result<Self, BlockError> {
        Ok(Self {
            segment: r.varint()?,
            row_len: r.varint()?,
            batches: r.varint()?,
            series: r.varint()?,
            samples: r.varint()?,
            values: r.varint()?,
            min_time: r.varint()?,
            max_time: r.varint()?,
            newest_received: r.varint()?,
            damaged_bytes: r.varint()?,
        })
    }

    /// Whether any sample may fall in `[since, until)`.
    pub fn overlaps(&self, since: Option<u64>, until: Option<u64>) -> bool {
        self.min_time <= self.max_time && overlaps(self.min_time, self.max_time, since, until)
    }
}

/// Whether samples from `min_time` to `max_time` may fall in `[since, until)`.
pub fn overlaps(min_time: u64, max_time: u64, since: Option<u64>, until: Option<u64>) -> bool {
    since.is_none_or(|s| max_time >= s) && until.is_none_or(|u| min_time < u)
}

fn check_version(v: u8) -> Result<(), BlockError> {
    if v == VERSION { Ok(()) } else { Err(BlockError::UnknownVersion(v)) }
}
