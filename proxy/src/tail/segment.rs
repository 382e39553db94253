//! Reading one project's log from a position up to its [`Mark`]: segment
//! by segment, a chunk at a time, over segments retention deleted, and
//! past damage (a record that fails its checksum costs that record: the
//! reader looks for the next intact one, counts and logs what it skipped).

use std::fs::File;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;

use wasmtap_protocol::access_key::ProjectId;
use wasmtap_protocol::record::{self, HEADER, SYNC};

use super::{Entry, Position, Skipped, TailError};
use crate::store::{MAX_RECORD, Mark, format, segment_path, segments};

/// Bytes read from a segment at a time (a longer record is read whole).
const CHUNK: u64 = 1 << 20;
/// Most bytes searched for the next intact record after damage at once.
const RESYNC_WINDOW: u64 = MAX_RECORD as u64 + HEADER as u64;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TailError + '_ {
    move |e| TailError::Io { path: path.to_owned(), message: e.to_string() }
}

fn read_at(file: &File, path: &Path, offset: u64, len: u64) -> Result<Vec<u8>, TailError> {
    let mut buf = vec![0; usize::try_from(len).unwrap_or(usize::MAX)];
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(path)(e)),
        }
    }
    buf.truncate(filled);
    Ok(buf)
}

/// The first segment of `dir` after `id`, if there is one up to `last`.
fn next_segment(dir: &Path, id: u64, last: u64) -> Result<Option<u64>, TailError> {
    let ids = segments(dir)
        .map_err(|e| TailError::Io { path: dir.to_owned(), message: e.to_string() })?;
    Ok(ids.into_iter().map(|(i, _)| i).find(|&i| i > id && i <= last))
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

/// Reads records of `project` (its log in `dir`) from `pos` until `mark`
/// or until about `budget` bytes of records were read, into `out`;
/// `pos` ends after the last record read or skipped.
pub(super) fn read(
    dir: &Path,
    project: &ProjectId,
    pos: &mut Position,
    mark: &Mark,
    budget: u64,
    out: &mut Vec<Entry>,
    skipped: &mut Skipped,
) -> Result<(), TailError> {
    let mut used = 0u64;
    while used < budget && pos.segment <= mark.segment {
        let path = segment_path(dir, pos.segment);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Deleted by retention before it was read (or never made).
                let Some(next) = next_segment(dir, pos.segment, mark.segment)? else {
                    return Ok(());
                };
                if pos.segment > 0 || pos.offset > 0 {
                    skipped.expired_segments += next - pos.segment;
                    tracing::warn!(%project, from = pos.segment, to = next, "segments deleted by retention before a sink read them");
                }
                *pos = Position { segment: next, offset: 0 };
                continue;
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let len = file.metadata().map_err(io(&path))?.len();
        let active = pos.segment == mark.segment;
        let end = if active { mark.offset.min(len) } else { len };
        if pos.offset >= end {
            if active {
                return Ok(());
            }
            let Some(next) = next_segment(dir, pos.segment, mark.segment)? else { return Ok(()) };
            if next > pos.segment + 1 {
                skipped.expired_segments += next - pos.segment - 1;
                tracing::warn!(%project, from = pos.segment + 1, to = next, "segments deleted by retention before a sink read them");
            }
            *pos = Position { segment: next, offset: 0 };
            continue;
        }
        let avail = end - pos.offset;
        let mut bytes = read_at(&file, &path, pos.offset, avail.min(CHUNK))?;
        if let Some(h) = bytes.first_chunk::<4>() {
            let whole = HEADER as u64 + u64::from(u32::from_le_bytes(*h));
            if whole > bytes.len() as u64 && whole <= avail && whole <= RESYNC_WINDOW {
                bytes = read_at(&file, &path, pos.offset, whole)?;
            }
        }
        // The scanner skips damage between intact records itself.
        let mut records = record::scan(&bytes, MAX_RECORD);
        while let Some((at, payload)) = records.next() {
            let start = Position { segment: pos.segment, offset: pos.offset + at as u64 };
            let size = (records.valid_len() - at) as u64;
            let end = Position { segment: pos.segment, offset: start.offset + size };
            used += size;
            match format::decode(payload) {
                Ok(r) => {
                    out.push(Entry { project: project.clone(), start, end, record: Arc::new(r) })
                }
                Err(e) => {
                    skipped.unreadable_records += 1;
                    tracing::error!(%project, segment = start.segment, offset = start.offset, error = %e, "a stored record cannot be read; the sinks skip it");
                }
            }
        }
        for d in records.damaged() {
            skipped.corrupt_bytes += d.len as u64;
            tracing::warn!(%project, segment = pos.segment, offset = pos.offset + d.offset as u64, bytes = d.len, "damaged records in the store skipped by a sink");
        }
        let valid = records.valid_len() as u64;
        pos.offset += valid;
        if valid > 0 {
            continue;
        }
        // No intact record here. On a last segment the writer has not
        // opened yet, that is a torn tail it will cut: wait for it.
        if active && !mark.verified {
            return Ok(());
        }
        let window = read_at(&file, &path, pos.offset, avail.min(RESYNC_WINDOW))?;
        let skip = resync(&window).unwrap_or(window.len()).max(1) as u64;
        skipped.corrupt_bytes += skip;
        tracing::warn!(%project, segment = pos.segment, offset = pos.offset, bytes = skip, "damaged records in the store skipped by a sink");
        pos.offset += skip;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
