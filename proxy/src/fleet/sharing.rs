//! With `[cluster]`: the catalogs live in JetStream
//! ([`crate::cluster::catalog`]) and each proxy keeps a copy of them in its
//! data directory, from which it delivers.
//!
//! - Following: once a second, each project's shared document is compared
//!   with the copy's revision; a newer one is taken, its components first
//!   (each checked against its SHA-256), and the agents are synced to it.
//! - Changing (publish, promote, rollback, remove, a canary's verdict): the
//!   copy is brought to the shared revision, the change is made to it, new
//!   components are put in the stream, and the document is put on the
//!   condition that the revision is still the one changed. If another proxy
//!   changed it meanwhile, the change is made again to the newer document
//!   (a few times); if JetStream does not answer, the copy is put back as
//!   it was and the operator gets the error: no proxy serves a release the
//!   others do not know.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use serde::Deserialize;
use wasmtap_protocol::access_key::ProjectId;

use super::catalog::{Catalog, CatalogError};
use super::{Fleet, FleetError, lock};
use crate::cluster::catalog::{Shared, SharedError};

/// Times a change is made again after another proxy's change came first.
const ATTEMPTS: usize = 5;

/// The shared catalogs, and what this proxy's copies stand at.
#[derive(Debug)]
pub struct Sharing {
    shared: Shared,
    /// This proxy's name in the cluster (a canary's judge).
    me: String,
    runtime: tokio::runtime::Handle,
    /// The shared revision each project's copy reflects.
    revisions: Mutex<HashMap<String, u64>>,
    /// Projects whose shared catalog cannot be followed now.
    failing: Mutex<BTreeSet<String>>,
}

impl Sharing {
    /// Sharing through `shared`, as proxy `me`; `runtime` reaches JetStream
    /// from blocking code.
    pub fn new(shared: Shared, me: String, runtime: tokio::runtime::Handle) -> Self {
        Self {
            shared,
            me,
            runtime,
            revisions: Mutex::new(HashMap::new()),
            failing: Mutex::new(BTreeSet::new()),
        }
    }

    /// This proxy's name.
    pub fn me(&self) -> &str {
        &self.me
    }

    /// Logs that following `project`'s catalog failed with `error`, or
    /// works again: once per outage, not once a second.
    pub(super) fn note(&self, project: &str, error: Option<&FleetError>) {
        let mut failing = lock(&self.failing);
        match error {
            Some(e) if failing.insert(project.to_owned()) => {
                tracing::warn!(%project, error = %e, "cannot follow the cluster's catalog; its agents keep what they have");
            }
            None if failing.remove(project) => {
                tracing::info!(%project, "following the cluster's catalog again");
            }
            _ => {}
        }
    }
}

/// The components a catalog document names.
fn components(doc: &[u8]) -> Result<BTreeSet<String>, CatalogError> {
    #[derive(Deserialize)]
    struct Release {
        sha256: String,
    }
    #[derive(Deserialize)]
    struct Doc {
        #[serde(default)]
        releases: Vec<Release>,
    }
    let doc: Doc = serde_json::from_slice(doc)
        .map_err(|e| CatalogError::Refused(format!("a shared catalog that does not parse: {e}")))?;
    Ok(doc.releases.into_iter().map(|r| r.sha256).collect())
}

fn project_id(project: &str) -> Result<ProjectId, FleetError> {
    ProjectId::new(project).map_err(|_| FleetError::UnknownProject(project.to_owned()))
}

/// How often the shared catalogs are looked at.
const FOLLOW: std::time::Duration = std::time::Duration::from_secs(1);

