//! The `cpu` collector: the time each core spent in each state, plus
//! context switches, forks and run-queue counts, from `/proc/stat` (what
//! collectd's `cpu` plugin, node_exporter's `cpu` and `stat` collectors and
//! `vmstat` report).
//!
//! Each core's sample (label `cpu`: `"0"`, `"1"`, …) holds the seconds it
//! spent in each state since boot as counters (`user_seconds`, …; the
//! kernel counts in USER_HZ ticks, 1/100 s on Linux), from which
//! Prometheus computes utilisation with `rate()`. With `[config] percent =
//! "true"` the collector also reports the share of time in each state
//! since the previous collect (`user_percent`, …, `busy_percent`), per
//! core and for all cores (`cpu = "total"`), from the previous reading
//! kept in the persisted state (the first collect after a fresh start has
//! none). The counters and run-queue gauges are in one sample without
//! labels.

use std::sync::atomic::{AtomicBool, Ordering};

use wasmtap_collector::state;
use wasmtap_collector::{
    Counter, Descriptor, Gauge, Guest, Sample, SampleBuilder, Schema, log, procfs,
};

struct Cpu;

static PERCENT: AtomicBool = AtomicBool::new(false);

/// The CPU states of `/proc/stat`, in its column order.
pub const STATES: [&str; 8] =
    ["user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal"];
const IDLE: usize = 3;
const IOWAIT: usize = 4;
/// Ticks per second of `/proc/stat`'s times (USER_HZ, 100 on Linux).
pub const USER_HZ: f64 = 100.0;

struct Fields {
    seconds: [Counter; 8],
    states: [Gauge; 8],
    busy: Gauge,
    context_switches: Counter,
    forks: Counter,
    interrupts: Counter,
    procs_running: Gauge,
    procs_blocked: Gauge,
}

/// The field handles, built once (`schema` allocates every name).
fn fields() -> &'static Fields {
    static FIELDS: std::sync::OnceLock<Fields> = std::sync::OnceLock::new();
    FIELDS.get_or_init(|| schema().1)
}

fn schema() -> (Schema, Fields) {
    let mut s = Schema::new();
    let help = [
        "Time spent in user mode (guest time included)",
        "Time spent in user mode at low priority (niced)",
        "Time spent in kernel mode",
        "Time spent idle",
        "Time spent idle while waiting for I/O",
        "Time spent servicing hardware interrupts",
        "Time spent servicing software interrupts",
        "Time stolen by the hypervisor for other guests",
    ];
    let seconds = std::array::from_fn(|i| {
        let c = s.counter(
            &format!("{}_seconds", STATES[i]),
            "seconds",
            &format!("{} since boot", help[i]),
        );
        // Ticks of 1/100 s: exact in two decimal places.
        s.precision(c, 2);
        c
    });
    let states = std::array::from_fn(|i| {
        s.gauge(
            &format!("{}_percent", STATES[i]),
            "percent",
            &format!("{}, as a share of the last interval (percent = true)", help[i]),
        )
    });
    let f = Fields {
        seconds,
        states,
        busy: s.gauge(
            "busy_percent",
            "percent",
            "Time not idle and not waiting for I/O (100 - idle - iowait) over the last interval (percent = true)",
        ),
        context_switches: s.counter("context_switches", "switches", "Context switches since boot"),
        forks: s.counter("forks", "processes", "Processes and threads created since boot"),
        interrupts: s.counter("interrupts", "interrupts", "Interrupts serviced since boot"),
        procs_running: s.gauge("procs_running", "tasks", "Tasks running or runnable"),
        procs_blocked: s.gauge("procs_blocked", "tasks", "Tasks blocked waiting for I/O"),
    };
    // Shares of jiffies (1/100 s): over a 1 s interval one jiffy of one
    // core is 1 %, over 10 s 0.1 %; a tenth of a percent is all the
    // kernel's counts carry at the intervals collectors run at.
    for g in f.states.iter().chain([&f.busy]) {
        s.precision(*g, 1);
    }
    (s, f)
}

/// The jiffy counters of one `cpu` line.
#[derive(Debug, Clone, PartialEq)]
pub struct CpuTimes {
    /// `"total"` for the `cpu` line, else the core number (`"0"` for `cpu0`).
    pub cpu: String,
    /// Jiffies in each of [`STATES`].
    pub jiffies: [u64; 8],
}

/// What the collector reads from `/proc/stat`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stat {
    /// The total first, then each core in file order.
    pub cpus: Vec<CpuTimes>,
    /// `ctxt`.
    pub context_switches: Option<u64>,
    /// `processes`: forks since boot.
    pub forks: Option<u64>,
    /// First number of `intr`: all interrupts since boot.
    pub interrupts: Option<u64>,
    /// `procs_running`.
    pub procs_running: Option<u64>,
    /// `procs_blocked`.
    pub procs_blocked: Option<u64>,
}

