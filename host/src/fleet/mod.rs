//! Collectors pushed by the proxy (the fleet): the agent's side of
//! [`wasmtap_protocol::fleet`].
//!
//! - [`bounds`]: what a pushed manifest may grant at most (`[plugins] allow_*`).
//! - [`managed`]: the managed collectors directory: blobs received in
//!   pieces and checked, installs, removals, refusals.
//!
//! [`Fleet`] answers the three control commands. Installed collectors are
//! loaded by the supervisor like those of the plugins directory; a local
//! collector of the same name wins.

pub mod bounds;
pub mod managed;

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use tokio::sync::{mpsc, oneshot};
use wasmtap_protocol::fleet::{self, Desired, Installed, State, Status};

pub use bounds::Bounds;
pub use managed::{FleetError, Managed};

use crate::health::{self, Registry};
use crate::signing::PublicKey;
use crate::supervisor::{Command, Troubles};

/// How long the agent's own report waits for the supervisor's troubles.
const TROUBLES_WAIT: std::time::Duration = std::time::Duration::from_secs(1);

/// A loaded collector's status as the proxy sees it.
fn status_of(h: &health::Health) -> Status {
    match &h.state {
        health::State::Quarantined { .. } => Status::Quarantined,
        health::State::Disabled => Status::Disabled,
        health::State::Backoff => Status::Failing,
        health::State::Running if h.consecutive_failures > 0 => Status::Failing,
        health::State::Running => Status::Running,
    }
}

/// The agent's fleet state and policy.
#[derive(Debug)]
pub struct Fleet {
    /// `None` when `[plugins] managed = false`. Its disk work (hashing,
    /// writing, syncing) runs on blocking threads, off the agent's one
    /// async thread.
    managed: Option<Arc<std::sync::Mutex<Managed>>>,
    bounds: Bounds,
    trusted: Arc<[PublicKey]>,
    health: Registry,
    supervisor: mpsc::Sender<Command>,
    /// What the agent's own report needs, kept in memory so that it costs
    /// no disk work (refreshed by every `fleet-state` and `fleet-apply`).
    seen: Arc<std::sync::Mutex<Seen>>,
    /// The managed collectors directory (beside `managed`, so that the
    /// agent's own report reads it without taking that lock).
    dir: Option<std::path::PathBuf>,
}

/// Where an installed managed collector stands: its status, the calls
/// made since it was loaded (failed, and all) and why.
struct Standing {
    status: Status,
    failures: u64,
    calls: u64,
    reason: Option<String>,
}

/// The managed collectors installed and refused, as last seen.
#[derive(Debug, Default)]
struct Seen {
    installed: Vec<String>,
    refused: Vec<String>,
}

impl Seen {
    /// Read from `m` (names only: nothing is hashed).
    fn of(m: &Managed) -> Self {
        Self { installed: m.installed_names(), refused: m.refusals().into_keys().collect() }
    }

    /// Kept in `seen`; called with the managed directory locked, so that
    /// what is kept follows the order of the directory's changes.
    fn keep(self, seen: &std::sync::Mutex<Seen>) {
        *seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = self;
    }
}

impl Fleet {
    /// The fleet side of an agent; `managed` is `None` when pushed
    /// collectors are not taken.
    pub fn new(
        managed: Option<Managed>,
        bounds: Bounds,
        trusted: Arc<[PublicKey]>,
        health: Registry,
        supervisor: mpsc::Sender<Command>,
    ) -> Self {
        let seen =
            Arc::new(std::sync::Mutex::new(managed.as_ref().map(Seen::of).unwrap_or_default()));
        let dir = managed.as_ref().map(|m| m.dir().to_owned());
        let managed = managed.map(|m| Arc::new(std::sync::Mutex::new(m)));
        Self { managed, bounds, trusted, health, supervisor, seen, dir }
    }

    /// Each managed collector the agent has or refused, with its status,
    /// for the agent's own report ([`crate::selfwatch`]): from memory and
    /// the supervisor, without touching the disk.
    pub async fn summary(&self) -> Vec<(String, Status)> {
        let (installed, refused) = {
            let seen = self.seen.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            (seen.installed.clone(), seen.refused.clone())
        };
        if installed.is_empty() && refused.is_empty() {
            return Vec::new();
        }
        let troubles = self.troubles().await;
        let health = self.health.snapshot();
        let mut out: Vec<(String, Status)> = installed
            .into_iter()
            .map(|name| {
                let status = self.standing(&name, &troubles, &health).status;
                (name, status)
            })
            .collect();
        out.extend(refused.into_iter().map(|name| (name, Status::Refused)));
        out
    }

    /// Where the installed managed collector `name` stands.
    fn standing(
        &self,
        name: &str,
        troubles: &Troubles,
        health: &BTreeMap<String, health::Health>,
    ) -> Standing {
        let wasm = self.dir.as_ref().map(|d| d.join(format!("{name}.wasm")));
        let why = |list: &[(std::path::PathBuf, String)]| {
            list.iter().find(|(p, _)| wasm.as_ref() == Some(p)).map(|(_, why)| why.clone())
        };
        let idle = |status, reason| Standing { status, failures: 0, calls: 0, reason };
        if let Some(why) = why(&troubles.shadowed) {
            return idle(Status::Shadowed, Some(why));
        }
        if let Some(why) = why(&troubles.failed) {
            return idle(Status::Broken, Some(why));
        }
        match health.get(name) {
            None => idle(Status::Installed, None),
            Some(h) => Standing {
                status: status_of(h),
                failures: h.failures,
                calls: h.calls,
                reason: h.last_error.clone(),
            },
        }
    }

