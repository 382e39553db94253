//! The managed collectors directory, `<data_dir>/collectors/`: what the
//! proxy pushed, kept so that the agent runs it at start-up even when no
//! proxy is reachable.
//!
//! - `<name>.wasm`, `<name>.toml`, `<name>.wasm.sig`: installed collectors,
//!   laid out as in the plugins directory (the supervisor loads both).
//! - `.blobs/<sha256>.part`: a component being received, appended piece by
//!   piece; `.blobs/<sha256>` once complete and checked against its name.
//!   The version an install replaced stays there, so that a rollback needs
//!   no transfer.
//! - `.ledger.json`: the versions refused, with their reasons (reported
//!   until the proxy stops asking for them), and the version each install
//!   replaced (its blob is kept).
//!
//! Every file is written beside its final name and renamed over it; the
//! component is renamed last, so the supervisor sees a collector only
//! once its manifest and signature are in place.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use sha2::{Digest, Sha256};
use wasmtap_protocol::fleet::{self, Desired, Received, Wanted};

use super::Bounds;
use crate::manifest::Manifest;
use crate::runtime::cache::create_private_dir;
use crate::signing::{self, PublicKey};

/// The blobs kept at once (received, in part, or kept for a rollback) may
/// take this many times `max_managed_size`.
pub const BLOBS_PER_MAX: u64 = 4;

/// Managed collectors an agent runs at most.
pub const MAX_MANAGED: usize = 64;

/// A request the agent will not carry out.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FleetError {
    /// A malformed argument (name, digest, number, base64, JSON).
    #[error("{0}")]
    BadRequest(String),
    /// A blob over `[plugins] max_managed_size`.
    #[error("{size} bytes is over this agent's max_managed_size of {max} bytes")]
    TooLarge {
        /// The declared size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// A received blob whose digest is not its name; it was discarded.
    #[error("the received blob does not match its SHA-256 {0}; discarded")]
    Damaged(String),
    /// The disk failed.
    #[error("{0}")]
    Io(String),
}

fn io(what: &str, path: &Path, e: &std::io::Error) -> FleetError {
    FleetError::Io(format!("{what} {}: {e}", path.display()))
}

/// An installed collector's component: its digest, cached by size and
/// modification time so that a status request does not hash every file.
#[derive(Debug, Clone)]
struct Known {
    len: u64,
    modified: Option<SystemTime>,
    sha256: String,
}

/// A refused version of a collector, as reported.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Refusal {
    /// SHA-256 of the refused component.
    pub sha256: String,
    /// [`fleet::files_sha256`] of the manifest and signature refused with it.
    #[serde(default)]
    pub files_sha256: Option<String>,
    /// Why.
    pub reason: String,
}

/// What the directory remembers between applies.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Ledger {
    /// Refused versions, by collector.
    #[serde(default)]
    refused: BTreeMap<String, Refusal>,
    /// The version the last install of each collector replaced.
    #[serde(default)]
    previous: BTreeMap<String, String>,
}

/// What [`Managed::apply`] did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Applied {
    /// Collectors installed or replaced.
    pub installed: Vec<String>,
    /// Collectors removed.
    pub removed: Vec<String>,
    /// Versions refused, by collector.
    pub refused: BTreeMap<String, Refusal>,
}

/// The managed collectors directory.
#[derive(Debug)]
pub struct Managed {
    dir: PathBuf,
    max: u64,
    digests: HashMap<String, Known>,
}