/// Parses `/proc/stat`. The `cpu` total line is required; the other lines
/// are optional, and lines the collector does not use are skipped.
pub fn parse(text: &str) -> Result<Stat, String> {
    let mut stat = Stat::default();
    let mut total = None;
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let Some(key) = words.next() else { continue };
        let first = |words: &mut std::str::SplitWhitespace<'_>| -> Result<u64, String> {
            let w = words.next().ok_or_else(|| format!("empty `{key}` line in /proc/stat"))?;
            procfs::parse_u64(w, key)
        };
        match key {
            "ctxt" => stat.context_switches = Some(first(&mut words)?),
            "processes" => stat.forks = Some(first(&mut words)?),
            "intr" => stat.interrupts = Some(first(&mut words)?),
            "procs_running" => stat.procs_running = Some(first(&mut words)?),
            "procs_blocked" => stat.procs_blocked = Some(first(&mut words)?),
            _ => {
                let Some(core) = key.strip_prefix("cpu") else {
                    continue;
                };
                let cpu = if core.is_empty() {
                    "total".to_owned()
                } else if core.bytes().all(|b| b.is_ascii_digit()) {
                    core.to_owned()
                } else {
                    return Err(format!("bad cpu line `{}`", key.escape_debug()));
                };
                let columns = procfs::parse_u64s(words.take(STATES.len()), key)?;
                // Kernels before 2.6.11 lack iowait and later columns.
                if columns.len() < 4 {
                    return Err(format!("`{key}` line has {} columns", columns.len()));
                }
                let mut jiffies = [0; 8];
                jiffies[..columns.len()].copy_from_slice(&columns);
                let times = CpuTimes { cpu, jiffies };
                if core.is_empty() {
                    total = Some(times);
                } else {
                    stat.cpus.push(times);
                }
            }
        }
    }
    let total = total.ok_or("no `cpu` line in /proc/stat")?;
    stat.cpus.insert(0, total);
    Ok(stat)
}

/// The percentage of time in each state, from the per-second rates of the
/// jiffy counters. `None` when there is no previous reading or no time
/// passed. A single counter that went backwards (per-core `iowait` does on
/// some kernels) counts as zero for this interval.
pub fn percents(rates: &[Option<f64>]) -> Option<[f64; 8]> {
    if rates.iter().all(Option::is_none) {
        return None;
    }
    let sum: f64 = rates.iter().flatten().sum();
    if sum <= 0.0 || !sum.is_finite() {
        return None;
    }
    Some(std::array::from_fn(|i| rates.get(i).copied().flatten().unwrap_or(0.0) / sum * 100.0))
}

/// Time not idle and not waiting for I/O, from [`percents`].
pub fn busy(p: &[f64; 8]) -> f64 {
    (100.0 - p[IDLE] - p[IOWAIT]).clamp(0.0, 100.0)
}

impl Guest for Cpu {
    fn describe() -> Descriptor {
        schema().0.into_descriptor("cpu", env!("CARGO_PKG_VERSION"), 10_000)
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        wasmtap_collector::config::only(&config, &["percent"])?;
        let percent = wasmtap_collector::config::flag(&config, "percent", false)?;
        PERCENT.store(percent, Ordering::Relaxed);
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let stat = parse(&procfs::read("/proc/stat")?)?;
        let f = fields();
        // Percentages only when asked for: without them nothing is persisted.
        let rates = if PERCENT.load(Ordering::Relaxed) {
            let counters: Vec<Vec<f64>> =
                stat.cpus.iter().map(|c| c.jiffies.iter().map(|&j| j as f64).collect()).collect();
            let series: Vec<(&str, &[f64])> = stat
                .cpus
                .iter()
                .zip(&counters)
                .map(|(c, v)| (c.cpu.as_str(), v.as_slice()))
                .collect();
            state::series_rates("cpu:", &series, state::now_secs())
        } else {
            stat.cpus.iter().map(|_| Ok(Vec::new())).collect()
        };
        let mut out = Vec::with_capacity(stat.cpus.len() + 1);
        let mut warned = false;
        for (c, r) in stat.cpus.iter().zip(rates) {
            let r = r.unwrap_or_else(|e| {
                if !std::mem::replace(&mut warned, true) {
                    log::warn(&format!("no rates for cpu {}: {e}", c.cpu));
                }
                Vec::new()
            });
            let total = c.cpu == "total";
            let p = percents(&r);
            if total && p.is_none() {
                continue;
            }
            let mut b = SampleBuilder::new().label("cpu", c.cpu.as_str());
            if !total {
                for (field, ticks) in f.seconds.iter().zip(c.jiffies) {
                    b = b.counter(*field, ticks as f64 / USER_HZ);
                }
            }
            if let Some(p) = p {
                for (field, value) in f.states.iter().zip(p) {
                    b = b.gauge(*field, value);
                }
                b = b.gauge(f.busy, busy(&p));
            }
            out.push(b.build());
        }
        let mut b = SampleBuilder::new();
        let counters = [
            (f.context_switches, stat.context_switches),
            (f.forks, stat.forks),
            (f.interrupts, stat.interrupts),
        ];
        for (field, v) in counters {
            if let Some(v) = v {
                b = b.counter(field, v as f64);
            }
        }
        for (field, v) in
            [(f.procs_running, stat.procs_running), (f.procs_blocked, stat.procs_blocked)]
        {
            if let Some(v) = v {
                b = b.gauge(field, v as f64);
            }
        }
        out.push(b.build());
        Ok(out)
    }
}

