//! The payload of a store record: one [`StoredBatch`], with each distinct
//! field layout (names and kinds) written once per record instead of once
//! per sample.
//!
//! ```text
//! 0x00 0x02                       marker and format version
//! agent      str
//! session, received_ms, seq       varints
//! layouts    count, each: count, each field: kind (0 gauge, 1 counter, 2 text), name str
//! samples    count, each:
//!   collector str
//!   labels    count, each: key str, value str
//!   time_ms   varint
//!   layout    varint (index into layouts)
//!   values    one per layout field: gauge or counter f64 LE (8 bytes), text str
//! ```
//!
//! A `str` is a varint length and UTF-8 bytes; varints are LEB128. Records
//! of the first format (a postcard [`StoredBatch`]) are still read: those
//! start with the agent name's length, and agent names are never empty, so
//! they never start with the marker.

use std::sync::Arc;

use wasmtap_protocol::codec::{self, Reader, put_str, put_varint};
use wasmtap_protocol::compact::FieldKind;
use wasmtap_protocol::message::{self, Batch, CollectorName, FieldName, Sample, Value};

use super::StoredBatch;
use super::block::chunk::Cell;

const MARKER: u8 = 0x00;
const VERSION: u8 = 0x02;
/// How every payload of the current format starts (a cheap first check
/// when looking for the next intact record after damage).
pub const HEAD: [u8; 2] = [MARKER, VERSION];
/// How many of the most recent layouts a sample's values are compared with
/// before a new layout is written (a repeat costs bytes, never correctness).
const LAYOUT_SEARCH: usize = 16;

/// A record payload that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// Truncated or invalid bytes.
    #[error("damaged record: {0}")]
    Damaged(#[from] codec::DecodeError),
    /// A first-format record that does not decode.
    #[error("damaged record: {0}")]
    FirstFormat(#[from] message::MessageError),
    /// Written by a newer proxy.
    #[error("record format version {0} is not known to this proxy")]
    UnknownVersion(u8),
    /// A field kind byte out of range.
    #[error("damaged record: field kind {0}")]
    Kind(u8),
    /// A sample names a layout the record does not have.
    #[error("damaged record: layout {0} of {1}")]
    Layout(u64, usize),
}

fn kind_of(v: &Value) -> FieldKind {
    match v {
        Value::Gauge(_) => FieldKind::Gauge,
        Value::Counter(_) => FieldKind::Counter,
        Value::Text(_) => FieldKind::Text,
    }
}

fn same_layout(a: &[(FieldName, Value)], b: &[(FieldName, Value)]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|((an, av), (bn, bv))| {
            (Arc::ptr_eq(an, bn) || an == bn) && kind_of(av) == kind_of(bv)
        })
}

/// Appends `record`'s payload to `out`.
pub fn encode(record: &StoredBatch, out: &mut Vec<u8>) {
    out.extend_from_slice(&[MARKER, VERSION]);
    put_str(out, &record.agent);
    put_varint(out, record.session);
    put_varint(out, record.received_ms);
    put_varint(out, record.batch.seq);
    let samples = &record.batch.samples;
    let mut layouts: Vec<&[(FieldName, Value)]> = Vec::new();
    let mut ids = Vec::with_capacity(samples.len());
    for s in samples {
        let recent = layouts.len().saturating_sub(LAYOUT_SEARCH);
        let found =
            ids.last().copied().filter(|&i: &usize| same_layout(layouts[i], &s.values)).or_else(
                || (recent..layouts.len()).rev().find(|&i| same_layout(layouts[i], &s.values)),
            );
        let id = found.unwrap_or_else(|| {
            layouts.push(&s.values);
            layouts.len() - 1
        });
        ids.push(id);
    }
    put_varint(out, layouts.len() as u64);
    for layout in &layouts {
        put_varint(out, layout.len() as u64);
        for (name, value) in *layout {
            out.push(kind_byte(kind_of(value)));
            put_str(out, name);
        }
    }
    put_varint(out, samples.len() as u64);
    for (s, id) in samples.iter().zip(ids) {
        put_str(out, &s.collector);
        put_varint(out, s.labels.len() as u64);
        for (k, v) in s.labels.iter() {
            put_str(out, k);
            put_str(out, v);
        }
        put_varint(out, s.time_ms);
        put_varint(out, id as u64);
        for (_, value) in &s.values {
            match value {
                Value::Gauge(v) | Value::Counter(v) => out.extend_from_slice(&v.to_le_bytes()),
                Value::Text(t) => put_str(out, t),
            }
        }
    }
}

