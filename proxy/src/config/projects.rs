//! `[[projects]]` entries: a project's access keys (several while one is
//! rotated out), how new agents enrol, and how many sessions it may hold.

use std::collections::HashMap;

use serde::Deserialize;
use wasmtap_protocol::access_key::{AccessKey, KeyId, ProjectId};
use wasmtap_protocol::handshake::ProjectKeys;
use wasmtap_protocol::secret::Key256;

use super::ConfigError;

/// Sessions a project may hold at once unless its entry says otherwise.
pub const DEFAULT_MAX_SESSIONS: usize = 10_000;

/// How an agent name is first bound to an identity in a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Enroll {
    /// The first identity to prove itself under a name keeps it.
    #[default]
    Open,
    /// A new name waits until an operator approves it (`ctl approve`).
    Closed,
}

/// One project the proxy serves.
#[derive(Debug, Clone)]
pub struct Project {
    /// Its access keys; agents may use any of them.
    pub keys: Vec<AccessKey>,
    /// How new agent names are bound.
    pub enroll: Enroll,
    /// Sessions it may hold at once.
    pub max_sessions: usize,
}

/// Every project the proxy serves, by name.
#[derive(Debug, Clone, Default)]
pub struct Projects(HashMap<ProjectId, Project>);

impl Projects {
    /// The project named `id`.
    pub fn get(&self, id: &ProjectId) -> Option<&Project> {
        self.0.get(id)
    }

    /// How many projects.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no project is configured.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The project names, sorted.
    pub fn names(&self) -> Vec<&ProjectId> {
        let mut names: Vec<_> = self.0.keys().collect();
        names.sort();
        names
    }

    /// Projects holding exactly `key` (for tests and tools).
    pub fn single(key: AccessKey) -> Self {
        let project = Project {
            keys: vec![key.clone()],
            enroll: Enroll::Open,
            max_sessions: DEFAULT_MAX_SESSIONS,
        };
        Self([(key.project().clone(), project)].into())
    }
}

impl ProjectKeys for Projects {
    fn secret(&self, project: &str, key_id: KeyId) -> Option<&Key256> {
        let id = ProjectId::new(project).ok()?;
        self.0.get(&id)?.keys.iter().find(|k| k.key_id() == key_id).map(AccessKey::secret)
    }

    fn serves(&self, project: &str) -> bool {
        ProjectId::new(project).is_ok_and(|id| self.0.contains_key(&id))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawProject {
    name: String,
    access_key: Option<String>,
    #[serde(default)]
    access_keys: Vec<String>,
    #[serde(default)]
    enroll: Enroll,
    max_sessions: Option<usize>,
}

pub(super) fn validate(raw: Vec<RawProject>) -> Result<Projects, ConfigError> {
    let mut projects = HashMap::new();
    for p in raw {
        let problem = |problem: String| ConfigError::Project { project: p.name.clone(), problem };
        let id = ProjectId::new(&p.name).map_err(|e| problem(e.to_string()))?;
        let texts: Vec<(&str, &String)> = p
            .access_key
            .iter()
            .map(|k| ("access_key", k))
            .chain(p.access_keys.iter().map(|k| ("access_keys", k)))
            .collect();
        if texts.is_empty() {
            return Err(problem("needs access_key (or access_keys for several)".into()));
        }
        let mut keys: Vec<AccessKey> = Vec::with_capacity(texts.len());
        for (field, text) in texts {
            let key: AccessKey = text.parse().map_err(|e| problem(format!("{field}: {e}")))?;
            if key.project() != &id {
                return Err(problem(format!(
                    "{field}: key belongs to project `{}`, not `{id}`",
                    key.project()
                )));
            }
            if keys.iter().any(|k| k.key_id() == key.key_id()) {
                return Err(problem(format!(
                    "{field}: key {} is listed twice (or two keys share an id: generate another)",
                    key.key_id()
                )));
            }
            keys.push(key);
        }
        let max_sessions = match p.max_sessions {
            Some(0) => return Err(problem("max_sessions must be at least 1".into())),
            Some(n) => n,
            None => DEFAULT_MAX_SESSIONS,
        };
        let project = Project { keys, enroll: p.enroll, max_sessions };
        if projects.insert(id, project).is_some() {
            return Err(problem("listed twice".into()));
        }
    }
    Ok(Projects(projects))
}