wasmtap_collector::export!(Cpu);

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtap_collector::state::rates;

    const STAT: &str = "cpu  318458 0 24389 132736 1586 0 240 986 0 0
cpu0 155929 0 11479 70702 523 0 67 478 0 0
cpu1 162528 0 12909 62034 1063 0 173 508 0 0
intr 1350516 0 0 0 0 0 1 1 9 0
ctxt 734283
btime 1795644681
processes 25087
procs_running 2
procs_blocked 1
softirq 400095 0 79126 6 8383 45778 0 208 129008 0 137586
";

    #[test]
    fn parses_a_real_file() {
        let s = parse(STAT).expect("parses");
        assert_eq!(s.cpus.len(), 3);
        assert_eq!(s.cpus[0].cpu, "total");
        assert_eq!(s.cpus[0].jiffies, [318458, 0, 24389, 132736, 1586, 0, 240, 986]);
        assert_eq!(s.cpus[2].cpu, "1");
        assert_eq!(s.cpus[2].jiffies[3], 62034);
        assert_eq!(s.context_switches, Some(734283));
        assert_eq!(s.forks, Some(25087));
        assert_eq!(s.interrupts, Some(1350516));
        assert_eq!(s.procs_running, Some(2));
        assert_eq!(s.procs_blocked, Some(1));
    }

    #[test]
    fn old_kernels_have_fewer_columns() {
        let s = parse("cpu 1 2 3 4\ncpu0 1 2 3 4 5 6 7\n").expect("parses");
        assert_eq!(s.cpus[0].jiffies, [1, 2, 3, 4, 0, 0, 0, 0]);
        assert_eq!(s.cpus[1].jiffies, [1, 2, 3, 4, 5, 6, 7, 0]);
        assert_eq!(s.context_switches, None);
    }

    #[test]
    fn refuses_garbage() {
        for text in [
            "",
            "intr 1\nctxt 2\n",
            "cpu 1 2 x 4\n",
            "cpu 1 2 3\n",
            "cpu 1 2 3 4\ncpuX 1 2 3 4\n",
            "cpu 1 2 3 4\nctxt\n",
            "cpu 1 2 3 4\nctxt -5\n",
            "\u{0}\u{ff}garbage",
        ] {
            assert!(parse(text).is_err(), "{text:?} should fail");
        }
    }

    #[test]
    fn percentages_between_two_readings() {
        // 2 s apart on one core: 100 jiffies/s in all, split 50/10/20/20.
        let before = [0.0, 1000.0, 0.0, 500.0, 2000.0, 0.0, 0.0, 0.0, 0.0];
        let now = [1100.0, 0.0, 540.0, 2040.0, 20.0, 0.0, 0.0, 0.0];
        let r = rates(Some(&before), &now, 2.0);
        let p = percents(&r).expect("has rates");
        assert_eq!(p, [50.0, 0.0, 20.0, 20.0, 10.0, 0.0, 0.0, 0.0]);
        assert_eq!(busy(&p), 70.0);
    }

    #[test]
    fn no_percentages_without_a_previous_reading() {
        assert_eq!(percents(&rates(None, &[1.0; 8], 5.0)), None);
        assert_eq!(percents(&[]), None);
        assert_eq!(percents(&[Some(0.0); 8]), None, "no time passed");
    }

    #[test]
    fn a_counter_going_backwards_counts_as_zero() {
        let before = [0.0, 100.0, 0.0, 0.0, 100.0, 50.0, 0.0, 0.0, 0.0];
        let now = [200.0, 0.0, 0.0, 200.0, 40.0, 0.0, 0.0, 0.0];
        let p = percents(&rates(Some(&before), &now, 1.0)).expect("has rates");
        assert_eq!(p[0], 50.0);
        assert_eq!(p[3], 50.0);
        assert_eq!(p[4], 0.0);
    }
}
