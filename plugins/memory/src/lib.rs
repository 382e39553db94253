//! The `memory` collector: memory and swap usage from `/proc/meminfo`, in
//! bytes, computed the way `free` (procps-ng) does.
//!
//! One sample without labels. `used` is `total - free - buffers - cached`,
//! where `cached` is the page cache plus reclaimable slab (`Cached +
//! SReclaimable`, `free`'s "cache" column); `available` is the kernel's own
//! estimate (`MemAvailable`, absent before Linux 3.14, then not reported).

use wasmtap_collector::{Descriptor, Gauge, Guest, Sample, SampleBuilder, Schema, procfs};

struct Memory;

struct Fields {
    total: Gauge,
    free: Gauge,
    available: Gauge,
    buffers: Gauge,
    cached: Gauge,
    used: Gauge,
    used_percent: Gauge,
    swap_total: Gauge,
    swap_free: Gauge,
    swap_used: Gauge,
}

fn schema() -> (Schema, Fields) {
    let mut s = Schema::new();
    let f = Fields {
        total: s.gauge("total_bytes", "bytes", "Usable RAM (MemTotal)"),
        free: s.gauge("free_bytes", "bytes", "RAM not used at all (MemFree)"),
        available: s.gauge(
            "available_bytes",
            "bytes",
            "RAM available for new programs without swapping (MemAvailable)",
        ),
        buffers: s.gauge("buffers_bytes", "bytes", "Block device buffers (Buffers)"),
        cached: s.gauge(
            "cached_bytes",
            "bytes",
            "Page cache and reclaimable slab (Cached + SReclaimable)",
        ),
        used: s.gauge(
            "used_bytes",
            "bytes",
            "RAM in use: total - free - buffers - cached, as `free` reports",
        ),
        used_percent: s.gauge("used_percent", "percent", "used / total"),
        swap_total: s.gauge("swap_total_bytes", "bytes", "Swap space (SwapTotal)"),
        swap_free: s.gauge("swap_free_bytes", "bytes", "Unused swap space (SwapFree)"),
        swap_used: s.gauge("swap_used_bytes", "bytes", "Swap space in use"),
    };
    s.precision(f.used_percent, 2);
    (s, f)
}

/// Memory figures in bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Usage {
    /// `MemTotal`.
    pub total: u64,
    /// `MemFree`.
    pub free: u64,
    /// `MemAvailable`, when the kernel reports it.
    pub available: Option<u64>,
    /// `Buffers`.
    pub buffers: u64,
    /// `Cached + SReclaimable`.
    pub cached: u64,
    /// `total - free - buffers - cached`; `total - free` should that be negative.
    pub used: u64,
    /// `used / total` in percent (0 when total is 0).
    pub used_percent: f64,
    /// `SwapTotal`.
    pub swap_total: u64,
    /// `SwapFree`.
    pub swap_free: u64,
    /// `SwapTotal - SwapFree`.
    pub swap_used: u64,
}

/// Parses `/proc/meminfo` into the `key: value` pairs it holds, in bytes
/// (values in `kB` are multiplied by 1024; unitless counts are kept as is).
pub fn parse_meminfo(text: &str) -> Result<Vec<(&str, u64)>, String> {
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let (key, rest) = line
            .split_once(':')
            .ok_or_else(|| format!("bad /proc/meminfo line `{}`", line.escape_debug()))?;
        let mut words = rest.split_whitespace();
        let value = procfs::parse_u64(words.next().unwrap_or(""), key)?;
        let value = match words.next() {
            None => value,
            Some("kB") => value.checked_mul(1024).ok_or_else(|| format!("{key} overflows"))?,
            Some(unit) => return Err(format!("unknown unit `{}` of {key}", unit.escape_debug())),
        };
        out.push((key.trim(), value));
    }
    Ok(out)
}

