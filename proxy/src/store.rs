//! The embedded store: append-only, crash-safe segment files per project,
//! written by one thread with group commit, compressed once closed.
//!
//! `<data_dir>/<project>/<NNNNNNNNNNNNNNNNNNNN>.seg` are segments of row
//! records in order, each a sequence of [checksummed records](wasmtap_protocol::record)
//! (the format the agent's spool uses too) whose payload is a
//! [`StoredBatch`] with its field layouts written once per record
//! (`format.rs`). A segment is closed at [`StoreConfig::segment_bytes`];
//! the maintenance thread (`maint.rs`) then compresses it into a block of
//! per-series columns, `NNN.blk`, with an index, `NNN.idx` ([`block`],
//! `compact.rs`), and deletes closed segments whose newest batch is older
//! than the retention. On open, the last segment's torn tail (a crash in
//! the middle of a write) is cut off; a damaged record anywhere else costs
//! only that record: it is skipped, logged and counted per project
//! ([`Store::damage`], on `/metrics`), and the records after it are kept
//! (`recover.rs`, `rows.rs`).
//!
//! Sessions hand batches to the writer thread ([`Store::submit`]); it takes
//! every batch waiting, writes them, syncs each file it touched once (group
//! commit: one `fsync` covers many batches) and only then answers, so a
//! batch is acknowledged only once it is durable. The writer also
//! deduplicates by (agent, batch sequence): a resent batch is answered
//! [`Appended::Duplicate`] and not written again. After each group it
//! publishes where every project's durable records end ([`Commits`]), so
//! that the sinks ([`crate::tail`]) read back exactly what was acknowledged.
//! Positions in a segment are byte offsets in its row file, before and
//! after compression.

pub mod block;
pub mod blocks;
pub mod catalog;
pub mod checkpoint;
mod commits;
pub mod compact;
pub mod format;
mod maint;
pub mod recover;
pub mod rows;
pub mod usage;
mod writer;

pub use commits::{Commits, Mark, Snapshot, numeric_values};

#[cfg(test)]
mod compat_tests;
#[cfg(test)]
mod tests;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use wasmtap_protocol::access_key::ProjectId;
use wasmtap_protocol::message::Batch;

/// Largest record accepted when reading back (a longer length is damage).
pub const MAX_RECORD: u32 = 64 << 20;
/// Default size at which a segment is closed and a new one started: the
/// newest segment stays in row form (about 10 bytes a value) until then,
/// and a query of recent data reads it whole.
pub const DEFAULT_SEGMENT_BYTES: u64 = 32 << 20;
/// How long stored batches are kept by default: 15 days.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(15 * 24 * 3600);

/// Store failures.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Filesystem error.
    #[error("{path}: {message}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        message: String,
    },
    /// A record passes its checksum but cannot be read (written by a newer
    /// proxy, say): the project is left untouched rather than cut short.
    #[error("{path}: {message}; the project's store is left as it is")]
    Unreadable {
        /// The segment.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// A batch whose record would exceed [`MAX_RECORD`].
    #[error("a batch of {0} bytes is over the store's record limit")]
    TooLarge(usize),
    /// An earlier batch of the same session failed, so this one is not
    /// stored ahead of it (the agent resends both, in order).
    #[error("an earlier batch of this session was not stored")]
    EarlierFailed,
    /// The writer thread is gone (the proxy is shutting down).
    #[error("the store is closed")]
    Closed,
    /// Under `[cluster]`: JetStream did not confirm the replicated write
    /// (the agent keeps the batch and sends it again).
    #[error("the cluster did not confirm the batch: {0}")]
    Unconfirmed(String),
}

/// An I/O error on `path`, as a [`StoreError`].
pub(crate) fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |e| StoreError::from_io(path, e)
}

impl StoreError {
    /// An I/O error on `path`.
    pub fn from_io(path: &Path, e: std::io::Error) -> Self {
        Self::Io { path: path.to_owned(), message: e.to_string() }
    }
}

/// When appended batches reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fsync {
    /// Every group of waiting batches is synced before any is acknowledged (the default).
    #[default]
    Group,
    /// Never synced by the proxy: acknowledgements come before durability,
    /// and a machine crash can lose acknowledged batches. For tests and
    /// throwaway setups only.
    Off,
}

/// How the store writes and keeps data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Sync policy.
    pub fsync: Fsync,
    /// Size at which a segment is closed.
    pub segment_bytes: u64,
    /// Closed segments whose newest batch arrived longer ago are deleted
    /// (`None`: kept whatever their age).
    pub retention: Option<Duration>,
    /// While the store's files take more bytes than this, the closed
    /// segments with the oldest batches are deleted (`None`: no cap).
    pub max_bytes: Option<u64>,
    /// Closed segments are compressed (the default); when off they stay row files.
    pub compress: bool,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            fsync: Fsync::Group,
            segment_bytes: DEFAULT_SEGMENT_BYTES,
            retention: Some(DEFAULT_RETENTION),
            max_bytes: None,
            compress: true,
        }
    }
}

