//! Brings every connected agent to what its project's catalog wants, and
//! settles canaries from what the agents report.
//!
//! Once a second (and at once after a catalog change) the loop looks at
//! the connected agents. An agent is synced when its session is new to the
//! loop, when its project's catalog changed since its last sync, or when
//! its last report is older than [`POLL`] ([`CANARY_POLL`] for the agents
//! of a canary under watch). A sync asks [`fleet::STATE`]; if the catalog
//! changed it sends what the agent lacks with [`fleet::PUT`], from where
//! its partial copy ends, then [`fleet::APPLY`] with the desired set. An
//! offline agent converges when it reconnects; an agent that does not
//! know the commands is left alone.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use tokio::sync::watch;
use wasmtap_protocol::fleet::{self, Desired, Received, State, Status};

use super::catalog::Verdict;
use super::{Fleet, lock};
use crate::sessions::Sessions;

/// How often an agent's report is refreshed.
pub const POLL: Duration = Duration::from_secs(30);
/// How often the agents of a canary under watch are asked.
pub const CANARY_POLL: Duration = Duration::from_secs(2);
/// How long the report of an agent without a session is kept (and counted
/// by `list` and `/metrics`) before it is forgotten.
pub const FORGET: Duration = Duration::from_secs(600);
/// How long after a failed sync an agent is tried again.
pub const RETRY: Duration = Duration::from_secs(15);
/// Transfers of components running at once (each holds its component in memory).
pub(super) const TRANSFERS: usize = 4;
/// How long an agent has to answer a state request.
const STATE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an agent has to take a piece or apply a set (it may compile).
const APPLY_TIMEOUT: Duration = Duration::from_secs(120);