/// Reads a record payload of either format.
pub fn decode(payload: &[u8]) -> Result<StoredBatch, FormatError> {
    match payload {
        [MARKER, VERSION, rest @ ..] => decode_current(rest),
        [MARKER, version, ..] => Err(FormatError::UnknownVersion(*version)),
        _ => Ok(message::decode(payload)?),
    }
}

/// A field kind as stored, in row records and in blocks alike.
pub(super) fn kind_byte(kind: FieldKind) -> u8 {
    match kind {
        FieldKind::Gauge => 0,
        FieldKind::Counter => 1,
        FieldKind::Text => 2,
    }
}

/// The field kind a stored byte names, if any.
pub(super) fn kind_from_byte(byte: u8) -> Option<FieldKind> {
    match byte {
        0 => Some(FieldKind::Gauge),
        1 => Some(FieldKind::Counter),
        2 => Some(FieldKind::Text),
        _ => None,
    }
}

fn decode_current(bytes: &[u8]) -> Result<StoredBatch, FormatError> {
    let mut r = Reader::new(bytes);
    let agent = r.str()?.to_owned();
    let (session, received_ms, seq) = (r.varint()?, r.varint()?, r.varint()?);
    let mut layouts: Vec<Vec<(FieldName, FieldKind)>> = Vec::with_capacity(r.count()?);
    for _ in 0..layouts.capacity() {
        let n = r.count()?;
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            let byte = r.u8()?;
            let kind = kind_from_byte(byte).ok_or(FormatError::Kind(byte))?;
            fields.push((FieldName::from(r.str()?), kind));
        }
        layouts.push(fields);
    }
    let n = r.count()?;
    let mut samples = Vec::with_capacity(n);
    let mut collector: Option<CollectorName> = None;
    for _ in 0..n {
        let name = r.str()?;
        let collector = match collector.as_ref().filter(|c| ***c == *name) {
            Some(c) => c.clone(),
            None => collector.insert(CollectorName::from(name)).clone(),
        };
        let mut labels = Vec::with_capacity(r.count()?);
        for _ in 0..labels.capacity() {
            labels.push((r.str()?.to_owned(), r.str()?.to_owned()));
        }
        let time_ms = r.varint()?;
        let id = r.varint()?;
        let layout = usize::try_from(id)
            .ok()
            .and_then(|i| layouts.get(i))
            .ok_or(FormatError::Layout(id, layouts.len()))?;
        let mut values = Vec::with_capacity(layout.len());
        for (name, kind) in layout {
            let value = match kind {
                FieldKind::Gauge => Value::Gauge(f64::from_le_bytes(r.array()?)),
                FieldKind::Counter => Value::Counter(f64::from_le_bytes(r.array()?)),
                FieldKind::Text => Value::Text(r.str()?.to_owned()),
            };
            values.push((name.clone(), value));
        }
        samples.push(Sample { collector, time_ms, labels: labels.into(), values });
    }
    r.finish()?;
    Ok(StoredBatch { agent, session, received_ms, batch: Batch { seq, samples } })
}

/// A record payload read in place, sample by sample, for readers that
/// skip most of what they read (queries): nothing is copied until a
/// sample is wanted.
#[derive(Debug)]
pub struct View<'a> {
    /// The agent.
    pub agent: &'a str,
    /// The session it arrived on.
    pub session: u64,
    /// Proxy clock at arrival, ms since the epoch.
    pub received_ms: u64,
    /// The agent's batch sequence number.
    pub seq: u64,
    layouts: Vec<Vec<(&'a str, FieldKind)>>,
    left: usize,
    /// The bytes after the marker, and a reader over them.
    bytes: &'a [u8],
    r: Reader<'a>,
}

/// One sample of a [`View`], its labels and values not yet read.
#[derive(Debug, Clone, Copy)]
pub struct SampleView<'a> {
    /// The collector.
    pub collector: &'a str,
    /// When it was taken.
    pub time_ms: u64,
    /// Its layout's number in the record.
    pub layout: usize,
    labels: &'a [u8],
    values: &'a [u8],
}

/// A payload as a [`View`], or, for the first format, decoded.
#[derive(Debug)]
pub enum Viewed<'a> {
    /// The current format, in place.
    View(View<'a>),
    /// The first format (postcard), decoded.
    Decoded(StoredBatch),
}