impl Fleet {
    /// Follows the shared catalogs until `shutdown` flips.
    pub(super) async fn follow(
        self: std::sync::Arc<Self>,
        mut shutdown: tokio::sync::watch::Receiver<bool>,
    ) {
        let Some(sharing) = &self.sharing else { return };
        loop {
            for project in &self.projects {
                let pulled = self.pull(sharing, project).await;
                sharing.note(project, pulled.as_ref().err());
            }
            tokio::select! {
                () = tokio::time::sleep(FOLLOW) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Brings `project`'s copy to the shared catalog; whether it changed.
    pub(super) async fn pull(&self, sharing: &Sharing, project: &str) -> Result<bool, FleetError> {
        let id = project_id(project)?;
        let (revision, doc) = sharing.shared.catalog(&id).await?;
        if lock(&sharing.revisions).get(project).copied().unwrap_or(0) == revision {
            return Ok(false);
        }
        let Some(doc) = doc else { return Ok(false) };
        for sha in components(&doc)? {
            let path = self.with_catalog(project, |c| Ok(c.blob_path(&sha)))?;
            if path.is_file() {
                continue;
            }
            let blob = sharing.shared.blob(&id, &sha).await?.ok_or_else(|| {
                FleetError::Shared(SharedError::Damaged {
                    sha256: sha.clone(),
                    why: "named by the catalog but not in the stream".into(),
                })
            })?;
            self.with_catalog(project, |c| c.keep_blob(&sha, &blob))?;
        }
        // Under the catalog's lock, and only forward: a change made through
        // this proxy meanwhile may have put a newer revision here already.
        let installed = self.with_catalog(project, |c| {
            let mut revisions = lock(&sharing.revisions);
            if revisions.get(project).is_some_and(|r| *r >= revision) {
                return Ok(false);
            }
            c.replace(&doc)?;
            tracing::debug!(%project, revision, "took the cluster's catalog");
            revisions.insert(project.to_owned(), revision);
            Ok(true)
        })?;
        if installed {
            self.changed(project);
        }
        Ok(installed)
    }

    /// Makes change `f` to `project`'s catalog, shared when the proxy is
    /// in a cluster (see the module docs). Blocking.
    pub(super) fn change<T>(
        &self,
        project: &str,
        mut f: impl FnMut(&mut Catalog) -> Result<T, CatalogError>,
    ) -> Result<T, FleetError> {
        let Some(sharing) = &self.sharing else { return self.with_catalog(project, f) };
        let id = project_id(project)?;
        for _ in 0..ATTEMPTS {
            sharing.runtime.block_on(self.pull(sharing, project))?;
            let revision = lock(&sharing.revisions).get(project).copied().unwrap_or(0);
            let (out, before, after, new) = self.with_catalog(project, |c| {
                let before = c.document()?;
                let had: BTreeSet<String> = c.releases().iter().map(|r| r.sha256.clone()).collect();
                let out = f(c)?;
                let new: Vec<_> = c
                    .releases()
                    .iter()
                    .filter(|r| !had.contains(&r.sha256))
                    .map(|r| c.blob_path(&r.sha256))
                    .collect();
                Ok((out, before, c.document()?, new))
            })?;
            if before == after {
                return Ok(out);
            }
            let put = sharing.runtime.block_on(async {
                for path in &new {
                    let blob = tokio::fs::read(path).await.map_err(|e| {
                        SharedError::Unreachable(format!("reading {}: {e}", path.display()))
                    })?;
                    sharing.shared.put_blob(&id, &blob).await?;
                }
                sharing.shared.put_catalog(&id, after, revision).await
            });
            match put {
                Ok(revision) => {
                    let mut revisions = lock(&sharing.revisions);
                    let r = revisions.entry(project.to_owned()).or_default();
                    *r = (*r).max(revision);
                    return Ok(out);
                }
                Err(e) => {
                    // The copy goes back to what it was, and is taken again
                    // from the stream at the next look whatever it holds.
                    self.with_catalog(project, |c| {
                        lock(&sharing.revisions).remove(project);
                        c.replace(&before)
                    })?;
                    if !matches!(e, SharedError::Conflict) {
                        return Err(e.into());
                    }
                    tracing::info!(%project, "the catalog was changed through another proxy meanwhile; making the change again");
                }
            }
        }
        Err(SharedError::Conflict.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_components_of_a_document_are_its_releases_digests() {
        let doc =
            br#"{"releases": [{"sha256": "aa", "id": 1}, {"sha256": "bb"}, {"sha256": "aa"}]}"#;
        let want: BTreeSet<String> = ["aa", "bb"].map(String::from).into();
        assert_eq!(components(doc).expect("parses"), want);
        assert!(components(b"{}").expect("no releases").is_empty());
        assert!(components(b"[").is_err());
    }
}
