//! Declaring fields: each declaration returns a typed handle, so a numeric
//! field can only ever be given a number and a text field only text.

use crate::bindings::wasmtap::collector::types::{Descriptor, Field, FieldKind};

/// Handle of a declared gauge field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gauge(pub(crate) u32);

/// Handle of a declared counter field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter(pub(crate) u32);

/// A handle of a numeric field (a [`Gauge`] or a [`Counter`]).
pub trait Numeric: Copy {
    /// The field's index in the schema.
    fn index(self) -> u32;
}

impl Numeric for Gauge {
    fn index(self) -> u32 {
        self.0
    }
}

impl Numeric for Counter {
    fn index(self) -> u32 {
        self.0
    }
}

/// Handle of a declared text field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextField(pub(crate) u32);

/// The fields a collector declares, in declaration order.
#[derive(Debug, Default)]
pub struct Schema {
    fields: Vec<Field>,
}

impl Schema {
    /// An empty schema.
    pub fn new() -> Self {
        Self::default()
    }

    fn push(&mut self, name: &str, kind: FieldKind, unit: &str, help: &str) -> u32 {
        let index = u32::try_from(self.fields.len()).unwrap_or(u32::MAX);
        self.fields.push(Field {
            name: name.to_owned(),
            kind,
            unit: unit.to_owned(),
            help: help.to_owned(),
            precision: None,
        });
        index
    }

    /// Declares that `field`'s values are meaningful to `places` decimal
    /// places (at most 9): the host rounds each value to them before
    /// shipping, so noise below the precision costs no bytes on the wire.
    /// A percentage computed from two counters needs two places at most.
    pub fn precision(&mut self, field: impl Numeric, places: u8) {
        if let Some(f) = self.fields.get_mut(field.index() as usize) {
            f.precision = Some(places);
        }
    }

    /// Declares a gauge: a numeric value that goes up and down.
    pub fn gauge(&mut self, name: &str, unit: &str, help: &str) -> Gauge {
        Gauge(self.push(name, FieldKind::Gauge, unit, help))
    }

    /// Declares a counter: a monotonically increasing numeric total.
    pub fn counter(&mut self, name: &str, unit: &str, help: &str) -> Counter {
        Counter(self.push(name, FieldKind::Counter, unit, help))
    }

    /// Declares a text field.
    pub fn text(&mut self, name: &str, help: &str) -> TextField {
        TextField(self.push(name, FieldKind::Text, "", help))
    }

    /// The declared fields.
    pub fn fields(&self) -> &[Field] {
        &self.fields
    }

    /// The descriptor to return from `describe`.
    pub fn into_descriptor(self, name: &str, version: &str, interval_ms: u64) -> Descriptor {
        Descriptor {
            name: name.to_owned(),
            version: version.to_owned(),
            default_interval_ms: interval_ms,
            fields: self.fields,
        }
    }
}
