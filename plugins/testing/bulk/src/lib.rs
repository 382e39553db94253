//! Benchmark collector `bulk`: declares 100 gauges and returns `values`
//! numbers per collect (manifest `[config] values`, default 10,000), as
//! samples of 100 values each with one label. It measures what the host
//! pays per value, lifting included.

use std::cell::Cell;

use wasmtap_collector::bindings::wasmtap::collector::types::Number;
use wasmtap_collector::{Descriptor, Guest, Sample, Schema, config};

/// Gauges per sample (and declared fields).
pub const WIDTH: u32 = 100;

thread_local! {
    static VALUES: Cell<u32> = const { Cell::new(10_000) };
}

struct Bulk;

impl Guest for Bulk {
    fn describe() -> Descriptor {
        let mut s = Schema::new();
        for i in 0..WIDTH {
            s.gauge(&format!("g{i}"), "", "A benchmark value");
        }
        s.into_descriptor("bulk", env!("CARGO_PKG_VERSION"), 1_000)
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        config::only(&config, &["values"])?;
        let n = config::number(&config, "values", 10_000, 0..=1_000_000)?;
        VALUES.with(|v| v.set(u32::try_from(n).unwrap_or(u32::MAX)));
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        Ok(samples(VALUES.with(Cell::get)))
    }
}

/// `n` values in samples of [`WIDTH`].
pub fn samples(n: u32) -> Vec<Sample> {
    let mut out = Vec::with_capacity((n / WIDTH + 1) as usize);
    let mut left = n;
    let mut series = 0u32;
    while left > 0 {
        let width = left.min(WIDTH);
        let numbers =
            (0..width).map(|i| Number { field: i, value: f64::from(series * WIDTH + i) }).collect();
        out.push(Sample {
            labels: vec![("series".into(), series.to_string())],
            numbers,
            texts: Vec::new(),
        });
        left -= width;
        series += 1;
    }
    out
}

wasmtap_collector::export!(Bulk);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produces_exactly_n_values() {
        for n in [0, 1, 99, 100, 101, 10_000] {
            let total: usize = samples(n).iter().map(|s| s.numbers.len()).sum();
            assert_eq!(total, n as usize);
        }
    }
}
