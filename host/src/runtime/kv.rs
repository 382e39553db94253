//! A collector's persisted key-value state: small, bounded, and written
//! atomically so that a crash leaves either the old or the new state.
//!
//! File layout: `b"WTS1"`, CRC-32 (u32 LE) of the body, then the body: a
//! postcard-encoded map of key to bytes.
//!
//! A write is a temporary file renamed over the state, not synced to disk:
//! the kernel holds it once written, so an agent that crashes or is killed
//! finds its newest state at restart. Only a power loss can cost the latest
//! writes; what survives is then an older state or (on filesystems that do
//! not order the data before the rename) a file whose checksum fails, which
//! loads as an empty state. Rate-keeping collectors write their state every
//! collect, and a sync each time (a disk cache flush) was a quarter of the
//! agent's CPU time with the standard collectors at a 1 s interval.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Largest total state (keys plus values) of one collector.
pub const MAX_STATE_BYTES: usize = 64 << 10;
/// Longest key.
pub const MAX_KEY: usize = 128;
const MAGIC: &[u8; 4] = b"WTS1";

/// One collector's state.
#[derive(Debug, Default)]
pub struct KvState {
    entries: BTreeMap<String, Vec<u8>>,
    bytes: usize,
    dirty: bool,
    path: Option<PathBuf>,
}

impl KvState {
    /// Loads the state kept at `path`; a missing file is an empty state, and a
    /// corrupt one is set aside as `<path>.corrupt` and replaced by an empty state.
    pub fn load(path: PathBuf) -> Self {
        let entries = match std::fs::read(&path) {
            Ok(bytes) => match decode(&bytes) {
                Some(e) => e,
                None => {
                    tracing::warn!(path = %path.display(), "collector state is corrupt; starting empty");
                    let _ = std::fs::rename(&path, path.with_extension("corrupt"));
                    BTreeMap::new()
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => BTreeMap::new(),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot read collector state; starting empty");
                BTreeMap::new()
            }
        };
        let bytes = entries.iter().map(|(k, v)| k.len() + v.len()).sum();
        Self { entries, bytes, dirty: false, path: Some(path) }
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.entries.get(key).cloned()
    }

    /// Sets `key`, refusing to grow past [`MAX_STATE_BYTES`].
    pub fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), String> {
        if key.len() > MAX_KEY {
            return Err(format!("state key longer than {MAX_KEY} bytes"));
        }
        let old = self.entries.get(&key).map_or(0, |v| key.len() + v.len());
        let new_total = self.bytes - old + key.len() + value.len();
        if new_total > MAX_STATE_BYTES {
            return Err(format!(
                "state would grow to {new_total} bytes; the limit is {MAX_STATE_BYTES}"
            ));
        }
        self.bytes = new_total;
        self.entries.insert(key, value);
        self.dirty = true;
        Ok(())
    }

    /// Removes `key`.
    pub fn remove(&mut self, key: &str) {
        if let Some(v) = self.entries.remove(key) {
            self.bytes -= key.len() + v.len();
            self.dirty = true;
        }
    }

    /// Bytes in use.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether [`KvState::persist`] has anything to write.
    pub fn needs_persist(&self) -> bool {
        self.dirty && self.path.is_some()
    }

    /// Writes the state if it changed: a temporary file, renamed over the
    /// state (see the module documentation on syncing).
    pub fn persist(&mut self) -> std::io::Result<()> {
        let Some(path) = self.path.as_ref().filter(|_| self.dirty) else {
            return Ok(());
        };
        let body = postcard::to_stdvec(&self.entries).map_err(std::io::Error::other)?;
        let mut file = Vec::with_capacity(MAGIC.len() + 4 + body.len());
        file.extend_from_slice(MAGIC);
        file.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        file.extend_from_slice(&body);
        let tmp = path.with_extension("tmp");
        match (std::fs::write(&tmp, &file), path.parent()) {
            (Ok(()), _) => {}
            // The first write makes the directory (or remakes a removed one).
            (Err(e), Some(dir)) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(dir)?;
                std::fs::write(&tmp, &file)?;
            }
            (Err(e), _) => return Err(e),
        }
        std::fs::rename(&tmp, path)?;
        self.dirty = false;
        Ok(())
    }

    /// Where the state is kept, if anywhere.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }
}

fn decode(bytes: &[u8]) -> Option<BTreeMap<String, Vec<u8>>> {
    let body = bytes.strip_prefix(MAGIC)?;
    let (crc, body) = body.split_first_chunk::<4>()?;
    if crc32fast::hash(body) != u32::from_le_bytes(*crc) || body.len() > 2 * MAX_STATE_BYTES {
        return None;
    }
    postcard::from_bytes(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn survives_a_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("cpu.state");
        let mut s = KvState::load(path.clone());
        s.set("prev".into(), vec![1, 2, 3]).expect("fits");
        s.persist().expect("persist");
        let s = KvState::load(path);
        assert_eq!(s.get("prev"), Some(vec![1, 2, 3]));
        assert_eq!(s.bytes(), 7);
    }

    #[test]
    fn the_first_write_makes_the_directory_and_a_removed_one_is_remade() {
        let dir = tempfile::tempdir().expect("tempdir");
        let states = dir.path().join("state");
        let path = states.join("cpu.state");
        let mut s = KvState::load(path.clone());
        s.set("prev".into(), vec![1]).expect("fits");
        s.persist().expect("first write");
        std::fs::remove_dir_all(&states).expect("remove");
        s.set("prev".into(), vec![2]).expect("fits");
        s.persist().expect("write after the directory was removed");
        assert_eq!(KvState::load(path).get("prev"), Some(vec![2]));
        assert!(!states.join("cpu.tmp").exists(), "the temporary file was renamed");
    }

    #[test]
    fn size_cap_is_enforced_and_nothing_is_stored_over_it() {
        let mut s = KvState::default();
        s.set("a".into(), vec![0; MAX_STATE_BYTES - 1]).expect("fits exactly");
        assert!(s.set("b".into(), vec![0; 1]).is_err());
        assert_eq!(s.get("b"), None);
        // Replacing a value counts only the difference.
        s.set("a".into(), vec![0; 10]).expect("shrinks");
        s.set("b".into(), vec![0; 100]).expect("fits now");
        assert!(s.set("k".repeat(MAX_KEY + 1), vec![]).is_err());
        s.remove("a");
        assert_eq!(s.bytes(), 101);
    }

    #[test]
    fn corrupt_state_is_set_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("x.state");
        let mut s = KvState::load(path.clone());
        s.set("k".into(), vec![9]).expect("fits");
        s.persist().expect("persist");
        let mut bytes = std::fs::read(&path).expect("read");
        let last = bytes.len() - 1;
        bytes[last] ^= 0xff;
        std::fs::write(&path, bytes).expect("write");
        let s = KvState::load(path.clone());
        assert_eq!(s.get("k"), None);
        assert!(path.with_extension("corrupt").exists());
    }
}