/// Reads `payload`'s header and layouts; its samples come one at a time.
pub fn view(payload: &[u8]) -> Result<Viewed<'_>, FormatError> {
    let rest = match payload {
        [MARKER, VERSION, rest @ ..] => rest,
        [MARKER, version, ..] => return Err(FormatError::UnknownVersion(*version)),
        _ => return Ok(Viewed::Decoded(message::decode(payload)?)),
    };
    let mut r = Reader::new(rest);
    let agent = r.str()?;
    let (session, received_ms, seq) = (r.varint()?, r.varint()?, r.varint()?);
    let mut layouts = Vec::with_capacity(r.count()?);
    for _ in 0..layouts.capacity() {
        let n = r.count()?;
        let mut fields = Vec::with_capacity(n);
        for _ in 0..n {
            let byte = r.u8()?;
            let kind = kind_from_byte(byte).ok_or(FormatError::Kind(byte))?;
            fields.push((r.str()?, kind));
        }
        layouts.push(fields);
    }
    let left = r.count()?;
    Ok(Viewed::View(View { agent, session, received_ms, seq, layouts, left, bytes: rest, r }))
}

impl<'a> View<'a> {
    /// Layouts in the record.
    pub fn layouts(&self) -> usize {
        self.layouts.len()
    }

    /// The fields of layout `i`.
    pub fn layout(&self, i: usize) -> &[(&'a str, FieldKind)] {
        self.layouts.get(i).map_or(&[], Vec::as_slice)
    }

    /// The next sample, its labels and values passed over in place.
    pub fn next_sample(&mut self) -> Result<Option<SampleView<'a>>, FormatError> {
        if self.left == 0 {
            return match self.r.remaining() {
                0 => Ok(None),
                n => Err(codec::DecodeError::Trailing(n).into()),
            };
        }
        self.left -= 1;
        let (bytes, r) = (self.bytes, &mut self.r);
        let at = |r: &Reader<'_>| bytes.len() - r.remaining();
        let collector = r.str()?;
        let start = at(r);
        for _ in 0..r.count()? {
            r.str()?;
            r.str()?;
        }
        let labels = &bytes[start..at(r)];
        let time_ms = r.varint()?;
        let id = r.varint()?;
        let layout = usize::try_from(id)
            .ok()
            .filter(|i| *i < self.layouts.len())
            .ok_or(FormatError::Layout(id, self.layouts.len()))?;
        let start = at(r);
        for (_, kind) in &self.layouts[layout] {
            match kind {
                FieldKind::Text => {
                    r.str()?;
                }
                _ => {
                    r.take(8)?;
                }
            }
        }
        let values = &bytes[start..at(r)];
        Ok(Some(SampleView { collector, time_ms, layout, labels, values }))
    }
}