impl Fleet {
    /// Runs deliveries until `shutdown` flips.
    pub async fn run(
        self: Arc<Self>,
        sessions: Arc<Sessions>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if self.sharing.is_some() {
            // Apart, so that a JetStream outage does not hold deliveries up.
            tokio::spawn(self.clone().follow(shutdown.clone()));
        }
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = self.wake.notified() => {}
                _ = shutdown.changed() => return,
            }
            let now = crate::now_ms();
            let fleet = self.clone();
            // Judging may write the catalog: off the async workers.
            let _ = tokio::task::spawn_blocking(move || fleet.judge(now)).await;
            // One sync per agent, on its newest session (requests go there).
            let mut newest: std::collections::HashMap<
                (String, String),
                crate::sessions::AgentInfo,
            > = std::collections::HashMap::new();
            for info in sessions.agents() {
                let key = (info.project.clone(), info.agent.clone());
                if newest.get(&key).is_none_or(|n| n.connected_ms <= info.connected_ms) {
                    newest.insert(key, info);
                }
            }
            self.forget_gone(
                |project, agent| newest.contains_key(&(project.to_owned(), agent.to_owned())),
                now,
            );
            for info in newest.into_values() {
                if !self.projects.contains(&info.project)
                    || !self.due(&info.project, &info.agent, &info.session, now)
                {
                    continue;
                }
                let (fleet, sessions) = (self.clone(), sessions.clone());
                tokio::spawn(async move {
                    fleet.sync(&sessions, &info.project, &info.agent, &info.session).await;
                });
            }
        }
    }

    /// Drops the reports of agents without a session (`connected` says
    /// which have one) not heard from in [`FORGET`], so that a machine
    /// taken out of service stops counting.
    pub(super) fn forget_gone(&self, connected: impl Fn(&str, &str) -> bool, now: u64) {
        let forget = u64::try_from(FORGET.as_millis()).unwrap_or(u64::MAX);
        lock(&self.agents).retain(|(project, agent), view| {
            view.busy || connected(project, agent) || now.saturating_sub(view.checked_ms) < forget
        });
    }

    /// Whether agent `agent` of `project` on `session` needs a sync now;
    /// if so it is marked busy.
    fn due(&self, project: &str, agent: &str, session: &str, now: u64) -> bool {
        let generation = self.generation(project);
        let canary = self.in_canary(project, agent);
        let mut agents = lock(&self.agents);
        let view = agents.entry((project.to_owned(), agent.to_owned())).or_default();
        if view.busy {
            return false;
        }
        let new_session = view.session != session;
        if !new_session && view.unsupported {
            return false;
        }
        let retry = u64::try_from(RETRY.as_millis()).unwrap_or(u64::MAX);
        if !new_session && view.error.is_some() && now.saturating_sub(view.checked_ms) < retry {
            return false;
        }
        let poll = if canary { CANARY_POLL } else { POLL };
        let stale = now.saturating_sub(view.checked_ms)
            >= u64::try_from(poll.as_millis()).unwrap_or(u64::MAX);
        let due = new_session || view.applied != Some(generation) || stale;
        if due {
            view.busy = true;
            if new_session {
                view.session = session.to_owned();
                view.applied = None;
                view.unsupported = false;
                view.current = false;
            }
        }
        due
    }

    fn in_canary(&self, project: &str, agent: &str) -> bool {
        let catalogs = lock(&self.catalogs);
        catalogs.get(project).is_some_and(|c| {
            c.watched()
                .any(|r| r.canary.as_ref().is_some_and(|k| k.agents.iter().any(|a| a == agent)))
        })
    }

    async fn sync(&self, sessions: &Sessions, project: &str, agent: &str, session: &str) {
        let generation = self.generation(project);
        let result = self.sync_once(sessions, project, agent, generation).await;
        let mut agents = lock(&self.agents);
        let view = agents.entry((project.to_owned(), agent.to_owned())).or_default();
        view.busy = false;
        if view.session != session {
            return;
        }
        view.checked_ms = crate::now_ms();
        match result {
            Ok(Synced { state, applied, errors }) => {
                view.state = Some(state);
                view.current = true;
                view.error = (!errors.is_empty()).then(|| errors.join("; "));
                if let Some(e) = &view.error {
                    tracing::warn!(%project, %agent, error = %e, "collector delivery incomplete");
                }
                if applied {
                    view.applied = Some(generation);
                }
            }
            Err(SyncError::Unsupported) => view.unsupported = true,
            Err(SyncError::Failed(e)) => {
                tracing::warn!(%project, %agent, error = %e, "collector delivery failed; retried in {RETRY:?}");
                view.error = Some(e);
            }
        }
    }

    async fn sync_once(
        &self,
        sessions: &Sessions,
        project: &str,
        agent: &str,
        generation: u64,
    ) -> Result<Synced, SyncError> {
        let ask = |command: &'static str, args: Vec<String>, timeout| async move {
            match sessions.request(Some(project), agent, command, args, timeout).await {
                Ok(Ok(text)) => Ok(text),
                Ok(Err(m)) if m.starts_with("unknown command") => Err(SyncError::Unsupported),
                Ok(Err(m)) => Err(SyncError::Failed(format!("{command}: {m}"))),
                Err(e) => Err(SyncError::Failed(format!("{command}: {e}"))),
            }
        };
        let parse = |text: String| {
            serde_json::from_str::<State>(&text)
                .map_err(|e| SyncError::Failed(format!("a report that does not parse: {e}")))
        };
        let state = parse(ask(fleet::STATE, Vec::new(), STATE_TIMEOUT).await?)?;
        if !state.managed {
            // Nothing to deliver until it reconnects (with other settings).
            return Ok(Synced { state, applied: true, errors: Vec::new() });
        }
        let applied =
            lock(&self.agents).get(&(project.to_owned(), agent.to_owned())).and_then(|v| v.applied);
        let (desired, blobs) = self
            .with_catalog(project, |c| {
                let d = c.desired(agent);
                let paths = d.collectors.iter().map(|w| c.blob_path(&w.sha256)).collect::<Vec<_>>();
                Ok((d, paths))
            })
            .map_err(|e| SyncError::Failed(e.to_string()))?;
        // Applied and still in step (nothing installed by hand or lost since).
        if applied == Some(generation) && in_step(&state, &desired) {
            return Ok(Synced { state, applied: false, errors: Vec::new() });
        }
        let mut errors = Vec::new();
        for (w, path) in desired.collectors.iter().zip(blobs) {
            let has = state
                .collectors
                .iter()
                .any(|c| c.sha256 == w.sha256 && c.status != Status::Refused)
                || state.partial.iter().any(|b| b.sha256 == w.sha256 && b.bytes == w.size);
            if has {
                continue;
            }
            // A component that cannot be sent is left out; the agent
            // refuses it as not received, and the rest is applied.
            if let Err(e) = self.transfer(&ask, &state, w, &path).await {
                match e {
                    SyncError::Failed(m) => errors.push(format!("{} {}: {m}", w.name, w.version)),
                    SyncError::Unsupported => return Err(SyncError::Unsupported),
                }
            }
        }
        let args =
            vec![serde_json::to_string(&desired).map_err(|e| SyncError::Failed(e.to_string()))?];
        let state = parse(ask(fleet::APPLY, args, APPLY_TIMEOUT).await?)?;
        log_outcome(project, agent, &desired, &state);
        Ok(Synced { state, applied: true, errors })
    }

    /// Sends `w`'s component, from `path`, unless the proxy's copy is
    /// damaged; a bounded number of transfers run at once.
    async fn transfer<F, Fut>(
        &self,
        ask: &F,
        state: &State,
        w: &fleet::Wanted,
        path: &std::path::Path,
    ) -> Result<(), SyncError>
    where
        F: Fn(&'static str, Vec<String>, Duration) -> Fut,
        Fut: std::future::Future<Output = Result<String, SyncError>>,
    {
        let _permit =
            self.transfers.acquire().await.map_err(|e| SyncError::Failed(e.to_string()))?;
        let from = state.partial.iter().find(|b| b.sha256 == w.sha256).map_or(0, |b| b.bytes);
        let blob = tokio::fs::read(path)
            .await
            .map_err(|e| SyncError::Failed(format!("reading {}: {e}", path.display())))?;
        if fleet::sha256_hex(&blob) != w.sha256 {
            return Err(SyncError::Failed(format!(
                "the proxy's copy {} does not match its SHA-256; not sent",
                path.display()
            )));
        }
        send_blob(ask, &w.sha256, w.size, &blob, from).await
    }

    /// Settles every canary under watch from the agents' reports.
    fn judge(&self, now_ms: u64) {
        for project in &self.projects {
            let watched = self.with_catalog(project, |c| {
                Ok(c.watched()
                    // In a cluster, only the proxy it was published through judges it.
                    .filter(|r| {
                        self.sharing.as_ref().is_none_or(|s| {
                            r.canary
                                .as_ref()
                                .is_none_or(|k| k.judge.as_deref().is_none_or(|j| j == s.me()))
                        })
                    })
                    .map(|r| {
                        let agents =
                            r.canary.as_ref().map(|k| k.agents.clone()).unwrap_or_default();
                        (r.id, r.name.clone(), r.sha256.clone(), r.files_sha256(), agents)
                    })
                    .collect::<Vec<_>>())
            });
            let watched = match watched {
                Ok(w) => w,
                Err(e) => {
                    tracing::debug!(%project, error = %e, "catalog unavailable");
                    continue;
                }
            };
            for (id, name, sha, files, canaries) in watched {
                let (failure, ran) = {
                    let since =
                        lock(&self.canaries).get(&(project.clone(), id)).copied().unwrap_or(0);
                    let agents = lock(&self.agents);
                    let mut failure = None;
                    let mut ran = false;
                    for a in &canaries {
                        // Only what an agent reported after applying the canary counts.
                        let Some(state) = agents
                            .get(&(project.clone(), a.clone()))
                            .filter(|v| v.applied.is_some_and(|g| g >= since))
                            .and_then(|v| v.state.as_ref())
                        else {
                            continue;
                        };
                        for c in state.collectors.iter().filter(|c| c.is(&name, &sha, &files)) {
                            ran |= c.has_run();
                            if failure.is_none() && (c.status.is_failure() || c.failures > 0) {
                                let why = c.reason.as_deref().unwrap_or("no reason given");
                                failure = Some(format!("agent {a}: {} ({why})", c.status.name()));
                            }
                        }
                    }
                    (failure, ran)
                };
                match self.change(project, |c| c.judge(id, failure.clone(), ran, now_ms)) {
                    Ok(Some(Verdict::RolledBack(r))) => {
                        tracing::warn!(%project, collector = %r.name, release = r.id, reason = r.reason.as_deref().unwrap_or(""), "canary failed; release rolled back on every agent");
                        self.changed(project);
                    }
                    Ok(Some(Verdict::Passed(r))) => {
                        tracing::info!(%project, collector = %r.name, release = r.id, state = ?r.state, "canary watched without a failure");
                        self.changed(project);
                    }
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(%project, collector = %name, error = %e, "cannot settle a canary")
                    }
                }
            }
        }
    }
}

