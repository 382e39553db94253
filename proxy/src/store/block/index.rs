//! The index of a compressed segment (`NNN.idx`): one checksummed record
//! listing where each table part and chunk of `NNN.blk` is, with each
//! chunk's series, sample count and time range, and the block's
//! [`Header`]. A query reads it, then only the chunks it needs.
//!
//! ```text
//! 'I' version
//! block length   varint (an index of another block is stale)
//! header         its fields, as in the block's first record
//! tables         count, each: offset, length, first batch, batches   varints
//! chunks         count, each: offset, length, series  varints, the series' definition,
//!                samples, min_time, max_time   varints
//! ```
//!
//! It is written when the segment is compressed and rebuilt from the block
//! when it is missing, damaged or stale ([`Index::from_block`]); a block
//! whose header record is damaged gets one recomputed from its other
//! records.

use wasmtap_protocol::codec::{Reader, put_varint};
use wasmtap_protocol::compact::FieldKind;
use wasmtap_protocol::record::{self, Damage};

use super::chunk::{self, SeriesDef, SeriesView};
use super::{BlockError, HEADER_KIND, Header, check_version, table};
use crate::store::MAX_RECORD;

/// The first byte of an index record's payload.
pub const KIND: u8 = b'I';

/// Where a table part is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableRef {
    /// The record's offset in the block.
    pub offset: u64,
    /// The record's length, header included.
    pub len: u64,
    /// Its first batch.
    pub first: u64,
    /// Its batches.
    pub count: u64,
}

/// Where a chunk is, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChunkRef {
    /// The record's offset in the block.
    pub offset: u64,
    /// The record's length, header included.
    pub len: u64,
    /// Its series' number.
    pub series: u64,
    /// The series.
    pub def: SeriesDef,
    /// Samples.
    pub count: u64,
    /// Earliest sample time.
    pub min_time: u64,
    /// Latest sample time.
    pub max_time: u64,
}

/// Which entries of an index a reader wants; the others are passed over
/// without being copied ([`Index::from_bytes_where`]).
pub trait Select {
    /// Whether any chunk of a block with `header` may be wanted; if not,
    /// no chunk entry is read.
    fn block(&self, header: &Header) -> bool;
    /// Whether the chunk of `series` with samples from `min_time` to
    /// `max_time` is wanted.
    fn chunk(&self, series: &SeriesView<'_>, min_time: u64, max_time: u64) -> bool;
}

/// Every entry.
#[derive(Debug, Clone, Copy)]
pub struct All;

impl Select for All {
    fn block(&self, _: &Header) -> bool {
        true
    }
    fn chunk(&self, _: &SeriesView<'_>, _: u64, _: u64) -> bool {
        true
    }
}

/// A block's index; see the module docs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Index {
    /// The block file's length.
    pub block_len: u64,
    /// The block's header.
    pub header: Header,
    /// Its table parts, in order.
    pub tables: Vec<TableRef>,
    /// Its chunks, by series, each series' in order.
    pub chunks: Vec<ChunkRef>,
}

