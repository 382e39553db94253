//! A durable sink's position file, `<data_dir>/_sinks/<name>.pos`.
//!
//! Two fixed-size slots, written in turn, each
//! `"wtp1" ‖ seq (u64 LE) ‖ length (u32 LE) ‖ CRC-32 (u32 LE) ‖ JSON`;
//! the intact slot with the higher `seq` holds the positions. A save
//! overwrites the older slot in place and syncs it: a torn write leaves the
//! other slot intact, and since the file's blocks already exist, saving
//! still works on a full disk. (`_sinks` is never a project: project names
//! have no `_`.)

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{Position, TailError};

/// The directory under the data dir holding position files.
pub const DIR: &str = "_sinks";
const MAGIC: &[u8; 4] = b"wtp1";
const HEADER: usize = 20;
const MIN_SLOT: usize = 4096;

/// A position and how many items of the record there were already delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct At {
    /// Where the next record to deliver starts.
    #[serde(flatten)]
    pub pos: Position,
    /// Items of that record already delivered.
    #[serde(default)]
    pub skip: u64,
}

/// What a position file holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Saved {
    /// The sink, for people reading the file.
    pub sink: String,
    /// Per project: delivered up to here.
    pub acked: BTreeMap<String, At>,
    /// A batch that may have reached the backend (it was being sent when
    /// the proxy stopped) ends here; it is resent alone first.
    #[serde(default)]
    pub sending: Option<BTreeMap<String, At>>,
}

/// An open position file.
#[derive(Debug)]
pub struct PositionFile {
    path: PathBuf,
    file: File,
    slot: usize,
    seq: u64,
}

fn err(path: &Path) -> impl FnOnce(std::io::Error) -> TailError + '_ {
    move |e| TailError::Positions { path: path.to_owned(), message: e.to_string() }
}

