//! The store's maintenance thread: it compresses each segment the writer
//! closes (`compact.rs`), finishes what a crash interrupted (leftover
//! temporary files, row files whose block is complete), and applies the
//! retention segment by segment: closed segments whose newest batch
//! arrived before the retention period, then, while the store is over its
//! size cap, the closed segments with the oldest batches, across projects.
//! It never touches a project's newest segment, which the writer appends
//! to. What it holds and deleted is counted for `/metrics` ([`Usage`]).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use wasmtap_protocol::access_key::ProjectId;

use super::catalog::{self, Form, block_path, index_path, row_path};
use super::compact::{self, Compacted};
use super::format::{self, Viewed};
use super::rows::{Item, RowFile};
use super::usage::{Reason, Usage};
use super::{StoreConfig, StoreError, blocks, io_err};

/// How often every project is looked at without being asked.
const SWEEP: Duration = Duration::from_secs(60);

/// What the maintenance thread is asked to do.
#[derive(Debug)]
pub(super) enum Job {
    /// The writer closed a segment of this project.
    Sealed(ProjectId),
    /// Answer once everything asked before is done.
    Settle(mpsc::Sender<()>),
}

/// A closed segment, for retention.
#[derive(Debug, Clone, Copy)]
struct Closed {
    /// Arrival time of its newest batch.
    newest_received: u64,
    /// Bytes of its files.
    bytes: u64,
}

/// What is known of a project's segments.
#[derive(Debug, Default)]
struct Known {
    /// Closed segments, by number.
    closed: BTreeMap<u64, Closed>,
    /// Its newest segment (never deleted) and its files' bytes.
    newest: Option<(u64, u64)>,
}

pub(super) struct Maintenance {
    dir: PathBuf,
    config: StoreConfig,
    usage: Arc<Usage>,
    projects: HashMap<ProjectId, Known>,
    last_sweep: Option<Instant>,
}

