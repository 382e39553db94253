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
//! The payload is a postcard-encoded [`StoredBatch`]. On open, records are
//! checked in order; a torn or corrupt tail (a crash mid-write) is cut off.
//! Records are fsynced before [`Store::append`] returns.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use wasmtap_protocol::access_key::ProjectId;
use wasmtap_protocol::message::{self, Batch};

/// Largest record accepted when reading back (a corrupt length beyond it ends the log).
pub const MAX_RECORD: u32 = 64 << 20;
const RECORD_HEADER: usize = 8;
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

/// The store: open log files by project.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    logs: Mutex<HashMap<ProjectId, File>>,
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

    /// Appends `record` to `project`'s log and syncs it to disk.
    pub fn append(&self, project: &ProjectId, record: &StoredBatch) -> Result<(), StoreError> {
        let path = self.log_path(project);
        let mut logs = self.logs.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let file = match logs.entry(project.clone()) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let dir = self.dir.join(project.as_str());
                std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
                recover(&path)?;
                let f = OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(&path)
                    .map_err(io_err(&path))?;
                v.insert(f)
            }
        };
        let payload = message::encode(record);
        let mut buf = Vec::with_capacity(RECORD_HEADER + payload.len());
        let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
        buf.extend_from_slice(&len.to_le_bytes());
        buf.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        buf.extend_from_slice(&payload);
        file.write_all(&buf).map_err(io_err(&path))?;
        file.sync_data().map_err(io_err(&path))
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
    let mut pos = 0;
    while let Some(header) = bytes.get(pos..pos + RECORD_HEADER) {
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        if len > MAX_RECORD {
            break;
        }
        let start = pos + RECORD_HEADER;
        let Some(payload) = bytes.get(start..start + len as usize) else {
            break;
        };
        if crc32fast::hash(payload) != crc {
            break;
        }
        match message::decode::<StoredBatch>(payload) {
            Ok(r) => out.push(r),
            Err(_) => break,
        }
        pos = start + len as usize;
    }
    (out, pos)
}

/// Cuts a torn tail off the log at `path`, if any.
fn recover(path: &Path) -> Result<(), StoreError> {
    let mut file = match OpenOptions::new().read(true).write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err(path)(e)),
    };
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(io_err(path))?;
    let (_, valid) = scan(&bytes);
    if valid < bytes.len() {
        tracing::warn!(path = %path.display(), cut = bytes.len() - valid, "truncating a torn or corrupt tail");
        file.set_len(valid as u64).map_err(io_err(path))?;
        file.seek(SeekFrom::End(0)).map_err(io_err(path))?;
        file.sync_all().map_err(io_err(path))?;
    }
    Ok(())
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
        let payload = message::encode(&record(1));
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(&payload).to_le_bytes());
        bytes.extend_from_slice(&payload);
        let good = bytes.len();
        bytes.extend_from_slice(&bytes.clone());
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        assert_eq!(scan(&bytes), (vec![record(1)], good));
        assert_eq!(scan(&[0xff; 8]).1, 0);
    }
}