fn encode(seq: u64, saved: &Saved) -> Vec<u8> {
    let json = serde_json::to_vec(saved).unwrap_or_default();
    let mut out = Vec::with_capacity(HEADER + json.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&u32::try_from(json.len()).unwrap_or(u32::MAX).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
    out.extend_from_slice(&json);
    out
}

fn decode(slot: &[u8]) -> Option<(u64, Saved)> {
    let (head, body) = slot.split_at_checked(HEADER)?;
    if &head[..4] != MAGIC {
        return None;
    }
    let seq = u64::from_le_bytes(head[4..12].try_into().ok()?);
    let len = u32::from_le_bytes(head[12..16].try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(head[16..20].try_into().ok()?);
    let json = body.get(..len).filter(|j| crc32fast::hash(j) == crc)?;
    Some((seq, serde_json::from_slice(json).ok()?))
}

fn sync_dir(dir: &Path) -> Result<(), TailError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(err(dir))
}

impl PositionFile {
    /// Opens `<data_dir>/_sinks/<name>.pos`, or creates it holding
    /// `initial()` when there is none; returns it and what it holds.
    pub fn open(
        data_dir: &Path,
        name: &str,
        initial: impl FnOnce() -> Result<Saved, TailError>,
    ) -> Result<(Self, Saved), TailError> {
        let dir = data_dir.join(DIR);
        let path = dir.join(format!("{name}.pos"));
        match std::fs::read(&path) {
            Ok(bytes) => {
                let slot = bytes.len() / 2;
                let best = [&bytes[..slot], &bytes[slot..]]
                    .into_iter()
                    .filter_map(decode)
                    .max_by_key(|(seq, _)| *seq);
                let Some((seq, saved)) = best.filter(|_| bytes.len() % 2 == 0) else {
                    let message = "no intact copy of the positions; move the file away to have \
                                   the sink start over from the end of the store"
                        .to_owned();
                    return Err(TailError::Positions { path, message });
                };
                let file = OpenOptions::new().write(true).open(&path).map_err(err(&path))?;
                Ok((Self { path, file, slot, seq }, saved))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                std::fs::create_dir_all(&dir).map_err(err(&dir))?;
                if let Some(parent) = dir.parent() {
                    sync_dir(parent)?;
                }
                let saved = initial()?;
                let file = Self::create(&path, &saved)?;
                Ok((file, saved))
            }
            Err(e) => Err(err(&path)(e)),
        }
    }

    /// Writes a new file with slots large enough for `saved` (twice over),
    /// holding it, in place of `path`.
    fn create(path: &Path, saved: &Saved) -> Result<Self, TailError> {
        let first = encode(0, saved);
        let slot = (first.len() * 2).next_power_of_two().max(MIN_SLOT);
        let mut bytes = vec![0; slot * 2];
        bytes[..first.len()].copy_from_slice(&first);
        let tmp = path.with_extension("pos.tmp");
        let mut f = File::create(&tmp).map_err(err(&tmp))?;
        f.write_all(&bytes).and_then(|()| f.sync_all()).map_err(err(&tmp))?;
        std::fs::rename(&tmp, path).map_err(err(path))?;
        if let Some(dir) = path.parent() {
            sync_dir(dir)?;
        }
        Ok(Self { path: path.to_owned(), file: f, slot, seq: 0 })
    }

    /// Saves `saved` durably.
    pub fn save(&mut self, saved: &Saved) -> Result<(), TailError> {
        let seq = self.seq + 1;
        let bytes = encode(seq, saved);
        if bytes.len() > self.slot {
            *self = Self::create(&self.path, saved)?;
            return Ok(());
        }
        let at = (seq % 2) as usize * self.slot;
        self.file.write_all_at(&bytes, at as u64).map_err(err(&self.path))?;
        self.file.sync_data().map_err(err(&self.path))?;
        self.seq = seq;
        Ok(())
    }

    /// The file's path.
    #[cfg(test)]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(offset: u64) -> Saved {
        let at = At { pos: Position { segment: 1, offset }, skip: 0 };
        Saved { sink: "test".into(), acked: BTreeMap::from([("shop".into(), at)]), sending: None }
    }

    #[test]
    fn creates_then_saves_in_turn_and_reads_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut f, first) = PositionFile::open(dir.path(), "s", || Ok(saved(1))).expect("create");
        assert_eq!(first, saved(1));
        for offset in 2..=5 {
            f.save(&saved(offset)).expect("save");
        }
        drop(f);
        let (_, back) = PositionFile::open(dir.path(), "s", || panic!("exists")).expect("open");
        assert_eq!(back, saved(5));
        let len = std::fs::metadata(dir.path().join("_sinks/s.pos")).expect("file").len();
        assert_eq!(len, 2 * MIN_SLOT as u64, "saved in place");
    }

    #[test]
    fn a_torn_slot_falls_back_to_the_other_and_a_damaged_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut f, _) = PositionFile::open(dir.path(), "s", || Ok(saved(1))).expect("create");
        f.save(&saved(2)).expect("save");
        let path = f.path().to_owned();
        drop(f);
        let mut bytes = std::fs::read(&path).expect("read");
        bytes[MIN_SLOT + HEADER + 3] ^= 1; // the newest copy (slot 1)
        std::fs::write(&path, &bytes).expect("write");
        let (mut f, back) = PositionFile::open(dir.path(), "s", || panic!("exists")).expect("open");
        assert_eq!(back, saved(1));
        f.save(&saved(3)).expect("save over the torn copy");
        drop(f);
        assert_eq!(PositionFile::open(dir.path(), "s", || panic!()).expect("open").1, saved(3));
        std::fs::write(&path, b"junk").expect("write");
        let e = PositionFile::open(dir.path(), "s", || panic!()).expect_err("damaged");
        assert!(e.to_string().contains("no intact copy"), "{e}");
    }

    #[test]
    fn positions_that_outgrow_a_slot_get_a_bigger_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (mut f, _) = PositionFile::open(dir.path(), "s", || Ok(saved(1))).expect("create");
        let mut big = saved(1);
        for i in 0..500 {
            big.acked.insert(format!("project-{i}"), At::default());
        }
        f.save(&big).expect("save");
        f.save(&big).expect("save again");
        drop(f);
        assert_eq!(PositionFile::open(dir.path(), "s", || panic!()).expect("open").1, big);
    }
}