    /// The supervisor's files that failed to load and collectors shadowed
    /// (none, if it does not answer within [`TROUBLES_WAIT`]: it may be busy
    /// compiling).
    async fn troubles(&self) -> Troubles {
        let (reply, troubles) = oneshot::channel();
        let asked = async {
            match self.supervisor.send(Command::Failures(reply)).await {
                Ok(()) => troubles.await.unwrap_or_default(),
                Err(_) => Troubles::default(),
            }
        };
        tokio::time::timeout(TROUBLES_WAIT, asked).await.unwrap_or_default()
    }

    /// Runs `f` on the managed directory on a blocking thread.
    async fn with_managed<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Managed) -> T + Send + 'static,
    ) -> Result<T, String> {
        let managed = self.managed.clone().ok_or_else(|| {
            "this agent takes no pushed collectors ([plugins] managed = false)".to_owned()
        })?;
        tokio::task::spawn_blocking(move || {
            let mut m = managed.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&mut m)
        })
        .await
        .map_err(|e| format!("the managed collectors directory: {e}"))
    }

    /// `fleet-state`.
    pub async fn state(&self) -> Result<State, String> {
        if self.managed.is_none() {
            return Ok(State { managed: false, ..State::default() });
        }
        let seen = self.seen.clone();
        let (installed, refusals, blobs) = self
            .with_managed(move |m| {
                let installed: Vec<(String, String, String)> = m
                    .installed()
                    .into_iter()
                    .map(|(name, sha)| {
                        let files = m.files_sha256(&name);
                        (name, sha, files)
                    })
                    .collect();
                let refusals = m.refusals();
                // What this reading saw, without reading the directory again.
                Seen {
                    installed: installed.iter().map(|(name, _, _)| name.clone()).collect(),
                    refused: refusals.keys().cloned().collect(),
                }
                .keep(&seen);
                (installed, refusals, m.blobs())
            })
            .await?;
        let troubles = self.troubles().await;
        let health = self.health.snapshot();
        let mut collectors = Vec::new();
        for (name, sha256, files) in installed {
            let Standing { status, failures, calls, reason } =
                self.standing(&name, &troubles, &health);
            collectors.push(Installed {
                name,
                sha256,
                status,
                failures,
                calls: Some(calls),
                reason,
                files_sha256: Some(files),
            });
        }
        for (name, r) in refusals {
            collectors.push(Installed {
                name,
                sha256: r.sha256,
                status: Status::Refused,
                failures: 0,
                calls: Some(0),
                reason: Some(r.reason),
                files_sha256: r.files_sha256,
            });
        }
        Ok(State { managed: true, collectors, partial: blobs })
    }

    /// `fleet-put SHA256 SIZE OFFSET BASE64`.
    pub async fn put(&self, args: &[String]) -> Result<fleet::Received, String> {
        let [sha, size, offset, data] = args else {
            return Err(format!("usage: {} SHA256 SIZE OFFSET BASE64", fleet::PUT));
        };
        let number = |what: &str, v: &str| {
            v.parse::<u64>().map_err(|_| format!("{}: {what} `{v}` is not a number", fleet::PUT))
        };
        let (size, offset) = (number("size", size)?, number("offset", offset)?);
        let data = base64::engine::general_purpose::STANDARD
            .decode(data)
            .map_err(|e| format!("{}: the piece is not base64: {e}", fleet::PUT))?;
        if data.len() > fleet::CHUNK {
            return Err(format!("{}: a piece is at most {} bytes", fleet::PUT, fleet::CHUNK));
        }
        let sha = sha.clone();
        self.with_managed(move |m| m.put(&sha, size, offset, &data))
            .await?
            .map_err(|e| e.to_string())
    }

    /// `fleet-apply DESIRED`: installs and removes, lets the supervisor
    /// load the result, and answers with the new state.
    pub async fn apply(&self, args: &[String]) -> Result<State, String> {
        let [json] = args else { return Err(format!("usage: {} DESIRED-JSON", fleet::APPLY)) };
        let desired: Desired =
            serde_json::from_str(json).map_err(|e| format!("{}: {e}", fleet::APPLY))?;
        let (bounds, trusted) = (self.bounds.clone(), self.trusted.clone());
        let seen = self.seen.clone();
        let applied = self
            .with_managed(move |m| {
                let applied = m.apply(&desired, &bounds, &trusted);
                Seen::of(m).keep(&seen);
                applied
            })
            .await?
            .map_err(|e| e.to_string())?;
        if !applied.installed.is_empty() || !applied.removed.is_empty() {
            let (reply, done) = oneshot::channel();
            if self.supervisor.send(Command::Rescan(reply)).await.is_ok() {
                let _ = done.await;
            }
        }
        self.state().await
    }
}
