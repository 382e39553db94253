//! The registry of connected agents, and control requests to them.
//!
//! Each established session registers itself and receives the requests
//! addressed to it on a channel; the session task seals them onto the wire
//! and routes the agent's responses back by request id. The admin API uses
//! [`Sessions::agents`] and [`Sessions::request`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};
use wasmtap_protocol::message::ControlRequest;

/// How long [`Sessions::request`] waits for an answer by default.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Requests queued for one session before new ones are refused.
pub const MAX_PENDING_REQUESTS: usize = 64;

/// One connected agent, as the admin API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// The project it authenticated for.
    pub project: String,
    /// Its name.
    pub agent: String,
    /// The identity it proved (`wtapid1_…`).
    pub identity: String,
    /// Its address.
    pub peer: SocketAddr,
    /// The session id, in hex.
    pub session: String,
    /// When the session was established, ms since the epoch.
    pub connected_ms: u64,
    /// Batches received in this session (duplicates included).
    pub batches: u64,
    /// Samples stored from this session (duplicates excluded).
    pub samples: u64,
    /// When the last frame arrived, ms since the epoch.
    pub last_seen_ms: u64,
    /// Under `[cluster]`: the proxy holding the session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<String>,
}

/// Why a control request got no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, Serialize, Deserialize)]
#[non_exhaustive]
pub enum RequestError {
    /// No agent of that name is connected.
    #[error("agent `{0}` is not connected")]
    NotConnected(String),
    /// Agents of that name are connected in several projects; say which.
    #[error("agent `{agent}` is connected in several projects ({}): name one with --project", projects.join(", "))]
    Ambiguous {
        /// The agent.
        agent: String,
        /// The projects it is connected in.
        projects: Vec<String>,
    },
    /// The agent has too many requests outstanding.
    #[error("agent `{0}` has too many requests outstanding")]
    Busy(String),
    /// The session ended before the answer came.
    #[error("the session to agent `{0}` ended before it answered")]
    SessionEnded(String),
    /// No answer within the deadline.
    #[error("agent `{agent}` did not answer within {timeout:?}")]
    Timeout {
        /// The agent.
        agent: String,
        /// The deadline.
        timeout: Duration,
    },
}

/// A project already holds as many sessions as it may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("project at its session cap ({held} sessions)")]
pub struct AtCap {
    /// Sessions it holds.
    pub held: usize,
}

/// Sessions of `project` among `entries`.
fn held(entries: &HashMap<u64, Entry>, project: &str) -> usize {
    entries.values().filter(|e| e.info.project == project).count()
}

/// Of `sessions` (each with what the caller needs of it), that of the
/// most recent session of the agent named `agent` (of `project` when
/// given); an agent of that name in several projects is
/// [`RequestError::Ambiguous`], none is [`RequestError::NotConnected`].
pub(crate) fn newest_session<'a, T>(
    sessions: impl Iterator<Item = (&'a AgentInfo, T)>,
    project: Option<&str>,
    agent: &str,
) -> Result<T, RequestError> {
    let matching: Vec<(&AgentInfo, T)> = sessions
        .filter(|(a, _)| a.agent == agent && project.is_none_or(|p| a.project == p))
        .collect();
    let mut projects: Vec<String> = matching.iter().map(|(a, _)| a.project.clone()).collect();
    projects.sort();
    projects.dedup();
    if projects.len() > 1 {
        return Err(RequestError::Ambiguous { agent: agent.to_owned(), projects });
    }
    matching
        .into_iter()
        .max_by_key(|(a, _)| a.connected_ms)
        .map(|(_, t)| t)
        .ok_or_else(|| RequestError::NotConnected(agent.to_owned()))
}

/// A request on its way to a session, with where its answer goes.
#[derive(Debug)]
pub struct Pending {
    /// The request (its id is set by the registry).
    pub request: ControlRequest,
    /// Receives the agent's result: a JSON document or an error message.
    pub reply: oneshot::Sender<Result<String, String>>,
}

#[derive(Debug)]
struct Entry {
    info: AgentInfo,
    requests: mpsc::Sender<Pending>,
}

/// All established sessions of this proxy.
#[derive(Debug, Default)]
pub struct Sessions {
    entries: Mutex<HashMap<u64, Entry>>,
    next_request: AtomicU64,
}

