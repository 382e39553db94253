//! The `entropy` collector: how many bits of entropy the kernel's random
//! pool holds, from `/proc/sys/kernel/random/entropy_avail`, and the pool's
//! size, from `/proc/sys/kernel/random/poolsize` (node_exporter's
//! `node_entropy_available_bits` and `node_entropy_pool_size_bits`; here
//! `available` and `pool_size`, counted in bits, since Prometheus' naming
//! rules take a `_bits` suffix for a unit that is not a base unit).
//!
//! A small collector of its own rather than part of `uptime`, so that its
//! grant is only `/proc/sys/kernel/random` and it can be left out where it
//! means little: since Linux 5.18 the random driver no longer estimates
//! entropy, and both files read a constant 256. On older kernels a low
//! value (below a few hundred bits) can stall readers of `/dev/random`.
//! One sample without labels carries both gauges.

use wasmtap_collector::{Descriptor, Gauge, Guest, Sample, SampleBuilder, Schema, procfs};

struct Entropy;

/// The directory the collector reads.
pub const DIR: &str = "/proc/sys/kernel/random";

struct Fields {
    available: Gauge,
    pool_size: Gauge,
}

fn schema() -> (Schema, Fields) {
    let mut s = Schema::new();
    let f = Fields {
        available: s.gauge("available", "", "Bits of entropy the kernel's random pool holds"),
        pool_size: s.gauge("pool_size", "", "Size of the kernel's random pool, in bits"),
    };
    (s, f)
}

/// Parses a file holding one number of bits (`entropy_avail`, `poolsize`).
pub fn parse(text: &str) -> Result<u64, String> {
    let mut words = text.split_whitespace();
    let word = words.next().ok_or("empty file")?;
    if words.next().is_some() {
        return Err("more than one number".into());
    }
    procfs::parse_u64(word, "number of bits")
}

fn read(file: &str) -> Result<u64, String> {
    let path = format!("{DIR}/{file}");
    parse(&procfs::read(&path)?).map_err(|e| format!("{path}: {e}"))
}

impl Guest for Entropy {
    fn describe() -> Descriptor {
        schema().0.into_descriptor("entropy", env!("CARGO_PKG_VERSION"), 60_000)
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        wasmtap_collector::config::only(&config, &[])
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let (_, f) = schema();
        Ok(vec![
            SampleBuilder::new()
                .gauge(f.available, read("entropy_avail")? as f64)
                .gauge(f.pool_size, read("poolsize")? as f64)
                .build(),
        ])
    }
}

wasmtap_collector::export!(Entropy);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_this_machines_files() {
        assert_eq!(parse(include_str!("../fixtures/entropy_avail-6.18.44")), Ok(256));
        assert_eq!(parse(include_str!("../fixtures/poolsize-6.18.44")), Ok(256));
    }

    #[test]
    fn parses_an_older_kernels_pool() {
        // Before 5.18 the pool was 4096 bits and the estimate moved; this
        // fixture is constructed after the documented format of those kernels.
        assert_eq!(parse(include_str!("../fixtures/entropy_avail-5.4-constructed")), Ok(3764));
        assert_eq!(parse(include_str!("../fixtures/poolsize-5.4-constructed")), Ok(4096));
    }

    #[test]
    fn refuses_malformed_input() {
        for bad in ["", "\n", "x", "-1", "12 13", "99999999999999999999"] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
    }
}
