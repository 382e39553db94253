//! Writing to the agent's log. Lines are tagged with the collector's name and
//! rate-limited by the host.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::bindings::wasmtap::collector::host::{self, Level};

/// A condition logged once per instance rather than at every collect (a
/// file the kernel does not have, a cap that keeps being hit):
/// `static ABSENT: Once = Once::new(); if ABSENT.first() { log::info(…) }`.
#[derive(Debug)]
pub struct Once(AtomicBool);

impl Once {
    /// Not yet seen.
    pub const fn new() -> Self {
        Self(AtomicBool::new(false))
    }

    /// `true` the first time it is asked, `false` ever after.
    pub fn first(&self) -> bool {
        !self.0.swap(true, Ordering::Relaxed)
    }
}

impl Default for Once {
    fn default() -> Self {
        Self::new()
    }
}

/// Logs at debug level.
pub fn debug(message: &str) {
    host::log(Level::Debug, message);
}

/// Logs at info level.
pub fn info(message: &str) {
    host::log(Level::Info, message);
}

/// Logs at warn level.
pub fn warn(message: &str) {
    host::log(Level::Warn, message);
}

/// Logs at error level.
pub fn error(message: &str) {
    host::log(Level::Error, message);
}
