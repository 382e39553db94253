//! # wasmtap-authoring
//!
//! `wasmtap plugin …`: the collector author's tools, in a binary of their
//! own (`wasmtap-plugin`) that the agent's `wasmtap plugin` runs, so the
//! agent shipped to monitored machines links none of this.
//!
//! `new` writes a project from a template and `build` builds one, in Rust,
//! Python or JavaScript; `check` validates a component against the WIT world and shows what it
//! declares and what its manifest asks for; `run` runs it under the agent's
//! own sandbox and prints its samples; `keygen` and `sign` make signed
//! distribution possible.
//!
//! - [`scaffold`]: `plugin new`, from the templates in [`templates`].
//! - [`builder`]: `plugin build`, with the tools found by [`tools`].
//! - [`plug`]: a component's imports, and the deny-sockets plug for Python.

pub mod builder;
pub mod plug;
pub mod scaffold;
pub mod templates;
pub mod tools;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use wasmtap_protocol::message::{Sample, Value};

use wasmtap_host::manifest::{Manifest, ManifestError};
use wasmtap_host::runtime::{CallError, Collector, LoadError, Runtime};
use wasmtap_host::signing;

/// Why an authoring command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuthoringError {
    /// The manifest is invalid.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
    /// The component does not load.
    #[error(transparent)]
    Load(#[from] LoadError),
    /// The runtime could not start.
    #[error("cannot start the runtime: {0}")]
    Runtime(String),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A key or signature problem.
    #[error(transparent)]
    Signature(#[from] signing::SignatureError),
    /// A collect call failed.
    #[error("collect failed: {0}")]
    Collect(#[from] CallError),
    /// A project cannot be created or built as it is.
    #[error("{0}")]
    Project(String),
    /// A build tool is not installed.
    #[error("{tool} is not available: {hint}")]
    ToolMissing {
        /// The tool.
        tool: String,
        /// How to install it.
        hint: String,
    },
    /// A build tool ran and failed (its own messages are above, on stderr).
    #[error("{command} failed: {status}")]
    BuildFailed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
    },
    /// Inspecting or plugging a built component failed.
    #[error(transparent)]
    Plug(#[from] plug::PlugError),
}

/// The languages `plugin new` and `plugin build` know.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Rust with the `wasmtap-collector` SDK, built by cargo.
    Rust,
    /// Python, built by componentize-py.
    Python,
    /// JavaScript, built by jco and ComponentizeJS.
    Js,
}

impl Lang {
    /// Parses `rust`, `python` or `js` (command-line spelling).
    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "rust" => Ok(Self::Rust),
            "python" | "py" => Ok(Self::Python),
            "js" | "javascript" => Ok(Self::Js),
            _ => Err(format!("unknown language `{text}`: use rust, python or js")),
        }
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> AuthoringError + '_ {
    move |source| AuthoringError::Io { path: path.to_owned(), source }
}

/// The manifest for `wasm`: `explicit`, else `<name>.toml` beside it, else none.
pub fn manifest_for(
    wasm: &Path,
    explicit: Option<&Path>,
) -> Result<(Manifest, Option<PathBuf>), AuthoringError> {
    let path = explicit.map(Path::to_owned).unwrap_or_else(|| wasm.with_extension("toml"));
    let exists = path.is_file();
    if explicit.is_some() && !exists {
        return Err(io(&path)(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "manifest not found",
        )));
    }
    Ok((Manifest::load(&path)?, exists.then_some(path)))
}

/// A collector loaded under the agent's sandbox, with an async executor of
/// its own for the calls (they are futures with deadlines, as in the agent).
struct Loaded {
    exec: tokio::runtime::Runtime,
    rt: Runtime,
    c: Collector,
}

impl Loaded {
    fn collect(&mut self) -> Result<wasmtap_host::schema::Enforced, CallError> {
        self.exec.block_on(self.c.collect(&self.rt, wasmtap_host::clock::now_ms()))
    }
}

