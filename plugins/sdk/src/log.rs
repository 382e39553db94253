//! Writing to the agent's log. Lines are tagged with the collector's name and
//! rate-limited by the host.

use crate::bindings::wasmtap::collector::host::{self, Level};

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
