//! Which identity owns which agent name, per project: the proxy's
//! `known_hosts`.
//!
//! At an agent's first contact its name is bound to the identity key it
//! proved in the handshake (or, in a project with `enroll = "closed"`, it
//! waits for an operator's approval). From then on only that key may use
//! the name in that project; `ctl forget` releases it. The table lives in
//! `<data_dir>/bindings.log`, one JSON line per change, synced before the
//! change takes effect, and compacted when the proxy starts (a change
//! happens once per agent, not per session).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use wasmtap_protocol::identity::Identity;

use crate::config::Enroll;

/// File name of the table in the data directory.
pub const FILE: &str = "bindings.log";
/// Names waiting for approval per project, at most (a key holder cannot
/// fill the table with names).
pub const MAX_PENDING: usize = 1_000;

/// Why the table could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BindingsError {
    /// Filesystem error.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
}

/// One agent name's entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// The project.
    pub project: String,
    /// The agent name.
    pub agent: String,
    /// The identity that owns the name (`wtapid1_…`).
    pub identity: String,
    /// Whether it may connect (false: waiting for `ctl approve`).
    pub approved: bool,
    /// When the name was first seen, ms since the epoch.
    pub first_seen_ms: u64,
}

/// What the table says about an agent that proved `identity`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The name is bound to this identity.
    Known,
    /// The name was free and is now bound to this identity.
    Bound,
    /// The name waits for approval (recorded now or before).
    Pending,
    /// Too many names wait for approval in this project; not recorded.
    PendingFull,
    /// The name is bound to another identity.
    Conflict {
        /// The identity that owns the name.
        owner: String,
    },
}

/// One line of the file.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "change", rename_all = "lowercase")]
enum Change {
    Set(Binding),
    Forget { project: String, agent: String },
}

type Table = BTreeMap<(String, String), Binding>;

#[derive(Debug)]
struct State {
    table: Table,
    file: std::fs::File,
}

/// The bindings table.
#[derive(Debug)]
pub struct Bindings {
    path: PathBuf,
    state: Mutex<State>,
    max_pending: usize,
}

