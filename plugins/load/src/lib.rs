//! The `load` collector: run-queue load averages and task counts from
//! `/proc/loadavg` (what collectd's `load` plugin reports).

use wasmtap_collector::{Descriptor, Gauge, Guest, Sample, SampleBuilder, Schema, procfs};

struct Load;

struct Fields {
    load1: Gauge,
    load5: Gauge,
    load15: Gauge,
    running: Gauge,
    tasks: Gauge,
}

fn schema() -> (Schema, Fields) {
    let mut s = Schema::new();
    let f = Fields {
        load1: s.gauge("load1", "", "Load average over 1 minute"),
        load5: s.gauge("load5", "", "Load average over 5 minutes"),
        load15: s.gauge("load15", "", "Load average over 15 minutes"),
        running: s.gauge("running", "tasks", "Runnable tasks"),
        tasks: s.gauge("tasks", "tasks", "Tasks that exist"),
    };
    (s, f)
}

/// The parsed content of `/proc/loadavg`.
#[derive(Debug, PartialEq)]
pub struct LoadAvg {
    /// 1, 5 and 15 minute averages.
    pub averages: [f64; 3],
    /// Runnable tasks.
    pub running: u64,
    /// All tasks.
    pub tasks: u64,
}

/// Parses `/proc/loadavg`, e.g. `0.52 0.58 0.59 1/389 12345`.
pub fn parse(text: &str) -> Result<LoadAvg, String> {
    let mut it = text.split_whitespace();
    let mut avg = [0.0; 3];
    for a in &mut avg {
        let word = it.next().ok_or("truncated /proc/loadavg")?;
        *a = word.parse().map_err(|_| format!("bad load average `{word}`"))?;
    }
    let tasks = it.next().ok_or("truncated /proc/loadavg")?;
    let (running, total) = tasks.split_once('/').ok_or(format!("bad task counts `{tasks}`"))?;
    let number = |s: &str| s.parse::<u64>().map_err(|_| format!("bad task count `{s}`"));
    Ok(LoadAvg { averages: avg, running: number(running)?, tasks: number(total)? })
}

impl Guest for Load {
    fn describe() -> Descriptor {
        schema().0.into_descriptor("load", env!("CARGO_PKG_VERSION"), 1_000)
    }

    fn init(_config: Vec<(String, String)>) -> Result<(), String> {
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let text = procfs::read("/proc/loadavg")?;
        let l = parse(&text)?;
        let (_, f) = schema();
        Ok(vec![
            SampleBuilder::new()
                .gauge(f.load1, l.averages[0])
                .gauge(f.load5, l.averages[1])
                .gauge(f.load15, l.averages[2])
                .gauge(f.running, l.running as f64)
                .gauge(f.tasks, l.tasks as f64)
                .build(),
        ])
    }
}

wasmtap_collector::export!(Load);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_real_line() {
        let l = parse("0.52 0.58 0.59 1/389 12345\n").expect("parses");
        assert_eq!(l, LoadAvg { averages: [0.52, 0.58, 0.59], running: 1, tasks: 389 });
    }

    #[test]
    fn refuses_garbage() {
        assert!(parse("").is_err());
        assert!(parse("0.1 0.2").is_err());
        assert!(parse("0.1 0.2 x 1/2 3").is_err());
        assert!(parse("0.1 0.2 0.3 12 3").is_err());
    }
}