impl Managed {
    /// Opens (creating, mode 0700) the directory.
    pub fn open(dir: &Path, max: u64) -> Result<Self, FleetError> {
        create_private_dir(&dir.join(".blobs")).map_err(|e| io("creating", dir, &e))?;
        Ok(Self { dir: dir.to_owned(), max, digests: HashMap::new() })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn blob(&self, sha: &str) -> PathBuf {
        self.dir.join(".blobs").join(sha)
    }

    fn part(&self, sha: &str) -> PathBuf {
        self.dir.join(".blobs").join(format!("{sha}.part"))
    }

    fn ledger_path(&self) -> PathBuf {
        self.dir.join(".ledger.json")
    }

    fn ledger(&self) -> Ledger {
        std::fs::read(self.ledger_path())
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Appends `data` at `offset` to the blob `sha` of `size` bytes. An
    /// offset other than what is held writes nothing and answers what is
    /// held, where the sender resumes. The last piece is checked: a blob
    /// whose digest is not `sha` is discarded.
    pub fn put(
        &mut self,
        sha: &str,
        size: u64,
        offset: u64,
        data: &[u8],
    ) -> Result<Received, FleetError> {
        if !fleet::is_sha256_hex(sha) {
            return Err(FleetError::BadRequest(format!("`{sha}` is not a SHA-256 in hex")));
        }
        if size > self.max {
            return Err(FleetError::TooLarge { size, max: self.max });
        }
        let held = |bytes| Ok(Received { sha256: sha.to_owned(), bytes });
        if self.blob(sha).is_file() {
            return held(size);
        }
        let part = self.part(sha);
        let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if offset != have {
            return held(have);
        }
        if have == 0 {
            // A new blob: what a proxy may leave here unapplied is bounded
            // (a blob in part counts as large as it may grow).
            let stored: u64 = self
                .blobs()
                .iter()
                .map(|b| if self.blob(&b.sha256).is_file() { b.bytes } else { self.max })
                .sum();
            let cap = self.max.saturating_mul(BLOBS_PER_MAX);
            if stored.saturating_add(size) > cap {
                return Err(FleetError::TooLarge { size: stored.saturating_add(size), max: cap });
            }
        }
        let end = offset.saturating_add(data.len() as u64);
        if end > size {
            let _ = std::fs::remove_file(&part);
            return Err(FleetError::BadRequest(format!(
                "a piece ending at {end} is beyond the blob's {size} bytes; the part was discarded"
            )));
        }
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&part)
            .map_err(|e| io("opening", &part, &e))?;
        f.write_all(data).map_err(|e| io("writing", &part, &e))?;
        if end < size {
            return held(end);
        }
        f.sync_all().map_err(|e| io("syncing", &part, &e))?;
        if digest_file(&part).map_err(|e| io("reading", &part, &e))? != sha {
            let _ = std::fs::remove_file(&part);
            return Err(FleetError::Damaged(sha.to_owned()));
        }
        std::fs::rename(&part, self.blob(sha)).map_err(|e| io("renaming", &part, &e))?;
        held(size)
    }

    /// Blobs held, complete (`bytes` is their size) or in part.
    pub fn blobs(&self) -> Vec<fleet::Partial> {
        let Ok(entries) = std::fs::read_dir(self.dir.join(".blobs")) else { return Vec::new() };
        let mut out: Vec<fleet::Partial> = entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let sha = name.strip_suffix(".part").unwrap_or(&name);
                fleet::is_sha256_hex(sha).then(|| fleet::Partial {
                    sha256: sha.to_owned(),
                    bytes: e.metadata().map(|m| m.len()).unwrap_or(0),
                })
            })
            .collect();
        out.sort_by(|a, b| a.sha256.cmp(&b.sha256));
        out
    }

    /// The names of the installed collectors, without reading them.
    pub fn installed_names(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        let mut out: Vec<String> = entries
            .flatten()
            .filter_map(|e| {
                let path = e.path();
                let stem = path.file_stem()?.to_str()?;
                (path.extension().is_some_and(|x| x == "wasm") && fleet::is_collector_name(stem))
                    .then(|| stem.to_owned())
            })
            .collect();
        out.sort();
        out
    }

    /// Installed collectors: name and the SHA-256 of their component.
    pub fn installed(&mut self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for name in self.installed_names() {
            let path = self.wasm(&name);
            let Ok(meta) = std::fs::metadata(&path) else { continue };
            let (len, modified) = (meta.len(), meta.modified().ok());
            let known = self.digests.get(&name).filter(|d| d.len == len && d.modified == modified);
            let sha = match known {
                Some(d) => d.sha256.clone(),
                None => match digest_file(&path) {
                    Ok(sha) => {
                        let d = Known { len, modified, sha256: sha.clone() };
                        self.digests.insert(name.clone(), d);
                        sha
                    }
                    Err(_) => continue,
                },
            };
            out.insert(name, sha);
        }
        out
    }

    /// The versions refused, by collector.
    pub fn refusals(&self) -> BTreeMap<String, Refusal> {
        self.ledger().refused
    }

    /// Brings the directory to `desired`: installs what is wanted and
    /// allowed, removes the managed collectors not wanted. A version that
    /// is refused leaves the installed one of its name in place.
    pub fn apply(
        &mut self,
        desired: &Desired,
        bounds: &Bounds,
        trusted: &[PublicKey],
    ) -> Result<Applied, FleetError> {
        if desired.collectors.len() > MAX_MANAGED {
            return Err(FleetError::BadRequest(format!(
                "{} collectors wanted; an agent runs at most {MAX_MANAGED} managed collectors",
                desired.collectors.len()
            )));
        }
        let mut seen = std::collections::HashSet::new();
        for w in &desired.collectors {
            if !fleet::is_collector_name(&w.name) || !seen.insert(w.name.as_str()) {
                return Err(FleetError::BadRequest(format!(
                    "`{}` is not a valid collector name, or is wanted twice",
                    w.name
                )));
            }
            if !fleet::is_sha256_hex(&w.sha256) {
                return Err(FleetError::BadRequest(format!("`{}` is not a SHA-256", w.sha256)));
            }
        }
        let before = self.installed();
        let mut ledger = self.ledger();
        let mut applied = Applied::default();
        for w in &desired.collectors {
            match self.install(w, before.get(&w.name), bounds, trusted) {
                Ok(true) => {
                    ledger.refused.remove(&w.name);
                    if let Some(old) = before.get(&w.name).filter(|old| **old != w.sha256) {
                        ledger.previous.insert(w.name.clone(), old.clone());
                    }
                    applied.installed.push(w.name.clone());
                }
                Ok(false) => {
                    ledger.refused.remove(&w.name);
                }
                Err(reason) => {
                    tracing::warn!(collector = %w.name, version = %w.version, sha256 = %w.sha256, %reason, "pushed collector refused");
                    let refusal = Refusal {
                        sha256: w.sha256.clone(),
                        files_sha256: Some(w.files_sha256()),
                        reason,
                    };
                    ledger.refused.insert(w.name.clone(), refusal.clone());
                    applied.refused.insert(w.name.clone(), refusal);
                }
            }
        }
        for name in before.keys().filter(|n| !seen.contains(n.as_str())) {
            for path in
                [self.wasm(name), self.manifest(name), signing::signature_path(&self.wasm(name))]
            {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io("removing", &path, &e)),
                }
            }
            self.digests.remove(name);
            tracing::info!(collector = %name, "managed collector removed: the proxy no longer asks for it");
            applied.removed.push(name.clone());
        }
        ledger.refused.retain(|name, _| seen.contains(name.as_str()));
        ledger.previous.retain(|name, _| seen.contains(name.as_str()));
        self.write_ledger(&ledger)?;
        // Kept: what is wanted, what runs, and what each install replaced.
        let installed = self.installed();
        let keep: Vec<&String> = (desired.collectors.iter().map(|w| &w.sha256))
            .chain(installed.values())
            .chain(ledger.previous.values())
            .collect();
        self.prune(&keep);
        Ok(applied)
    }

    /// [`fleet::files_sha256`] of the manifest and signature installed
    /// with collector `name`.
    pub fn files_sha256(&self, name: &str) -> String {
        let text = |path: PathBuf| std::fs::read_to_string(path).ok();
        let manifest = text(self.manifest(name));
        let signature = text(signing::signature_path(&self.wasm(name)));
        fleet::files_sha256(manifest.as_deref(), signature.as_deref())
    }

    fn wasm(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.wasm"))
    }

    fn manifest(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.toml"))
    }

    /// Installs `w` unless it is installed as is; `Ok(false)` when nothing
    /// changed, `Err(reason)` when it is refused.
    fn install(
        &mut self,
        w: &Wanted,
        installed: Option<&String>,
        bounds: &Bounds,
        trusted: &[PublicKey],
    ) -> Result<bool, String> {
        let wasm_path = self.wasm(&w.name);
        let (toml_path, sig_path) = (self.manifest(&w.name), signing::signature_path(&wasm_path));
        let same_text = |path: &Path, want: &Option<String>| {
            std::fs::read_to_string(path).ok().as_deref() == want.as_deref()
        };
        if installed == Some(&w.sha256)
            && same_text(&toml_path, &w.manifest)
            && same_text(&sig_path, &w.signature)
        {
            return Ok(false);
        }
        if w.size > self.max {
            return Err(FleetError::TooLarge { size: w.size, max: self.max }.to_string());
        }
        let source =
            if installed == Some(&w.sha256) { wasm_path.clone() } else { self.blob(&w.sha256) };
        let mut bytes = Vec::new();
        std::fs::File::open(&source)
            .and_then(|f| f.take(self.max + 1).read_to_end(&mut bytes))
            .map_err(|_| "not received: the blob is missing".to_owned())?;
        if fleet::sha256_hex(&bytes) != w.sha256 {
            let _ = std::fs::remove_file(&source);
            return Err(FleetError::Damaged(w.sha256.clone()).to_string());
        }
        let manifest = match &w.manifest {
            Some(text) => Manifest::parse(text, &toml_path).map_err(|e| e.to_string())?,
            None => Manifest::default(),
        };
        bounds.check(&manifest)?;
        if !trusted.is_empty() {
            let text = w.signature.as_deref().ok_or("unsigned, and this agent has trusted_keys")?;
            signing::verify(&bytes, text, trusted).map_err(|e| format!("signature: {e}"))?;
        }
        let put = |path: &Path, text: &Option<String>| -> Result<(), String> {
            match text {
                Some(t) => write_atomic(path, t.as_bytes())
                    .map_err(|e| format!("writing {}: {e}", path.display())),
                None => match std::fs::remove_file(path) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                        Err(format!("removing {}: {e}", path.display()))
                    }
                    _ => Ok(()),
                },
            }
        };
        put(&toml_path, &w.manifest)?;
        put(&sig_path, &w.signature)?;
        write_atomic(&wasm_path, &bytes)
            .map_err(|e| format!("writing {}: {e}", wasm_path.display()))?;
        tracing::info!(collector = %w.name, version = %w.version, sha256 = %w.sha256, "managed collector installed");
        Ok(true)
    }

    fn write_ledger(&self, ledger: &Ledger) -> Result<(), FleetError> {
        let path = self.ledger_path();
        let text = serde_json::to_vec_pretty(ledger).map_err(|e| FleetError::Io(e.to_string()))?;
        write_atomic(&path, &text).map_err(|e| io("writing", &path, &e))
    }

    /// Deletes blobs (complete or not) other than `keep`.
    fn prune(&self, keep: &[&String]) {
        for b in self.blobs() {
            if !keep.contains(&&b.sha256) {
                let _ = std::fs::remove_file(self.blob(&b.sha256));
                let _ = std::fs::remove_file(self.part(&b.sha256));
            }
        }
    }
}

fn digest_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(fleet::hex(&h.finalize()))
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension(format!("{}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
#[path = "managed_tests.rs"]
mod tests;
