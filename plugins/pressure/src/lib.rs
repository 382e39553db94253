//! The `pressure` collector: pressure stall information (PSI), the share of
//! time tasks waited for a resource, from `/proc/pressure/cpu`, `memory`,
//! `io` and, where the kernel has it (6.1 and later with
//! `CONFIG_IRQ_TIME_ACCOUNTING`), `irq`.
//!
//! Each file has a `some` line (at least one task stalled) and, except
//! `cpu` before Linux 5.13, a `full` line (all non-idle tasks stalled at
//! once; `irq` has only `full`). Every line becomes one sample with the
//! labels `resource` (`cpu`, `memory`, `io`, `irq`) and `kind` (`some`,
//! `full`):
//! - `avg10_percent`, `avg60_percent`, `avg300_percent`: gauges, percent of wall time stalled over
//!   the last 10, 60 and 300 seconds (two decimals, as the kernel prints);
//! - `stalled_seconds`: counter, the stall time since boot (the file's
//!   `total`, in microseconds, divided by 10^6). node_exporter reports the
//!   same as `node_pressure_<resource>_waiting_seconds_total` (`some`) and
//!   `node_pressure_<resource>_stalled_seconds_total` (`full`).
//!
//! On a kernel without PSI (built without `CONFIG_PSI`, or booted with
//! `psi=0`) `/proc/pressure` does not exist: the collector then reports
//! nothing and logs that once, rather than failing every tick.

use wasmtap_collector::{
    Counter, Descriptor, Gauge, Guest, Sample, SampleBuilder, Schema, config, log, procfs,
};

struct Pressure;

/// The files of `/proc/pressure` the collector reads; the ones after the
/// first three are optional.
pub const RESOURCES: [&str; 4] = ["cpu", "memory", "io", "irq"];

static LOGGED_ABSENT: log::Once = log::Once::new();

struct Fields {
    avg10: Gauge,
    avg60: Gauge,
    avg300: Gauge,
    stalled: Counter,
}

fn schema() -> (Schema, Fields) {
    let mut s = Schema::new();
    let f = Fields {
        avg10: s.gauge(
            "avg10_percent",
            "percent",
            "Share of time stalled over the last 10 seconds",
        ),
        avg60: s.gauge(
            "avg60_percent",
            "percent",
            "Share of time stalled over the last 60 seconds",
        ),
        avg300: s.gauge(
            "avg300_percent",
            "percent",
            "Share of time stalled over the last 300 seconds",
        ),
        stalled: s.counter("stalled_seconds", "seconds", "Time stalled since boot"),
    };
    for g in [f.avg10, f.avg60, f.avg300] {
        s.precision(g, 2);
    }
    // The kernel counts microseconds: six places keep every one of them.
    s.precision(f.stalled, 6);
    (s, f)
}

/// Which tasks a line is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// At least one task stalled.
    Some,
    /// All non-idle tasks stalled at once.
    Full,
}

impl Kind {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Some => "some",
            Self::Full => "full",
        }
    }
}

/// One line of a `/proc/pressure` file.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Line {
    /// `some` or `full`.
    pub kind: Kind,
    /// Percent of time stalled over 10, 60 and 300 seconds.
    pub averages: [f64; 3],
    /// Stall time since boot, in microseconds.
    pub total_us: u64,
}

impl Line {
    /// The stall time since boot, in seconds.
    pub fn total_seconds(&self) -> f64 {
        self.total_us as f64 / 1e6
    }
}

/// Parses one `/proc/pressure` file, e.g.
/// `some avg10=0.47 avg60=0.51 avg300=0.63 total=163181182` and a `full`
/// line. Keys the kernel may add later are ignored; a missing or repeated
/// key, a repeated kind or an empty file is an error.
pub fn parse(text: &str) -> Result<Vec<Line>, String> {
    let mut lines: Vec<Line> = Vec::with_capacity(2);
    for raw in text.lines().filter(|l| !l.trim().is_empty()) {
        let line = parse_line(raw)?;
        if lines.iter().any(|l| l.kind == line.kind) {
            return Err(format!("two `{}` lines", line.kind.as_str()));
        }
        lines.push(line);
    }
    if lines.is_empty() {
        return Err("no some or full line".into());
    }
    Ok(lines)
}

fn parse_line(raw: &str) -> Result<Line, String> {
    let mut words = raw.split_whitespace();
    let kind = match words.next() {
        Some("some") => Kind::Some,
        Some("full") => Kind::Full,
        other => {
            return Err(format!("line starts with `{}`", other.unwrap_or("").escape_debug()));
        }
    };
    let mut averages = [None; 3];
    let mut total = None;
    for word in words {
        let (key, value) =
            word.split_once('=').ok_or_else(|| format!("bad pair `{}`", word.escape_debug()))?;
        let slot = match key {
            "avg10" => &mut averages[0],
            "avg60" => &mut averages[1],
            "avg300" => &mut averages[2],
            "total" => {
                if total.is_some() {
                    return Err("two totals on one line".into());
                }
                let us = value
                    .parse::<u64>()
                    .map_err(|_| format!("bad total `{}`", value.escape_debug()))?;
                total = Some(us);
                continue;
            }
            _ => continue,
        };
        if slot.is_some() {
            return Err(format!("two {key} on one line"));
        }
        *slot = Some(match value.parse::<f64>() {
            Ok(v) if v.is_finite() && v >= 0.0 => v,
            _ => return Err(format!("bad {key} `{}`", value.escape_debug())),
        });
    }
    let missing = |what: &str| format!("`{}` line without {what}", kind.as_str());
    Ok(Line {
        kind,
        averages: [
            averages[0].ok_or_else(|| missing("avg10"))?,
            averages[1].ok_or_else(|| missing("avg60"))?,
            averages[2].ok_or_else(|| missing("avg300"))?,
        ],
        total_us: total.ok_or_else(|| missing("total"))?,
    })
}

