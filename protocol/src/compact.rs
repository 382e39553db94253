//! Compact batches: a per-session series dictionary and numbers encoded
//! against each series' previous value.
//!
//! A *series* is a collector, its labels and its field layout (names and
//! kinds). The first time a session sees a series, the batch carries its
//! definition (sealed); afterwards samples name it by its number, the order
//! in which definitions were sent. Numbers travel on the simple path, each
//! encoded against the same field's previous value in the series:
//!
//! - a value that is an exact decimal `m / 10^e` (`|m| ≤ 2^53`, `e ≤ 9`) at
//!   the same scale as the previous one is sent as the varint
//!   `zigzag(m − m_prev) << 1` — one byte for an unchanged value or a small step;
//! - an exact decimal at a new scale is `1 | e << 2`, then `zigzag(m)`;
//! - anything else (NaN, infinities, −0, long fractions) is `3`, then the
//!   XOR of its IEEE-754 bits with the previous value's, as a varint.
//!
//! Times are sent as the change of the series' sampling interval
//! (delta of delta), which is zero in steady state.
//!
//! Both sides keep the same state, so batches must be decoded in the order
//! they were encoded, each exactly once per session; a batch with `reset`
//! set starts a fresh dictionary. See `PROTOCOL.md`.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::decimal::{self, at_scale, in_range};
use crate::message::{Batch, CollectorName, FieldName, Labels, Sample, Value};
use crate::simple::{NumericPayload, NumericReader, NumericWriter};

#[cfg(test)]
mod tests;

/// Most series one session's dictionary holds before it starts over.
pub const MAX_SERIES: usize = 1 << 16;
pub use crate::decimal::MAX_SCALE;
/// Most numbers put in one simple payload.
pub const MAX_NUMBERS_PER_PAYLOAD: usize = 16 * 1024;

/// What kind of value a field holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FieldKind {
    /// A number that goes up and down.
    Gauge,
    /// A monotonic number.
    Counter,
    /// Text (sealed, never on the simple path).
    Text,
}

/// A series' definition, sent once per session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesDef {
    /// The collector.
    pub collector: String,
    /// The series' labels.
    pub labels: Vec<(String, String)>,
    /// Its fields, in order.
    pub fields: Vec<(String, FieldKind)>,
}

/// One sample in a compact batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactSample {
    /// The series' number in this session's dictionary.
    pub series: u32,
    /// The change of the series' sampling interval, in ms.
    pub time: i64,
}

/// The sealed part of a compact batch (the numbers travel on the simple path).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompactHead {
    /// Per-agent batch sequence number.
    pub seq: u64,
    /// The dictionary starts over before this batch.
    pub reset: bool,
    /// Series first seen in this batch, numbered on from the dictionary's size.
    pub defs: Vec<SeriesDef>,
    /// The samples.
    pub samples: Vec<CompactSample>,
    /// The values of the samples' text fields: each sample's, in field
    /// order, sample after sample. Their count follows from the series'
    /// definitions, so no sample carries one.
    pub texts: Vec<String>,
}