fn remove(path: &Path) -> Result<u64, StoreError> {
    let bytes = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
    match std::fs::remove_file(path) {
        Ok(()) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Bytes of segment `id`'s files in `dir`.
fn bytes_of(dir: &Path, id: u64) -> u64 {
    size(&row_path(dir, id)) + size(&block_path(dir, id)) + size(&index_path(dir, id))
}

/// The arrival time of the newest batch in a row file (`None` if it is gone).
fn newest_in_rows(path: &Path) -> Result<Option<u64>, StoreError> {
    let Some(file) = RowFile::open(path).map_err(io_err(path))? else { return Ok(None) };
    let len = file.size().map_err(io_err(path))?;
    let (mut at, mut newest) = (0, 0);
    while at < len {
        at = file
            .window(at, len, true, |item| {
                // The record's header is all that is needed.
                let received = match item {
                    Item::Record { payload, .. } => match format::view(payload) {
                        Ok(Viewed::View(v)) => Some(v.received_ms),
                        Ok(Viewed::Decoded(r)) => Some(r.received_ms),
                        Err(_) => None,
                    },
                    Item::Damage { .. } => None,
                };
                newest = newest.max(received.unwrap_or(0));
            })
            .map_err(io_err(path))?;
    }
    Ok(Some(newest))
}

impl Maintenance {
    pub(super) fn new(dir: PathBuf, config: StoreConfig, usage: Arc<Usage>) -> Self {
        let retention_s = config.retention.map_or(0, |r| r.as_secs());
        usage.set_limits(retention_s, config.max_bytes.unwrap_or(0));
        Self { dir, config, usage, projects: HashMap::new(), last_sweep: None }
    }

    pub(super) fn run(mut self, jobs: mpsc::Receiver<Job>) {
        self.sweep();
        loop {
            let wait = SWEEP.saturating_sub(self.last_sweep.map_or(SWEEP, |t| t.elapsed()));
            match jobs.recv_timeout(wait) {
                Ok(Job::Sealed(project)) => {
                    self.project(&project);
                    self.size_cap();
                }
                Ok(Job::Settle(reply)) => {
                    let _ = reply.send(());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => self.sweep(),
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Every project, then the size cap.
    fn sweep(&mut self) {
        self.last_sweep = Some(Instant::now());
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let mut projects: Vec<ProjectId> = entries
            .flatten()
            .filter(|e| e.path().is_dir())
            .filter_map(|e| ProjectId::new(e.file_name().to_str()?).ok())
            .collect();
        projects.sort();
        for p in projects {
            self.project(&p);
        }
        self.size_cap();
    }

    fn project(&mut self, project: &ProjectId) {
        let dir = self.dir.join(project.as_str());
        if let Err(e) = self.tidy(project, &dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "store maintenance failed; trying again later");
        }
    }

    /// Leftovers, compression of closed row segments, retention by age.
    fn tidy(&mut self, project: &ProjectId, dir: &Path) -> Result<(), StoreError> {
        for path in catalog::leftovers(dir)? {
            remove(&path)?;
        }
        let segments = catalog::list(dir)?;
        let Some((_, closed)) = segments.split_last() else { return Ok(()) };
        for s in closed {
            if s.block && s.rows {
                // A crash came between writing the block and removing the rows.
                remove(&row_path(dir, s.id))?;
            } else if s.rows && self.config.compress {
                match compact::compact(dir, s.id) {
                    Ok(Compacted::Done { rows, block, damaged }) => {
                        tracing::debug!(dir = %dir.display(), segment = s.id, rows, block, damaged, "segment compressed");
                        self.usage.update(project, |u| u.compressed_total += 1);
                    }
                    Ok(Compacted::Gone) => {}
                    Err(e) => {
                        tracing::error!(dir = %dir.display(), segment = s.id, error = %e, "cannot compress a segment; its row file is kept");
                    }
                }
            }
        }
        self.refresh(project, dir)?;
        if let Some(retention) = self.config.retention {
            let horizon = crate::now_ms()
                .saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX));
            let known = self.projects.entry(project.clone()).or_default();
            let old: Vec<u64> = known
                .closed
                .iter()
                .filter(|(_, c)| c.newest_received < horizon)
                .map(|(id, _)| *id)
                .collect();
            for id in old {
                self.delete(project, id, Reason::Age)?;
            }
        }
        Ok(())
    }

    /// Re-reads what `project` holds (new closed segments: their newest
    /// batch, from the index or a scan) and updates its usage.
    fn refresh(&mut self, project: &ProjectId, dir: &Path) -> Result<(), StoreError> {
        let segments = catalog::list(dir)?;
        let known = self.projects.entry(project.clone()).or_default();
        let Some((newest, closed)) = segments.split_last() else {
            *known = Known::default();
            return Ok(());
        };
        let mut fresh = BTreeMap::new();
        for s in closed {
            let bytes = bytes_of(dir, s.id);
            let newest_received = match known.closed.get(&s.id) {
                Some(c) => Some(c.newest_received),
                None => match s.form() {
                    Form::Block => blocks::index(dir, s.id)?.map(|i| i.header.newest_received),
                    // Kept as rows (compression off, or not possible).
                    Form::Rows => newest_in_rows(&row_path(dir, s.id))?,
                },
            };
            if let Some(newest_received) = newest_received {
                fresh.insert(s.id, Closed { newest_received, bytes });
            }
        }
        known.closed = fresh;
        known.newest = Some((newest.id, bytes_of(dir, newest.id)));
        let bytes = known.closed.values().map(|c| c.bytes).sum::<u64>() + bytes_of(dir, newest.id);
        let rows = segments.iter().filter(|s| s.form() == Form::Rows).count() as u64;
        let compressed = segments.len() as u64 - rows;
        self.usage.update(project, |u| {
            u.bytes = bytes;
            u.row_segments = rows;
            u.compressed_segments = compressed;
        });
        Ok(())
    }

    /// Deletes closed segment `id` of `project` and counts it.
    fn delete(&mut self, project: &ProjectId, id: u64, reason: Reason) -> Result<u64, StoreError> {
        let dir = self.dir.join(project.as_str());
        let bytes = remove(&block_path(&dir, id))?
            + remove(&index_path(&dir, id))?
            + remove(&row_path(&dir, id))?;
        blocks::sync_dir(&dir)?;
        if let Some(known) = self.projects.get_mut(project) {
            known.closed.remove(&id);
        }
        self.usage.update(project, |u| {
            u.bytes = u.bytes.saturating_sub(bytes);
            let counts = match reason {
                Reason::Age => &mut u.expired_age,
                Reason::Size => &mut u.expired_size,
            };
            counts.0 += 1;
            counts.1 += bytes;
        });
        tracing::info!(%project, segment = id, bytes, reason = ?reason, "segment deleted by retention");
        Ok(bytes)
    }

    /// While the store is over its size cap, deletes the closed segment
    /// whose newest batch is the oldest, whatever its project.
    fn size_cap(&mut self) {
        let Some(cap) = self.config.max_bytes else { return };
        let mut total: u64 = self
            .projects
            .values()
            .map(|k| k.closed.values().map(|c| c.bytes).sum::<u64>() + k.newest.map_or(0, |n| n.1))
            .sum();
        let mut candidates: Vec<(u64, ProjectId, u64)> = self
            .projects
            .iter()
            .flat_map(|(p, k)| {
                k.closed.iter().map(move |(id, c)| (c.newest_received, p.clone(), *id))
            })
            .collect();
        candidates.sort();
        for (_, project, id) in candidates {
            if total <= cap {
                return;
            }
            match self.delete(&project, id, Reason::Size) {
                Ok(bytes) => total = total.saturating_sub(bytes),
                Err(e) => {
                    tracing::warn!(%project, segment = id, error = %e, "cannot delete a segment over the size cap")
                }
            }
        }
        if total > cap {
            tracing::warn!(
                bytes = total,
                cap,
                "the store is over its size cap with only the segments being written left"
            );
        }
    }
}
