//! Paths with a host query still running on a blocking thread: while one
//! has not returned (a dead network mount, a FIFO nobody writes), a new
//! query of the same path fails at once instead of parking another thread.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};

/// The paths being queried, shared by one collector's calls.
#[derive(Debug, Clone, Default)]
pub(super) struct InFlightSet(Arc<Mutex<HashSet<PathBuf>>>);

/// A path being queried; removed from the set when the query returns,
/// even if the call that asked has been cut off since.
#[derive(Debug)]
pub(super) struct InFlight {
    set: InFlightSet,
    path: PathBuf,
}

impl InFlightSet {
    /// Marks `path` as queried, or `None` while an earlier query of it runs.
    pub(super) fn enter(&self, path: &Path) -> Option<InFlight> {
        let fresh = self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(path.to_owned());
        fresh.then(|| InFlight { set: self.clone(), path: path.to_owned() })
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.set.0.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_in_flight_is_not_queried_twice() {
        let set = InFlightSet::default();
        let first = set.enter(Path::new("/mnt/nfs")).expect("first");
        assert!(set.enter(Path::new("/mnt/nfs")).is_none());
        assert!(set.enter(Path::new("/mnt/other")).is_some());
        drop(first);
        assert!(set.enter(Path::new("/mnt/nfs")).is_some());
    }
}