fn load(wasm: &Path, manifest: Manifest) -> Result<Loaded, AuthoringError> {
    let runtime_error = |e: &dyn std::fmt::Display| AuthoringError::Runtime(format!("{e:#}"));
    let exec = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| runtime_error(&e))?;
    let rt = Runtime::without_storage().map_err(|e| runtime_error(&e))?;
    let c = exec.block_on(Collector::load(&rt, wasm, manifest))?;
    Ok(Loaded { exec, rt, c })
}

/// Validates `wasm` and describes it: fields, grants, signature.
pub fn check(wasm: &Path, manifest_path: Option<&Path>) -> Result<String, AuthoringError> {
    let (manifest, found) = manifest_for(wasm, manifest_path)?;
    let loaded = load(wasm, manifest.clone())?;
    let s = loaded.c.schema();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "ok: {} is a valid wasmtap:collector@{} component",
        wasm.display(),
        loaded.c.world_version()
    );
    let _ = writeln!(
        out,
        "collector  {} {} (suggests an interval of {:?})",
        s.name, s.version, s.default_interval
    );
    let _ = writeln!(out, "fields");
    let _ = writeln!(out, "  {:<24} {:<8} {:<10} {:<9} help", "name", "kind", "unit", "precision");
    for f in &s.fields {
        let kind = f.kind.name();
        let places = f.precision.map_or_else(|| "-".to_owned(), |p| format!("{p} dp"));
        let _ =
            writeln!(out, "  {:<24} {:<8} {:<10} {:<9} {}", f.name, kind, f.unit, places, f.help);
    }
    match found {
        Some(p) => {
            let _ = writeln!(out, "manifest   {}", p.display());
        }
        None => {
            let _ = writeln!(out, "manifest   none: the collector gets no grants at all");
        }
    }
    let list = |v: Vec<String>| if v.is_empty() { "(none)".to_owned() } else { v.join(", ") };
    let _ = writeln!(
        out,
        "grants     read: {}",
        list(manifest.read.iter().map(|p| p.display().to_string()).collect())
    );
    let _ = writeln!(
        out,
        "           usage: {}",
        list(manifest.usage.iter().map(|p| p.display().to_string()).collect())
    );
    let _ = writeln!(out, "           env: {}", list(manifest.env.clone()));
    let _ = writeln!(
        out,
        "limits     interval {:?}, timeout {:?}, memory {} MiB, {}",
        manifest.interval.unwrap_or(s.default_interval),
        manifest.timeout,
        manifest.memory >> 20,
        if manifest.enabled { "enabled" } else { "disabled" }
    );
    let sig = signing::signature_path(wasm);
    let _ = match std::fs::read_to_string(&sig) {
        Ok(text) => writeln!(
            out,
            "signature  {} by {}",
            sig.display(),
            text.split_whitespace().nth(1).unwrap_or("(malformed)")
        ),
        Err(_) => writeln!(out, "signature  none"),
    };
    Ok(out)
}

/// How `run` repeats.
#[derive(Debug, Clone, Copy)]
pub enum Repeat {
    /// One call.
    Once,
    /// A call every interval, `count` times (or forever).
    Every(Duration, Option<u64>),
}

