//! One project's collector catalog: releases, their state and history,
//! and the components themselves, under `<data_dir>/fleet/<project>/`
//! (`catalog.json`, written atomically; `blobs/<sha256>.wasm`).
//!
//! Per collector name, at most one release is *promoted* (what every agent
//! runs) and at most one is a *candidate* (`canary` while its watch window
//! runs, `held` after it when published with `--hold`), which only the
//! canary agents run. Clock-free: times are passed in.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use wasmtap_protocol::fleet::{Desired, Wanted};

/// Why a catalog operation was refused; the catalog is unchanged.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The operator's mistake (a name with no release, a canary already
    /// under watch, no agent to run a canary on).
    #[error("{0}")]
    Refused(String),
    /// No release of that collector was ever published to the project.
    #[error("`{0}` was never published to this project")]
    NotFound(String),
    /// The catalog file is unreadable; it is left as it is.
    #[error("catalog {path}: {message}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The disk failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
}

/// Where a release stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseState {
    /// Running on the canary agents while its watch window runs.
    Canary,
    /// Watched without a failure, waiting for `promote` (`--hold`).
    Held,
    /// What every agent of the project runs.
    Promoted,
    /// Replaced by a newer promoted release.
    Superseded,
    /// Taken back, by an operator or because a canary agent failed with it.
    RolledBack,
    /// The collector was removed from the project.
    Removed,
}

impl ReleaseState {
    /// The candidate states (run by canary agents only).
    pub fn is_candidate(self) -> bool {
        matches!(self, Self::Canary | Self::Held)
    }
}

/// How a candidate is tried.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Canary {
    /// The share of connected agents asked for.
    pub percent: u8,
    /// How long failures are watched for.
    pub watch_ms: u64,
    /// Wait for `promote` after the window instead of promoting.
    pub hold: bool,
    /// When the window started.
    pub started_ms: u64,
    /// The agents that run it.
    pub agents: Vec<String>,
    /// With `[cluster]`: the proxy that judges it (the one it was
    /// published through, whose agents run it); no other does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<String>,
}

/// Something that happened to a release.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// When, ms since the epoch.
    pub at_ms: u64,
    /// What.
    pub what: String,
}

/// One published version of a collector.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    /// Number of the release in this project, from 1.
    pub id: u64,
    /// The collector's name, as it describes itself.
    pub name: String,
    /// Its declared version.
    pub version: String,
    /// SHA-256 (hex) of the component.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its manifest (TOML text).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// Its signature file's text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Who signed it (`ed25519:…`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signer: Option<String>,
    /// When it was published.
    pub published_ms: u64,
    /// Where it stands.
    pub state: ReleaseState,
    /// Why it was rolled back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// How it is (or was) tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub canary: Option<Canary>,
    /// What happened to it.
    #[serde(default)]
    pub history: Vec<Event>,
}

impl Release {
    fn event(&mut self, at_ms: u64, what: String) {
        self.history.push(Event { at_ms, what });
    }

    /// [`fleet::files_sha256`] of its manifest and signature: with the
    /// component's SHA-256, what tells it from another release in an
    /// agent's report.
    pub fn files_sha256(&self) -> String {
        wasmtap_protocol::fleet::files_sha256(self.manifest.as_deref(), self.signature.as_deref())
    }

    fn wanted(&self) -> Wanted {
        Wanted {
            name: self.name.clone(),
            version: self.version.clone(),
            sha256: self.sha256.clone(),
            size: self.size,
            manifest: self.manifest.clone(),
            signature: self.signature.clone(),
        }
    }
}

/// A validated component to publish.
#[derive(Debug, Clone)]
pub struct Publish {
    /// With `[cluster]`: this proxy's name, the judge of a canary.
    pub judge: Option<String>,
    /// The collector's name.
    pub name: String,
    /// Its declared version.
    pub version: String,
    /// Its manifest text.
    pub manifest: Option<String>,
    /// Its signature text.
    pub signature: Option<String>,
    /// The key that made the signature.
    pub signer: Option<String>,
    /// Try it on a share of the agents first.
    pub canary: Option<CanaryPlan>,
}

/// `--canary N% --watch D [--hold]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanaryPlan {
    /// The share of connected agents, 1 to 100.
    pub percent: u8,
    /// The watch window.
    pub watch_ms: u64,
    /// Wait for `promote` after the window.
    pub hold: bool,
}

