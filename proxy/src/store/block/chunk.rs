//! One series' samples in a compressed segment: a chunk record.
//!
//! ```text
//! 'C'
//! series     varint (the series' number in the segment)
//! agent str, collector str
//! labels     count, each: key str, value str
//! fields     count, each: kind (0 gauge, 1 counter, 2 text), name str
//! samples, min_time, max_time   varints
//! columns    per column: its length, and its stored length << 1 | 1 when
//!            compressed (else 0 and stored as it is), varints; then the
//!            stored columns: batch numbers and times (ints.rs), then one
//!            per field: numbers (values.rs) or texts
//! ```
//!
//! Each column is compressed on its own, as one zstd frame (level 1, no
//! checksum: the record has one), so that each is coded by how often its
//! own bytes occur (a utilisation's long fractions do not dilute the code
//! of a counter's small steps). Chunks written before (kind `C`) have the
//! same layout with each column deflated instead; they are still read.
//! zstd was chosen over deflate by `cargo bench -p wasmtap-proxy --bench
//! compact`: as many bytes, and a third of the time, most of deflate's
//! going to building a Huffman code for every short column.
//!
//! A text column holds, per sample, `varint(len + 1)` and the UTF-8
//! bytes, or `0` for the same text as the sample before. A series has at
//! most [`MAX_SAMPLES`] samples per chunk; more go to further chunks.

use std::ops::Range;

use wasmtap_protocol::codec::{Reader, put_str, put_varint};
use wasmtap_protocol::compact::FieldKind;
use wasmtap_protocol::message::Value;

use super::BlockError;
use super::ints::{IntDecoder, IntEncoder};
use super::values::{ValueDecoder, ValueEncoder};
use crate::store::format::{kind_byte, kind_from_byte};

/// The first byte of a chunk record's payload: columns in zstd frames.
pub const KIND: u8 = b'Z';
/// The first byte of a chunk record whose columns are deflated, as blocks
/// written before [`KIND`] have them.
pub const KIND_DEFLATE: u8 = b'C';
/// Most samples in one chunk.
pub const MAX_SAMPLES: usize = 4_096;
/// zstd's level: its fastest regular one.
const LEVEL: i32 = 1;

/// Whether a record's first byte is a chunk's.
pub fn is_chunk(kind: u8) -> bool {
    kind == KIND || kind == KIND_DEFLATE
}
/// Largest inflated chunk accepted (more is damage).
const MAX_RAW: usize = 64 << 20;

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
        SeriesView::decode(r).map(|v| v.to_def())
    }
}

