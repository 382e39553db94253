//! The `{{name}}` collector: time since boot, from `/proc/uptime`.

use wasmtap_collector::{Descriptor, Gauge, Guest, Sample, SampleBuilder, Schema, procfs};

struct Collector;

fn schema() -> (Schema, Gauge) {
    let mut s = Schema::new();
    let uptime = s.gauge("uptime", "seconds", "Time since boot");
    (s, uptime)
}

impl Guest for Collector {
    fn describe() -> Descriptor {
        schema().0.into_descriptor("{{name}}", env!("CARGO_PKG_VERSION"), 10_000)
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        wasmtap_collector::config::only(&config, &[])
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let (_, uptime) = schema();
        let text = procfs::read("/proc/uptime")?;
        let word = text.split_whitespace().next().ok_or("empty /proc/uptime")?;
        let seconds: f64 = word.parse().map_err(|_| format!("bad uptime `{word}`"))?;
        Ok(vec![SampleBuilder::new().gauge(uptime, seconds).build()])
    }
}

wasmtap_collector::export!(Collector);
