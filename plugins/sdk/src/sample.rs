//! Building samples with typed field handles.

use crate::bindings::wasmtap::collector::types::{Number, Sample, Text};
use crate::schema::{Counter, Gauge, TextField};

/// Builds one [`Sample`].
#[derive(Debug)]
pub struct SampleBuilder {
    sample: Sample,
}

impl Default for SampleBuilder {
    fn default() -> Self {
        let sample = Sample { labels: Vec::new(), numbers: Vec::new(), texts: Vec::new() };
        Self { sample }
    }
}

impl SampleBuilder {
    /// A sample with no labels and no values.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a label to the series identity.
    pub fn label(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.sample.labels.push((name.into(), value.into()));
        self
    }

    /// Sets a gauge.
    pub fn gauge(mut self, field: Gauge, value: f64) -> Self {
        self.sample.numbers.push(Number { field: field.0, value });
        self
    }

    /// Sets a counter.
    pub fn counter(mut self, field: Counter, value: f64) -> Self {
        self.sample.numbers.push(Number { field: field.0, value });
        self
    }

    /// Sets a text field.
    pub fn text(mut self, field: TextField, value: impl Into<String>) -> Self {
        self.sample.texts.push(Text { field: field.0, value: value.into() });
        self
    }

    /// The finished sample.
    pub fn build(self) -> Sample {
        self.sample
    }
}