/// A series' definition as it lies in a record's bytes, read without
/// copying: a query compares thousands of them in an index to keep a few.
#[derive(Debug, Clone, Copy)]
pub struct SeriesView<'a> {
    /// The agent.
    pub agent: &'a str,
    /// The collector.
    pub collector: &'a str,
    labels: (usize, &'a [u8]),
    fields: (usize, &'a [u8]),
}

impl<'a> SeriesView<'a> {
    /// Reads a definition (as [`SeriesDef::encode`] wrote it), checking
    /// every string and field kind in it.
    pub fn decode(r: &mut Reader<'a>) -> Result<Self, BlockError> {
        let agent = r.str()?;
        let collector = r.str()?;
        let labels = Self::region(r, |r| {
            r.str()?;
            r.str()?;
            Ok(())
        })?;
        let fields = Self::region(r, |r| {
            kind_from_byte(r.u8()?).ok_or(BlockError::Malformed("field kind"))?;
            r.str()?;
            Ok(())
        })?;
        Ok(Self { agent, collector, labels, fields })
    }

    /// A count, then that many items read by `item`: the count and the items' bytes.
    fn region(
        r: &mut Reader<'a>,
        item: impl Fn(&mut Reader<'a>) -> Result<(), BlockError>,
    ) -> Result<(usize, &'a [u8]), BlockError> {
        let n = r.count()?;
        let start = r.unread();
        for _ in 0..n {
            item(r)?;
        }
        let len = start.len() - r.remaining();
        Ok((n, &start[..len]))
    }

    /// The labels, in order.
    pub fn labels(&self) -> impl Iterator<Item = (&'a str, &'a str)> + 'a {
        let mut r = Reader::new(self.labels.1);
        // Checked by `decode`: every read succeeds.
        (0..self.labels.0).map_while(move |_| Some((r.str().ok()?, r.str().ok()?)))
    }

    /// The fields, in order.
    pub fn fields(&self) -> impl Iterator<Item = (&'a str, FieldKind)> + 'a {
        let mut r = Reader::new(self.fields.1);
        (0..self.fields.0).map_while(move |_| {
            let kind = kind_from_byte(r.u8().ok()?)?;
            Some((r.str().ok()?, kind))
        })
    }

    /// The fields' names, in order.
    pub fn field_names(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.fields().map(|(name, _)| name)
    }

    /// The owned definition.
    pub fn to_def(&self) -> SeriesDef {
        SeriesDef {
            agent: self.agent.to_owned(),
            collector: self.collector.to_owned(),
            labels: self.labels().map(|(k, v)| (k.to_owned(), v.to_owned())).collect(),
            fields: self.fields().map(|(n, k)| (n.to_owned(), k)).collect(),
        }
    }
}

/// A value as a chunk takes it: a number, or text borrowed from where it
/// is read (a row record or a batch).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Cell<'a> {
    /// A gauge or counter.
    Number(f64),
    /// A text value.
    Text(&'a str),
}

impl<'a> From<&'a Value> for Cell<'a> {
    fn from(v: &'a Value) -> Self {
        match v {
            Value::Gauge(n) | Value::Counter(n) => Cell::Number(*n),
            Value::Text(t) => Cell::Text(t),
        }
    }
}

#[derive(Debug)]
enum Column {
    Numbers(Vec<u8>, ValueEncoder),
    Texts(Vec<u8>, Option<String>),
}

/// Collects one chunk of a series.
#[derive(Debug)]
pub struct ChunkWriter {
    count: usize,
    min_time: u64,
    max_time: u64,
    batches: (Vec<u8>, IntEncoder),
    times: (Vec<u8>, IntEncoder),
    fields: Vec<Column>,
}

impl ChunkWriter {
    /// An empty chunk for a series with fields of `kinds`.
    pub fn new(kinds: impl Iterator<Item = FieldKind>) -> Self {
        let fields = kinds
            .map(|k| match k {
                FieldKind::Text => Column::Texts(Vec::new(), None),
                _ => Column::Numbers(Vec::new(), ValueEncoder::default()),
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
    pub fn push<'v>(&mut self, batch: u64, time: u64, values: impl Iterator<Item = Cell<'v>>) {
        self.count += 1;
        self.min_time = self.min_time.min(time);
        self.max_time = self.max_time.max(time);
        self.batches.1.push(&mut self.batches.0, batch);
        self.times.1.push(&mut self.times.0, time);
        for (column, value) in self.fields.iter_mut().zip(values) {
            match (column, value) {
                (Column::Numbers(w, e), Cell::Number(v)) => e.push(w, v),
                (Column::Numbers(w, e), Cell::Text(_)) => e.push(w, f64::NAN),
                (Column::Texts(out, prev), Cell::Text(t)) => {
                    if prev.as_deref() == Some(t) {
                        put_varint(out, 0);
                    } else {
                        put_varint(out, t.len() as u64 + 1);
                        out.extend_from_slice(t.as_bytes());
                        *prev = Some(t.to_owned());
                    }
                }
                (Column::Texts(out, prev), _) => {
                    put_varint(out, 1);
                    *prev = Some(String::new());
                }
            }
        }
    }

    /// Appends the chunk's record payload for `series`, defined by `def`,
    /// its columns compressed by `packer`.
    pub fn finish(self, series: u64, def: &SeriesDef, packer: &mut Packer, out: &mut Vec<u8>) {
        out.push(KIND);
        put_varint(out, series);
        def.encode(out);
        put_varint(out, self.count as u64);
        put_varint(out, self.min_time);
        put_varint(out, self.max_time);
        let fields = self.fields.into_iter().map(|c| match c {
            Column::Numbers(bytes, _) | Column::Texts(bytes, _) => bytes,
        });
        let columns = [self.batches.0, self.times.0].into_iter().chain(fields);
        // Each column: its length, and what is stored (compressed when shorter).
        let stored: Vec<(usize, Vec<u8>, bool)> = columns
            .map(|raw| match packer.pack(&raw) {
                Some(packed) if packed.len() < raw.len() => (raw.len(), packed, true),
                _ => (raw.len(), raw, false),
            })
            .collect();
        for (raw_len, bytes, packed) in &stored {
            put_varint(out, *raw_len as u64);
            put_varint(out, (bytes.len() as u64) << 1 | u64::from(*packed));
        }
        for (_, bytes, _) in &stored {
            out.extend_from_slice(bytes);
        }
    }
}

/// A zstd compressor kept from column to column and chunk to chunk.
#[derive(Default)]
pub struct Packer(Option<zstd::bulk::Compressor<'static>>);

impl std::fmt::Debug for Packer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Packer")
    }
}

impl Packer {
    /// `raw` as a zstd frame, or `None` if zstd could not be set up (then
    /// columns are stored as they are).
    fn pack(&mut self, raw: &[u8]) -> Option<Vec<u8>> {
        use zstd::zstd_safe::CParameter;
        if self.0.is_none() {
            let mut c = zstd::bulk::Compressor::new(LEVEL).ok()?;
            c.set_parameter(CParameter::ChecksumFlag(false)).ok()?;
            c.set_parameter(CParameter::ContentSizeFlag(false)).ok()?;
            self.0 = Some(c);
        }
        self.0.as_mut()?.compress(raw).ok()
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
    /// Byte ranges of the columns in the inflated bytes: batch numbers, times, fields.
    pub columns: Vec<Range<usize>>,
    /// Per column: where it is stored in the payload, and whether compressed.
    stored: Vec<(Range<usize>, bool)>,
    /// Whether compressed columns are zstd frames (else deflated).
    zstd: bool,
}

impl Chunk {
    /// The chunk's columns, inflated, one after the other (`payload` is
    /// the one it was read from).
    pub fn inflate(&self, payload: &[u8]) -> Result<Vec<u8>, BlockError> {
        let total = self.columns.last().map_or(0, |c| c.end);
        let mut raw = Vec::with_capacity(total);
        let mut unzstd = None;
        for ((at, packed), column) in self.stored.iter().zip(&self.columns) {
            let bytes = payload.get(at.clone()).ok_or(BlockError::Malformed("chunk"))?;
            let want = column.len();
            if !*packed {
                raw.extend_from_slice(bytes);
            } else if self.zstd {
                let d = match &mut unzstd {
                    Some(d) => d,
                    None => unzstd.insert(
                        zstd::bulk::Decompressor::new()
                            .map_err(|_| BlockError::Malformed("zstd unavailable"))?,
                    ),
                };
                let mut out = Vec::with_capacity(want);
                let n = d
                    .decompress_to_buffer(bytes, &mut out)
                    .map_err(|_| BlockError::Malformed("compressed column"))?;
                if n != want {
                    return Err(BlockError::Malformed("decompressed length"));
                }
                raw.extend_from_slice(&out);
            } else {
                let inflated = miniz_oxide::inflate::decompress_to_vec_with_limit(bytes, want)
                    .map_err(|_| BlockError::Malformed("deflated column"))?;
                if inflated.len() != want {
                    return Err(BlockError::Malformed("inflated length"));
                }
                raw.extend_from_slice(&inflated);
            }
        }
        Ok(raw)
    }
}

/// Reads a chunk record's payload (without decoding its columns).
pub fn parse(payload: &[u8]) -> Result<Chunk, BlockError> {
    let mut r = Reader::new(payload);
    let kind = r.u8()?;
    if !is_chunk(kind) {
        return Err(BlockError::Malformed("not a chunk"));
    }
    let series = r.varint()?;
    let def = SeriesDef::decode(&mut r)?;
    let count = usize::try_from(r.varint()?).map_err(|_| BlockError::Malformed("count"))?;
    let (min_time, max_time) = (r.varint()?, r.varint()?);
    let n = def.fields.len() + 2;
    let mut columns = Vec::with_capacity(n);
    let mut sizes = Vec::with_capacity(n);
    let (mut raw_at, mut stored_total) = (0usize, 0usize);
    for _ in 0..n {
        let raw_len = usize::try_from(r.varint()?).map_err(|_| BlockError::Malformed("column"))?;
        let end = raw_at.checked_add(raw_len).filter(|e| *e <= MAX_RAW);
        let end = end.ok_or(BlockError::Malformed("column length"))?;
        columns.push(raw_at..end);
        raw_at = end;
        let word = r.varint()?;
        let len = usize::try_from(word >> 1).map_err(|_| BlockError::Malformed("column"))?;
        stored_total = stored_total.checked_add(len).ok_or(BlockError::Malformed("column"))?;
        sizes.push((len, word & 1 == 1));
    }
    let mut at = payload.len() - r.remaining();
    if r.remaining() != stored_total {
        return Err(BlockError::Malformed("columns do not add up"));
    }
    let stored = sizes
        .into_iter()
        .map(|(len, packed)| {
            let range = at..at + len;
            at += len;
            (range, packed)
        })
        .collect();
    let zstd = kind == KIND;
    Ok(Chunk { series, def, count, min_time, max_time, columns, stored, zstd })
}

#[derive(Debug, Clone)]
enum FieldCursor {
    Skipped,
    Numbers { bytes: Range<usize>, decoder: ValueDecoder },
    Texts { bytes: Range<usize>, prev: String },
}

/// Reads a chunk's samples one at a time. It holds positions only: each
/// call is given the inflated columns ([`Chunk::inflate`]).
#[derive(Debug, Clone)]
pub struct Cursor {
    left: usize,
    batches: (Range<usize>, IntDecoder),
    times: (Range<usize>, IntDecoder),
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
    /// A cursor over `chunk`'s inflated columns; fields for which
    /// `wanted` is false are not decoded (their values come back as `None`).
    pub fn new(chunk: &Chunk, wanted: impl Fn(usize) -> bool) -> Self {
        let fields = chunk.columns[2..]
            .iter()
            .zip(&chunk.def.fields)
            .enumerate()
            .map(|(i, (r, (_, kind)))| match kind {
                _ if !wanted(i) => FieldCursor::Skipped,
                FieldKind::Text => FieldCursor::Texts { bytes: r.clone(), prev: String::new() },
                _ => FieldCursor::Numbers { bytes: r.clone(), decoder: ValueDecoder::default() },
            })
            .collect();
        Self {
            left: chunk.count,
            batches: (chunk.columns[0].clone(), IntDecoder::default()),
            times: (chunk.columns[1].clone(), IntDecoder::default()),
            fields,
        }
    }

    /// Samples not yet read.
    pub fn left(&self) -> usize {
        self.left
    }

    /// The next sample of the inflated columns `raw`, its values (kinds
    /// as `kinds` say, `None` for fields not wanted) replacing `values`.
    pub fn next(
        &mut self,
        raw: &[u8],
        kinds: &[(String, FieldKind)],
        values: &mut Vec<Option<Value>>,
    ) -> Result<Option<Row>, BlockError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        // Each column's range shrinks from the front as it is read.
        let read =
            |range: &mut Range<usize>,
             f: &mut dyn FnMut(&mut Reader<'_>) -> Result<(), BlockError>| {
                let bytes = raw.get(range.clone()).ok_or(BlockError::Malformed("range"))?;
                let mut r = Reader::new(bytes);
                f(&mut r)?;
                range.start = range.end - r.remaining();
                Ok::<_, BlockError>(())
            };
        let (mut batch, mut time) = (0, 0);
        let (range, d) = &mut self.batches;
        read(range, &mut |r| {
            batch = d.next(r)?;
            Ok(())
        })?;
        let (range, d) = &mut self.times;
        read(range, &mut |r| {
            time = d.next(r)?;
            Ok(())
        })?;
        values.clear();
        for (field, (_, kind)) in self.fields.iter_mut().zip(kinds) {
            let mut value = None;
            match field {
                FieldCursor::Skipped => {}
                FieldCursor::Numbers { bytes, decoder } => read(bytes, &mut |r| {
                    let v = decoder.next(r)?;
                    value = Some(if *kind == FieldKind::Counter {
                        Value::Counter(v)
                    } else {
                        Value::Gauge(v)
                    });
                    Ok(())
                })?,
                FieldCursor::Texts { bytes, prev } => read(bytes, &mut |r| {
                    let n = r.varint()?;
                    if n > 0 {
                        let len =
                            usize::try_from(n - 1).map_err(|_| BlockError::Malformed("text"))?;
                        let t = std::str::from_utf8(r.take(len)?)
                            .map_err(|_| BlockError::Malformed("text"))?;
                        *prev = t.to_owned();
                    }
                    value = Some(Value::Text(prev.clone()));
                    Ok(())
                })?,
            }
            values.push(value);
        }
        Ok(Some(Row { batch, time }))
    }
}