/// What a watch window decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Promoted (or held) after a clean window.
    Passed(Release),
    /// Rolled back.
    RolledBack(Release),
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Doc {
    #[serde(default)]
    releases: Vec<Release>,
}

/// One project's catalog.
#[derive(Debug)]
pub struct Catalog {
    dir: PathBuf,
    doc: Doc,
}

const CATALOG_FILE: &str = "catalog.json";

impl Catalog {
    /// Opens the catalog in `dir` (empty if there is none yet).
    pub fn open(dir: &Path) -> Result<Self, CatalogError> {
        let path = dir.join(CATALOG_FILE);
        let doc = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| CatalogError::Corrupt {
                path: path.clone(),
                message: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Doc::default(),
            Err(source) => return Err(CatalogError::Io { what: "reading", path, source }),
        };
        Ok(Self { dir: dir.to_owned(), doc })
    }

    /// Every release, oldest first.
    pub fn releases(&self) -> &[Release] {
        &self.doc.releases
    }

    /// Where the component `sha256` is kept.
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.dir.join("blobs").join(format!("{sha256}.wasm"))
    }

    fn live(&self, name: &str, candidate: bool) -> Option<usize> {
        self.doc.releases.iter().rposition(|r| {
            r.name == name
                && if candidate {
                    r.state.is_candidate()
                } else {
                    r.state == ReleaseState::Promoted
                }
        })
    }

    /// Adds a release of `blob`: promoted at once, or a canary on about
    /// `percent` of the `connected` agents (at least one).
    pub fn publish(
        &mut self,
        p: Publish,
        blob: &[u8],
        connected: &[String],
        now_ms: u64,
    ) -> Result<Release, CatalogError> {
        if let Some(i) = self.live(&p.name, true) {
            let r = &self.doc.releases[i];
            return Err(CatalogError::Refused(format!(
                "release {} of `{}` is a {} candidate: promote it or roll it back first",
                r.id,
                r.name,
                if r.state == ReleaseState::Held { "held" } else { "canary" }
            )));
        }
        let sha256 = wasmtap_protocol::fleet::sha256_hex(blob);
        let same = |r: &&Release| {
            r.sha256 == sha256 && r.manifest == p.manifest && r.signature == p.signature
        };
        if let Some(r) = self.live(&p.name, false).map(|i| &self.doc.releases[i]).filter(same) {
            return Err(CatalogError::Refused(format!(
                "release {} of `{}` is this very component and manifest, promoted already",
                r.id, r.name
            )));
        }
        let canary = match p.canary {
            None => None,
            Some(plan) => {
                if connected.is_empty() {
                    return Err(CatalogError::Refused(
                        "no connected agent of the project takes pushed collectors to run a canary"
                            .into(),
                    ));
                }
                Some(Canary {
                    percent: plan.percent,
                    watch_ms: plan.watch_ms,
                    hold: plan.hold,
                    started_ms: now_ms,
                    agents: pick(connected, &p.name, plan.percent),
                    judge: p.judge.clone(),
                })
            }
        };
        let id = self.doc.releases.iter().map(|r| r.id).max().unwrap_or(0) + 1;
        let mut release = Release {
            id,
            name: p.name,
            version: p.version,
            sha256,
            size: blob.len() as u64,
            manifest: p.manifest,
            signature: p.signature,
            signer: p.signer,
            published_ms: now_ms,
            state: if canary.is_some() { ReleaseState::Canary } else { ReleaseState::Promoted },
            reason: None,
            canary,
            history: Vec::new(),
        };
        let what = match &release.canary {
            None => "published and promoted".to_owned(),
            Some(c) => format!(
                "published as a canary on {} ({} %), watched for {} s",
                c.agents.join(", "),
                c.percent,
                c.watch_ms / 1000
            ),
        };
        release.event(now_ms, what);
        let blob_path = self.blob_path(&release.sha256);
        let new_blob = !blob_path.is_file();
        if new_blob {
            write_atomic(&blob_path, blob)?;
        }
        let mut next = self.doc.releases.clone();
        if release.state == ReleaseState::Promoted {
            supersede(&mut next, &release.name, now_ms);
        }
        next.push(release.clone());
        if let Err(e) = self.save(next) {
            if new_blob {
                let _ = std::fs::remove_file(&blob_path);
            }
            return Err(e);
        }
        Ok(release)
    }

    fn known(&self, name: &str) -> Result<(), CatalogError> {
        match self.doc.releases.iter().any(|r| r.name == name) {
            true => Ok(()),
            false => Err(CatalogError::NotFound(name.to_owned())),
        }
    }

    /// Promotes the candidate of `name`.
    pub fn promote(&mut self, name: &str, now_ms: u64) -> Result<Release, CatalogError> {
        self.known(name)?;
        let i = self.live(name, true).ok_or_else(|| {
            CatalogError::Refused(format!("`{name}` has no canary or held release to promote"))
        })?;
        self.promote_at(i, "promoted", now_ms)
    }

    fn promote_at(&mut self, i: usize, what: &str, now_ms: u64) -> Result<Release, CatalogError> {
        let mut next = self.doc.releases.clone();
        let name = next[i].name.clone();
        supersede(&mut next, &name, now_ms);
        next[i].state = ReleaseState::Promoted;
        next[i].event(now_ms, what.to_owned());
        let out = next[i].clone();
        self.save(next)?;
        Ok(out)
    }

    /// Rolls back the candidate of `name`, or else its promoted release
    /// (the release promoted before it, if any, is promoted again).
    pub fn rollback(
        &mut self,
        name: &str,
        reason: &str,
        now_ms: u64,
    ) -> Result<Release, CatalogError> {
        self.known(name)?;
        let i = self.live(name, true).or_else(|| self.live(name, false)).ok_or_else(|| {
            CatalogError::Refused(format!("`{name}` has no live release to roll back"))
        })?;
        let mut next = self.doc.releases.clone();
        let was_promoted = next[i].state == ReleaseState::Promoted;
        next[i].state = ReleaseState::RolledBack;
        next[i].reason = Some(reason.to_owned());
        next[i].event(now_ms, format!("rolled back: {reason}"));
        if was_promoted {
            let before = next[..i]
                .iter()
                .rposition(|r| r.name == name && r.state == ReleaseState::Superseded);
            if let Some(j) = before {
                next[j].state = ReleaseState::Promoted;
                let id = next[i].id;
                next[j].event(now_ms, format!("promoted again: release {id} was rolled back"));
            }
        }
        let out = next[i].clone();
        self.save(next)?;
        Ok(out)
    }

    /// Removes `name` from the project: every agent drops it.
    pub fn remove(&mut self, name: &str, now_ms: u64) -> Result<Vec<Release>, CatalogError> {
        self.known(name)?;
        let mut next = self.doc.releases.clone();
        let mut out = Vec::new();
        let live = next.iter().any(|r| {
            r.name == name && (r.state == ReleaseState::Promoted || r.state.is_candidate())
        });
        for r in next.iter_mut().filter(|r| r.name == name && live) {
            // Superseded ones too: a later rollback must not bring them back.
            if matches!(r.state, ReleaseState::Promoted | ReleaseState::Superseded)
                || r.state.is_candidate()
            {
                let was_live = r.state != ReleaseState::Superseded;
                r.state = ReleaseState::Removed;
                r.event(now_ms, "removed from the project".into());
                if was_live {
                    out.push(r.clone());
                }
            }
        }
        if out.is_empty() {
            return Err(CatalogError::Refused(format!("`{name}` has no live release to remove")));
        }
        self.save(next)?;
        Ok(out)
    }

    /// The collectors `agent` should run.
    pub fn desired(&self, agent: &str) -> Desired {
        let mut names: Vec<&str> = self.doc.releases.iter().map(|r| r.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        let mut collectors = Vec::new();
        for name in names {
            let candidate = self.live(name, true).map(|i| &self.doc.releases[i]);
            let on_canary = candidate
                .filter(|r| r.canary.as_ref().is_some_and(|c| c.agents.iter().any(|a| a == agent)));
            let pick = on_canary.or_else(|| self.live(name, false).map(|i| &self.doc.releases[i]));
            if let Some(r) = pick {
                collectors.push(r.wanted());
            }
        }
        Desired { collectors }
    }

    /// Releases whose watch window runs.
    pub fn watched(&self) -> impl Iterator<Item = &Release> {
        self.doc.releases.iter().filter(|r| r.state == ReleaseState::Canary)
    }

    /// Settles the canary of `name` (release `id`): rolled back when
    /// `failure` says why, else promoted (or held) once its window is over
    /// and `ran` (some canary agent ran it).
    pub fn judge(
        &mut self,
        id: u64,
        failure: Option<String>,
        ran: bool,
        now_ms: u64,
    ) -> Result<Option<Verdict>, CatalogError> {
        let Some(i) = self.doc.releases.iter().position(|r| r.id == id) else { return Ok(None) };
        let r = &self.doc.releases[i];
        let Some(c) = r.canary.as_ref().filter(|_| r.state == ReleaseState::Canary) else {
            return Ok(None);
        };
        let over = now_ms >= c.started_ms.saturating_add(c.watch_ms);
        let failure = failure.or_else(|| {
            (over && !ran).then(|| "no canary agent ran it within the watch window".to_owned())
        });
        let hold = c.hold;
        let name = r.name.clone();
        if let Some(reason) = failure {
            return Ok(Some(Verdict::RolledBack(self.rollback(&name, &reason, now_ms)?)));
        }
        if !over {
            return Ok(None);
        }
        if hold {
            let mut next = self.doc.releases.clone();
            next[i].state = ReleaseState::Held;
            next[i].event(now_ms, "watched without a failure; held for promote".into());
            let out = next[i].clone();
            self.save(next)?;
            return Ok(Some(Verdict::Passed(out)));
        }
        let promoted = self.promote_at(i, "watched without a failure; promoted", now_ms)?;
        Ok(Some(Verdict::Passed(promoted)))
    }

    /// The catalog document, as `catalog.json` holds it.
    pub fn document(&self) -> Result<Vec<u8>, CatalogError> {
        serde_json::to_vec_pretty(&self.doc).map_err(|e| CatalogError::Corrupt {
            path: self.dir.join(CATALOG_FILE),
            message: e.to_string(),
        })
    }

    /// Replaces the catalog by document `bytes` (another proxy's change):
    /// refused, and the catalog unchanged, if it does not parse.
    pub fn replace(&mut self, bytes: &[u8]) -> Result<(), CatalogError> {
        let doc: Doc = serde_json::from_slice(bytes).map_err(|e| CatalogError::Corrupt {
            path: self.dir.join(CATALOG_FILE),
            message: format!("a shared catalog that does not parse: {e}"),
        })?;
        self.save(doc.releases)
    }

    /// Keeps component `blob` (checked by the caller) among the blobs.
    pub fn keep_blob(&self, sha256: &str, blob: &[u8]) -> Result<(), CatalogError> {
        write_atomic(&self.blob_path(sha256), blob)
    }

    fn save(&mut self, releases: Vec<Release>) -> Result<(), CatalogError> {
        let doc = Doc { releases };
        let bytes = serde_json::to_vec_pretty(&doc).map_err(|e| CatalogError::Corrupt {
            path: self.dir.join(CATALOG_FILE),
            message: e.to_string(),
        })?;
        write_atomic(&self.dir.join(CATALOG_FILE), &bytes)?;
        self.doc = doc;
        Ok(())
    }
}