impl Bindings {
    /// Opens the table in `data_dir` (empty when the file does not exist)
    /// and compacts its file. A damaged line costs that line (logged); a
    /// torn last line is what a crash mid-write leaves.
    pub fn open(data_dir: &Path) -> Result<Self, BindingsError> {
        let path = data_dir.join(FILE);
        let io =
            |e: std::io::Error| BindingsError::Io { path: path.clone(), message: e.to_string() };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        let mut table = Table::new();
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                for (n, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                    match serde_json::from_str::<Change>(line) {
                        Ok(change) => apply(&mut table, change),
                        Err(e) => {
                            tracing::warn!(file = %path.display(), line = n + 1, error = %e, "damaged identity binding line skipped")
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(e)),
        }
        let tmp = path.with_extension("log.tmp");
        let mut compact = Vec::new();
        for b in table.values() {
            line(&mut compact, &Change::Set(b.clone())).map_err(io)?;
        }
        let mut f = std::fs::File::create(&tmp).map_err(io)?;
        f.write_all(&compact).and_then(|()| f.sync_all()).map_err(io)?;
        std::fs::rename(&tmp, &path).map_err(io)?;
        std::fs::File::open(data_dir).and_then(|d| d.sync_all()).map_err(io)?;
        let file = std::fs::OpenOptions::new().append(true).open(&path).map_err(io)?;
        Ok(Self { path, state: Mutex::new(State { table, file }), max_pending: MAX_PENDING })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Appends `change` to the file, synced, then applies it.
    fn record(&self, state: &mut State, change: Change) -> Result<(), BindingsError> {
        let io = |e: std::io::Error| BindingsError::Io {
            path: self.path.clone(),
            message: e.to_string(),
        };
        let mut bytes = Vec::new();
        line(&mut bytes, &change).map_err(io)?;
        state.file.write_all(&bytes).and_then(|()| state.file.sync_data()).map_err(io)?;
        apply(&mut state.table, change);
        Ok(())
    }

    /// Whether `agent` of `project` is bound to `identity` and approved (no
    /// file access: the common case of every reconnect).
    pub fn is_known(&self, project: &str, agent: &str, identity: &Identity) -> bool {
        let state = self.lock();
        state
            .table
            .get(&(project.to_owned(), agent.to_owned()))
            .is_some_and(|b| b.approved && b.identity == identity.to_text())
    }

    /// Decides whether `agent` of `project`, which proved `identity`, may
    /// use its name, binding or recording it when it is new.
    pub fn admit(
        &self,
        project: &str,
        agent: &str,
        identity: &Identity,
        enroll: Enroll,
        now_ms: u64,
    ) -> Result<Verdict, BindingsError> {
        let text = identity.to_text();
        let mut state = self.lock();
        let key = (project.to_owned(), agent.to_owned());
        if let Some(b) = state.table.get(&key) {
            return Ok(match (b.identity == text, b.approved) {
                (true, true) => Verdict::Known,
                (true, false) => Verdict::Pending,
                // A different key waiting for approval does not block the
                // name; the newest claim is the one an operator approves.
                (false, false) => {
                    self.record(&mut state, Change::Set(pending(project, agent, text, now_ms)))?;
                    Verdict::Pending
                }
                (false, true) => Verdict::Conflict { owner: b.identity.clone() },
            });
        }
        let approved = enroll == Enroll::Open;
        if !approved {
            let waiting =
                state.table.values().filter(|b| b.project == project && !b.approved).count();
            if waiting >= self.max_pending {
                return Ok(Verdict::PendingFull);
            }
        }
        let mut binding = pending(project, agent, text, now_ms);
        binding.approved = approved;
        self.record(&mut state, Change::Set(binding))?;
        Ok(if approved { Verdict::Bound } else { Verdict::Pending })
    }

    /// Releases `agent`'s name in `project`; `false` if it was not bound.
    pub fn forget(&self, project: &str, agent: &str) -> Result<bool, BindingsError> {
        let mut state = self.lock();
        if !state.table.contains_key(&(project.to_owned(), agent.to_owned())) {
            return Ok(false);
        }
        let change = Change::Forget { project: project.to_owned(), agent: agent.to_owned() };
        self.record(&mut state, change)?;
        Ok(true)
    }

    /// Approves a name waiting in `project`; `false` if none waits.
    pub fn approve(&self, project: &str, agent: &str) -> Result<bool, BindingsError> {
        let mut state = self.lock();
        let Some(b) = state.table.get(&(project.to_owned(), agent.to_owned())) else {
            return Ok(false);
        };
        if b.approved {
            return Ok(false);
        }
        let mut b = b.clone();
        b.approved = true;
        self.record(&mut state, Change::Set(b))?;
        Ok(true)
    }

    /// Every entry, optionally of one project, by project and name.
    pub fn list(&self, project: Option<&str>) -> Vec<Binding> {
        let state = self.lock();
        state.table.values().filter(|b| project.is_none_or(|p| b.project == p)).cloned().collect()
    }
}

fn apply(table: &mut Table, change: Change) {
    match change {
        Change::Set(b) => {
            table.insert((b.project.clone(), b.agent.clone()), b);
        }
        Change::Forget { project, agent } => {
            table.remove(&(project, agent));
        }
    }
}

fn line(out: &mut Vec<u8>, change: &Change) -> std::io::Result<()> {
    serde_json::to_writer(&mut *out, change).map_err(std::io::Error::other)?;
    out.push(b'\n');
    Ok(())
}

fn pending(project: &str, agent: &str, identity: String, now_ms: u64) -> Binding {
    Binding {
        project: project.to_owned(),
        agent: agent.to_owned(),
        identity,
        approved: false,
        first_seen_ms: now_ms,
    }
}

#[cfg(test)]
mod tests {
    use wasmtap_protocol::identity::StaticKey;

    use super::*;

    fn id() -> Identity {
        StaticKey::generate(&mut rand::rng()).identity()
    }

    #[test]
    fn first_contact_binds_and_the_table_survives_a_restart() {
        let dir = tempfile::tempdir().expect("dir");
        let (a, b) = (id(), id());
        let t = Bindings::open(dir.path()).expect("open");
        assert_eq!(t.admit("shop", "web-01", &a, Enroll::Open, 1).expect("ok"), Verdict::Bound);
        assert_eq!(t.admit("shop", "web-01", &a, Enroll::Open, 2).expect("ok"), Verdict::Known);
        // The same name in another project is another agent.
        assert_eq!(t.admit("bank", "web-01", &b, Enroll::Open, 3).expect("ok"), Verdict::Bound);
        let t = Bindings::open(dir.path()).expect("reopen");
        assert_eq!(
            t.admit("shop", "web-01", &b, Enroll::Open, 4).expect("ok"),
            Verdict::Conflict { owner: a.to_text() }
        );
        assert!(t.forget("shop", "web-01").expect("ok"));
        assert!(!t.forget("shop", "web-01").expect("ok"));
        assert_eq!(t.admit("shop", "web-01", &b, Enroll::Open, 5).expect("ok"), Verdict::Bound);
        assert_eq!(t.list(Some("shop")).len(), 1);
    }

    #[test]
    fn closed_enrolment_waits_for_approval() {
        let dir = tempfile::tempdir().expect("dir");
        let t = Bindings::open(dir.path()).expect("open");
        let (a, b) = (id(), id());
        assert_eq!(t.admit("p", "n", &a, Enroll::Closed, 1).expect("ok"), Verdict::Pending);
        assert_eq!(t.admit("p", "n", &a, Enroll::Closed, 2).expect("ok"), Verdict::Pending);
        // A newer claim replaces a pending one; approval binds the newest.
        assert_eq!(t.admit("p", "n", &b, Enroll::Closed, 3).expect("ok"), Verdict::Pending);
        assert!(!t.approve("p", "other").expect("ok"));
        assert!(t.approve("p", "n").expect("ok"));
        assert_eq!(t.admit("p", "n", &b, Enroll::Closed, 4).expect("ok"), Verdict::Known);
        assert!(matches!(t.admit("p", "n", &a, Enroll::Closed, 5), Ok(Verdict::Conflict { .. })));
    }

    #[test]
    fn a_damaged_line_costs_only_that_line() {
        let dir = tempfile::tempdir().expect("dir");
        let (a, b) = (id(), id());
        {
            let t = Bindings::open(dir.path()).expect("open");
            t.admit("p", "a", &a, Enroll::Open, 1).expect("ok");
        }
        let path = dir.path().join(FILE);
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str("garbage\n");
        std::fs::write(&path, &text).expect("write");
        {
            let t = Bindings::open(dir.path()).expect("open skips the damaged line");
            t.admit("p", "b", &b, Enroll::Open, 2).expect("ok");
        }
        // A torn last line, as a crash mid-write leaves it.
        let mut text = std::fs::read_to_string(&path).expect("read");
        text.push_str("{\"change\":\"set\",\"proj");
        std::fs::write(&path, &text).expect("write");
        let t = Bindings::open(dir.path()).expect("open");
        assert_eq!(t.list(None).len(), 2);
        assert_eq!(t.admit("p", "a", &a, Enroll::Open, 3).expect("ok"), Verdict::Known);
        assert!(!std::fs::read_to_string(&path).expect("read").contains("garbage"), "compacted");
    }

    #[test]
    fn pending_names_are_capped() {
        let dir = tempfile::tempdir().expect("dir");
        let mut t = Bindings::open(dir.path()).expect("open");
        t.max_pending = 3;
        for i in 0..3 {
            t.admit("p", &format!("n{i}"), &id(), Enroll::Closed, 0).expect("ok");
        }
        assert_eq!(
            t.admit("p", "late", &id(), Enroll::Closed, 0).expect("ok"),
            Verdict::PendingFull
        );
    }
}
