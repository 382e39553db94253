//! What the store's writer has made durable, per project: how far readers
//! tailing the store (the sinks) may read, and a signal each time that
//! moves.
//!
//! A [`Mark`] says: every segment before `segment` is complete, and
//! `segment` holds committed records up to byte `offset`. The writer moves
//! a project's mark after each group it wrote and synced, never over bytes
//! it may still cut (a failed write or sync is cut back before the mark
//! moves). Projects the writer has not opened since start have a mark
//! taken from the directory, not `verified`: their last segment may end in
//! a torn record that the writer cuts when it opens the project, so a
//! reader stops at a damaged record there rather than skipping it, and
//! re-reads when the project's `epoch` changes (the writer opened it).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::watch;
use wasmtap_protocol::access_key::ProjectId;
use wasmtap_protocol::message::Value;

use super::catalog::{self, Form, row_path};
use super::{StoreError, StoredBatch, blocks, io_err};

/// How far a project's log may be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    /// Segments before this one are complete.
    pub segment: u64,
    /// Committed bytes of `segment`.
    pub offset: u64,
    /// Set once the writer opened the project (and cut any torn tail).
    pub verified: bool,
    /// Changes when the writer opens the project.
    pub epoch: u64,
}

/// Every project's mark, and the numeric values committed since start.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// Marks by project.
    pub marks: BTreeMap<ProjectId, Mark>,
    /// Numeric values (gauges and counters) committed since the store opened.
    pub values: u64,
}

/// The writer's marks, shared with readers; see the module docs.
#[derive(Debug)]
pub struct Commits {
    state: Mutex<(Snapshot, u64)>,
    signal: watch::Sender<u64>,
}

/// Numeric values in `record`: what a Prometheus sink sends of it.
pub fn numeric_values(record: &StoredBatch) -> u64 {
    let numeric = |v: &&(_, Value)| !matches!(v.1, Value::Text(_));
    record.batch.samples.iter().map(|s| s.values.iter().filter(numeric).count() as u64).sum()
}

impl Commits {
    /// Marks for the projects under `dir` as they are on disk (the end of
    /// each project's last segment), before the writer starts.
    pub(super) fn from_dir(dir: &Path) -> Result<Self, StoreError> {
        let mut marks = BTreeMap::new();
        for entry in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let Some(project) = entry.file_name().to_str().and_then(|n| ProjectId::new(n).ok())
            else {
                continue;
            };
            // A project the writer cannot open is reported when it tries;
            // the sinks just have nothing of it to read until then.
            let dir = entry.path();
            let last = catalog::list(&dir).ok().and_then(|mut s| s.pop());
            let Some(last) = last else { continue };
            // The newest segment is the row file being written (a block
            // only if that was lost): its end, or the end of the rows the
            // block was made from.
            let offset = match last.form() {
                Form::Rows => std::fs::metadata(row_path(&dir, last.id)).ok().map(|m| m.len()),
                Form::Block => {
                    blocks::index(&dir, last.id).ok().flatten().map(|i| i.header.row_len)
                }
            };
            if let Some(offset) = offset {
                let segment = last.id;
                marks.insert(project, Mark { segment, offset, verified: false, epoch: 0 });
            }
        }
        let (signal, _) = watch::channel(0);
        Ok(Self { state: Mutex::new((Snapshot { marks, values: 0 }, 0)), signal })
    }

    fn lock(&self) -> MutexGuard<'_, (Snapshot, u64)> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The writer opened `project`: its log is intact up to `offset` of `segment`.
    pub(super) fn opened(&self, project: &ProjectId, segment: u64, offset: u64) {
        let mut state = self.lock();
        state.1 += 1;
        let epoch = state.1;
        state.0.marks.insert(project.clone(), Mark { segment, offset, verified: true, epoch });
        drop(state);
        self.signal.send_modify(|n| *n += 1);
    }

    /// A group is durable: each project's log now ends at (segment,
    /// offset), and `values` more numeric values are stored.
    pub(super) fn committed(&self, ends: &[(ProjectId, u64, u64)], values: u64) {
        let mut state = self.lock();
        for (project, segment, offset) in ends {
            if let Some(m) = state.0.marks.get_mut(project) {
                m.segment = *segment;
                m.offset = *offset;
            }
        }
        state.0.values += values;
        drop(state);
        self.signal.send_modify(|n| *n += 1);
    }

    /// Every mark and the values count, taken together.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().0.clone()
    }

    /// Numeric values committed since the store opened.
    pub fn values(&self) -> u64 {
        self.lock().0.values
    }

    /// `project`'s mark now.
    pub fn mark(&self, project: &ProjectId) -> Option<Mark> {
        self.lock().0.marks.get(project).copied()
    }

    /// Changes after every commit: readers wait on it.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.signal.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_start_from_the_directory_and_move_with_commits() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shop = dir.path().join("shop");
        std::fs::create_dir_all(&shop).expect("mkdir");
        std::fs::write(row_path(&shop, 1), [0u8; 10]).expect("write");
        std::fs::write(row_path(&shop, 2), [0u8; 7]).expect("write");
        std::fs::create_dir_all(dir.path().join("_sinks")).expect("mkdir");
        std::fs::create_dir_all(dir.path().join("empty")).expect("mkdir");
        let commits = Commits::from_dir(dir.path()).expect("scan");
        let project = ProjectId::new("shop").expect("valid");
        let mark = Mark { segment: 2, offset: 7, verified: false, epoch: 0 };
        assert_eq!(
            commits.snapshot().marks.into_iter().collect::<Vec<_>>(),
            [(project.clone(), mark)]
        );
        let signal = commits.subscribe();
        commits.opened(&project, 2, 5);
        commits.committed(&[(project.clone(), 3, 40)], 12);
        assert!(signal.has_changed().expect("open"));
        let mark = commits.mark(&project).expect("mark");
        assert_eq!((mark.segment, mark.offset, mark.verified), (3, 40, true));
        assert!(mark.epoch > 0);
        assert_eq!(commits.snapshot().values, 12);
    }
}