/// Marks the promoted release of `name` superseded.
fn supersede(releases: &mut [Release], name: &str, now_ms: u64) {
    for r in releases.iter_mut().filter(|r| r.name == name && r.state == ReleaseState::Promoted) {
        r.state = ReleaseState::Superseded;
        r.event(now_ms, "superseded by a newer release".into());
    }
}

/// About `percent` of `agents` (at least one), spread by a hash of the
/// collector and agent names so that each collector tries different agents.
pub fn pick(agents: &[String], collector: &str, percent: u8) -> Vec<String> {
    let mut ranked: Vec<(String, &String)> = agents
        .iter()
        .map(|a| (wasmtap_protocol::fleet::sha256_hex(format!("{collector}\n{a}").as_bytes()), a))
        .collect();
    ranked.sort();
    ranked.dedup_by(|x, y| x.1 == y.1);
    let n = (ranked.len() * usize::from(percent.min(100)) + 50) / 100;
    let mut out: Vec<String> = ranked.into_iter().take(n.max(1)).map(|(_, a)| a.clone()).collect();
    out.sort();
    out
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), CatalogError> {
    use std::io::Write as _;
    let io = |what, source| CatalogError::Io { what, path: path.to_owned(), source };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| io("creating the directory of", e))?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(|e| io("creating", e))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(|e| io("writing", e))?;
    std::fs::rename(&tmp, path).map_err(|e| io("renaming", e))
}

#[cfg(test)]
#[path = "catalog_tests.rs"]
mod tests;
