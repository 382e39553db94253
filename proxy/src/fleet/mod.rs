//! Collector distribution: publish a collector once, and every agent of the
//! project runs it, with canaries and automatic rollback.
//!
//! - [`api`]: the catalog under `/api/projects/{project}/collectors`.
//! - [`catalog`]: one project's releases, their states and history, and the
//!   components, on disk.
//! - [`validate`]: a component is checked with the agent's own code before
//!   it is accepted.
//! - [`sharing`]: with `[cluster]`, the catalogs every proxy shares.
//! - [`deliver`]: bringing each connected agent to what the catalog wants,
//!   over its data session ([`wasmtap_protocol::fleet`]), and settling
//!   canaries from what the agents report.
//!
//! [`Fleet`] is what the admin API and the delivery loop share.

pub mod api;
pub mod catalog;
pub mod deliver;
mod metrics;
pub mod sharing;
pub mod validate;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde::Serialize;
use tokio::sync::Notify;
use wasmtap_protocol::fleet::{Installed, State, Status};

use catalog::{CanaryPlan, Catalog, CatalogError, Publish, Release};

/// Why a fleet operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FleetError {
    /// The project is not served here.
    #[error("no project `{0}` is served by this proxy")]
    UnknownProject(String),
    /// The component (or its manifest or signature) is not valid.
    #[error("{0}")]
    Invalid(String),
    /// The component is over `[fleet] max_size`.
    #[error("{size} bytes, over this proxy's [fleet] max_size of {max} bytes")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// The catalog refused or failed.
    #[error(transparent)]
    Catalog(#[from] CatalogError),
    /// The cluster's shared catalog could not be read or written.
    #[error(transparent)]
    Shared(#[from] crate::cluster::catalog::SharedError),
}

/// What the proxy last heard from one agent about its managed collectors.
#[derive(Debug, Clone, Default)]
pub struct AgentView {
    /// The session it was heard on.
    pub session: String,
    /// Its last report.
    pub state: Option<State>,
    /// When it was last asked, ms since the epoch.
    pub checked_ms: u64,
    /// The last sync's failure, if it failed.
    pub error: Option<String>,
    /// The catalog generation last applied in this session.
    applied: Option<u64>,
    /// A sync is running.
    busy: bool,
    /// It answered that it does not know the fleet commands.
    unsupported: bool,
    /// `state` was reported in its present session.
    current: bool,
}

/// A release as `list` shows it: with the agents that run it.
#[derive(Debug, Clone, Serialize)]
pub struct Listed {
    /// The release.
    #[serde(flatten)]
    pub release: Release,
    /// Agents that have it installed, by status.
    pub agents: HashMap<String, usize>,
}

/// One agent as `status` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct AgentStatus {
    /// The agent.
    pub agent: String,
    /// Whether it is connected now.
    pub connected: bool,
    /// The release it should run (none: it should not run the collector).
    pub wanted: Option<u64>,
    /// The SHA-256 it reports for the collector, if it has it.
    pub sha256: Option<String>,
    /// The release that SHA-256 belongs to.
    pub release: Option<u64>,
    /// That release's declared version.
    pub version: Option<String>,
    /// What it reports.
    pub status: Option<Status>,
    /// Why (refused, failing, quarantined).
    pub reason: Option<String>,
    /// What went wrong in the last delivery to it, if anything did.
    pub error: Option<String>,
}

/// The catalogs and the agents' reports, shared by the admin API and the
/// delivery loop.
#[derive(Debug)]
pub struct Fleet {
    root: PathBuf,
    max_size: u64,
    projects: Vec<String>,
    catalogs: Mutex<HashMap<String, Catalog>>,
    /// Bumped at every catalog change, per project.
    generations: Mutex<HashMap<String, u64>>,
    agents: Mutex<HashMap<(String, String), AgentView>>,
    /// The generation at which each canary (project, release id) was
    /// published: only reports from agents that applied it since count.
    canaries: Mutex<HashMap<(String, u64), u64>>,
    transfers: tokio::sync::Semaphore,
    wake: Notify,
    /// With `[cluster]`: the shared catalogs.
    sharing: Option<sharing::Sharing>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Fleet {
    /// The fleet of `projects`, kept under `data_dir/fleet`.
    pub fn new(data_dir: &std::path::Path, projects: Vec<String>, max_size: u64) -> Self {
        Self {
            root: data_dir.join("fleet"),
            max_size,
            projects,
            catalogs: Mutex::new(HashMap::new()),
            generations: Mutex::new(HashMap::new()),
            agents: Mutex::new(HashMap::new()),
            canaries: Mutex::new(HashMap::new()),
            transfers: tokio::sync::Semaphore::new(deliver::TRANSFERS),
            wake: Notify::new(),
            sharing: None,
        }
    }

    /// The same, its catalogs shared with the cluster's other proxies.
    #[must_use]
    pub fn shared(mut self, sharing: sharing::Sharing) -> Self {
        self.sharing = Some(sharing);
        self
    }

    /// Largest component accepted.
    pub fn max_size(&self) -> u64 {
        self.max_size
    }

    /// Runs `f` on `project`'s catalog (opened on first use). Blocking: it
    /// may read and write the disk.
    fn with_catalog<T>(
        &self,
        project: &str,
        f: impl FnOnce(&mut Catalog) -> Result<T, CatalogError>,
    ) -> Result<T, FleetError> {
        if !self.projects.iter().any(|p| p == project) {
            return Err(FleetError::UnknownProject(project.to_owned()));
        }
        let mut catalogs = lock(&self.catalogs);
        let catalog = match catalogs.entry(project.to_owned()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(Catalog::open(&self.root.join(project))?)
            }
        };
        Ok(f(catalog)?)
    }