impl<'a> SampleView<'a> {
    /// Its labels as the record encodes them (equal labels, equal bytes).
    pub fn labels_bytes(&self) -> &'a [u8] {
        self.labels
    }

    /// Its labels.
    pub fn labels(&self) -> impl Iterator<Item = (&'a str, &'a str)> {
        let mut r = Reader::new(self.labels);
        let n = r.varint().unwrap_or(0);
        (0..n).map_while(move |_| Some((r.str().ok()?, r.str().ok()?)))
    }

    /// Its values as a chunk takes them (text borrowed), as `layout` says.
    pub fn cells<'l>(
        &self,
        layout: &'l [(&'a str, FieldKind)],
    ) -> impl Iterator<Item = Cell<'a>> + 'l
    where
        'a: 'l,
    {
        let mut r = Reader::new(self.values);
        layout.iter().map_while(move |(_, kind)| match kind {
            FieldKind::Text => Some(Cell::Text(r.str().ok()?)),
            _ => Some(Cell::Number(f64::from_le_bytes(r.array().ok()?))),
        })
    }

    /// Its values, each with its field, as `layout` (its view's) says.
    pub fn values<'l>(
        &self,
        layout: &'l [(&'a str, FieldKind)],
    ) -> impl Iterator<Item = (&'a str, Value)> + 'l
    where
        'a: 'l,
    {
        let mut r = Reader::new(self.values);
        layout.iter().map_while(move |(name, kind)| {
            let value = match kind {
                FieldKind::Gauge => Value::Gauge(f64::from_le_bytes(r.array().ok()?)),
                FieldKind::Counter => Value::Counter(f64::from_le_bytes(r.array().ok()?)),
                FieldKind::Text => Value::Text(r.str().ok()?.to_owned()),
            };
            Some((*name, value))
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn sample(collector: &str, cpu: &str, values: Vec<(&str, Value)>) -> Sample {
        Sample {
            collector: collector.into(),
            time_ms: 1_700_000_000_123,
            labels: vec![("cpu".to_owned(), cpu.to_owned())].into(),
            values: values.into_iter().map(|(n, v)| (FieldName::from(n), v)).collect(),
        }
    }

    fn record(samples: Vec<Sample>) -> StoredBatch {
        StoredBatch {
            agent: "web-1".into(),
            session: u64::MAX,
            received_ms: 1_700_000_000_999,
            batch: Batch { seq: 42, samples },
        }
    }

    fn encoded(r: &StoredBatch) -> Vec<u8> {
        let mut out = Vec::new();
        encode(r, &mut out);
        out
    }

    #[test]
    fn round_trips_and_writes_each_layout_once() {
        let cpu = |c: &str, u: f64| {
            sample("cpu", c, vec![("user", Value::Gauge(u)), ("ticks", Value::Counter(7.0))])
        };
        let mut samples: Vec<Sample> = (0..50).map(|i| cpu(&i.to_string(), f64::from(i))).collect();
        samples.push(sample("os", "-", vec![("name", Value::Text("Linux".into()))]));
        samples.push(sample("cpu", "x", vec![("user", Value::Counter(1.0))]));
        samples.push(cpu("again", f64::NAN));
        let r = record(samples);
        let bytes = encoded(&r);
        let back = decode(&bytes).expect("decodes");
        assert_eq!(back.batch.samples.len(), r.batch.samples.len());
        assert!(back.batch.samples[52].values[0].1 != back.batch.samples[52].values[0].1, "NaN");
        let mut expect = r.clone();
        expect.batch.samples.pop();
        let mut got = back;
        got.batch.samples.pop();
        assert_eq!(got, expect);
        let names = bytes.windows(5).filter(|w| w == b"ticks").count();
        assert_eq!(names, 1, "a layout shared by 51 samples is written once");
        let postcard = message::encode(&r).len();
        assert!(bytes.len() * 10 < postcard * 8, "{} bytes vs {postcard} as postcard", bytes.len());
    }

    #[test]
    fn first_format_records_are_still_read() {
        let r = record(vec![sample("load", "-", vec![("load1", Value::Gauge(0.5))])]);
        assert_eq!(decode(&message::encode(&r)), Ok(r));
    }

    #[test]
    fn damage_is_an_error_not_a_panic() {
        let r = record(vec![
            sample("cpu", "0", vec![("user", Value::Gauge(0.5)), ("m", Value::Text("é".into()))]),
            sample("cpu", "1", vec![("user", Value::Gauge(0.25)), ("m", Value::Text("x".into()))]),
        ]);
        let bytes = encoded(&r);
        for cut in 0..bytes.len() {
            assert!(decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        assert_eq!(decode(&[MARKER, 9, 1]), Err(FormatError::UnknownVersion(9)));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(decode(&trailing).is_err());
        for i in 2..bytes.len() {
            for bit in 0..8 {
                let mut flipped = bytes.clone();
                flipped[i] ^= 1 << bit;
                let _ = decode(&flipped);
            }
        }
    }

    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            any::<f64>().prop_map(Value::Gauge),
            any::<f64>().prop_map(Value::Counter),
            ".{0,12}".prop_map(Value::Text),
        ]
    }

    proptest! {
        #[test]
        fn any_batch_round_trips_bit_for_bit(
            samples in prop::collection::vec((
                prop_oneof![Just("cpu"), Just("disk"), Just("é")],
                prop::collection::vec((".{0,6}", ".{0,6}"), 0..3),
                any::<u64>(),
                prop::collection::vec((prop_oneof![Just("a"), Just("b"), Just("c")], value()), 0..5),
            ), 0..40),
        ) {
            let samples: Vec<Sample> = samples
                .into_iter()
                .map(|(c, labels, time_ms, values)| Sample {
                    collector: c.into(),
                    time_ms,
                    labels: labels.into(),
                    values: values.into_iter().map(|(n, v)| (FieldName::from(n), v)).collect(),
                })
                .collect();
            let r = record(samples);
            let bytes = encoded(&r);
            let back = decode(&bytes).expect("decodes");
            // Compared as bytes of the first format, so NaNs compare bit for bit.
            prop_assert_eq!(message::encode(&back), message::encode(&r));
            // Read in place, the same samples.
            let Ok(Viewed::View(mut v)) = view(&bytes) else { panic!("a view") };
            prop_assert_eq!((v.agent, v.seq), (r.agent.as_str(), r.batch.seq));
            let mut viewed = Vec::new();
            while let Some(s) = v.next_sample().expect("sample") {
                let layout = v.layout(s.layout);
                viewed.push(Sample {
                    collector: s.collector.into(),
                    time_ms: s.time_ms,
                    labels: s.labels().map(|(k, v)| (k.to_owned(), v.to_owned())).collect::<Vec<_>>().into(),
                    values: s.values(layout).map(|(n, v)| (FieldName::from(n), v)).collect(),
                });
            }
            prop_assert_eq!(message::encode(&viewed), message::encode(&r.batch.samples));
        }
    }
}
