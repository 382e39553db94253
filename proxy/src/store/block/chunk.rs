//! One series' samples in a compressed segment: a chunk record.
//!
//! ```text
//! 'C'
//! series     varint (the series' number in the segment)
//! agent str, collector str
//! labels     count, each: key str, value str
//! fields     count, each: kind (0 gauge, 1 counter, 2 text), name str
//! samples, min_time, max_time   varints
//! columns    each a varint byte length and its bytes, in this order:
//!            batch numbers and times (ints.rs), then one per field:
//!            numbers (values.rs) or texts
//! ```
//!
//! A text column holds, per sample, `varint(len + 1)` and the UTF-8
//! bytes, or `0` for the same text as the sample before. A series has at
//! most [`MAX_SAMPLES`] samples per chunk; more go to further chunks.

use std::ops::Range;

use wasmtap_protocol::codec::{Reader, put_str, put_varint};
use wasmtap_protocol::compact::FieldKind;
use wasmtap_protocol::message::Value;

use super::BlockError;
use super::bits::{BitReader, BitWriter};
use super::ints::{IntDecoder, IntEncoder};
use super::values::{ValueDecoder, ValueEncoder};

/// The first byte of a chunk record's payload.
pub const KIND: u8 = b'C';
/// Most samples in one chunk.
pub const MAX_SAMPLES: usize = 4_096;

/// What a series is: who sent it, its collector, labels and fields.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct SeriesDef {
    /// The agent.
    pub agent: String,
    /// The collector.
    pub collector: String,
    /// The labels, in the collector's order.
    pub labels: Vec<(String, String)>,
    /// The fields, in order.
    pub fields: Vec<(String, FieldKind)>,
}

fn kind_byte(kind: FieldKind) -> u8 {
    match kind {
        FieldKind::Gauge => 0,
        FieldKind::Counter => 1,
        FieldKind::Text => 2,
    }
}

impl SeriesDef {
    /// Appends the definition.
    pub fn encode(&self, out: &mut Vec<u8>) {
        put_str(out, &self.agent);
        put_str(out, &self.collector);
        put_varint(out, self.labels.len() as u64);
        for (k, v) in &self.labels {
            put_str(out, k);
            put_str(out, v);
        }
        put_varint(out, self.fields.len() as u64);
        for (name, kind) in &self.fields {
            out.push(kind_byte(*kind));
            put_str(out, name);
        }
    }

    /// Reads a definition.
    pub fn decode(r: &mut Reader<'_>) -> Result<Self, BlockError> {
        let agent = r.str()?.to_owned();
        let collector = r.str()?.to_owned();
        let mut labels = Vec::with_capacity(r.count()?);
        for _ in 0..labels.capacity() {
            labels.push((r.str()?.to_owned(), r.str()?.to_owned()));
        }
        let mut fields = Vec::with_capacity(r.count()?);
        for _ in 0..fields.capacity() {
            let kind = match r.u8()? {
                0 => FieldKind::Gauge,
                1 => FieldKind::Counter,
                2 => FieldKind::Text,
                _ => return Err(BlockError::Malformed("field kind")),
            };
            fields.push((r.str()?.to_owned(), kind));
        }
        Ok(Self { agent, collector, labels, fields })
    }
}

#[derive(Debug)]
enum Column {
    Numbers(BitWriter, ValueEncoder),
    Texts(Vec<u8>, Option<String>),
}

/// Collects one chunk of a series.
#[derive(Debug)]
pub struct ChunkWriter {
    count: usize,
    min_time: u64,
    max_time: u64,
    batches: (BitWriter, IntEncoder),
    times: (BitWriter, IntEncoder),
    fields: Vec<Column>,
}

