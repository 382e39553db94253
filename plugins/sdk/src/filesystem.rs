//! How full a filesystem is (`statvfs`, which WASI lacks), answered by the
//! host for paths inside the collector's `read` or `usage` grants.

use crate::bindings::wasmtap::collector::filesystem;

pub use filesystem::FsUsage;

/// The usage of the filesystem holding the absolute `path`: total, free and
/// available bytes, total and free inodes. A path outside the grants, or one
/// that does not exist, is an error.
pub fn usage(path: &str) -> Result<FsUsage, String> {
    filesystem::usage(path)
}
