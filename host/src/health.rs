//! What the agent knows about each collector's health, shared between the
//! scheduler (which updates it) and whoever reports it (logs, control
//! requests, self-observation).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where a collector is in its life cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Called on its interval.
    Running,
    /// Failed recently; waiting before the next attempt.
    Backoff,
    /// Failed too often in a row; no longer called until reloaded.
    Quarantined {
        /// The last failure.
        reason: String,
    },
    /// Turned off by its manifest or an operator.
    Disabled,
}

/// Counters and state of one collector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// Current state.
    pub state: State,
    /// Failures since the last success.
    pub consecutive_failures: u32,
    /// Calls made.
    pub calls: u64,
    /// Calls that failed (trap, timeout, limit, collector error).
    pub failures: u64,
    /// Calls that ran past their deadline.
    pub timeouts: u64,
    /// Time spent in calls.
    pub call_time: Duration,
    /// Values dropped for not matching the declared fields.
    pub dropped_values: u64,
    /// The most recent failure.
    pub last_error: Option<String>,
    /// The version the collector declares.
    pub version: String,
    /// Whether the proxy published it (it runs from the managed collectors dir).
    pub managed: bool,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            state: State::Running,
            consecutive_failures: 0,
            calls: 0,
            failures: 0,
            timeouts: 0,
            call_time: Duration::ZERO,
            dropped_values: 0,
            last_error: None,
            version: String::new(),
            managed: false,
        }
    }
}

/// Health of every collector, by name.
#[derive(Debug, Clone, Default)]
pub struct Registry(Arc<Mutex<BTreeMap<String, Health>>>);

impl Registry {
    /// Runs `f` on `name`'s entry, creating it if needed.
    pub fn update<R>(&self, name: &str, f: impl FnOnce(&mut Health) -> R) -> R {
        let mut map = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        f(map.entry(name.to_owned()).or_default())
    }

    /// A copy of every entry.
    pub fn snapshot(&self) -> BTreeMap<String, Health> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Forgets `name` (unloaded).
    pub fn remove(&self, name: &str) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(name);
    }
}