/// A session's place in the registry; deregisters on drop.
#[derive(Debug)]
pub struct Registration {
    sessions: Arc<Sessions>,
    key: u64,
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Entry>> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Registers an established session; requests for it arrive on the receiver.
    pub fn register(
        self: &Arc<Self>,
        session_id: u64,
        info: AgentInfo,
    ) -> (Registration, mpsc::Receiver<Pending>) {
        let mut entries = self.lock();
        self.insert(&mut entries, session_id, info)
    }

    /// Registers an established session unless its project already holds
    /// `max_sessions`; the count and the insertion happen under one lock,
    /// so sessions registering at the same time never exceed the cap.
    pub fn try_register(
        self: &Arc<Self>,
        session_id: u64,
        info: AgentInfo,
        max_sessions: usize,
    ) -> Result<(Registration, mpsc::Receiver<Pending>), AtCap> {
        let mut entries = self.lock();
        let held = held(&entries, &info.project);
        if held >= max_sessions {
            return Err(AtCap { held });
        }
        Ok(self.insert(&mut entries, session_id, info))
    }

    fn insert(
        self: &Arc<Self>,
        entries: &mut HashMap<u64, Entry>,
        session_id: u64,
        info: AgentInfo,
    ) -> (Registration, mpsc::Receiver<Pending>) {
        let (tx, rx) = mpsc::channel(MAX_PENDING_REQUESTS);
        entries.insert(session_id, Entry { info, requests: tx });
        (Registration { sessions: self.clone(), key: session_id }, rx)
    }

    /// A request id no other request of this proxy has (for requests a
    /// session sends of its own accord).
    pub fn next_request_id(&self) -> u64 {
        self.next_request.fetch_add(1, Ordering::Relaxed) + 1
    }

    /// Every connected agent, sorted by project then agent name.
    pub fn agents(&self) -> Vec<AgentInfo> {
        let mut all: Vec<AgentInfo> = self.lock().values().map(|e| e.info.clone()).collect();
        all.sort_by(|a, b| (&a.project, &a.agent).cmp(&(&b.project, &b.agent)));
        all
    }

    /// Sessions of `project` now.
    pub fn count(&self, project: &str) -> usize {
        held(&self.lock(), project)
    }

    /// Sends `command args` to the agent named `agent` of `project` (its
    /// most recent session if it has several) and waits up to `timeout` for
    /// its answer. Without a project the name must be connected in one
    /// project only.
    pub async fn request(
        &self,
        project: Option<&str>,
        agent: &str,
        command: &str,
        args: Vec<String>,
        timeout: Duration,
    ) -> Result<Result<String, String>, RequestError> {
        let target = {
            let entries = self.lock();
            let sessions = entries.values().map(|e| (&e.info, &e.requests));
            newest_session(sessions, project, agent)?.clone()
        };
        let id = self.next_request_id();
        let (reply, answer) = oneshot::channel();
        let request = ControlRequest { id, command: command.to_owned(), args };
        target.try_send(Pending { request, reply }).map_err(|e| match e {
            mpsc::error::TrySendError::Full(_) => RequestError::Busy(agent.to_owned()),
            mpsc::error::TrySendError::Closed(_) => RequestError::SessionEnded(agent.to_owned()),
        })?;
        match tokio::time::timeout(timeout, answer).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) => Err(RequestError::SessionEnded(agent.to_owned())),
            Err(_) => Err(RequestError::Timeout { agent: agent.to_owned(), timeout }),
        }
    }
}

