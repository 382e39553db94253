//! Reading a segment of row records (`NNN.seg`) from any record boundary,
//! a window at a time, so that no reader holds more than about
//! [`WINDOW`] bytes of it: the sinks, queries and the compactor all read
//! through it. Damage between records is reported and passed over; after
//! damage with no intact record in the window, the next intact record is
//! looked for by its sync marker (or, where the caller cannot yet tell
//! damage from a torn tail, reading stops there).

use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use wasmtap_protocol::record::{self, HEADER, SYNC};

use super::MAX_RECORD;

/// Bytes read at a time (a longer record is read whole).
pub const WINDOW: u64 = 1 << 20;
/// Most bytes searched for the next intact record after damage at once.
const RESYNC_WINDOW: u64 = MAX_RECORD as u64 + HEADER as u64;

/// What a window holds, in order.
#[derive(Debug)]
pub enum Item<'a> {
    /// An intact record: where it is and its payload.
    Record {
        /// Its bytes in the file, header included.
        at: Range<u64>,
        /// Its payload.
        payload: &'a [u8],
    },
    /// Damaged bytes passed over.
    Damage {
        /// Where they start.
        offset: u64,
        /// How many.
        len: u64,
    },
}

/// An open row segment.
#[derive(Debug)]
pub struct RowFile {
    file: File,
    path: PathBuf,
}

/// Offset in `bytes` (after the first byte) of the first intact record
/// with a sync marker, if any. The checksum is only computed where the
/// marker is.
fn resync(bytes: &[u8]) -> Option<usize> {
    (1..bytes.len()).find(|&at| {
        let rest = &bytes[at..];
        rest.get(HEADER..HEADER + SYNC.len()) == Some(&SYNC[..])
            && record::intact_at(rest, 0, MAX_RECORD).is_some()
    })
}

impl RowFile {
    /// Opens `path`; `None` if it does not exist (deleted by retention, or
    /// compressed, since it was listed).
    pub fn open(path: &Path) -> std::io::Result<Option<Self>> {
        match File::open(path) {
            Ok(file) => Ok(Some(Self { file, path: path.to_owned() })),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its length now.
    pub fn size(&self) -> std::io::Result<u64> {
        Ok(self.file.metadata()?.len())
    }

    /// Up to `len` bytes from `offset`.
    pub fn read_at(&self, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
        let mut buf = vec![0; usize::try_from(len).unwrap_or(usize::MAX)];
        let mut filled = 0;
        while filled < buf.len() {
            match self.file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        Ok(buf)
    }

    /// Reads one window from `at` (a record boundary) up to `end`, handing
    /// each intact record and damaged span to `visit`; returns where the
    /// next window starts. When no intact record starts in the window,
    /// the damage is passed over up to the next intact record (or the
    /// window's end) if `resync`, and otherwise nothing moves: the bytes
    /// there may be a torn tail its writer will cut.
    pub fn window(
        &self,
        at: u64,
        end: u64,
        resync_damage: bool,
        mut visit: impl FnMut(Item<'_>),
    ) -> std::io::Result<u64> {
        if at >= end {
            return Ok(at);
        }
        let avail = end - at;
        let mut bytes = self.read_at(at, avail.min(WINDOW))?;
        if let Some(h) = bytes.first_chunk::<4>() {
            let whole = HEADER as u64 + u64::from(u32::from_le_bytes(*h));
            if whole > bytes.len() as u64 && whole <= avail && whole <= RESYNC_WINDOW {
                bytes = self.read_at(at, whole)?;
            }
        }
        // The scanner skips damage between intact records itself.
        let mut records = record::scan(&bytes, MAX_RECORD);
        let mut damaged = 0;
        while let Some((offset, payload)) = records.next() {
            // Damage the scanner passed over before this record.
            for d in &records.damaged()[damaged..] {
                visit(Item::Damage { offset: at + d.offset as u64, len: d.len as u64 });
            }
            damaged = records.damaged().len();
            let start = at + offset as u64;
            visit(Item::Record { at: start..at + records.valid_len() as u64, payload });
        }
        let valid = records.valid_len() as u64;
        if valid > 0 || !resync_damage {
            return Ok(at + valid);
        }
        let window = self.read_at(at, avail.min(RESYNC_WINDOW))?;
        let skip = resync(&window).unwrap_or(window.len()).max(1) as u64;
        visit(Item::Damage { offset: at, len: skip });
        Ok(at + skip)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::format;

    #[test]
    fn resync_finds_the_next_intact_record() {
        let mut bytes = Vec::new();
        record::encode(&[format::HEAD[0], format::HEAD[1], 1, 2, 3], &mut bytes);
        let first = bytes.len();
        record::encode(&[format::HEAD[0], format::HEAD[1], 4], &mut bytes);
        bytes[3] ^= 0x40; // the first record's length is now wrong
        assert_eq!(resync(&bytes), Some(first));
        assert_eq!(resync(&bytes[..first]), None);
        assert_eq!(resync(&[]), None);
    }

    #[test]
    fn windows_report_records_and_damage_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("1.seg");
        let mut bytes = Vec::new();
        let mut starts = Vec::new();
        for i in 0..5u8 {
            starts.push(bytes.len() as u64);
            record::encode(&[format::HEAD[0], format::HEAD[1], i], &mut bytes);
        }
        let len = bytes.len() as u64;
        bytes[starts[2] as usize + 3] ^= 0x40;
        std::fs::write(&path, &bytes).expect("write");
        let file = RowFile::open(&path).expect("open").expect("exists");
        let mut seen = Vec::new();
        let next = file
            .window(0, len, true, |item| {
                seen.push(match item {
                    Item::Record { at, payload } => {
                        format!("{}..{} {}", at.start, at.end, payload[2])
                    }
                    Item::Damage { offset, len } => format!("damage {offset}+{len}"),
                })
            })
            .expect("read");
        assert_eq!(next, len);
        let one = starts[1];
        assert_eq!(
            seen,
            [
                format!("0..{one} 0"),
                format!("{one}..{} 1", 2 * one),
                format!("damage {}+{one}", 2 * one),
                format!("{}..{} 3", 3 * one, 4 * one),
                format!("{}..{len} 4", 4 * one),
            ]
        );
        // A torn last record: nothing moves unless damage may be passed over.
        let torn = &bytes[..(len - 2) as usize];
        std::fs::write(&path, torn).expect("write");
        let file = RowFile::open(&path).expect("open").expect("exists");
        let at = starts[4];
        assert_eq!(file.window(at, len - 2, false, |_| {}).expect("read"), at);
        assert_eq!(file.window(at, len - 2, true, |_| {}).expect("read"), len - 2);
        assert!(RowFile::open(&dir.path().join("2.seg")).expect("fine").is_none());
    }
}
