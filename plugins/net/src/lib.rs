//! The `net` collector: traffic of each network interface from
//! `/proc/net/dev` (the agent's network namespace), what collectd's
//! `interface` plugin reports.
//!
//! One sample per interface (label `interface`; `lo` only with `[config]
//! include_loopback = "true"`): the kernel's counters of bytes, packets,
//! errors and drops in each direction, as counters (Prometheus computes
//! rates from them with `rate()`). With `[config] rates = "true"` the
//! collector also reports each as a per-second rate over its interval,
//! from the previous reading kept in the persisted state (so the first
//! collect after a fresh start has no rates), for operators who read the
//! embedded store directly.

use std::sync::atomic::{AtomicBool, Ordering};

use wasmtap_collector::{
    Counter, Descriptor, Gauge, Guest, Sample, SampleBuilder, Schema, config, log, procfs, state,
};

struct Net;

static INCLUDE_LOOPBACK: AtomicBool = AtomicBool::new(false);
static RATES_TOO: AtomicBool = AtomicBool::new(false);

/// The counter fields, in [`Interface::counters`] order: name, unit, help.
pub const COUNTERS: [(&str, &str, &str); 8] = [
    ("rx_bytes", "bytes", "Bytes received since the interface came up"),
    ("tx_bytes", "bytes", "Bytes sent since the interface came up"),
    ("rx_packets", "packets", "Packets received since the interface came up"),
    ("tx_packets", "packets", "Packets sent since the interface came up"),
    ("rx_errors", "errors", "Receive errors since the interface came up"),
    ("tx_errors", "errors", "Transmit errors since the interface came up"),
    ("rx_drops", "packets", "Received packets dropped since the interface came up"),
    ("tx_drops", "packets", "Packets to send dropped since the interface came up"),
];

/// The rate fields (`[config] rates = "true"`), in the same order.
pub const RATES: [(&str, &str, &str); 8] = [
    ("rx_bytes_per_second", "bytes/s", "Bytes received per second"),
    ("tx_bytes_per_second", "bytes/s", "Bytes sent per second"),
    ("rx_packets_per_second", "packets/s", "Packets received per second"),
    ("tx_packets_per_second", "packets/s", "Packets sent per second"),
    ("rx_errors_per_second", "errors/s", "Receive errors per second"),
    ("tx_errors_per_second", "errors/s", "Transmit errors per second"),
    ("rx_drops_per_second", "packets/s", "Received packets dropped per second"),
    ("tx_drops_per_second", "packets/s", "Packets to send dropped per second"),
];

struct Fields {
    counters: [Counter; 8],
    rates: [Gauge; 8],
}

/// The field handles, built once (`schema` allocates every name).
fn fields() -> &'static Fields {
    static FIELDS: std::sync::OnceLock<Fields> = std::sync::OnceLock::new();
    FIELDS.get_or_init(|| schema().1)
}

fn schema() -> (Schema, Fields) {
    let mut s = Schema::new();
    let counters = COUNTERS.map(|(name, unit, help)| s.counter(name, unit, help));
    let rates = RATES.map(|(name, unit, help)| {
        let g = s.gauge(name, unit, help);
        // Rates over an interval of milliseconds: whole bytes, hundredths of a packet.
        s.precision(g, if unit == "bytes/s" { 0 } else { 2 });
        g
    });
    (s, Fields { counters, rates })
}

/// One interface of `/proc/net/dev`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// Its name, such as `eth0`.
    pub name: String,
    /// Bytes received.
    pub rx_bytes: u64,
    /// Packets received.
    pub rx_packets: u64,
    /// Receive errors.
    pub rx_errors: u64,
    /// Received packets dropped.
    pub rx_drops: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Transmit errors.
    pub tx_errors: u64,
    /// Packets to send dropped.
    pub tx_drops: u64,
}

impl Interface {
    /// The counters, in [`COUNTERS`] order.
    pub fn counters(&self) -> [f64; 8] {
        [
            self.rx_bytes,
            self.tx_bytes,
            self.rx_packets,
            self.tx_packets,
            self.rx_errors,
            self.tx_errors,
            self.rx_drops,
            self.tx_drops,
        ]
        .map(|v| v as f64)
    }
}

/// Parses `/proc/net/dev`: two header lines, then `name: 16 numbers` per
/// interface (8 receive columns, then 8 transmit columns).
pub fn parse(text: &str) -> Result<Vec<Interface>, String> {
    let mut out = Vec::new();
    for line in text.lines() {
        // Header lines hold a `|`; interface lines never do.
        if line.contains('|') || line.trim().is_empty() {
            continue;
        }
        let (name, rest) = line
            .split_once(':')
            .ok_or_else(|| format!("bad /proc/net/dev line `{}`", line.escape_debug()))?;
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("nameless interface in `{}`", line.escape_debug()));
        }
        let n = procfs::parse_u64s(rest.split_whitespace(), name)?;
        if n.len() < 16 {
            return Err(format!("interface {name} has {} columns, not 16", n.len()));
        }
        out.push(Interface {
            name: name.to_owned(),
            rx_bytes: n[0],
            rx_packets: n[1],
            rx_errors: n[2],
            rx_drops: n[3],
            tx_bytes: n[8],
            tx_packets: n[9],
            tx_errors: n[10],
            tx_drops: n[11],
        });
    }
    Ok(out)
}