impl Registration {
    /// Updates this session's counters.
    pub fn update(&self, f: impl FnOnce(&mut AgentInfo)) {
        if let Some(e) = self.sessions.lock().get_mut(&self.key) {
            f(&mut e.info);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.sessions.lock().remove(&self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(agent: &str, connected_ms: u64) -> AgentInfo {
        in_project("p", agent, connected_ms)
    }

    fn in_project(project: &str, agent: &str, connected_ms: u64) -> AgentInfo {
        AgentInfo {
            project: project.into(),
            agent: agent.into(),
            identity: String::new(),
            peer: SocketAddr::from(([127, 0, 0, 1], 1)),
            session: "00".into(),
            connected_ms,
            batches: 0,
            samples: 0,
            last_seen_ms: 0,
            proxy: None,
        }
    }

    #[tokio::test]
    async fn requests_reach_the_newest_session_and_answers_come_back() {
        let sessions = Arc::new(Sessions::default());
        let (_old, mut old_rx) = sessions.register(1, info("a", 1));
        let (_new, mut new_rx) = sessions.register(2, info("a", 2));
        let answer = tokio::spawn(async move {
            let p = new_rx.recv().await.expect("request");
            assert_eq!(p.request.command, "info");
            let _ = p.reply.send(Ok("{}".into()));
        });
        let r = sessions.request(None, "a", "info", vec![], Duration::from_secs(5)).await;
        assert_eq!(r, Ok(Ok("{}".into())));
        answer.await.expect("answered");
        assert!(old_rx.try_recv().is_err());
    }

    #[tokio::test]
    async fn unknown_agents_ended_sessions_and_deadlines_are_errors() {
        let sessions = Arc::new(Sessions::default());
        let r = sessions.request(None, "x", "info", vec![], Duration::from_secs(1)).await;
        assert_eq!(r, Err(RequestError::NotConnected("x".into())));

        let (reg, rx) = sessions.register(1, info("a", 1));
        let silent = sessions.request(None, "a", "info", vec![], Duration::from_millis(20)).await;
        assert!(matches!(silent, Err(RequestError::Timeout { .. })));
        drop(rx);
        let r = sessions.request(None, "a", "info", vec![], Duration::from_secs(1)).await;
        assert_eq!(r, Err(RequestError::SessionEnded("a".into())));
        drop(reg);
        assert!(sessions.agents().is_empty());
    }

    /// Handshakes that finish at the same time register at once: however
    /// they interleave, a project never holds more than its cap, and the
    /// cap frees up when a session ends.
    #[test]
    fn the_session_cap_holds_under_concurrent_registrations() {
        const CAP: usize = 3;
        let sessions = Arc::new(Sessions::default());
        let (_other, _) = sessions.register(1000, in_project("bank", "a", 1));
        let start = Arc::new(std::sync::Barrier::new(16));
        let threads: Vec<_> = (0..16u64)
            .map(|i| {
                let (sessions, start) = (sessions.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    sessions.try_register(i, in_project("shop", &format!("a{i}"), i), CAP).ok()
                })
            })
            .collect();
        let mut admitted: Vec<Registration> = threads
            .into_iter()
            .filter_map(|t| t.join().expect("thread"))
            .map(|(registration, _)| registration)
            .collect();
        assert_eq!(admitted.len(), CAP, "exactly the cap is admitted");
        assert_eq!((sessions.count("shop"), sessions.count("bank")), (CAP, 1));
        let refused = sessions.try_register(99, in_project("shop", "late", 9), CAP);
        assert_eq!(refused.err(), Some(AtCap { held: CAP }));
        assert!(sessions.try_register(98, in_project("bank", "b", 9), CAP).is_ok(), "per project");
        admitted.pop();
        assert!(
            sessions.try_register(99, in_project("shop", "late", 9), CAP).is_ok(),
            "room again"
        );
    }

    /// An agent of another project that calls itself by the same name never
    /// receives this project's requests.
    #[tokio::test]
    async fn requests_are_routed_by_project_and_name() {
        let sessions = Arc::new(Sessions::default());
        let (_shop, mut shop_rx) = sessions.register(1, in_project("shop", "web-01", 1));
        let (_bank, mut bank_rx) = sessions.register(2, in_project("bank", "web-01", 2));
        let r = sessions.request(None, "web-01", "info", vec![], Duration::from_secs(1)).await;
        assert_eq!(
            r,
            Err(RequestError::Ambiguous {
                agent: "web-01".into(),
                projects: vec!["bank".into(), "shop".into()]
            })
        );
        let answer = tokio::spawn(async move {
            let p = shop_rx.recv().await.expect("request");
            let _ = p.reply.send(Ok("shop".into()));
        });
        let r =
            sessions.request(Some("shop"), "web-01", "info", vec![], Duration::from_secs(5)).await;
        assert_eq!(r, Ok(Ok("shop".into())));
        answer.await.expect("answered");
        assert!(bank_rx.try_recv().is_err(), "the other project's agent got nothing");
        assert_eq!(
            (sessions.count("shop"), sessions.count("bank"), sessions.count("x")),
            (1, 1, 0)
        );
    }
}
