//! The embedded store: one append-only log file per project.
//!
//! `<data_dir>/<project>/samples.log` is a sequence of records:
//!
//! ```text
//! +------------------+------------------+----------------------+
//! | length (u32 LE)  | CRC-32 (u32 LE)  | payload (`length` B) |
//! +------------------+------------------+----------------------+
//! ```
//!
//! (the [record format](wasmtap_protocol::record) the agent's spool uses
//! too). The payload is a postcard-encoded [`StoredBatch`]. On open, records
//! are checked in order; a torn or corrupt tail (a crash mid-write) is cut
//! off. Records are fsynced before [`Store::append`] returns.
//!
//! Appends are deduplicated by (agent, batch sequence): a batch resent after
//! a lost acknowledgement is acknowledged again but stored once. The seen
//! sequence numbers of a project are rebuilt from its log on first use.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use wasmtap_protocol::access_key::ProjectId;
use wasmtap_protocol::message::{self, Batch};
use wasmtap_protocol::record;

use crate::dedup::SeqSet;

/// Largest record accepted when reading back (a corrupt length beyond it ends the log).
pub const MAX_RECORD: u32 = 64 << 20;
const LOG_FILE: &str = "samples.log";

/// Store failures.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Filesystem error.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
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
    /// Written and synced.
    Stored,
    /// The agent's batch with this sequence number is already stored.
    Duplicate,
}

#[derive(Debug)]
struct Log {
    file: File,
    seen: HashMap<String, SeqSet>,
}

/// The store: open log files by project.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    logs: Mutex<HashMap<ProjectId, Arc<Mutex<Log>>>>,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_owned(), source }
}

impl Store {
    /// Opens (creating) a store under `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
        Ok(Self { dir: dir.to_owned(), logs: Mutex::new(HashMap::new()) })
    }

    fn log_path(&self, project: &ProjectId) -> PathBuf {
        self.dir.join(project.as_str()).join(LOG_FILE)
    }

    fn log(&self, project: &ProjectId) -> Result<Arc<Mutex<Log>>, StoreError> {
        let mut logs = self.logs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(log) = logs.get(project) {
            return Ok(log.clone());
        }
        let path = self.log_path(project);
        let dir = self.dir.join(project.as_str());
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let records = recover(&path)?;
        let mut seen: HashMap<String, SeqSet> = HashMap::new();
        for r in &records {
            seen.entry(r.agent.clone()).or_default().insert(r.batch.seq);
        }
        let file =
            OpenOptions::new().create(true).append(true).open(&path).map_err(io_err(&path))?;
        let log = Arc::new(Mutex::new(Log { file, seen }));
        logs.insert(project.clone(), log.clone());
        Ok(log)
    }

    /// Appends `record` to `project`'s log and syncs it to disk, unless the
    /// agent's batch with the same sequence number is already stored.
    pub fn append(
        &self,
        project: &ProjectId,
        record: &StoredBatch,
    ) -> Result<Appended, StoreError> {
        let log = self.log(project)?;
        let mut log = log.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if log.seen.get(&record.agent).is_some_and(|s| s.contains(record.batch.seq)) {
            return Ok(Appended::Duplicate);
        }
        let mut buf = Vec::new();
        record::encode(&message::encode(record), &mut buf);
        let path = self.log_path(project);
        log.file.write_all(&buf).map_err(io_err(&path))?;
        log.file.sync_data().map_err(io_err(&path))?;
        log.seen.entry(record.agent.clone()).or_default().insert(record.batch.seq);
        Ok(Appended::Stored)
    }

    /// Projects that have a log, sorted.
    pub fn projects(&self) -> Result<Vec<ProjectId>, StoreError> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(io_err(&self.dir))? {
            let entry = entry.map_err(io_err(&self.dir))?;
            if let Some(id) = entry.file_name().to_str().and_then(|n| ProjectId::new(n).ok())
                && entry.path().join(LOG_FILE).is_file()
            {
                out.push(id);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every valid record of `project`, in order.
    pub fn read(&self, project: &ProjectId) -> Result<Vec<StoredBatch>, StoreError> {
        let path = self.log_path(project);
        let mut bytes = Vec::new();
        match File::open(&path) {
            Ok(mut f) => f.read_to_end(&mut bytes).map_err(io_err(&path))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_err(&path)(e)),
        };
        Ok(scan(&bytes).0)
    }
}

