//! Declared-field enforcement: a collector's schema is read once at load, and
//! every sample it returns is checked against it before anything leaves the
//! sandbox boundary.
//!
//! - A value addressed to an undeclared field index is dropped and counted.
//! - A number for a text field, or text for a numeric field, is dropped and counted.
//! - Caps on samples, labels and text sizes fail the whole call: a collector
//!   over them is broken or hostile, and its output is not trusted.

use std::time::Duration;

use wasmtap_protocol::decimal;
use wasmtap_protocol::message::{Sample, Value};

use crate::runtime::bindings::wasmtap::collector::types as wit;

/// Most fields a collector may declare.
pub const MAX_FIELDS: usize = 1024;
/// Longest collector or field name, in bytes.
pub const MAX_NAME: usize = 64;
/// Longest unit or help text, in bytes.
pub const MAX_DOC: usize = 256;
/// Most decimal places a field may declare (the compact codec's largest scale).
pub const MAX_PRECISION: u8 = decimal::MAX_SCALE;

/// Caps on what one `collect` may return.
#[derive(Debug, Clone, Copy)]
pub struct OutputLimits {
    /// Samples per call.
    pub max_samples: usize,
    /// Labels per sample.
    pub max_labels: usize,
    /// Bytes in one label name or value.
    pub max_label_len: usize,
    /// Bytes in one text value.
    pub max_text_len: usize,
    /// Values (numbers and texts) per call.
    pub max_values: usize,
    /// Bytes of labels and text values per call.
    pub max_text_bytes: usize,
}

impl OutputLimits {
    /// The most data the host copies out of a collector in one call (its
    /// return value, or the arguments of one import call), counted as
    /// wasmtime counts it: each list's length times the host size of its
    /// element, plus each string's bytes. This is the store's *hostcall
    /// fuel*: any output within the caps fits, and a larger one is refused
    /// as soon as it is seen, before the host copies it: a collector
    /// returning a million samples is refused from the list's length
    /// alone, instead of holding the thread every collector runs on while
    /// the host copies output it would refuse.
    pub fn copy_budget(&self) -> usize {
        use std::mem::size_of;
        let samples = self.max_samples.saturating_mul(size_of::<wit::Sample>());
        let labels = self
            .max_samples
            .saturating_mul(self.max_labels)
            .saturating_mul(size_of::<(String, String)>());
        let values =
            self.max_values.saturating_mul(size_of::<wit::Number>().max(size_of::<wit::Text>()));
        samples
            .saturating_add(labels)
            .saturating_add(values)
            .saturating_add(self.max_text_bytes)
            .saturating_add(COPY_SLACK)
    }
}

/// Room in [`OutputLimits::copy_budget`] for the result's own wrapping and
/// an error message.
const COPY_SLACK: usize = 64 << 10;

impl Default for OutputLimits {
    fn default() -> Self {
        Self {
            max_samples: 10_000,
            max_labels: 32,
            max_label_len: 256,
            max_text_len: 4096,
            max_values: 100_000,
            max_text_bytes: 4 << 20,
        }
    }
}

/// The kind of a declared field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Numeric, goes up and down.
    Gauge,
    /// Numeric, monotonically increasing.
    Counter,
    /// Text.
    Text,
}

impl Kind {
    /// Its name in the WIT contract: `gauge`, `counter` or `text`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Gauge => "gauge",
            Self::Counter => "counter",
            Self::Text => "text",
        }
    }
}

/// One declared field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldSpec {
    /// Field name.
    pub name: wasmtap_protocol::message::FieldName,
    /// Its kind.
    pub kind: Kind,
    /// Its unit.
    pub unit: String,
    /// One line of help.
    pub help: String,
    /// Decimal places numbers are rounded to before they are shipped.
    pub precision: Option<u8>,
}

impl FieldSpec {
    /// `v` rounded to the declared precision ([`decimal::round`]); as
    /// given when the field declares none.
    pub fn round(&self, v: f64) -> f64 {
        self.precision.map_or(v, |places| decimal::round(v, places))
    }
}

/// A collector's validated self-description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    /// Collector name.
    pub name: String,
    /// Collector version.
    pub version: String,
    /// The interval it suggests.
    pub default_interval: Duration,
    /// Its fields, by index.
    pub fields: Vec<FieldSpec>,
}

/// Why a collector's `describe` was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SchemaError {
    /// A name is empty, too long, or has characters outside the allowed set.
    #[error("invalid {what} name {name:?}")]
    BadName {
        /// Collector or field.
        what: &'static str,
        /// The offending name (escaped).
        name: String,
    },
    /// Two fields share a name.
    #[error("field {0:?} is declared twice")]
    Duplicate(String),
    /// More than [`MAX_FIELDS`] fields.
    #[error("{0} fields declared; the limit is {MAX_FIELDS}")]
    TooManyFields(usize),
    /// A unit, help or version text is too long.
    #[error("{0} is longer than {MAX_DOC} bytes")]
    DocTooLong(String),
    /// A precision beyond [`MAX_PRECISION`] decimal places.
    #[error("field {field:?} declares {places} decimal places; at most {MAX_PRECISION} are kept")]
    BadPrecision {
        /// The field.
        field: String,
        /// The declared places.
        places: u8,
    },
}

/// One `collect` returned more than its caps allow.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OutputError {
    /// Too many samples or values.
    #[error("returned {got} {what}; the limit is {max}")]
    TooMany {
        /// Samples, labels or values.
        what: &'static str,
        /// How many.
        got: usize,
        /// The cap.
        max: usize,
    },
    /// A label or text is too long.
    #[error("a {what} of {got} bytes is over the limit of {max}")]
    TooLong {
        /// Label or text.
        what: &'static str,
        /// Its length.
        got: usize,
        /// The cap.
        max: usize,
    },
}

