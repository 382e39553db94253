//! The `vmstat` collector: page faults, paging, swapping and OOM kills
//! since boot, from `/proc/vmstat` (what node_exporter's `vmstat` collector
//! reports by default, as `node_vmstat_<name>`).
//!
//! One sample without labels carries these counters, each under the
//! kernel's own name so that node_exporter dashboards translate:
//! - `pgfault`: page faults, minor and major;
//! - `pgmajfault`: major page faults (the page had to be read from disk);
//! - `pgpgin_bytes`, `pgpgout_bytes`: bytes paged in from and out to block
//!   devices; the kernel counts kibibytes, the collector multiplies by 1024
//!   (node_exporter's `node_vmstat_pgpgin` is the kernel's kibibytes);
//! - `pswpin`, `pswpout`: pages swapped in and out;
//! - `oom_kill`: processes the out-of-memory killer killed (Linux 4.13 and
//!   later; left out on older kernels).
//!
//! A counter the kernel does not list is left out of the sample rather than
//! reported as zero.

use wasmtap_collector::{
    Counter, Descriptor, Guest, Sample, SampleBuilder, Schema, config, procfs,
};

struct Vmstat;

/// What the collector reports: the kernel's name, the field name, the
/// factor to the field's unit, the unit and the help text.
pub const COUNTERS: [(&str, &str, u64, &str, &str); 7] = [
    ("pgfault", "pgfault", 1, "faults", "Page faults, minor and major"),
    ("pgmajfault", "pgmajfault", 1, "faults", "Major page faults (the page was read from disk)"),
    ("pgpgin", "pgpgin_bytes", 1024, "bytes", "Bytes paged in from block devices"),
    ("pgpgout", "pgpgout_bytes", 1024, "bytes", "Bytes paged out to block devices"),
    ("pswpin", "pswpin", 1, "pages", "Pages swapped in"),
    ("pswpout", "pswpout", 1, "pages", "Pages swapped out"),
    ("oom_kill", "oom_kill", 1, "kills", "Processes killed by the out-of-memory killer"),
];

fn schema() -> (Schema, [Counter; 7]) {
    let mut s = Schema::new();
    let fields = COUNTERS.map(|(_, name, _, unit, help)| s.counter(name, unit, help));
    (s, fields)
}

/// Parses `/proc/vmstat` (`name value` lines) and returns the values of
/// [`COUNTERS`], in their order and units (`None` for the ones the kernel
/// does not list). A malformed line is an error, and so is a file that has
/// none of them.
pub fn parse(text: &str) -> Result<[Option<u64>; 7], String> {
    let mut out = [None; 7];
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut words = line.split_whitespace();
        let (Some(name), Some(value), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("bad line `{}`", line.escape_debug()));
        };
        let value = procfs::parse_u64(value, name)?;
        if let Some(i) = COUNTERS.iter().position(|c| c.0 == name) {
            out[i] = Some(value.saturating_mul(COUNTERS[i].2));
        }
    }
    if out.iter().all(Option::is_none) {
        return Err(
            "none of pgfault, pgmajfault, pgpgin, pgpgout, pswpin, pswpout, oom_kill".into()
        );
    }
    Ok(out)
}

impl Guest for Vmstat {
    fn describe() -> Descriptor {
        schema().0.into_descriptor("vmstat", env!("CARGO_PKG_VERSION"), 10_000)
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        config::only(&config, &[])
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let values =
            parse(&procfs::read("/proc/vmstat")?).map_err(|e| format!("/proc/vmstat: {e}"))?;
        let (_, fields) = schema();
        let mut sample = SampleBuilder::new();
        for (field, value) in fields.into_iter().zip(values) {
            if let Some(v) = value {
                sample = sample.counter(field, v as f64);
            }
        }
        Ok(vec![sample.build()])
    }
}

wasmtap_collector::export!(Vmstat);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_this_machines_file() {
        let v = parse(include_str!("../fixtures/vmstat-6.18.44")).expect("parses");
        assert_eq!(
            v,
            [
                Some(511_068_300),
                Some(129_393),
                Some(121_180_005 * 1024),
                Some(137_413_080 * 1024),
                Some(0),
                Some(0),
                Some(0)
            ]
        );
    }

    #[test]
    fn kernels_before_4_13_have_no_oom_kill() {
        // Constructed after the /proc/vmstat format of Linux 4.9 (no oom_kill line).
        let v = parse(include_str!("../fixtures/vmstat-4.9-constructed")).expect("parses");
        assert_eq!(v[6], None);
        assert_eq!(v[0], Some(20_815_377));
        assert_eq!(v[5], Some(1_537));
    }

    #[test]
    fn refuses_malformed_input() {
        for bad in [
            "",
            "nr_free_pages 5\n",
            "pgfault\n",
            "pgfault x\n",
            "pgfault -1\n",
            "pgfault 1 2\n",
            "pgfault 1\nnr_dirty\n",
            "pgfault 99999999999999999999\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn kibibytes_become_bytes_without_overflow() {
        let v = parse("pgpgin 18446744073709551615\n").expect("parses");
        assert_eq!(v[2], Some(u64::MAX), "saturates");
    }
}