/// Why a compact batch could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A sample names a series that was never defined.
    #[error("sample refers to undefined series {0}")]
    UnknownSeries(u32),
    /// The dictionary would grow beyond [`MAX_SERIES`].
    #[error("series dictionary over its limit of {MAX_SERIES}")]
    TooManySeries,
    /// The dictionary would hold more bytes than the decoder allows.
    #[error("series dictionary over its memory limit of {0} bytes")]
    TooLarge(usize),
    /// The texts do not match the samples' text fields.
    #[error("texts do not match the batch: {0}")]
    Texts(&'static str),
    /// The numbers ran out, were malformed, or were left over.
    #[error("numbers do not match the batch: {0}")]
    Numbers(&'static str),
}

#[derive(Debug, Clone, Copy, Default)]
enum Prev {
    #[default]
    None,
    Decimal {
        m: i64,
        e: u8,
    },
    Bits(u64),
}

impl Prev {
    fn bits(self) -> u64 {
        match self {
            Prev::None => 0,
            Prev::Decimal { m, e } => decimal::value(m, e).to_bits(),
            Prev::Bits(b) => b,
        }
    }
}

#[derive(Debug, Default)]
struct SeriesState {
    time: u64,
    interval: i64,
    numbers: Vec<Prev>,
}

impl SeriesState {
    fn new(numeric_fields: usize) -> Self {
        Self { time: 0, interval: 0, numbers: vec![Prev::None; numeric_fields] }
    }
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

fn put_number(w: &mut NumericWriter, prev: &mut Prev, v: f64) {
    // A value that the previous one's scale still represents exactly keeps
    // that scale (12.3 after 12.35 is 1230 hundredths, one byte of delta),
    // so that rounded values do not flap between scales.
    let same_scale = match *prev {
        Prev::Decimal { e, .. } if v.is_finite() => at_scale(v, e).map(|m| (m, e)),
        _ => None,
    };
    match (same_scale.or_else(|| decimal::fewest(v)), *prev) {
        (Some((m, e)), Prev::Decimal { m: pm, e: pe }) if pe == e => {
            w.u64(zigzag(m - pm) << 1);
            *prev = Prev::Decimal { m, e };
        }
        (Some((m, e)), _) => {
            w.u64(1 | (u64::from(e) << 2)).i64(m);
            *prev = Prev::Decimal { m, e };
        }
        (None, p) => {
            let bits = v.to_bits();
            w.u64(3).u64(bits ^ p.bits());
            *prev = Prev::Bits(bits);
        }
    }
}

fn take_number(r: &mut NumericReader<'_>, prev: &mut Prev) -> Result<f64, DecodeError> {
    let bad = DecodeError::Numbers("malformed number");
    let h = r.u64().map_err(|_| bad.clone())?;
    if h & 1 == 0 {
        let Prev::Decimal { m: pm, e } = *prev else {
            return Err(DecodeError::Numbers("delta without a decimal predecessor"));
        };
        let m = pm.checked_add(unzigzag(h >> 1)).filter(|m| in_range(*m));
        let m = m.ok_or(DecodeError::Numbers("delta out of range"))?;
        *prev = Prev::Decimal { m, e };
        Ok(decimal::value(m, e))
    } else if h & 3 == 1 {
        let e = u8::try_from(h >> 2).ok().filter(|e| *e <= MAX_SCALE);
        let e = e.ok_or(DecodeError::Numbers("decimal scale out of range"))?;
        let m = r.i64().map_err(|_| bad)?;
        if !in_range(m) {
            return Err(DecodeError::Numbers("decimal out of range"));
        }
        *prev = Prev::Decimal { m, e };
        Ok(decimal::value(m, e))
    } else if h == 3 {
        let bits = r.u64().map_err(|_| bad)? ^ prev.bits();
        *prev = Prev::Bits(bits);
        Ok(f64::from_bits(bits))
    } else {
        Err(DecodeError::Numbers("unknown number tag"))
    }
}

fn put_time(state: &mut SeriesState, t: u64) -> i64 {
    let interval = t.wrapping_sub(state.time) as i64;
    let change = interval.wrapping_sub(state.interval);
    state.time = t;
    state.interval = interval;
    change
}

fn take_time(state: &mut SeriesState, change: i64) -> u64 {
    state.interval = state.interval.wrapping_add(change);
    state.time = state.time.wrapping_add(state.interval as u64);
    state.time
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct SeriesKey {
    collector: CollectorName,
    labels: Labels,
    fields: Vec<(FieldName, FieldKind)>,
}

fn kind_of(v: &Value) -> FieldKind {
    match v {
        Value::Gauge(_) => FieldKind::Gauge,
        Value::Counter(_) => FieldKind::Counter,
        Value::Text(_) => FieldKind::Text,
    }
}

/// Collects numbers into payloads of at most [`MAX_NUMBERS_PER_PAYLOAD`].
#[derive(Debug, Default)]
struct Payloads {
    done: Vec<NumericPayload>,
    current: NumericWriter,
    count: usize,
}

impl Payloads {
    fn push(&mut self, prev: &mut Prev, v: f64) {
        put_number(&mut self.current, prev, v);
        self.count += 1;
        if self.count == MAX_NUMBERS_PER_PAYLOAD {
            self.done.push(std::mem::take(&mut self.current).finish());
            self.count = 0;
        }
    }

    fn finish(mut self) -> Vec<NumericPayload> {
        if !self.current.is_empty() {
            self.done.push(self.current.finish());
        }
        self.done
    }
}

/// The sending side's dictionary and per-series state, for one session.
#[derive(Debug, Default)]
pub struct Encoder {
    index: HashMap<SeriesKey, u32>,
    series: Vec<SeriesState>,
}

impl Encoder {
    /// A fresh encoder, for a new session.
    pub fn new() -> Self {
        Self::default()
    }

    /// Series in the dictionary.
    pub fn series(&self) -> usize {
        self.series.len()
    }

    /// Encodes `batch` into its sealed head and its numbers.
    pub fn encode(&mut self, batch: &Batch) -> (CompactHead, Vec<NumericPayload>) {
        let reset = self.series.len() + batch.samples.len() > MAX_SERIES;
        if reset {
            self.index.clear();
            self.series.clear();
        }
        let mut head = CompactHead {
            seq: batch.seq,
            reset,
            defs: Vec::new(),
            samples: Vec::with_capacity(batch.samples.len()),
            texts: Vec::new(),
        };
        let mut numbers = Payloads::default();
        for sample in &batch.samples {
            let id = self.series_of(sample, &mut head.defs);
            let state = &mut self.series[id as usize];
            let time = put_time(state, sample.time_ms);
            let mut prevs = state.numbers.iter_mut();
            for (_, value) in &sample.values {
                match value {
                    Value::Gauge(v) | Value::Counter(v) => {
                        if let Some(prev) = prevs.next() {
                            numbers.push(prev, *v);
                        }
                    }
                    Value::Text(t) => head.texts.push(t.clone()),
                }
            }
            head.samples.push(CompactSample { series: id, time });
        }
        (head, numbers.finish())
    }

    fn series_of(&mut self, sample: &Sample, defs: &mut Vec<SeriesDef>) -> u32 {
        let key = SeriesKey {
            collector: sample.collector.clone(),
            labels: sample.labels.clone(),
            fields: sample.values.iter().map(|(n, v)| (n.clone(), kind_of(v))).collect(),
        };
        if let Some(id) = self.index.get(&key) {
            return *id;
        }
        let id = u32::try_from(self.series.len()).unwrap_or(u32::MAX);
        let numeric = key.fields.iter().filter(|(_, k)| *k != FieldKind::Text).count();
        self.series.push(SeriesState::new(numeric));
        defs.push(SeriesDef {
            collector: key.collector.to_string(),
            labels: key.labels.to_vec(),
            fields: key.fields.iter().map(|(n, k)| (n.to_string(), *k)).collect(),
        });
        self.index.insert(key, id);
        id
    }
}

#[derive(Debug)]
struct KnownSeries {
    collector: CollectorName,
    labels: Labels,
    fields: Vec<(FieldName, FieldKind)>,
    state: SeriesState,
}

/// The receiving side's dictionary and per-series state, for one session.
#[derive(Debug)]
pub struct Decoder {
    series: Vec<KnownSeries>,
    /// Field names, one shared copy each: series with the same fields
    /// (one per CPU, disk, …) then share them, and consumers can compare
    /// layouts by pointer.
    names: std::collections::HashSet<FieldName>,
    bytes: usize,
    max_bytes: usize,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::with_limit(usize::MAX)
    }
}

/// What a definition costs a decoder, roughly: its text plus bookkeeping.
fn def_cost(def: &SeriesDef) -> usize {
    let labels: usize = def.labels.iter().map(|(k, v)| k.len() + v.len() + 48).sum();
    let fields: usize = def.fields.iter().map(|(n, _)| n.len() + 40).sum();
    def.collector.len() + labels + fields + 96
}

impl Decoder {
    /// A fresh decoder, for a new session.
    pub fn new() -> Self {
        Self::default()
    }

    /// A fresh decoder whose dictionary may hold about `max_bytes`.
    pub fn with_limit(max_bytes: usize) -> Self {
        Self { series: Vec::new(), names: Default::default(), bytes: 0, max_bytes }
    }

    /// Series in the dictionary.
    pub fn series(&self) -> usize {
        self.series.len()
    }

    fn intern(&mut self, name: String) -> FieldName {
        if let Some(shared) = self.names.get(name.as_str()) {
            return shared.clone();
        }
        let shared = FieldName::from(name);
        self.names.insert(shared.clone());
        shared
    }

    /// Rebuilds the batch from its head and its verified numbers. After an
    /// error the decoder's state is unspecified and the session must end.
    pub fn decode(
        &mut self,
        head: CompactHead,
        payloads: &[NumericPayload],
    ) -> Result<Batch, DecodeError> {
        if head.reset {
            self.series.clear();
            self.names.clear();
            self.bytes = 0;
        }
        if self.series.len() + head.defs.len() > MAX_SERIES {
            return Err(DecodeError::TooManySeries);
        }
        let added: usize = head.defs.iter().map(def_cost).sum();
        if self.bytes.saturating_add(added) > self.max_bytes {
            return Err(DecodeError::TooLarge(self.max_bytes));
        }
        self.bytes += added;
        for def in head.defs {
            let fields: Vec<(FieldName, FieldKind)> =
                def.fields.into_iter().map(|(n, k)| (self.intern(n), k)).collect();
            let texts = fields.iter().filter(|(_, k)| *k == FieldKind::Text).count();
            self.series.push(KnownSeries {
                collector: def.collector.into(),
                labels: def.labels.into(),
                state: SeriesState::new(fields.len() - texts),
                fields,
            });
        }
        let mut readers = payloads.iter().map(NumericPayload::reader);
        let mut current = readers.next();
        let mut samples = Vec::with_capacity(head.samples.len());
        let mut texts = head.texts.into_iter();
        for s in head.samples {
            let known = self
                .series
                .get_mut(s.series as usize)
                .ok_or(DecodeError::UnknownSeries(s.series))?;
            let time_ms = take_time(&mut known.state, s.time);
            let mut prevs = known.state.numbers.iter_mut();
            let mut values = Vec::with_capacity(known.fields.len());
            for (name, kind) in &known.fields {
                let value = match kind {
                    FieldKind::Text => Value::Text(
                        texts.next().ok_or(DecodeError::Texts("fewer texts than fields"))?,
                    ),
                    numeric => {
                        let prev = prevs.next().ok_or(DecodeError::Numbers("field state"))?;
                        let v = loop {
                            let r = current
                                .as_mut()
                                .ok_or(DecodeError::Numbers("fewer numbers than fields"))?;
                            if !r.is_done() {
                                break take_number(r, prev)?;
                            }
                            current = readers.next();
                        };
                        if *numeric == FieldKind::Gauge {
                            Value::Gauge(v)
                        } else {
                            Value::Counter(v)
                        }
                    }
                };
                values.push((name.clone(), value));
            }
            samples.push(Sample {
                collector: known.collector.clone(),
                time_ms,
                labels: known.labels.clone(),
                values,
            });
        }
        if current.is_some_and(|r| !r.is_done()) || readers.any(|r| !r.is_done()) {
            return Err(DecodeError::Numbers("more numbers than fields"));
        }
        if texts.next().is_some() {
            return Err(DecodeError::Texts("more texts than fields"));
        }
        Ok(Batch { seq: head.seq, samples })
    }
}
