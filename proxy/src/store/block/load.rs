//! Reading a whole compressed segment back as the batches it was made
//! of, in order, each exactly as it was stored: what a sink reads when
//! its position is in a segment that was compressed before it got there.
//!
//! The block's bytes stay in memory (a fraction of the row file's size);
//! each series has a cursor into its chunks, and a batch is rebuilt by
//! taking, in its table's order, the next sample of each of its series. A
//! damaged chunk costs the samples in it (counted); a damaged table part
//! costs its batches, which are then unknown and skipped.

use std::ops::Range;

use wasmtap_protocol::compact::FieldKind;
use wasmtap_protocol::message::{Batch, CollectorName, FieldName, Labels, Sample, Value};
use wasmtap_protocol::record::{self, Damage, OVERHEAD};

use super::chunk::{self, Cursor, Row};
use super::index::Index;
use super::table::{self, BatchMeta};
use super::{BlockError, Header};
use crate::store::{MAX_RECORD, StoredBatch};

/// Most batches or series a block is taken to hold (a row segment of
/// the largest size holds far fewer).
const MAX_ITEMS: usize = 1 << 26;

#[derive(Debug)]
struct SeriesReader {
    collector: CollectorName,
    labels: Labels,
    names: Vec<FieldName>,
    fields: Vec<(String, FieldKind)>,
    /// Payload ranges of its chunks, in order.
    chunks: Vec<Range<usize>>,
    next_chunk: usize,
    /// The chunk being read: its inflated columns and a cursor over them.
    current: Option<(Vec<u8>, Cursor)>,
    /// The next sample, read ahead.
    pending: Option<(Row, Vec<Value>)>,
}

/// A compressed segment loaded for reading batch by batch; see the module docs.
#[derive(Debug)]
pub struct Block {
    bytes: Vec<u8>,
    index: Index,
    damaged: Vec<Damage>,
    /// Batch metadata by number; `None` where its table part was damaged.
    batches: Vec<Option<BatchMeta>>,
    series: Vec<Option<SeriesReader>>,
    /// The batch the cursors are at.
    next: usize,
}

/// One batch rebuilt.
#[derive(Debug, Clone)]
pub struct Rebuilt {
    /// Where its row record was in the row file.
    pub rows: Range<u64>,
    /// The batch.
    pub record: StoredBatch,
    /// Samples of it that were in damaged chunks.
    pub lost: u64,
}

fn payload(bytes: &[u8], offset: u64, len: u64) -> Option<Range<usize>> {
    let start = usize::try_from(offset).ok()?;
    let end = start.checked_add(usize::try_from(len).ok()?)?;
    let (_, at) = record::intact_at(bytes, start, MAX_RECORD)?;
    (at == end).then_some(start + OVERHEAD..end)
}

impl Block {
    /// Reads the block `bytes` of segment `segment`.
    pub fn load(segment: u64, bytes: Vec<u8>) -> Result<Self, BlockError> {
        let (index, damaged) = Index::from_block(segment, &bytes)?;
        let total =
            usize::try_from(index.header.batches).map_err(|_| BlockError::Malformed("batches"))?;
        let mut batches: Vec<Option<BatchMeta>> = Vec::new();
        for t in &index.tables {
            let range = payload(&bytes, t.offset, t.len).ok_or(BlockError::Malformed("table"))?;
            let (first, metas) = table::decode(&bytes[range])?;
            for (i, m) in metas.into_iter().enumerate() {
                let at = usize::try_from(first).ok().and_then(|f| f.checked_add(i));
                let at = at
                    .filter(|&a| a < total.min(MAX_ITEMS))
                    .ok_or(BlockError::Malformed("batch number"))?;
                if batches.len() <= at {
                    batches.resize(at + 1, None);
                }
                batches[at] = Some(m);
            }
        }
        let mut series: Vec<Option<SeriesReader>> = Vec::new();
        for c in &index.chunks {
            let range = payload(&bytes, c.offset, c.len).ok_or(BlockError::Malformed("chunk"))?;
            let id = usize::try_from(c.series).map_err(|_| BlockError::Malformed("series"))?;
            let limit = index.chunks.len().max(index.header.series as usize).min(MAX_ITEMS);
            if id >= limit {
                return Err(BlockError::Malformed("series number"));
            }
            if series.len() <= id {
                series.resize_with(id + 1, || None);
            }
            let reader = series[id].get_or_insert_with(|| SeriesReader {
                collector: CollectorName::from(c.def.collector.as_str()),
                labels: Labels::from(c.def.labels.clone()),
                names: c.def.fields.iter().map(|(n, _)| FieldName::from(n.as_str())).collect(),
                fields: c.def.fields.clone(),
                chunks: Vec::new(),
                next_chunk: 0,
                current: None,
                pending: None,
            });
            reader.chunks.push(range);
        }
        Ok(Self { bytes, index, damaged, batches, series, next: 0 })
    }