/// The content of `/proc/pressure/<resource>`, `None` when it does not exist.
fn read(resource: &str) -> Result<Option<String>, String> {
    procfs::read_if_exists(&format!("/proc/pressure/{resource}"))
}

impl Guest for Pressure {
    fn describe() -> Descriptor {
        schema().0.into_descriptor("pressure", env!("CARGO_PKG_VERSION"), 10_000)
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        config::only(&config, &[])
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let (_, f) = schema();
        let mut out = Vec::with_capacity(8);
        let mut found = 0;
        for resource in RESOURCES {
            let Some(text) = read(resource)? else { continue };
            found += 1;
            let lines = parse(&text).map_err(|e| format!("/proc/pressure/{resource}: {e}"))?;
            for l in lines {
                out.push(
                    SampleBuilder::new()
                        .label("resource", resource)
                        .label("kind", l.kind.as_str())
                        .gauge(f.avg10, l.averages[0])
                        .gauge(f.avg60, l.averages[1])
                        .gauge(f.avg300, l.averages[2])
                        .counter(f.stalled, l.total_seconds())
                        .build(),
                );
            }
        }
        if found == 0 && LOGGED_ABSENT.first() {
            log::info(
                "no /proc/pressure: the kernel has no pressure stall information \
                 (CONFIG_PSI off or psi=0); reporting nothing",
            );
        }
        Ok(out)
    }
}

wasmtap_collector::export!(Pressure);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_this_machines_files() {
        let cpu = parse(include_str!("../fixtures/cpu-6.18.44")).expect("cpu");
        assert_eq!(cpu.len(), 2);
        assert_eq!(
            cpu[0],
            Line { kind: Kind::Some, averages: [57.11, 43.69, 26.36], total_us: 3_120_592_712 }
        );
        assert_eq!(cpu[1].kind, Kind::Full);
        let io = parse(include_str!("../fixtures/io-6.18.44")).expect("io");
        assert_eq!(
            io[1],
            Line { kind: Kind::Full, averages: [0.0, 0.06, 0.2], total_us: 98_910_259 }
        );
        assert!((io[1].total_seconds() - 98.910_259).abs() < 1e-9);
        let memory = parse(include_str!("../fixtures/memory-6.18.44")).expect("memory");
        assert_eq!(memory.iter().map(|l| l.kind).collect::<Vec<_>>(), [Kind::Some, Kind::Full]);
    }

    #[test]
    fn cpu_before_5_13_has_no_full_line() {
        // Constructed after the format documented in
        // Documentation/accounting/psi.rst for kernels 4.20 to 5.12.
        let cpu = parse(include_str!("../fixtures/cpu-5.4-constructed")).expect("cpu");
        assert_eq!(
            cpu,
            [Line { kind: Kind::Some, averages: [1.53, 0.87, 0.23], total_us: 4_527_395 }]
        );
    }

    #[test]
    fn irq_has_only_a_full_line() {
        // Constructed after the documented format of /proc/pressure/irq (6.1+).
        let irq = parse(include_str!("../fixtures/irq-6.1-constructed")).expect("irq");
        assert_eq!(irq.len(), 1);
        assert_eq!((irq[0].kind, irq[0].total_us), (Kind::Full, 61_204));
    }

    #[test]
    fn ignores_keys_a_later_kernel_may_add() {
        let l = parse("some avg10=1.00 avg60=2.00 avg300=3.00 avg900=4.00 total=5\n").expect("ok");
        assert_eq!(l[0].averages, [1.0, 2.0, 3.0]);
    }

    #[test]
    fn refuses_malformed_input() {
        for bad in [
            "",
            "\n\n",
            "most avg10=0.00 avg60=0.00 avg300=0.00 total=0",
            "some avg10=0.00 avg60=0.00 avg300=0.00",
            "some avg10=0.00 avg60=0.00 total=0",
            "some avg10=x avg60=0.00 avg300=0.00 total=0",
            "some avg10=-1 avg60=0.00 avg300=0.00 total=0",
            "some avg10=NaN avg60=0.00 avg300=0.00 total=0",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=-3",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=1.5",
            "some avg10=0.00 avg10=0.00 avg60=0.00 avg300=0.00 total=0",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=0 total=1",
            "some avg10 0.00 avg60=0.00 avg300=0.00 total=0",
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=0\nsome avg10=0.00 avg60=0.00 avg300=0.00 total=0",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
    }
}
