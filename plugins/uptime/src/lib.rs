//! The `uptime` collector: seconds since boot, from the first number of
//! `/proc/uptime`, and the boot time in Unix seconds, from the `btime` line
//! of `/proc/stat` (node_exporter's `node_boot_time_seconds`; it has no
//! uptime metric, `node_time_seconds - node_boot_time_seconds` is the same).
//!
//! One sample without labels carries both gauges. `uptime_seconds` keeps
//! the file's two decimal places; `boot_time_seconds` is whole seconds and
//! only changes when the wall clock is stepped (the kernel derives it from
//! the current time minus the uptime). Entropy is the `entropy` collector's.

use wasmtap_collector::{Descriptor, Gauge, Guest, Sample, SampleBuilder, Schema, procfs};

struct Uptime;

struct Fields {
    uptime: Gauge,
    boot_time: Gauge,
}

fn schema() -> (Schema, Fields) {
    let mut s = Schema::new();
    let f = Fields {
        uptime: s.gauge("uptime_seconds", "seconds", "Time since boot (/proc/uptime)"),
        boot_time: s.gauge(
            "boot_time_seconds",
            "seconds",
            "When the system booted, in seconds since the Unix epoch (btime of /proc/stat)",
        ),
    };
    s.precision(f.uptime, 2);
    s.precision(f.boot_time, 0);
    (s, f)
}

/// Seconds since boot from `/proc/uptime` (`14332.09 6449.83`: uptime, then
/// idle time summed over CPUs).
pub fn parse_uptime(text: &str) -> Result<f64, String> {
    let mut words = text.split_whitespace();
    let word = words.next().ok_or("empty /proc/uptime")?;
    if words.next().is_none() {
        return Err("truncated /proc/uptime".into());
    }
    match word.parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("bad uptime `{}`", word.escape_debug())),
    }
}

/// The boot time (`btime`, Unix seconds) from `/proc/stat`.
pub fn parse_btime(text: &str) -> Result<u64, String> {
    let line =
        text.lines().find_map(|l| l.strip_prefix("btime ")).ok_or("no btime line in /proc/stat")?;
    procfs::parse_u64(line.trim(), "btime")
}

impl Guest for Uptime {
    fn describe() -> Descriptor {
        schema().0.into_descriptor("uptime", env!("CARGO_PKG_VERSION"), 10_000)
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        wasmtap_collector::config::only(&config, &[])
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let uptime = parse_uptime(&procfs::read("/proc/uptime")?)?;
        let btime = parse_btime(&procfs::read("/proc/stat")?)?;
        let (_, f) = schema();
        Ok(vec![
            SampleBuilder::new().gauge(f.uptime, uptime).gauge(f.boot_time, btime as f64).build(),
        ])
    }
}

wasmtap_collector::export!(Uptime);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_this_machines_files() {
        assert_eq!(parse_uptime(include_str!("../fixtures/uptime-6.18.44")), Ok(14332.09));
        assert_eq!(parse_btime(include_str!("../fixtures/stat-6.18.44")), Ok(1_796_211_635));
    }

    #[test]
    fn refuses_malformed_uptime() {
        for bad in ["", "12.5", "x 1", "-1 2", "inf 1", "NaN 1"] {
            assert!(parse_uptime(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn refuses_malformed_stat() {
        for bad in ["", "cpu 1 2 3\nctxt 5\n", "btime\n", "btime x\n", "btime -5\n", "xbtime 5"] {
            assert!(parse_btime(bad).is_err(), "{bad:?} should fail");
        }
        assert_eq!(parse_btime("cpu 1\nbtime 42\nprocesses 3\n"), Ok(42));
    }
}
