//! Sinks tail the store: every consumer of stored batches (remote write,
//! the `/metrics` table, `run --print`) reads them back from the store's
//! log files, behind the writer's [commit marks](crate::store::Commits),
//! with a position of its own, instead of being handed them by the session
//! that received them. What the proxy acknowledged therefore reaches every
//! sink whatever happens to the sink's backend or to the proxy process,
//! within the store's retention.
//!
//! - [`Tail`]: a reader of every project's log from its own positions
//!   (`segment`: one project's segments, past damage and expired segments).
//! - [`follow`]: durable delivery with a persisted position (remote write),
//!   in batches taken from a queue of records read (`batch`).
//! - [`progress`]: a durable sink's lag and skips, for `/metrics`.
//! - [`live`]: in-memory consumers fed from the tail ([`crate::sink::Sink`]).
//! - `saved`: the position files under `<data_dir>/_sinks/`.

mod batch;
pub mod follow;
pub mod live;
pub mod progress;
mod saved;
mod segment;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use wasmtap_protocol::access_key::ProjectId;
use wasmtap_protocol::record;

use crate::store::catalog::{self, block_path, row_path};
use crate::store::{Commits, MAX_RECORD, Mark, Store, StoredBatch};

/// Where in a project's log: a segment and a byte offset in it.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Position {
    /// The segment's number.
    pub segment: u64,
    /// Bytes into the segment.
    pub offset: u64,
}

/// One record read back.
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its project.
    pub project: ProjectId,
    /// Where the record starts.
    pub start: Position,
    /// Where the next record starts.
    pub end: Position,
    /// The stored batch.
    pub record: Arc<StoredBatch>,
}

/// What a reader passed over without handing it on, since it started.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    /// Bytes of damaged records.
    pub corrupt_bytes: u64,
    /// Intact records that do not decode (written by a newer proxy, say).
    pub unreadable_records: u64,
    /// Segments deleted by retention before they were read.
    pub expired_segments: u64,
}

/// Reading the store back failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TailError {
    /// A log file could not be read.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// A sink's position file cannot be read or written.
    #[error("sink position file {path}: {message}")]
    Positions {
        /// The file.
        path: PathBuf,
        /// The cause.
        message: String,
    },
}

/// What one [`Tail::read`] returned.
#[derive(Debug, Default)]
pub struct Read {
    /// Records, each project's in order.
    pub entries: Vec<Entry>,
    /// Every project was read up to the marks of this read.
    pub complete: bool,
    /// Numeric values the store had committed at those marks.
    pub committed_values: u64,
}

/// A reader of every project's log, each from its own position; projects
/// it has no position for are read from their beginning.
#[derive(Debug)]
pub struct Tail {
    dir: PathBuf,
    commits: Arc<Commits>,
    positions: BTreeMap<ProjectId, Position>,
    /// Per project, the compressed segment being read.
    open: BTreeMap<ProjectId, Option<segment::OpenBlock>>,
    turn: usize,
    /// What was passed over.
    pub skipped: Skipped,
}

/// The end of the intact records of `project`'s last segment, for a mark
/// the writer has not verified (its end may be a torn record).
fn intact_end(dir: &Path, project: &ProjectId, mark: &Mark) -> Result<Position, TailError> {
    if mark.verified {
        return Ok(Position { segment: mark.segment, offset: mark.offset });
    }
    let path = row_path(&dir.join(project.as_str()), mark.segment);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(TailError::Io { path, message: e.to_string() }),
    };
    let mut records = record::scan(&bytes, MAX_RECORD);
    records.by_ref().for_each(drop);
    Ok(Position { segment: mark.segment, offset: records.valid_len() as u64 })
}

impl Tail {
    /// A reader of `store` from `positions`.
    pub fn new(store: &Store, positions: BTreeMap<ProjectId, Position>) -> Self {
        Self {
            dir: store.dir().to_owned(),
            commits: store.commits().clone(),
            positions,
            open: BTreeMap::new(),
            turn: 0,
            skipped: Skipped::default(),
        }
    }

    /// A reader of what `store` commits from now on.
    pub fn at_end(store: &Store) -> Result<Self, TailError> {
        let dir = store.dir();
        let mut positions = BTreeMap::new();
        for (project, mark) in store.commits().snapshot().marks {
            positions.insert(project.clone(), intact_end(dir, &project, &mark)?);
        }
        Ok(Self::new(store, positions))
    }

    /// A reader of what `store` received since about `horizon_ms` (ms since
    /// the epoch): each project from its first segment modified since.
    pub fn since(store: &Store, horizon_ms: u64) -> Result<Self, TailError> {
        let horizon = std::time::UNIX_EPOCH + std::time::Duration::from_millis(horizon_ms);
        let mut tail = Self::at_end(store)?;
        for (project, pos) in &mut tail.positions {
            let dir = tail.dir.join(project.as_str());
            let files = catalog::list(&dir)
                .map_err(|e| TailError::Io { path: dir.clone(), message: e.to_string() })?;
            let modified = |path: PathBuf| {
                std::fs::metadata(path).and_then(|m| m.modified()).is_ok_and(|t| t >= horizon)
            };
            let recent = files
                .into_iter()
                .find(|s| modified(row_path(&dir, s.id)) || modified(block_path(&dir, s.id)));
            if let Some(catalog::Segment { id: segment, .. }) = recent {
                *pos = Position { segment, offset: 0 };
            }
        }
        Ok(tail)
    }

    /// The position of every project this reader has seen.
    pub fn positions(&self) -> &BTreeMap<ProjectId, Position> {
        &self.positions
    }

    /// Reads about `budget` bytes of committed records, starting with the
    /// next project in turn.
    pub fn read(&mut self, budget: u64) -> Result<Read, TailError> {
        let snapshot = self.commits.snapshot();
        let mut read = self.read_until(&snapshot.marks, budget)?;
        read.committed_values = snapshot.values;
        Ok(read)
    }

    /// Like [`Tail::read`], up to `marks` (an earlier snapshot).
    pub fn read_until(
        &mut self,
        marks: &BTreeMap<ProjectId, Mark>,
        budget: u64,
    ) -> Result<Read, TailError> {
        let mut read = Read { complete: true, ..Read::default() };
        let count = marks.len();
        self.turn = self.turn.wrapping_add(1);
        let mut used = 0u64;
        for (project, mark) in marks.iter().cycle().skip(self.turn % count.max(1)).take(count) {
            if used >= budget {
                read.complete = false;
                break;
            }
            let before = read.entries.len();
            let pos = self.positions.entry(project.clone()).or_default();
            if pos.segment == mark.segment && pos.offset >= mark.offset {
                continue; // nothing new: no file touched
            }
            let saved = *pos;
            let dir = self.dir.join(project.as_str());
            let left = budget - used;
            let open = self.open.entry(project.clone()).or_default();
            let log = segment::Log { dir: &dir, project, mark };
            segment::read(log, pos, left, open, &mut read.entries, &mut self.skipped)?;
            // The writer opened the project meanwhile (it may have cut a
            // torn tail and written in its place): read it again later.
            if self.commits.mark(project).map(|m| m.epoch) != Some(mark.epoch) {
                read.entries.truncate(before);
                *pos = saved;
                read.complete = false;
            }
            used +=
                read.entries[before..].iter().map(|e| e.end.offset - e.start.offset).sum::<u64>();
        }
        if used >= budget {
            read.complete = false;
        }
        Ok(read)
    }
}