/// One stored batch with who sent it and when it arrived.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredBatch {
    /// The agent's name.
    pub agent: String,
    /// The session it arrived on.
    pub session: u64,
    /// Proxy clock at arrival, ms since the epoch.
    pub received_ms: u64,
    /// The batch as the agent sent it.
    pub batch: Batch,
}

/// What [`Store::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Written (and synced, under [`Fsync::Group`]).
    Stored,
    /// The agent's batch with this sequence number is already stored.
    Duplicate,
}

/// The answer to a submitted batch.
pub type Receipt = oneshot::Receiver<Result<Appended, StoreError>>;

/// The store: a writer thread and the directory it writes.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    damage: Arc<recover::DamageCounters>,
    usage: Arc<usage::Usage>,
    /// How far readers may read; moved by the writer.
    commits: Arc<Commits>,
    jobs: Mutex<Option<mpsc::Sender<writer::Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
    maint: Mutex<Option<mpsc::Sender<maint::Job>>>,
    maint_thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl Store {
    /// Opens (creating) a store under `dir` with the default configuration.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Self::open_with(dir, StoreConfig::default())
    }

    /// Opens (creating) a store under `dir`.
    pub fn open_with(dir: &Path, config: StoreConfig) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        let commits = Arc::new(Commits::from_dir(dir)?);
        let (maint_tx, maint_rx) = mpsc::channel();
        let usage = Arc::new(usage::Usage::default());
        let maintenance = maint::Maintenance::new(dir.to_owned(), config, usage.clone());
        let maint_thread = std::thread::Builder::new()
            .name("wasmtap-store-maint".into())
            .spawn(move || maintenance.run(maint_rx))
            .map_err(io_err(dir))?;
        let (tx, rx) = mpsc::channel();
        let damage = Arc::new(recover::DamageCounters::default());
        let writer = writer::Writer::new(
            dir.to_owned(),
            config,
            commits.clone(),
            damage.clone(),
            maint_tx.clone(),
        );
        let thread = std::thread::Builder::new()
            .name("wasmtap-store".into())
            .spawn(move || writer.run(rx))
            .map_err(io_err(dir))?;
        Ok(Self {
            dir: dir.to_owned(),
            damage,
            usage,
            commits,
            jobs: Mutex::new(Some(tx)),
            thread: Mutex::new(Some(thread)),
            maint: Mutex::new(Some(maint_tx)),
            maint_thread: Mutex::new(Some(maint_thread)),
        })
    }

    /// Hands `record` to the writer; the receipt resolves once it is durable
    /// (or found to be a duplicate).
    pub fn submit(&self, project: &ProjectId, record: Arc<StoredBatch>) -> Receipt {
        let (reply, receipt) = oneshot::channel();
        let job = writer::Job { project: project.clone(), record, reply };
        let jobs = self.jobs.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(tx) = jobs.as_ref()
            && let Err(mpsc::SendError(job)) = tx.send(job)
        {
            let _ = job.reply.send(Err(StoreError::Closed));
        }
        receipt
    }

    /// Appends `record` and waits until it is durable (blocking; not for
    /// async tasks, which await [`Store::submit`]'s receipt).
    pub fn append(&self, project: &ProjectId, record: StoredBatch) -> Result<Appended, StoreError> {
        self.submit(project, Arc::new(record)).blocking_recv().map_err(|_| StoreError::Closed)?
    }

    /// The directory the store writes.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What is durable, for readers tailing the store.
    pub fn commits(&self) -> &Arc<Commits> {
        &self.commits
    }

    /// Waits until the maintenance thread has done what it was asked
    /// so far (compressing the segments closed until now, say).
    pub fn settle(&self) {
        let (reply, done) = mpsc::channel();
        let sent = match self.maint.lock().unwrap_or_else(PoisonError::into_inner).as_ref() {
            Some(tx) => tx.send(maint::Job::Settle(reply)).is_ok(),
            None => false,
        };
        if sent {
            let _ = done.recv();
        }
    }

    /// Stops the writer after the batches already submitted, then the
    /// maintenance thread after the segment it is working on.
    pub fn close(&self) {
        self.jobs.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(t) = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = t.join();
        }
        self.maint.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(t) = self.maint_thread.lock().unwrap_or_else(PoisonError::into_inner).take() {
            let _ = t.join();
        }
    }

    /// Projects that have data, sorted.
    pub fn projects(&self) -> Result<Vec<ProjectId>, StoreError> {
        Self::projects_in(&self.dir)
    }

    /// Projects that have data in the store under `dir`, sorted (none if
    /// there is no store there).
    pub fn projects_in(dir: &Path) -> Result<Vec<ProjectId>, StoreError> {
        let mut out = Vec::new();
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_err(dir))?;
            if let Some(id) = entry.file_name().to_str().and_then(|n| ProjectId::new(n).ok())
                && entry.path().is_dir()
            {
                out.push(id);
            }
        }
        out.sort();
        Ok(out)
    }

    /// What the store holds and its retention deleted, per project.
    pub fn usage(&self) -> &usage::Usage {
        &self.usage
    }

    /// Damage found in the projects' segments when their logs were opened.
    pub fn damage(&self) -> &recover::DamageCounters {
        &self.damage
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        self.close();
    }
}