struct Synced {
    state: State,
    applied: bool,
    /// Components that could not be sent.
    errors: Vec<String>,
}

/// Whether the agent has every wanted version (installed or refused) and
/// no managed collector that is not wanted.
fn in_step(state: &State, desired: &Desired) -> bool {
    let wanted = desired.collectors.iter().all(|w| {
        let files = w.files_sha256();
        state.collectors.iter().any(|c| c.is(&w.name, &w.sha256, &files))
    });
    let extra = state.collectors.iter().any(|c| {
        c.status != Status::Refused && !desired.collectors.iter().any(|w| w.name == c.name)
    });
    wanted && !extra
}

enum SyncError {
    Unsupported,
    Failed(String),
}

/// Sends `blob` (`size` bytes as published) in pieces from `from`,
/// following where the agent says it is. The agent checks what it gets
/// against `sha`: a copy damaged here is refused there.
async fn send_blob<F, Fut>(
    ask: &F,
    sha: &str,
    size: u64,
    blob: &[u8],
    from: u64,
) -> Result<(), SyncError>
where
    F: Fn(&'static str, Vec<String>, Duration) -> Fut,
    Fut: std::future::Future<Output = Result<String, SyncError>>,
{
    let mut at = from.min(size);
    // Each piece must move the agent forward; a stuck transfer is an error.
    let mut stalls = 0;
    while at < size {
        let start = usize::try_from(at).unwrap_or(usize::MAX);
        if start >= blob.len() {
            return Err(SyncError::Failed(format!(
                "the proxy's copy of {sha} has {} of its {size} bytes",
                blob.len()
            )));
        }
        let end = (start + fleet::CHUNK).min(blob.len());
        let data = base64::engine::general_purpose::STANDARD.encode(&blob[start..end]);
        let args = vec![sha.to_owned(), size.to_string(), at.to_string(), data];
        let text = ask(fleet::PUT, args, APPLY_TIMEOUT).await?;
        let got: Received = serde_json::from_str(&text)
            .map_err(|e| SyncError::Failed(format!("a piece's answer does not parse: {e}")))?;
        if got.bytes <= at {
            stalls += 1;
            if stalls > 2 {
                return Err(SyncError::Failed(format!(
                    "the agent holds {} of {sha} and takes no more",
                    got.bytes
                )));
            }
        }
        at = got.bytes;
    }
    Ok(())
}

fn log_outcome(project: &str, agent: &str, desired: &Desired, state: &State) {
    for w in &desired.collectors {
        let files = w.files_sha256();
        let got = state.collectors.iter().find(|c| c.is(&w.name, &w.sha256, &files));
        match got {
            Some(c) if c.status == Status::Refused => {
                tracing::warn!(%project, %agent, collector = %w.name, version = %w.version, reason = c.reason.as_deref().unwrap_or(""), "agent refused a collector");
            }
            Some(c) => {
                tracing::info!(%project, %agent, collector = %w.name, version = %w.version, status = c.status.name(), "collector delivered");
            }
            None => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// An agent that appends a piece only at the offset it holds, as
    /// `Managed::put` does; `stuck` never takes anything.
    fn agent(holds: u64, stuck: bool) -> (Mutex<(u64, Vec<u64>)>, bool) {
        (Mutex::new((holds, Vec::new())), stuck)
    }

    async fn send(
        model: &(Mutex<(u64, Vec<u64>)>, bool),
        size: u64,
        blob: &[u8],
        from: u64,
    ) -> Result<(), String> {
        let ask = |command: &'static str, args: Vec<String>, _: Duration| {
            assert_eq!(command, fleet::PUT);
            let offset: u64 = args[2].parse().expect("offset");
            let data = base64::engine::general_purpose::STANDARD.decode(&args[3]).expect("b64");
            assert!(data.len() <= fleet::CHUNK);
            let mut m = model.0.lock().expect("lock");
            m.1.push(offset);
            if offset == m.0 && !model.1 {
                m.0 += data.len() as u64;
            }
            let answer = serde_json::json!({ "sha256": args[0], "bytes": m.0 }).to_string();
            async move { Ok::<_, SyncError>(answer) }
        };
        send_blob(&ask, "00", size, blob, from).await.map_err(|e| match e {
            SyncError::Failed(m) => m,
            SyncError::Unsupported => "unsupported".into(),
        })
    }

    #[tokio::test]
    async fn a_transfer_resumes_where_the_agent_stands() {
        let blob = vec![7u8; fleet::CHUNK * 2 + 100];
        let size = blob.len() as u64;
        // The agent held 1,000 bytes from a cut session: the rest, in two pieces.
        let model = agent(1_000, false);
        send(&model, size, &blob, 1_000).await.expect("sent");
        let (held, offsets) = model.0.into_inner().expect("lock");
        assert_eq!(held, size);
        assert_eq!(offsets, vec![1_000, 1_000 + fleet::CHUNK as u64]);
        // The proxy thought it held nothing: the agent's answer moves it on.
        let model = agent(500, false);
        send(&model, size, &blob, 0).await.expect("sent");
        let (held, offsets) = model.0.into_inner().expect("lock");
        assert_eq!((held, offsets[0], offsets[1]), (size, 0, 500));
    }

    #[tokio::test]
    async fn a_stuck_agent_or_a_short_copy_is_an_error_not_a_loop() {
        let blob = vec![1u8; 10];
        let err = send(&agent(0, true), 10, &blob, 0).await.expect_err("stuck");
        assert!(err.contains("takes no more"), "{err}");
        let err = send(&agent(0, false), 20, &blob, 0).await.expect_err("short");
        assert!(err.contains("10 of its 20 bytes"), "{err}");
    }

    /// A fleet of `shop` with release 1 of `cpu` promoted and release 2
    /// a canary on `web-00` (of `web-00` and `web-01`), watched for 60 s
    /// from 0; the canary agent applied it.
    fn watched() -> (tempfile::TempDir, Fleet, String) {
        use super::super::catalog::{CanaryPlan, Publish};
        let dir = tempfile::tempdir().expect("temp dir");
        let fleet = Fleet::new(dir.path(), vec!["shop".into()], 1 << 20);
        let publish = |canary| Publish {
            judge: None,
            name: "cpu".into(),
            version: "1".into(),
            manifest: None,
            signature: None,
            signer: None,
            canary,
        };
        let agents = ["web-00".to_owned(), "web-01".to_owned()];
        let plan = CanaryPlan { percent: 1, watch_ms: 60_000, hold: false };
        let sha = fleet
            .with_catalog("shop", |c| {
                c.publish(publish(None), b"v1", &agents, 0)?;
                let r = c.publish(publish(Some(plan)), b"v2", &agents, 0)?;
                assert_eq!(r.canary.as_ref().map(|k| k.agents.len()), Some(1));
                Ok(r.sha256)
            })
            .expect("published");
        lock(&fleet.canaries).insert(("shop".into(), 2), 0);
        (dir, fleet, sha)
    }

    /// `agent` reports `cpu` release 2 as `status`, with its counts.
    fn report(fleet: &Fleet, agent: &str, sha: &str, status: Status, calls: u64, failures: u64) {
        let installed = fleet::Installed {
            name: "cpu".into(),
            sha256: sha.into(),
            files_sha256: Some(fleet::files_sha256(None, None)),
            status,
            failures,
            calls: Some(calls),
            reason: Some("what the agent said".into()),
        };
        let view = crate::fleet::AgentView {
            applied: Some(0),
            state: Some(State { managed: true, collectors: vec![installed], partial: vec![] }),
            ..crate::fleet::AgentView::default()
        };
        lock(&fleet.agents).insert(("shop".into(), agent.into()), view);
    }

    fn state_of(fleet: &Fleet) -> (super::super::catalog::ReleaseState, Option<String>) {
        fleet
            .with_catalog("shop", |c| {
                let r = &c.releases()[1];
                Ok((r.state, r.reason.clone()))
            })
            .expect("catalog")
    }

    #[test]
    fn every_kind_of_failure_on_a_canary_agent_rolls_it_back() {
        use super::super::catalog::ReleaseState;
        // A trap, an error from collect or a timeout count as failed calls;
        // a collector failing now, quarantined or that did not load, by status.
        for (status, calls, failures) in [
            (Status::Running, 5, 1),
            (Status::Failing, 1, 1),
            (Status::Quarantined, 3, 3),
            (Status::Broken, 0, 0),
            (Status::Refused, 0, 0),
        ] {
            let (_dir, fleet, sha) = watched();
            let canary = fleet
                .with_catalog("shop", |c| Ok(c.releases()[1].canary.clone()))
                .expect("catalog")
                .expect("a canary");
            report(&fleet, &canary.agents[0], &sha, status, calls, failures);
            fleet.judge(1_000);
            let (state, reason) = state_of(&fleet);
            assert_eq!(state, ReleaseState::RolledBack, "{status:?}");
            let reason = reason.unwrap_or_default();
            assert!(reason.contains(&canary.agents[0]), "{status:?}: {reason}");
        }
    }

    #[test]
    fn a_canary_passes_only_once_a_canary_agent_has_called_it() {
        use super::super::catalog::ReleaseState;
        let (_dir, fleet, sha) = watched();
        let agent = fleet
            .with_catalog("shop", |c| Ok(c.releases()[1].canary.clone()))
            .expect("catalog")
            .expect("a canary")
            .agents[0]
            .clone();
        // Loaded, never called: nothing is decided inside the window, and
        // at its end it has not run.
        report(&fleet, &agent, &sha, Status::Running, 0, 0);
        fleet.judge(30_000);
        assert_eq!(state_of(&fleet).0, ReleaseState::Canary);
        fleet.judge(61_000);
        let (state, reason) = state_of(&fleet);
        assert_eq!(state, ReleaseState::RolledBack);
        assert!(reason.unwrap_or_default().contains("ran it"));

        let (_dir, fleet, sha) = watched();
        report(&fleet, &agent, &sha, Status::Running, 3, 0);
        fleet.judge(61_000);
        assert_eq!(state_of(&fleet).0, ReleaseState::Promoted);
    }

    #[test]
    fn canaries_are_drawn_from_agents_that_take_pushed_collectors() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fleet = Fleet::new(dir.path(), vec!["shop".into()], 1 << 20);
        let view = |managed: bool, unsupported: bool| crate::fleet::AgentView {
            state: Some(State { managed, ..State::default() }),
            current: true,
            unsupported,
            ..crate::fleet::AgentView::default()
        };
        // An agent reconnected since it said it takes none: not known yet.
        let restarted = crate::fleet::AgentView { current: false, ..view(false, false) };
        for (agent, v) in [
            ("local", view(false, false)),
            ("old", view(true, true)),
            ("ok", view(true, false)),
            ("restarted", restarted),
        ] {
            lock(&fleet.agents).insert(("shop".into(), agent.into()), v);
        }
        let connected: Vec<String> =
            ["local", "new", "ok", "old", "restarted"].iter().map(|a| (*a).to_owned()).collect();
        // An agent not heard from yet (in this session) may still take it.
        assert_eq!(fleet.candidates("shop", &connected), ["new", "ok", "restarted"]);
    }

    #[test]
    fn reports_of_agents_gone_for_long_are_forgotten() {
        let dir = tempfile::tempdir().expect("temp dir");
        let fleet = Fleet::new(dir.path(), vec!["shop".into()], 1 << 20);
        let forget = u64::try_from(FORGET.as_millis()).expect("ms");
        let now = 10 * forget;
        for (agent, heard, busy) in [
            ("gone", now - forget, false),
            ("recent", now - forget + 1, false),
            ("connected", 0, false),
            ("syncing", 0, true),
        ] {
            let view = crate::fleet::AgentView {
                checked_ms: heard,
                busy,
                ..crate::fleet::AgentView::default()
            };
            lock(&fleet.agents).insert(("shop".into(), agent.into()), view);
        }
        fleet.forget_gone(|_, agent| agent == "connected", now);
        let mut kept: Vec<String> = lock(&fleet.agents).keys().map(|(_, a)| a.clone()).collect();
        kept.sort();
        assert_eq!(kept, ["connected", "recent", "syncing"]);
    }
}