impl ChunkWriter {
    /// An empty chunk for a series with fields of `kinds`.
    pub fn new(kinds: impl Iterator<Item = FieldKind>) -> Self {
        let fields = kinds
            .map(|k| match k {
                FieldKind::Text => Column::Texts(Vec::new(), None),
                _ => Column::Numbers(BitWriter::default(), ValueEncoder::default()),
            })
            .collect();
        Self {
            count: 0,
            min_time: u64::MAX,
            max_time: 0,
            batches: Default::default(),
            times: Default::default(),
            fields,
        }
    }

    /// Samples so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Adds a sample of batch `batch` taken at `time`; `values` follow the
    /// series' fields (a value of another kind is stored as the field's
    /// kind: the series' definition includes the kinds, so this does not
    /// happen).
    pub fn push(&mut self, batch: u64, time: u64, values: impl Iterator<Item = Value>) {
        self.count += 1;
        self.min_time = self.min_time.min(time);
        self.max_time = self.max_time.max(time);
        self.batches.1.push(&mut self.batches.0, batch);
        self.times.1.push(&mut self.times.0, time);
        for (column, value) in self.fields.iter_mut().zip(values) {
            match (column, value) {
                (Column::Numbers(w, e), Value::Gauge(v) | Value::Counter(v)) => e.push(w, v),
                (Column::Numbers(w, e), Value::Text(_)) => e.push(w, f64::NAN),
                (Column::Texts(out, prev), Value::Text(t)) => {
                    if prev.as_deref() == Some(t.as_str()) {
                        put_varint(out, 0);
                    } else {
                        put_varint(out, t.len() as u64 + 1);
                        out.extend_from_slice(t.as_bytes());
                        *prev = Some(t);
                    }
                }
                (Column::Texts(out, prev), _) => {
                    put_varint(out, 1);
                    *prev = Some(String::new());
                }
            }
        }
    }

    /// Appends the chunk's record payload for `series`, defined by `def`.
    pub fn finish(self, series: u64, def: &SeriesDef, out: &mut Vec<u8>) {
        out.push(KIND);
        put_varint(out, series);
        def.encode(out);
        put_varint(out, self.count as u64);
        put_varint(out, self.min_time);
        put_varint(out, self.max_time);
        let column = |out: &mut Vec<u8>, bytes: &[u8]| {
            put_varint(out, bytes.len() as u64);
            out.extend_from_slice(bytes);
        };
        column(out, &self.batches.0.finish());
        column(out, &self.times.0.finish());
        for c in self.fields {
            match c {
                Column::Numbers(w, _) => column(out, &w.finish()),
                Column::Texts(bytes, _) => column(out, &bytes),
            }
        }
    }
}

/// A chunk record read back: its series and where its columns are.
#[derive(Debug, Clone)]
pub struct Chunk {
    /// The series' number in the segment.
    pub series: u64,
    /// The series.
    pub def: SeriesDef,
    /// Samples in the chunk.
    pub count: usize,
    /// Earliest sample time.
    pub min_time: u64,
    /// Latest sample time.
    pub max_time: u64,
    /// Byte ranges of the columns in the payload: batch numbers, times, fields.
    pub columns: Vec<Range<usize>>,
}

/// Reads a chunk record's payload (without decoding its columns).
pub fn parse(payload: &[u8]) -> Result<Chunk, BlockError> {
    let mut r = Reader::new(payload);
    if r.u8()? != KIND {
        return Err(BlockError::Malformed("not a chunk"));
    }
    let series = r.varint()?;
    let def = SeriesDef::decode(&mut r)?;
    let count = usize::try_from(r.varint()?).map_err(|_| BlockError::Malformed("count"))?;
    let (min_time, max_time) = (r.varint()?, r.varint()?);
    let mut columns = Vec::with_capacity(def.fields.len() + 2);
    for _ in 0..def.fields.len() + 2 {
        let len = r.count()?;
        let start = payload.len() - r.remaining();
        r.take(len)?;
        columns.push(start..start + len);
    }
    r.finish()?;
    Ok(Chunk { series, def, count, min_time, max_time, columns })
}