    fn changed(&self, project: &str) {
        *lock(&self.generations).entry(project.to_owned()).or_default() += 1;
        self.wake.notify_one();
    }

    fn generation(&self, project: &str) -> u64 {
        lock(&self.generations).get(project).copied().unwrap_or(0)
    }

    /// Validates and publishes a component to `project`; `connected` are
    /// the project's agents connected now (the canary is drawn from them).
    /// Blocking: it compiles the component.
    #[allow(clippy::too_many_arguments)]
    pub fn publish(
        &self,
        project: &str,
        label: &str,
        wasm: &[u8],
        manifest: Option<String>,
        signature: Option<String>,
        canary: Option<CanaryPlan>,
        connected: &[String],
        now_ms: u64,
    ) -> Result<Release, FleetError> {
        if !self.projects.iter().any(|p| p == project) {
            return Err(FleetError::UnknownProject(project.to_owned()));
        }
        if wasm.len() as u64 > self.max_size {
            return Err(FleetError::TooLarge { size: wasm.len() as u64, max: self.max_size });
        }
        let v = validate::validate(
            label,
            wasm,
            manifest.as_deref(),
            signature.as_deref(),
            self.max_size,
        )
        .map_err(FleetError::Invalid)?;
        // Within the window a canary agent must load the release, call it
        // (at once, then once an interval) and report: at least two
        // intervals leave room for a second call, and for rates between calls.
        let shortest = v.interval.saturating_mul(2).as_millis();
        if let Some(plan) = canary.as_ref().filter(|p| u128::from(p.watch_ms) < shortest) {
            return Err(FleetError::Invalid(format!(
                "a watch window of {} s is shorter than twice the collector's interval of {} s: canary agents would call it once or twice at most before the window ends",
                plan.watch_ms as f64 / 1e3,
                v.interval.as_secs_f64()
            )));
        }
        let candidates = self.candidates(project, connected);
        let p = Publish {
            name: v.name,
            version: v.version,
            manifest,
            signature,
            signer: v.signer,
            canary,
            judge: self.sharing.as_ref().map(|s| s.me().to_owned()),
        };
        let release = self.change(project, |c| c.publish(p.clone(), wasm, &candidates, now_ms))?;
        tracing::info!(%project, collector = %release.name, version = %release.version, release = release.id, state = ?release.state, "collector published");
        self.changed(project);
        if release.canary.is_some() {
            let generation = self.generation(project);
            lock(&self.canaries).insert((project.to_owned(), release.id), generation);
        }
        Ok(release)
    }

    /// The agents of `connected` a canary may be drawn from: all but those
    /// that said in their present session that they take no pushed
    /// collectors (`[plugins] managed = false`) or do not know the fleet
    /// commands.
    fn candidates(&self, project: &str, connected: &[String]) -> Vec<String> {
        let agents = lock(&self.agents);
        connected
            .iter()
            .filter(|a| {
                agents
                    .get(&(project.to_owned(), (*a).clone()))
                    .filter(|v| v.current || v.unsupported)
                    .is_none_or(|v| !v.unsupported && v.state.as_ref().is_none_or(|s| s.managed))
            })
            .cloned()
            .collect()
    }

    /// `promote`, `rollback` or `remove` of `name` in `project`.
    pub fn act(
        &self,
        project: &str,
        name: &str,
        action: Action,
        now_ms: u64,
    ) -> Result<Vec<Release>, FleetError> {
        let out = self.change(project, |c| match action {
            Action::Promote => c.promote(name, now_ms).map(|r| vec![r]),
            Action::Rollback => {
                c.rollback(name, "rolled back by an operator", now_ms).map(|r| vec![r])
            }
            Action::Remove => c.remove(name, now_ms),
        })?;
        tracing::info!(%project, collector = %name, ?action, "collector release changed by an operator");
        self.changed(project);
        Ok(out)
    }

