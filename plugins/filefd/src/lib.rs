//! The `filefd` collector: file handles the kernel has allocated and the
//! most it will allocate, from `/proc/sys/fs/file-nr` (what node_exporter's
//! `filefd` collector reports as `node_filefd_allocated` and
//! `node_filefd_maximum`).
//!
//! `file-nr` holds three numbers: allocated handles, allocated but unused
//! handles (always 0 since Linux 2.6) and the maximum (`fs.file-max`). One
//! sample without labels carries `allocated` and `maximum`, both gauges.

use wasmtap_collector::{Descriptor, Gauge, Guest, Sample, SampleBuilder, Schema, procfs};

struct Filefd;

/// The file the collector reads.
pub const PATH: &str = "/proc/sys/fs/file-nr";

struct Fields {
    allocated: Gauge,
    maximum: Gauge,
}

fn schema() -> (Schema, Fields) {
    let mut s = Schema::new();
    let f = Fields {
        allocated: s.gauge("allocated", "handles", "File handles allocated by the kernel"),
        maximum: s.gauge(
            "maximum",
            "handles",
            "Most file handles the kernel allocates (fs.file-max)",
        ),
    };
    (s, f)
}

/// The parsed content of `/proc/sys/fs/file-nr`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileNr {
    /// Allocated file handles.
    pub allocated: u64,
    /// Allocated but unused handles (0 on every kernel since 2.6).
    pub unused: u64,
    /// The maximum (`fs.file-max`).
    pub maximum: u64,
}

/// Parses `/proc/sys/fs/file-nr`, e.g. `609\t0\t2466116`.
pub fn parse(text: &str) -> Result<FileNr, String> {
    let words: Vec<&str> = text.split_whitespace().collect();
    let [allocated, unused, maximum] = words[..] else {
        return Err(format!("file-nr holds {} numbers, not 3", words.len()));
    };
    Ok(FileNr {
        allocated: procfs::parse_u64(allocated, "allocated file handles")?,
        unused: procfs::parse_u64(unused, "unused file handles")?,
        maximum: procfs::parse_u64(maximum, "file-max")?,
    })
}

impl Guest for Filefd {
    fn describe() -> Descriptor {
        schema().0.into_descriptor("filefd", env!("CARGO_PKG_VERSION"), 10_000)
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        wasmtap_collector::config::only(&config, &[])
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let nr = parse(&procfs::read(PATH)?).map_err(|e| format!("{PATH}: {e}"))?;
        let (_, f) = schema();
        Ok(vec![
            SampleBuilder::new()
                .gauge(f.allocated, nr.allocated as f64)
                .gauge(f.maximum, nr.maximum as f64)
                .build(),
        ])
    }
}

wasmtap_collector::export!(Filefd);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_this_machines_file() {
        let nr = parse(include_str!("../fixtures/file-nr-6.18.44")).expect("parses");
        assert_eq!(nr, FileNr { allocated: 648, unused: 0, maximum: 2_466_116 });
    }

    #[test]
    fn parses_a_large_maximum() {
        // 64-bit kernels since 5.x default file-max to LONG_MAX on some setups.
        let nr = parse("1024\t0\t9223372036854775807\n").expect("parses");
        assert_eq!(nr.maximum, i64::MAX as u64);
    }

    #[test]
    fn refuses_malformed_input() {
        for bad in ["", "1 0", "1 0 2 3", "x 0 2", "1 0 -2", "1 0 99999999999999999999"] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
    }
}