/// Decodes records until the first torn or corrupt one; returns them and the
/// length of the valid prefix.
fn scan(bytes: &[u8]) -> (Vec<StoredBatch>, usize) {
    let mut out = Vec::new();
    let mut records = record::scan(bytes, MAX_RECORD);
    while let Some((_, payload)) = records.next() {
        match message::decode::<StoredBatch>(payload) {
            Ok(r) => out.push(r),
            Err(_) => {
                records.reject_last(payload.len());
                break;
            }
        }
    }
    (out, records.valid_len())
}

/// Cuts a torn tail off the log at `path`, if any; returns its records.
fn recover(path: &Path) -> Result<Vec<StoredBatch>, StoreError> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io_err(path))?;
    let (records, valid) = scan(&bytes);
    if valid < bytes.len() {
        tracing::warn!(path = %path.display(), cut = bytes.len() - valid, "truncating a torn or corrupt tail");
        file.set_len(valid as u64).map_err(io_err(path))?;
        file.seek(SeekFrom::End(0)).map_err(io_err(path))?;
        file.sync_all().map_err(io_err(path))?;
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtap_protocol::message::{Sample, Value};

    fn record(seq: u64) -> StoredBatch {
        StoredBatch {
            agent: "a".into(),
            session: 1,
            received_ms: 5,
            batch: Batch {
                seq,
                samples: vec![Sample {
                    collector: "load".into(),
                    time_ms: 1,
                    labels: vec![],
                    values: vec![("load1".into(), Value::Gauge(0.5))],
                }],
            },
        }
    }

    #[test]
    fn append_and_read_back() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let p = ProjectId::new("demo").expect("valid");
        store.append(&p, &record(1)).expect("append");
        store.append(&p, &record(2)).expect("append");
        assert_eq!(store.read(&p).expect("read"), vec![record(1), record(2)]);
        assert_eq!(store.projects().expect("list"), vec![p]);
    }

    #[test]
    fn resent_batches_are_stored_once_even_after_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = ProjectId::new("demo").expect("valid");
        {
            let store = Store::open(dir.path()).expect("open");
            assert_eq!(store.append(&p, &record(1)).expect("append"), Appended::Stored);
            assert_eq!(store.append(&p, &record(1)).expect("append"), Appended::Duplicate);
        }
        let store = Store::open(dir.path()).expect("reopen");
        assert_eq!(store.append(&p, &record(1)).expect("append"), Appended::Duplicate);
        let mut other = record(1);
        other.agent = "b".into();
        assert_eq!(store.append(&p, &other).expect("append"), Appended::Stored, "per agent");
        assert_eq!(store.append(&p, &record(2)).expect("append"), Appended::Stored);
        assert_eq!(store.read(&p).expect("read").len(), 3);
    }

    #[test]
    fn torn_tail_is_cut_on_reopen_and_appends_continue() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = ProjectId::new("demo").expect("valid");
        {
            let store = Store::open(dir.path()).expect("open");
            store.append(&p, &record(1)).expect("append");
            store.append(&p, &record(2)).expect("append");
        }
        let path = dir.path().join("demo").join(LOG_FILE);
        let len = std::fs::metadata(&path).expect("meta").len();
        let f = OpenOptions::new().write(true).open(&path).expect("open");
        f.set_len(len - 3).expect("tear");
        let store = Store::open(dir.path()).expect("open");
        assert_eq!(store.read(&p).expect("read"), vec![record(1)]);
        store.append(&p, &record(3)).expect("append");
        assert_eq!(store.read(&p).expect("read"), vec![record(1), record(3)]);
    }

    #[test]
    fn corrupt_bytes_end_the_log() {
        let mut bytes = Vec::new();
        record::encode(&message::encode(&record(1)), &mut bytes);
        let good = bytes.len();
        bytes.extend_from_slice(&bytes.clone());
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert_eq!(scan(&bytes), (vec![record(1)], good));
        assert_eq!(scan(&[0xff; 8]).1, 0);
    }
}