    /// The block's header.
    pub fn header(&self) -> &Header {
        &self.index.header
    }

    /// Damaged records found in the block.
    pub fn damaged(&self) -> &[Damage] {
        &self.damaged
    }

    /// Batches (known or not).
    pub fn batches(&self) -> usize {
        self.batches.len()
    }

    /// The row range of batch `k`, if its table part is intact.
    pub fn rows(&self, k: usize) -> Option<Range<u64>> {
        self.batches.get(k)?.as_ref().map(|m| m.rows.clone())
    }

    /// The first batch whose row record starts at or after `offset`.
    pub fn batch_at(&self, offset: u64) -> usize {
        self.batches
            .iter()
            .position(|m| m.as_ref().is_some_and(|m| m.rows.start >= offset))
            .unwrap_or(self.batches.len())
    }

    /// Rebuilds batch `k` (`None` if its table part was damaged). Batches
    /// are cheapest read in order; going back starts over.
    pub fn rebuild(&mut self, k: usize) -> Result<Option<Rebuilt>, BlockError> {
        if k < self.next {
            for s in self.series.iter_mut().flatten() {
                s.next_chunk = 0;
                s.current = None;
                s.pending = None;
            }
        }
        self.next = k + 1;
        let Some(meta) = self.batches.get(k).cloned().flatten() else { return Ok(None) };
        let mut samples =
            Vec::with_capacity(usize::try_from(meta.samples).unwrap_or(0).min(1 << 20));
        let mut lost = 0;
        for id in meta.series() {
            let taken = match usize::try_from(id).ok().and_then(|i| self.series.get_mut(i)) {
                Some(Some(s)) => take(s, &self.bytes, k as u64)?,
                _ => None,
            };
            match taken {
                Some(sample) => samples.push(sample),
                None => lost += 1,
            }
        }
        let record = StoredBatch {
            agent: meta.agent.to_string(),
            session: meta.session,
            received_ms: meta.received_ms,
            batch: Batch { seq: meta.seq, samples },
        };
        Ok(Some(Rebuilt { rows: meta.rows, record, lost }))
    }
}

/// The next sample of `s` in batch `k`, passing over earlier ones (of
/// batches that could not be rebuilt); `None` if it has none there.
fn take(s: &mut SeriesReader, bytes: &[u8], k: u64) -> Result<Option<Sample>, BlockError> {
    loop {
        if s.pending.is_none() {
            s.pending = read_ahead(s, bytes)?;
        }
        match &s.pending {
            None => return Ok(None),
            Some((row, _)) if row.batch > k => return Ok(None),
            Some((row, _)) if row.batch < k => s.pending = None,
            Some(_) => {
                let Some((row, values)) = s.pending.take() else { return Ok(None) };
                let values = s.names.iter().cloned().zip(values).collect();
                return Ok(Some(Sample {
                    collector: s.collector.clone(),
                    time_ms: row.time,
                    labels: s.labels.clone(),
                    values,
                }));
            }
        }
    }
}

fn read_ahead(s: &mut SeriesReader, bytes: &[u8]) -> Result<Option<(Row, Vec<Value>)>, BlockError> {
    let mut values = Vec::with_capacity(s.fields.len());
    loop {
        if s.current.as_ref().is_none_or(|(_, c)| c.left() == 0) {
            let Some(range) = s.chunks.get(s.next_chunk).cloned() else { return Ok(None) };
            s.next_chunk += 1;
            let payload = &bytes[range];
            let chunk = chunk::parse(payload)?;
            s.current = Some((chunk.inflate(payload)?, Cursor::new(&chunk, |_| true)));
        }
        let Some((raw, cursor)) = s.current.as_mut() else { return Ok(None) };
        if let Some(row) = cursor.next(raw, &s.fields, &mut values)? {
            let values = values.drain(..).map(|v| v.unwrap_or(Value::Gauge(f64::NAN))).collect();
            return Ok(Some((row, values)));
        }
    }
}
