//! The `{{name}}` collector: time since boot, from `/proc/uptime`, and the
//! space left on the root filesystem, from the agent's `filesystem` import.

use wasmtap_collector::{
    Descriptor, Gauge, Guest, Sample, SampleBuilder, Schema, filesystem, procfs,
};

struct Collector;

struct Fields {
    uptime: Gauge,
    root_available: Gauge,
}

fn schema() -> (Schema, Fields) {
    let mut s = Schema::new();
    let uptime = s.gauge("uptime_seconds", "seconds", "Time since boot");
    let root_available = s.gauge(
        "root_available_bytes",
        "bytes",
        "Space unprivileged users may still use on the root filesystem",
    );
    (s, Fields { uptime, root_available })
}

impl Guest for Collector {
    fn describe() -> Descriptor {
        schema().0.into_descriptor("{{name}}", env!("CARGO_PKG_VERSION"), 10_000)
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        wasmtap_collector::config::only(&config, &[])
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let (_, f) = schema();
        let text = procfs::read("/proc/uptime")?;
        let word = text.split_whitespace().next().ok_or("empty /proc/uptime")?;
        let seconds: f64 = word.parse().map_err(|_| format!("bad uptime `{word}`"))?;
        // Inside the manifest's `usage` grant; the agent answers with statvfs.
        let root = filesystem::usage("/")?;
        Ok(vec![
            SampleBuilder::new()
                .gauge(f.uptime, seconds)
                .gauge(f.root_available, root.available_bytes as f64)
                .build(),
        ])
    }
}

wasmtap_collector::export!(Collector);