impl Index {
    /// The index file's bytes: one record.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        record::append_with(&mut out, |out| {
            out.extend_from_slice(&[KIND, super::VERSION]);
            put_varint(out, self.block_len);
            self.header.encode_fields(out);
            put_varint(out, self.tables.len() as u64);
            for t in &self.tables {
                for v in [t.offset, t.len, t.first, t.count] {
                    put_varint(out, v);
                }
            }
            put_varint(out, self.chunks.len() as u64);
            for c in &self.chunks {
                for v in [c.offset, c.len, c.series] {
                    put_varint(out, v);
                }
                c.def.encode(out);
                for v in [c.count, c.min_time, c.max_time] {
                    put_varint(out, v);
                }
            }
        });
        out
    }

    /// Reads an index file's bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BlockError> {
        Self::from_bytes_where(bytes, &All)
    }

    /// Reads an index file's bytes, keeping only the chunk entries
    /// `select` wants (none when it does not want the block). Every entry
    /// read is checked as [`Index::from_bytes`] checks it.
    pub fn from_bytes_where(bytes: &[u8], select: &dyn Select) -> Result<Self, BlockError> {
        let (payload, end) =
            record::intact_at(bytes, 0, MAX_RECORD).ok_or(BlockError::Malformed("index record"))?;
        if end != bytes.len() {
            return Err(BlockError::Malformed("bytes after the index record"));
        }
        let mut r = Reader::new(payload);
        if r.u8()? != KIND {
            return Err(BlockError::Malformed("not an index"));
        }
        check_version(r.u8()?)?;
        let block_len = r.varint()?;
        let header = Header::decode_fields(&mut r)?;
        let mut tables = Vec::with_capacity(r.count()?);
        for _ in 0..tables.capacity() {
            let (offset, len, first, count) = (r.varint()?, r.varint()?, r.varint()?, r.varint()?);
            tables.push(TableRef { offset, len, first, count });
        }
        if !select.block(&header) {
            return Ok(Self { block_len, header, tables, chunks: Vec::new() });
        }
        let entries = r.count()?;
        let mut chunks = Vec::new();
        for _ in 0..entries {
            let (offset, len, series) = (r.varint()?, r.varint()?, r.varint()?);
            let view = SeriesView::decode(&mut r)?;
            let (count, min_time, max_time) = (r.varint()?, r.varint()?, r.varint()?);
            if select.chunk(&view, min_time, max_time) {
                let def = view.to_def();
                chunks.push(ChunkRef { offset, len, series, def, count, min_time, max_time });
            }
        }
        r.finish()?;
        Ok(Self { block_len, header, tables, chunks })
    }

    /// Rebuilds the index of a block from its bytes: every intact record
    /// is listed, damaged ones are returned. A record that is intact but
    /// cannot be read is an error (written by a newer proxy, say).
    pub fn from_block(segment: u64, bytes: &[u8]) -> Result<(Self, Vec<Damage>), BlockError> {
        let mut index = Index { block_len: bytes.len() as u64, ..Index::default() };
        let mut header = None;
        let mut records = record::scan(bytes, MAX_RECORD);
        let (mut newest, mut row_end) = (0, 0);
        while let Some((offset, payload)) = records.next() {
            let len = (records.valid_len() - offset) as u64;
            let offset = offset as u64;
            match payload.first() {
                Some(&HEADER_KIND) => header = Some(Header::decode(payload)?),
                Some(&table::KIND) => {
                    let (first, batches) = table::decode(payload)?;
                    newest = batches.iter().map(|b| b.received_ms).fold(newest, u64::max);
                    row_end = batches.iter().map(|b| b.rows.end).fold(row_end, u64::max);
                    let count = batches.len() as u64;
                    index.tables.push(TableRef { offset, len, first, count });
                }
                Some(&kind) if chunk::is_chunk(kind) => {
                    let c = chunk::parse(payload)?;
                    let (count, min_time, max_time) = (c.count as u64, c.min_time, c.max_time);
                    let series = c.series;
                    index.chunks.push(ChunkRef {
                        offset,
                        len,
                        series,
                        def: c.def,
                        count,
                        min_time,
                        max_time,
                    });
                }
                _ => return Err(BlockError::Malformed("unknown record kind")),
            }
        }
        let mut damaged = records.damaged().to_vec();
        if records.valid_len() < bytes.len() {
            damaged.push(Damage {
                offset: records.valid_len(),
                len: bytes.len() - records.valid_len(),
            });
        }
        index.chunks.sort_by_key(|c| (c.series, c.offset));
        index.header = match header {
            Some(h) => h,
            None => Header { segment, row_len: row_end, ..index.recomputed_header(newest) },
        };
        Ok((index, damaged))
    }

    /// A header from the listed records, for a block whose own is damaged
    /// (its segment and row length are filled in by the caller).
    fn recomputed_header(&self, newest_received: u64) -> Header {
        let numeric =
            |d: &SeriesDef| d.fields.iter().filter(|(_, k)| *k != FieldKind::Text).count();
        Header {
            segment: 0,
            row_len: 0,
            batches: self.tables.iter().map(|t| t.first + t.count).max().unwrap_or(0),
            series: self.chunks.iter().map(|c| c.series + 1).max().unwrap_or(0),
            samples: self.chunks.iter().map(|c| c.count).sum(),
            values: self.chunks.iter().map(|c| c.count * numeric(&c.def) as u64).sum(),
            min_time: self.chunks.iter().map(|c| c.min_time).min().unwrap_or(u64::MAX),
            max_time: self.chunks.iter().map(|c| c.max_time).max().unwrap_or(0),
            newest_received,
            damaged_bytes: 0,
        }
    }
}