#[derive(Debug, Clone)]
enum FieldCursor {
    Skipped,
    Numbers { bits: Range<usize>, pos: u64, decoder: ValueDecoder },
    Texts { bytes: Range<usize>, pos: usize, prev: String },
}

/// Reads a chunk's samples one at a time. It holds positions only: each
/// call is given the bytes the chunk's ranges point into, so a reader of
/// a whole segment keeps one small cursor per series.
#[derive(Debug, Clone)]
pub struct Cursor {
    left: usize,
    batches: (Range<usize>, u64, IntDecoder),
    times: (Range<usize>, u64, IntDecoder),
    fields: Vec<FieldCursor>,
}

/// One sample read from a chunk.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// The batch it came in (its number in the segment).
    pub batch: u64,
    /// Its time.
    pub time: u64,
}

impl Cursor {
    /// A cursor over `chunk`, whose payload starts at `base` in the bytes
    /// later passed to [`Cursor::next`]; fields for which `wanted` is
    /// false are not decoded (their values come back as `None`).
    pub fn new(chunk: &Chunk, base: usize, wanted: impl Fn(usize) -> bool) -> Self {
        let at = |r: &Range<usize>| base + r.start..base + r.end;
        let fields = chunk.columns[2..]
            .iter()
            .zip(&chunk.def.fields)
            .enumerate()
            .map(|(i, (r, (_, kind)))| match kind {
                _ if !wanted(i) => FieldCursor::Skipped,
                FieldKind::Text => FieldCursor::Texts { bytes: at(r), pos: 0, prev: String::new() },
                _ => FieldCursor::Numbers { bits: at(r), pos: 0, decoder: ValueDecoder::default() },
            })
            .collect();
        Self {
            left: chunk.count,
            batches: (at(&chunk.columns[0]), 0, IntDecoder::default()),
            times: (at(&chunk.columns[1]), 0, IntDecoder::default()),
            fields,
        }
    }

    /// Samples not yet read.
    pub fn left(&self) -> usize {
        self.left
    }

    /// The next sample, its values (kinds as `kinds` say, `None` for
    /// fields not wanted) replacing `values`.
    pub fn next(
        &mut self,
        bytes: &[u8],
        kinds: &[(String, FieldKind)],
        values: &mut Vec<Option<Value>>,
    ) -> Result<Option<Row>, BlockError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let slice = |r: &Range<usize>| bytes.get(r.clone()).ok_or(BlockError::Malformed("range"));
        let int = |(range, pos, d): &mut (Range<usize>, u64, IntDecoder)| {
            let mut r = BitReader::at(slice(range)?, *pos);
            let v = d.next(&mut r)?;
            *pos = r.position();
            Ok::<_, BlockError>(v)
        };
        let batch = int(&mut self.batches)?;
        let time = int(&mut self.times)?;
        values.clear();
        for (field, (_, kind)) in self.fields.iter_mut().zip(kinds) {
            values.push(match field {
                FieldCursor::Skipped => None,
                FieldCursor::Numbers { bits, pos, decoder } => {
                    let mut r = BitReader::at(slice(bits)?, *pos);
                    let v = decoder.next(&mut r)?;
                    *pos = r.position();
                    Some(if *kind == FieldKind::Counter {
                        Value::Counter(v)
                    } else {
                        Value::Gauge(v)
                    })
                }
                FieldCursor::Texts { bytes: range, pos, prev } => {
                    let text = slice(range)?.get(*pos..).ok_or(BlockError::Malformed("text"))?;
                    let mut r = Reader::new(text);
                    let n = r.varint()?;
                    if n > 0 {
                        let len =
                            usize::try_from(n - 1).map_err(|_| BlockError::Malformed("text"))?;
                        let t = std::str::from_utf8(r.take(len)?)
                            .map_err(|_| BlockError::Malformed("text"))?;
                        *prev = t.to_owned();
                    }
                    *pos += text.len() - r.remaining();
                    Some(Value::Text(prev.clone()))
                }
            });
        }
        Ok(Some(Row { batch, time }))
    }
}
