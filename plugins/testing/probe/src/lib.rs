//! Test collector `probe`: reports, as 0/1 gauges, what its sandbox let it
//! do in this `collect`: read, write, create, make a directory in and
//! delete from the granted directory `[config] grant` (which holds
//! `inside.txt`), read the file `[config] outside` and `/etc/passwd`, and
//! see the environment variables `WASMTAP_PROBE_GRANTED` and
//! `WASMTAP_PROBE_SECRET`; plus how many environment variables it sees at
//! all, and the reasons the operations failed. The reads and listings are
//! tried twice: through WASI and through the host's `files` import (which
//! also follows `link.txt` in the grant, a link the test points outside it).

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Mutex;

use wasmtap_collector::bindings::wasmtap::collector::files::{self, FileError};
use wasmtap_collector::bindings::wasmtap::collector::types::{Number, Text};
use wasmtap_collector::{Descriptor, Guest, Sample, Schema, config};

/// The operations, in field order.
const FIELDS: [(&str, &str); 16] = [
    ("read_grant", "1 if inside.txt in the grant could be read"),
    ("write_grant", "1 if inside.txt in the grant could be opened for writing and written"),
    ("create_grant", "1 if a new file could be created in the grant"),
    ("mkdir_grant", "1 if a directory could be made in the grant"),
    ("remove_grant", "1 if inside.txt could be deleted"),
    ("read_outside", "1 if the file outside the grant could be read"),
    ("read_etc", "1 if /etc/passwd could be read"),
    ("list_root", "1 if / could be listed"),
    ("granted_env", "1 if WASMTAP_PROBE_GRANTED is visible"),
    ("secret_env", "1 if WASMTAP_PROBE_SECRET is visible"),
    ("env_vars", "How many environment variables are visible"),
    ("files_read_grant", "1 if inside.txt could be read through the files import"),
    ("files_list_grant", "1 if the grant could be listed through the files import"),
    ("files_read_outside", "1 if the file outside could be read through the files import"),
    ("files_read_etc", "1 if /etc/passwd could be read through the files import"),
    ("files_read_link", "1 if link.txt in the grant could be read through the files import"),
];

static PATHS: Mutex<Option<(PathBuf, PathBuf)>> = Mutex::new(None);

struct Probe;

fn outcome<T>(name: &str, r: std::io::Result<T>, errors: &mut Vec<String>) -> f64 {
    match r {
        Ok(_) => 1.0,
        Err(e) => {
            errors.push(format!("{name}: {e}"));
            0.0
        }
    }
}

fn files_outcome<T>(name: &str, r: Result<T, FileError>, errors: &mut Vec<String>) -> f64 {
    match r {
        Ok(_) => 1.0,
        Err(e) => {
            errors.push(format!("{name}: {e:?}"));
            0.0
        }
    }
}

impl Guest for Probe {
    fn describe() -> Descriptor {
        let mut s = Schema::new();
        for (name, help) in FIELDS {
            s.gauge(name, "", help);
        }
        s.text("errors", "Why the operations that failed did");
        s.into_descriptor("probe", env!("CARGO_PKG_VERSION"), 1_000)
    }

    fn init(config: Vec<(String, String)>) -> Result<(), String> {
        config::only(&config, &["grant", "outside"])?;
        let path = |key| {
            config::get(&config, key)
                .map(PathBuf::from)
                .ok_or_else(|| format!("config.{key} is required"))
        };
        let paths = (path("grant")?, path("outside")?);
        *PATHS.lock().map_err(|e| e.to_string())? = Some(paths);
        Ok(())
    }

    fn collect() -> Result<Vec<Sample>, String> {
        let (grant, outside) =
            PATHS.lock().map_err(|e| e.to_string())?.clone().ok_or("init did not run")?;
        let inside = grant.join("inside.txt");
        let mut errors = Vec::new();
        let e = &mut errors;
        let text = |p: &std::path::Path| p.display().to_string();
        // Through the files import first: the WASI probes below may remove inside.txt.
        let through_files = [
            files_outcome("files read", files::read(&text(&inside)), e),
            files_outcome("files list", files::read_dir(&text(&grant)), e),
            files_outcome("files outside", files::read(&text(&outside)), e),
            files_outcome("files etc", files::read("/etc/passwd"), e),
            files_outcome("files link", files::read(&text(&grant.join("link.txt"))), e),
        ];
        let values = [
            outcome("read", std::fs::read(&inside), e),
            outcome(
                "write",
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&inside)
                    .and_then(|mut f| f.write_all(b"overwritten by the probe")),
                e,
            ),
            outcome("create", std::fs::File::create(grant.join("created.txt")), e),
            outcome("mkdir", std::fs::create_dir(grant.join("made")), e),
            outcome("remove", std::fs::remove_file(&inside), e),
            outcome("outside", std::fs::read(&outside), e),
            outcome("etc", std::fs::read("/etc/passwd"), e),
            outcome("root", std::fs::read_dir("/"), e),
            f64::from(u8::from(std::env::var_os("WASMTAP_PROBE_GRANTED").is_some())),
            f64::from(u8::from(std::env::var_os("WASMTAP_PROBE_SECRET").is_some())),
            std::env::vars_os().count() as f64,
        ];
        let numbers = (0u32..)
            .zip(values.into_iter().chain(through_files))
            .map(|(field, value)| Number { field, value })
            .collect();
        let texts = vec![Text { field: FIELDS.len() as u32, value: errors.join("; ") }];
        Ok(vec![Sample { labels: vec![], numbers, texts }])
    }
}

wasmtap_collector::export!(Probe);