/// The interfaces to report: all but `lo`, unless loopback is included.
pub fn reported(all: Vec<Interface>, include_loopback: bool) -> Vec<Interface> {
    all.into_iter().filter(|i| include_loopback || i.name != "lo").collect()
}

impl Guest for Net {
    fn describe() -> Descriptor {
        schema().0.into_descriptor("net", env!("CARGO_PKG_VERSION"), 10_000)
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        config::only(&config, &["include_loopback", "rates"])?;
        let lo = config::flag(&config, "include_loopback", false)?;
        INCLUDE_LOOPBACK.store(lo, Ordering::Relaxed);
        RATES_TOO.store(config::flag(&config, "rates", false)?, Ordering::Relaxed);
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let all = parse(&procfs::read("/proc/net/dev")?)?;
        let ifaces = reported(all, INCLUDE_LOOPBACK.load(Ordering::Relaxed));
        let f = fields();
        let counters: Vec<[f64; 8]> = ifaces.iter().map(Interface::counters).collect();
        // Rates only when asked for: without them nothing is persisted.
        let rates = if RATES_TOO.load(Ordering::Relaxed) {
            let series: Vec<(&str, &[f64])> = ifaces
                .iter()
                .zip(&counters)
                .map(|(i, c)| (i.name.as_str(), c.as_slice()))
                .collect();
            state::series_rates("if:", &series, state::now_secs())
        } else {
            ifaces.iter().map(|_| Ok(Vec::new())).collect()
        };
        let mut out = Vec::with_capacity(ifaces.len());
        let mut warned = false;
        for ((i, c), r) in ifaces.iter().zip(&counters).zip(rates) {
            let r = r.unwrap_or_else(|e| {
                if !std::mem::replace(&mut warned, true) {
                    log::warn(&format!("no rates for {}: {e}", i.name));
                }
                Vec::new()
            });
            let mut b = SampleBuilder::new().label("interface", i.name.as_str());
            for (field, v) in f.counters.iter().zip(c) {
                b = b.counter(*field, *v);
            }
            for (field, rate) in f.rates.iter().zip(&r) {
                if let Some(rate) = rate {
                    b = b.gauge(*field, *rate);
                }
            }
            out.push(b.build());
        }
        Ok(out)
    }
}

wasmtap_collector::export!(Net);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtap_collector::state::rates;

    const DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:   40937     549    0    0    0     0          0         0    40937     549    0    0    0     0       0          0
  eth0: 114450056    7078    3    4    0     0          0         0   469984    5005    5    6    0     0       0          0
wlan0:123 4 0 0 0 0 0 0 567 8 0 0 0 0 0 0
";

    #[test]
    fn parses_a_real_file() {
        let all = parse(DEV).expect("parses");
        assert_eq!(all.len(), 3);
        let eth0 = &all[1];
        assert_eq!(
            eth0,
            &Interface {
                name: "eth0".into(),
                rx_bytes: 114450056,
                rx_packets: 7078,
                rx_errors: 3,
                rx_drops: 4,
                tx_bytes: 469984,
                tx_packets: 5005,
                tx_errors: 5,
                tx_drops: 6,
            }
        );
        assert_eq!(all[2].name, "wlan0", "old kernels leave no space after the colon");
        assert_eq!(all[2].tx_bytes, 567);
    }

    #[test]
    fn loopback_only_when_asked() {
        let names = |v: Vec<Interface>| v.into_iter().map(|i| i.name).collect::<Vec<_>>();
        let all = parse(DEV).expect("parses");
        assert_eq!(names(reported(all.clone(), false)), ["eth0", "wlan0"]);
        assert_eq!(names(reported(all, true)), ["lo", "eth0", "wlan0"]);
    }

    #[test]
    fn rates_per_second() {
        let all = parse(DEV).expect("parses");
        let mut later = all[1].clone();
        later.rx_bytes += 10_000;
        later.tx_packets += 40;
        let mut before = vec![100.0];
        before.extend(all[1].counters());
        let r = rates(Some(&before), &later.counters(), 110.0);
        assert_eq!(r[0], Some(1000.0));
        assert_eq!(r[3], Some(4.0));
        assert_eq!(r[1], Some(0.0));
    }

    #[test]
    fn refuses_garbage() {
        for text in [
            "eth0 1 2 3\n",
            "eth0: 1 2 3\n",
            ": 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n",
            "eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 x\n",
            "eth0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 -16\n",
        ] {
            assert!(parse(text).is_err(), "{text:?} should fail");
        }
        assert_eq!(parse("Inter-|\n face |\n"), Ok(vec![]));
    }
}