fn valid_name(name: &str, first: impl Fn(char) -> bool, rest: impl Fn(char) -> bool) -> bool {
    let mut chars = name.chars();
    name.len() <= MAX_NAME && chars.next().is_some_and(first) && chars.all(rest)
}

impl Schema {
    /// Validates what `describe` returned.
    pub fn from_descriptor(d: wit::Descriptor) -> Result<Self, SchemaError> {
        let lower = |c: char| c.is_ascii_lowercase();
        if !valid_name(&d.name, lower, |c| lower(c) || c.is_ascii_digit() || c == '_' || c == '-') {
            return Err(SchemaError::BadName {
                what: "collector",
                name: d.name.escape_debug().to_string(),
            });
        }
        if d.version.len() > MAX_DOC {
            return Err(SchemaError::DocTooLong("version".into()));
        }
        if d.fields.len() > MAX_FIELDS {
            return Err(SchemaError::TooManyFields(d.fields.len()));
        }
        let mut fields = Vec::with_capacity(d.fields.len());
        let mut seen = std::collections::HashSet::new();
        for f in d.fields {
            let first = |c: char| c.is_ascii_lowercase() || c == '_';
            if !valid_name(&f.name, first, |c| first(c) || c.is_ascii_digit()) {
                return Err(SchemaError::BadName {
                    what: "field",
                    name: f.name.escape_debug().to_string(),
                });
            }
            if !seen.insert(f.name.clone()) {
                return Err(SchemaError::Duplicate(f.name));
            }
            if f.unit.len() > MAX_DOC || f.help.len() > MAX_DOC {
                return Err(SchemaError::DocTooLong(format!("unit or help of field {}", f.name)));
            }
            let kind = match f.kind {
                wit::FieldKind::Gauge => Kind::Gauge,
                wit::FieldKind::Counter => Kind::Counter,
                wit::FieldKind::Text => Kind::Text,
            };
            if let Some(places) = f.precision.filter(|p| *p > MAX_PRECISION) {
                return Err(SchemaError::BadPrecision { field: f.name, places });
            }
            let precision = f.precision.filter(|_| kind != Kind::Text);
            fields.push(FieldSpec {
                name: f.name.into(),
                kind,
                unit: f.unit,
                help: f.help,
                precision,
            });
        }
        Ok(Self {
            name: d.name,
            version: d.version,
            default_interval: Duration::from_millis(d.default_interval_ms.max(1)),
            fields,
        })
    }

    /// Checks raw samples against the schema and the caps.
    pub fn enforce(
        &self,
        raw: Vec<wit::Sample>,
        time_ms: u64,
        limits: &OutputLimits,
    ) -> Result<Enforced, OutputError> {
        let too_many = |what, got, max| OutputError::TooMany { what, got, max };
        if raw.len() > limits.max_samples {
            return Err(too_many("samples", raw.len(), limits.max_samples));
        }
        let total: usize = raw.iter().map(|s| s.numbers.len() + s.texts.len()).sum();
        if total > limits.max_values {
            return Err(too_many("values", total, limits.max_values));
        }
        let text_bytes: usize = raw
            .iter()
            .map(|s| {
                s.labels.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>()
                    + s.texts.iter().map(|t| t.value.len()).sum::<usize>()
            })
            .sum();
        if text_bytes > limits.max_text_bytes {
            return Err(too_many("bytes of labels and text", text_bytes, limits.max_text_bytes));
        }
        let mut out = Enforced { samples: Vec::with_capacity(raw.len()), ..Enforced::default() };
        for s in raw {
            if s.labels.len() > limits.max_labels {
                return Err(too_many("labels in one sample", s.labels.len(), limits.max_labels));
            }
            for (k, v) in &s.labels {
                let longest = k.len().max(v.len());
                if longest > limits.max_label_len {
                    return Err(OutputError::TooLong {
                        what: "label",
                        got: longest,
                        max: limits.max_label_len,
                    });
                }
            }
            let mut values = Vec::with_capacity(s.numbers.len() + s.texts.len());
            for n in s.numbers {
                match self.fields.get(n.field as usize) {
                    Some(f) if f.kind == Kind::Gauge => {
                        values.push((f.name.clone(), Value::Gauge(f.round(n.value))))
                    }
                    Some(f) if f.kind == Kind::Counter => {
                        values.push((f.name.clone(), Value::Counter(f.round(n.value))))
                    }
                    Some(_) => out.wrong_kind += 1,
                    None => out.undeclared += 1,
                }
            }
            for t in s.texts {
                if t.value.len() > limits.max_text_len {
                    return Err(OutputError::TooLong {
                        what: "text value",
                        got: t.value.len(),
                        max: limits.max_text_len,
                    });
                }
                match self.fields.get(t.field as usize) {
                    Some(f) if f.kind == Kind::Text => {
                        values.push((f.name.clone(), Value::Text(t.value)))
                    }
                    Some(_) => out.wrong_kind += 1,
                    None => out.undeclared += 1,
                }
            }
            if !values.is_empty() {
                out.samples.push(Sample {
                    collector: self.name.as_str().into(),
                    time_ms,
                    labels: s.labels.into(),
                    values,
                });
            }
        }
        Ok(out)
    }
}

/// The checked output of one `collect`.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Enforced {
    /// Samples with only declared, correctly typed values.
    pub samples: Vec<Sample>,
    /// Values dropped because their field index was never declared.
    pub undeclared: u64,
    /// Values dropped because their type did not match the declared kind.
    pub wrong_kind: u64,
}

#[cfg(test)]
mod tests;
