//! Test collector: asks the host how full the filesystem of each path in
//! its `paths` setting (comma-separated) is, and reports the answer per
//! path, or the host's refusal as the text field `error`.

use std::cell::RefCell;

use wasmtap_collector::{
    Counter, Descriptor, Gauge, Guest, Sample, SampleBuilder, Schema, TextField, filesystem,
};

struct Usage;

struct Fields {
    total: Gauge,
    free: Gauge,
    available: Gauge,
    inodes: Gauge,
    free_inodes: Gauge,
    asked: Counter,
    error: TextField,
}

fn schema() -> (Schema, Fields) {
    let mut s = Schema::new();
    let f = Fields {
        total: s.gauge("total_bytes", "bytes", "Size of the filesystem"),
        free: s.gauge("free_bytes", "bytes", "Free bytes"),
        available: s.gauge("available_bytes", "bytes", "Bytes available to unprivileged users"),
        inodes: s.gauge("total_inodes", "", "Inodes"),
        free_inodes: s.gauge("free_inodes", "", "Free inodes"),
        asked: s.counter("asked", "", "Usage queries made"),
        error: s.text("error", "Why the host refused"),
    };
    (s, f)
}

thread_local! {
    static PATHS: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    static ASKED: RefCell<u64> = const { RefCell::new(0) };
}

impl Guest for Usage {
    fn describe() -> Descriptor {
        schema().0.into_descriptor("usage", env!("CARGO_PKG_VERSION"), 1000)
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        let paths = config.iter().find(|(k, _)| k == "paths").map(|(_, v)| v.as_str());
        let paths = paths.unwrap_or("/").split(',').map(str::trim).map(str::to_owned).collect();
        PATHS.with(|p| *p.borrow_mut() = paths);
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let (_, f) = schema();
        let paths = PATHS.with(|p| p.borrow().clone());
        let mut out = Vec::new();
        for path in paths {
            let asked = ASKED.with(|a| {
                *a.borrow_mut() += 1;
                *a.borrow()
            });
            let b = SampleBuilder::new().label("path", &path).counter(f.asked, asked as f64);
            out.push(match filesystem::usage(&path) {
                Ok(u) => b
                    .gauge(f.total, u.total_bytes as f64)
                    .gauge(f.free, u.free_bytes as f64)
                    .gauge(f.available, u.available_bytes as f64)
                    .gauge(f.inodes, u.total_inodes as f64)
                    .gauge(f.free_inodes, u.free_inodes as f64)
                    .build(),
                Err(e) => b.text(f.error, &e).build(),
            });
        }
        Ok(out)
    }
}

wasmtap_collector::export!(Usage);
