//! The store's maintenance thread: it compresses each segment the writer
//! closes (`compact.rs`), finishes what a crash interrupted (leftover
//! temporary files, row files whose block is complete), and deletes
//! closed segments past the retention. It never touches a project's
//! newest segment, which the writer appends to.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use wasmtap_protocol::access_key::ProjectId;

use super::catalog::{self, Form, block_path, index_path, row_path};
use super::compact::{self, Compacted};
use super::rows::{Item, RowFile};
use super::{StoreConfig, StoreError, blocks, format, io_err};

/// How often every project is looked at without being asked.
const SWEEP: Duration = Duration::from_secs(60);

/// What the maintenance thread is asked to do.
#[derive(Debug)]
pub(super) enum Job {
    /// The writer closed a segment of this project.
    Sealed(ProjectId),
    /// Answer once everything asked before is done.
    Settle(std::sync::mpsc::Sender<()>),
}

/// What is known of a compressed segment, for retention.
#[derive(Debug, Clone, Copy)]
struct Known {
    newest_received: u64,
}

pub(super) struct Maintenance {
    dir: PathBuf,
    config: StoreConfig,
    /// Per project directory: compressed segments seen.
    known: HashMap<PathBuf, BTreeMap<u64, Known>>,
    last_sweep: Option<Instant>,
}

fn remove(path: &Path) -> Result<bool, StoreError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(super::io_err(path)(e)),
    }
}

/// The arrival time of the newest batch in a row file (`None` if it is gone).
fn newest_in_rows(path: &Path) -> Result<Option<u64>, StoreError> {
    let Some(file) = RowFile::open(path).map_err(io_err(path))? else { return Ok(None) };
    let len = file.size().map_err(io_err(path))?;
    let (mut at, mut newest) = (0, 0);
    while at < len {
        at = file
            .window(at, len, true, |item| {
                if let Item::Record { payload, .. } = item
                    && let Ok(r) = format::decode(payload)
                {
                    newest = newest.max(r.received_ms);
                }
            })
            .map_err(io_err(path))?;
    }
    Ok(Some(newest))
}

impl Maintenance {
    pub(super) fn new(dir: PathBuf, config: StoreConfig) -> Self {
        Self { dir, config, known: HashMap::new(), last_sweep: None }
    }

    pub(super) fn run(mut self, jobs: mpsc::Receiver<Job>) {
        self.sweep();
        loop {
            let wait = SWEEP.saturating_sub(self.last_sweep.map_or(SWEEP, |t| t.elapsed()));
            match jobs.recv_timeout(wait) {
                Ok(Job::Sealed(project)) => {
                    let dir = self.dir.join(project.as_str());
                    self.project(&dir);
                }
                Ok(Job::Settle(reply)) => {
                    let _ = reply.send(());
                }
                Err(mpsc::RecvTimeoutError::Timeout) => self.sweep(),
                Err(mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
    }

    /// Every project directory.
    fn sweep(&mut self) {
        self.last_sweep = Some(Instant::now());
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return };
        let mut dirs: Vec<PathBuf> = entries
            .flatten()
            .filter(|e| e.file_name().to_str().is_some_and(|n| ProjectId::new(n).is_ok()))
            .map(|e| e.path())
            .filter(|p| p.is_dir())
            .collect();
        dirs.sort();
        for dir in dirs {
            self.project(&dir);
        }
    }

    /// One project: leftovers, compression of closed row segments, retention.
    fn project(&mut self, dir: &Path) {
        if let Err(e) = self.tidy(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "store maintenance failed; trying again later");
        }
    }

    fn tidy(&mut self, dir: &Path) -> Result<(), StoreError> {
        for path in catalog::leftovers(dir)? {
            remove(&path)?;
        }
        let segments = catalog::list(dir)?;
        let Some((newest, closed)) = segments.split_last() else { return Ok(()) };
        for s in closed {
            if s.block && s.rows {
                // A crash came between writing the block and removing the rows.
                remove(&row_path(dir, s.id))?;
            } else if s.rows && self.config.compress {
                match compact::compact(dir, s.id) {
                    Ok(Compacted::Done { rows, block, damaged }) => {
                        tracing::debug!(dir = %dir.display(), segment = s.id, rows, block, damaged, "segment compressed");
                    }
                    Ok(Compacted::Gone) => {}
                    Err(e) => {
                        tracing::error!(dir = %dir.display(), segment = s.id, error = %e, "cannot compress a segment; its row file is kept");
                    }
                }
            }
        }
        blocks::sync_dir(dir)?;
        self.retention(dir, newest.id)
    }

    /// Deletes closed segments whose newest batch arrived before the retention.
    fn retention(&mut self, dir: &Path, newest: u64) -> Result<(), StoreError> {
        let Some(retention) = self.config.retention else { return Ok(()) };
        let horizon = crate::now_ms()
            .saturating_sub(u64::try_from(retention.as_millis()).unwrap_or(u64::MAX));
        let known = self.known.entry(dir.to_owned()).or_default();
        for s in catalog::list(dir)?.into_iter().filter(|s| s.id < newest) {
            let info = match known.get(&s.id) {
                Some(k) => *k,
                None => {
                    let newest_received = match s.form() {
                        Form::Block => blocks::index(dir, s.id)?.map(|i| i.header.newest_received),
                        // Kept as rows (compression off, or not possible).
                        Form::Rows => newest_in_rows(&row_path(dir, s.id))?,
                    };
                    let Some(newest_received) = newest_received else { continue };
                    let k = Known { newest_received };
                    known.insert(s.id, k);
                    k
                }
            };
            if info.newest_received >= horizon {
                continue;
            }
            remove(&block_path(dir, s.id))?;
            remove(&index_path(dir, s.id))?;
            remove(&row_path(dir, s.id))?;
            known.remove(&s.id);
            tracing::info!(dir = %dir.display(), segment = s.id, "segment past the retention deleted");
        }
        Ok(())
    }
}