/// Computes the reported figures from `/proc/meminfo`.
pub fn usage(text: &str) -> Result<Usage, String> {
    let pairs = parse_meminfo(text)?;
    let get = |key: &str| pairs.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let need = |key: &str| get(key).ok_or_else(|| format!("no {key} in /proc/meminfo"));
    let total = need("MemTotal")?;
    let free = need("MemFree")?;
    let buffers = get("Buffers").unwrap_or(0);
    let cached = get("Cached").unwrap_or(0).saturating_add(get("SReclaimable").unwrap_or(0));
    let used = match total.checked_sub(free.saturating_add(buffers).saturating_add(cached)) {
        Some(u) => u,
        None => total.saturating_sub(free),
    };
    let swap_total = get("SwapTotal").unwrap_or(0);
    let swap_free = get("SwapFree").unwrap_or(0);
    Ok(Usage {
        total,
        free,
        available: get("MemAvailable"),
        buffers,
        cached,
        used,
        used_percent: if total == 0 { 0.0 } else { used as f64 / total as f64 * 100.0 },
        swap_total,
        swap_free,
        swap_used: swap_total.saturating_sub(swap_free),
    })
}

impl Guest for Memory {
    fn describe() -> Descriptor {
        schema().0.into_descriptor("memory", env!("CARGO_PKG_VERSION"), 10_000)
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        wasmtap_collector::config::only(&config, &[])
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let u = usage(&procfs::read("/proc/meminfo")?)?;
        let (_, f) = schema();
        let mut b =
            SampleBuilder::new().gauge(f.total, u.total as f64).gauge(f.free, u.free as f64);
        if let Some(a) = u.available {
            b = b.gauge(f.available, a as f64);
        }
        Ok(vec![
            b.gauge(f.buffers, u.buffers as f64)
                .gauge(f.cached, u.cached as f64)
                .gauge(f.used, u.used as f64)
                .gauge(f.used_percent, u.used_percent)
                .gauge(f.swap_total, u.swap_total as f64)
                .gauge(f.swap_free, u.swap_free as f64)
                .gauge(f.swap_used, u.swap_used as f64)
                .build(),
        ])
    }
}

wasmtap_collector::export!(Memory);

#[cfg(test)]
mod tests {
    use super::*;

    const MEMINFO: &str = "MemTotal:       24683656 kB
MemFree:        21418780 kB
MemAvailable:   23943292 kB
Buffers:            4056 kB
Cached:          2686152 kB
SwapCached:            0 kB
Active:          1320244 kB
SwapTotal:       2097148 kB
SwapFree:        1048576 kB
Shmem:              8952 kB
SReclaimable:     135788 kB
SUnreclaim:        30924 kB
HugePages_Total:       0
Hugepagesize:       2048 kB
";

    #[test]
    fn computes_like_free() {
        let u = usage(MEMINFO).expect("parses");
        let k = 1024;
        assert_eq!(u.total, 24683656 * k);
        assert_eq!(u.free, 21418780 * k);
        assert_eq!(u.available, Some(23943292 * k));
        assert_eq!(u.buffers, 4056 * k);
        assert_eq!(u.cached, (2686152 + 135788) * k);
        // free(1) on this box printed used = 438880 KiB.
        assert_eq!(u.used, 438880 * k);
        assert!((u.used_percent - 438880.0 / 24683656.0 * 100.0).abs() < 1e-9);
        assert_eq!(u.swap_total, 2097148 * k);
        assert_eq!(u.swap_used, (2097148 - 1048576) * k);
    }

    #[test]
    fn old_kernels_and_odd_numbers() {
        let u = usage("MemTotal: 100 kB\nMemFree: 90 kB\nCached: 50 kB\n").expect("parses");
        assert_eq!(u.available, None, "no MemAvailable before 3.14");
        assert_eq!(u.used, 10 * 1024, "negative used falls back to total - free");
        assert_eq!(u.swap_total, 0);
        let u = usage("MemTotal: 0 kB\nMemFree: 0 kB\n").expect("parses");
        assert_eq!(u.used_percent, 0.0);
    }

    #[test]
    fn refuses_garbage() {
        for text in [
            "",
            "MemFree: 1 kB\n",
            "MemTotal: 1 kB\n",
            "MemTotal 1 kB\nMemFree: 1 kB\n",
            "MemTotal: x kB\nMemFree: 1 kB\n",
            "MemTotal: 1 MB\nMemFree: 1 kB\n",
            "MemTotal:\nMemFree: 1 kB\n",
            "MemTotal: 18446744073709551615 kB\nMemFree: 1 kB\n",
        ] {
            assert!(usage(text).is_err(), "{text:?} should fail");
        }
    }
}