    /// Every release of `project`, with the agents that have each.
    pub fn list(&self, project: &str) -> Result<Vec<Listed>, FleetError> {
        let releases = self.with_catalog(project, |c| Ok(c.releases().to_vec()))?;
        let index = Releases::new(&releases);
        let mut counts: HashMap<u64, HashMap<String, usize>> = HashMap::new();
        let agents = lock(&self.agents);
        let reports = agents.iter().filter(|((p, _), _)| p == project);
        for c in reports.flat_map(|(_, view)| view.state.iter().flat_map(|s| &s.collectors)) {
            if let Some(r) = index.of(c) {
                *counts.entry(r.id).or_default().entry(c.status.name().to_owned()).or_default() +=
                    1;
            }
        }
        drop(agents);
        let out = releases
            .into_iter()
            .map(|release| {
                let agents = counts.remove(&release.id).unwrap_or_default();
                Listed { release, agents }
            })
            .collect();
        Ok(out)
    }

    /// Each agent heard from in `project` and where it stands with `name`.
    pub fn status(
        &self,
        project: &str,
        name: &str,
        connected: &[String],
    ) -> Result<Vec<AgentStatus>, FleetError> {
        let (releases, desired) = self.with_catalog(project, |c| {
            let mut names: Vec<String> = lock(&self.agents)
                .keys()
                .filter(|(p, _)| p == project)
                .map(|(_, a)| a.clone())
                .chain(connected.iter().cloned())
                .collect();
            names.sort();
            names.dedup();
            let desired: Vec<(String, Option<(String, String)>)> = names
                .into_iter()
                .map(|a| {
                    let want = c.desired(&a).collectors.into_iter().find(|w| w.name == name);
                    (a, want.map(|w| (w.sha256.clone(), w.files_sha256())))
                })
                .collect();
            Ok((c.releases().to_vec(), desired))
        })?;
        if !releases.iter().any(|r| r.name == name) {
            return Err(FleetError::Catalog(CatalogError::NotFound(name.to_owned())));
        }
        let index = Releases::new(&releases);
        let agents = lock(&self.agents);
        let mut out = Vec::new();
        for (agent, want) in desired {
            let view = agents.get(&(project.to_owned(), agent.clone()));
            let wanted = want.as_ref().and_then(|(sha, files)| index.find(name, sha, files));
            let reported = view.and_then(|v| v.state.as_ref()).and_then(|s| {
                // The refusal of the wanted version first, else what it runs.
                let all: Vec<_> = s.collectors.iter().filter(|c| c.name == name).collect();
                let refused_wanted = |c: &&&Installed| {
                    c.status == Status::Refused
                        && want.as_ref().is_some_and(|(sha, files)| c.is(name, sha, files))
                };
                all.iter()
                    .find(refused_wanted)
                    .or_else(|| all.iter().find(|c| c.status != Status::Refused))
                    .or_else(|| all.first())
                    .map(|c| (*c).clone())
            });
            let has = reported.as_ref().and_then(|c| index.of(c));
            out.push(AgentStatus {
                connected: connected.contains(&agent),
                wanted: wanted.map(|r| r.id),
                release: has.map(|r| r.id),
                version: has.map(|r| r.version.clone()),
                sha256: reported.as_ref().map(|c| c.sha256.clone()),
                status: reported.as_ref().map(|c| c.status),
                reason: reported.and_then(|c| c.reason),
                error: view.and_then(|v| v.error.clone()),
                agent,
            });
        }
        Ok(out)
    }
}

/// A project's releases with their files digests, to tell which release
/// an agent's report is about.
pub(crate) struct Releases<'a>(Vec<(&'a Release, String)>);

impl<'a> Releases<'a> {
    pub(crate) fn new(releases: &'a [Release]) -> Self {
        Self(releases.iter().map(|r| (r, r.files_sha256())).collect())
    }

    /// The newest release `report` is about (by component, and by files
    /// when the agent reports them).
    pub(crate) fn of(&self, report: &Installed) -> Option<&'a Release> {
        let found = self.0.iter().rev().find(|(r, files)| report.is(&r.name, &r.sha256, files));
        found.map(|(r, _)| *r)
    }

    /// The newest release of `name` with component `sha` and files `files`.
    pub(crate) fn find(&self, name: &str, sha: &str, files: &str) -> Option<&'a Release> {
        let found =
            self.0.iter().rev().find(|(r, f)| r.name == name && r.sha256 == sha && f == files);
        found.map(|(r, _)| *r)
    }
}

/// An operator's change to a collector's releases.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Promote the candidate.
    Promote,
    /// Roll back the candidate, or the promoted release.
    Rollback,
    /// Remove the collector from the project.
    Remove,
}