/// Runs `wasm` under the agent's sandbox, calling `emit` with each call's report.
pub fn run(
    wasm: &Path,
    manifest_path: Option<&Path>,
    repeat: Repeat,
    json: bool,
    mut emit: impl FnMut(&str),
) -> Result<(), AuthoringError> {
    let (manifest, _) = manifest_for(wasm, manifest_path)?;
    let mut loaded = load(wasm, manifest)?;
    let (interval, count) = match repeat {
        Repeat::Once => (Duration::ZERO, Some(1)),
        Repeat::Every(d, n) => (d, n),
    };
    let mut call = 0u64;
    loop {
        call += 1;
        let started = Instant::now();
        let result = loaded.collect();
        let took = started.elapsed();
        let output = result?;
        let mut report = String::new();
        for s in &output.samples {
            if json {
                for line in sample_json(s) {
                    let _ = writeln!(report, "{line}");
                }
            } else {
                let _ = write!(report, "{}", sample_table(s));
            }
        }
        if !json {
            let _ = writeln!(
                report,
                "call {call}: {:.3} ms, {} samples, peak memory {:.1} MiB, dropped {} undeclared and {} mistyped values",
                took.as_secs_f64() * 1e3,
                output.samples.len(),
                loaded.c.peak_memory() as f64 / (1 << 20) as f64,
                output.undeclared,
                output.wrong_kind
            );
        }
        emit(&report);
        if count.is_some_and(|n| call >= n) {
            return Ok(());
        }
        std::thread::sleep(interval.saturating_sub(took));
    }
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Gauge(x) | Value::Counter(x) => format!("{x}"),
        Value::Text(t) => format!("{t:?}"),
    }
}

fn sample_table(s: &Sample) -> String {
    let labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
    let mut out = format!("{} {{{}}}\n", s.collector, labels.join(","));
    for (field, v) in &s.values {
        let _ = writeln!(out, "  {field:<28} {}", value_text(v));
    }
    out
}

fn sample_json(s: &Sample) -> Vec<String> {
    s.values
        .iter()
        .map(|(field, v)| {
            let labels: Vec<String> =
                s.labels.iter().map(|(k, v)| format!("{}:{}", json_str(k), json_str(v))).collect();
            let value = match v {
                Value::Gauge(x) | Value::Counter(x) if x.is_finite() => format!("{x}"),
                Value::Gauge(_) | Value::Counter(_) => "null".to_owned(),
                Value::Text(t) => json_str(t),
            };
            format!(
                "{{\"collector\":{},\"labels\":{{{}}},\"field\":{},\"value\":{},\"time\":{}}}",
                json_str(&s.collector),
                labels.join(","),
                json_str(field),
                value,
                s.time_ms
            )
        })
        .collect()
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes a fresh signing key to `out` (mode 0600) and returns its public key.
pub fn keygen(out: &Path) -> Result<signing::PublicKey, AuthoringError> {
    let key = signing::SecretKey::generate(&mut rand::rng());
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    let mut f = opts.open(out).map_err(io(out))?;
    std::io::Write::write_all(&mut f, key.to_file_text().as_bytes()).map_err(io(out))?;
    Ok(key.public())
}

/// Signs `wasm` with the key in `key_file`, writing `<wasm>.sig`; returns its path.
pub fn sign(wasm: &Path, key_file: &Path) -> Result<PathBuf, AuthoringError> {
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(key_file).map_err(io(key_file))?);
    let key = signing::SecretKey::from_file_text(&text)?;
    let bytes = std::fs::read(wasm).map_err(io(wasm))?;
    let sig = signing::signature_path(wasm);
    std::fs::write(&sig, key.sign(&bytes)).map_err(io(&sig))?;
    Ok(sig)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_strings_are_escaped() {
        assert_eq!(json_str("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000a\"");
    }

    #[test]
    fn explicit_missing_manifest_is_an_error_and_absent_default_means_no_grants() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wasm = dir.path().join("x.wasm");
        assert!(manifest_for(&wasm, Some(&dir.path().join("nope.toml"))).is_err());
        let (m, found) = manifest_for(&wasm, None).expect("default");
        assert!(found.is_none() && m.read.is_empty());
    }

    #[test]
    fn keygen_refuses_to_overwrite_and_sign_round_trips() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = dir.path().join("k");
        let public = keygen(&key).expect("keygen");
        assert!(keygen(&key).is_err(), "an existing key file is never overwritten");
        let wasm = dir.path().join("c.wasm");
        std::fs::write(&wasm, b"bytes").expect("write");
        let sig = sign(&wasm, &key).expect("sign");
        let text = std::fs::read_to_string(sig).expect("sig");
        assert_eq!(signing::verify(b"bytes", &text, std::slice::from_ref(&public)), Ok(public));
    }
}
