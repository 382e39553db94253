//! Reading one project's log from a position up to its [`Mark`]: segment
//! by segment, over segments retention deleted, from row files a window
//! at a time and past damage (a record that fails its checksum costs that
//! record: the reader finds the next intact one, counts and logs what it
//! skipped), and from compressed segments, whose batches are rebuilt
//! exactly as they were written (positions stay byte offsets in the row
//! file a block was made from).

use std::path::Path;
use std::sync::Arc;

use wasmtap_protocol::access_key::ProjectId;

use super::{Entry, Position, Skipped, TailError};
use crate::store::block::load::Block;
use crate::store::catalog::{self, block_path, row_path};
use crate::store::rows::{Item, RowFile};
use crate::store::{Mark, format};

/// A compressed segment being read, kept between reads.
#[derive(Debug)]
pub(super) struct OpenBlock {
    segment: u64,
    block: Block,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> TailError + '_ {
    move |e| TailError::Io { path: path.to_owned(), message: e.to_string() }
}

/// The first segment of `dir` after `id`, if there is one up to `last`.
fn next_segment(dir: &Path, id: u64, last: u64) -> Result<Option<u64>, TailError> {
    let ids = catalog::list(dir)
        .map_err(|e| TailError::Io { path: dir.to_owned(), message: e.to_string() })?;
    Ok(ids.into_iter().map(|s| s.id).find(|&i| i > id && i <= last))
}

/// Moves `pos` to the start of the segment after its own, counting the
/// segments between as expired; false if there is none (yet).
fn advance(
    dir: &Path,
    project: &ProjectId,
    pos: &mut Position,
    mark: &Mark,
    skipped: &mut Skipped,
    missing: bool,
) -> Result<bool, TailError> {
    let Some(next) = next_segment(dir, pos.segment, mark.segment)? else { return Ok(false) };
    // A missing segment was deleted before it was read (unless the reader
    // starts from nothing); the ones between it and the next, too.
    let first_gone =
        if missing && (pos.segment > 0 || pos.offset > 0) { pos.segment } else { pos.segment + 1 };
    if next > first_gone {
        skipped.expired_segments += next - first_gone;
        tracing::warn!(%project, from = first_gone, to = next, "segments deleted by retention before a sink read them");
    }
    *pos = Position { segment: next, offset: 0 };
    Ok(true)
}

/// A project's log: its directory, and how far it may be read.
#[derive(Debug, Clone, Copy)]
pub(super) struct Log<'a> {
    pub(super) dir: &'a Path,
    pub(super) project: &'a ProjectId,
    pub(super) mark: &'a Mark,
}

/// Reads records of `log` from `pos` until its mark or until about
/// `budget` bytes of records were read, into `out`; `pos` ends after the
/// last record read or skipped.
pub(super) fn read(
    log: Log<'_>,
    pos: &mut Position,
    budget: u64,
    open: &mut Option<OpenBlock>,
    out: &mut Vec<Entry>,
    skipped: &mut Skipped,
) -> Result<(), TailError> {
    let Log { dir, project, mark } = log;
    let mut used = 0u64;
    while used < budget && pos.segment <= mark.segment {
        if open.as_ref().is_some_and(|b| b.segment != pos.segment) {
            *open = None;
        }
        let path = row_path(dir, pos.segment);
        let rows = match open {
            Some(_) => None,
            None => RowFile::open(&path).map_err(io(&path))?,
        };
        if let Some(file) = rows {
            let len = file.size().map_err(io(&path))?;
            let active = pos.segment == mark.segment;
            let end = if active { mark.offset.min(len) } else { len };
            if pos.offset >= end {
                if active || !advance(dir, project, pos, mark, skipped, false)? {
                    return Ok(());
                }
                continue;
            }
            // On a last segment the writer has not opened yet, damage with
            // no intact record after it is a torn tail it will cut: wait.
            let resync = !active || mark.verified;
            let start = pos.offset;
            let next = file
                .window(start, end, resync, |item| match item {
                    Item::Record { at, payload } => {
                        used += at.end - at.start;
                        let start = Position { segment: pos.segment, offset: at.start };
                        let end = Position { segment: pos.segment, offset: at.end };
                        match format::decode(payload) {
                            Ok(r) => out.push(Entry { project: project.clone(), start, end, record: Arc::new(r) }),
                            Err(e) => {
                                skipped.unreadable_records += 1;
                                tracing::error!(%project, segment = start.segment, offset = start.offset, error = %e, "a stored record cannot be read; the sinks skip it");
                            }
                        }
                    }
                    Item::Damage { offset, len } => {
                        skipped.corrupt_bytes += len;
                        tracing::warn!(%project, segment = pos.segment, offset, bytes = len, "damaged records in the store skipped by a sink");
                    }
                })
                .map_err(io(&path))?;
            if next == start {
                return Ok(());
            }
            pos.offset = next;
            continue;
        }
        if open.is_none() {
            let path = block_path(dir, pos.segment);
            match std::fs::read(&path) {
                Ok(bytes) => match Block::load(pos.segment, bytes) {
                    Ok(block) => *open = Some(OpenBlock { segment: pos.segment, block }),
                    Err(e) => {
                        skipped.unreadable_records += 1;
                        tracing::error!(%project, segment = pos.segment, error = %e, "a compressed segment cannot be read; the sinks skip it");
                        if !advance(dir, project, pos, mark, skipped, false)? {
                            return Ok(());
                        }
                        continue;
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    // Neither form: deleted by retention (or never made).
                    if !advance(dir, project, pos, mark, skipped, true)? {
                        return Ok(());
                    }
                    continue;
                }
                Err(e) => return Err(io(&path)(e)),
            }
        }
        let Some(b) = open.as_mut() else { continue };
        read_block(project, pos, &mut b.block, budget, &mut used, out, skipped);
        if used < budget {
            // The block is read to its end.
            *open = None;
            if pos.segment == mark.segment || !advance(dir, project, pos, mark, skipped, false)? {
                return Ok(());
            }
        }
    }
    Ok(())
}

/// Rebuilds the batches of `block` from `pos` on, until `budget` is used.
fn read_block(
    project: &ProjectId,
    pos: &mut Position,
    block: &mut Block,
    budget: u64,
    used: &mut u64,
    out: &mut Vec<Entry>,
    skipped: &mut Skipped,
) {
    let mut k = block.batch_at(pos.offset);
    while *used < budget {
        if k >= block.batches() {
            let end = block.header().row_len.max(pos.offset);
            if end > pos.offset {
                skipped.corrupt_bytes += end - pos.offset;
            }
            pos.offset = end;
            return;
        }
        let rebuilt = match block.rebuild(k) {
            Ok(Some(r)) => r,
            Ok(None) => {
                k += 1;
                continue;
            }
            Err(e) => {
                skipped.unreadable_records += 1;
                tracing::error!(%project, segment = pos.segment, batch = k, error = %e, "a stored batch cannot be rebuilt; the sinks skip it");
                k += 1;
                continue;
            }
        };
        k += 1;
        if rebuilt.rows.start > pos.offset {
            let gap = rebuilt.rows.start - pos.offset;
            skipped.corrupt_bytes += gap;
            tracing::warn!(%project, segment = pos.segment, offset = pos.offset, bytes = gap, "damaged records in the store skipped by a sink");
        }
        if rebuilt.lost > 0 {
            skipped.unreadable_records += 1;
            tracing::warn!(%project, segment = pos.segment, offset = rebuilt.rows.start, samples = rebuilt.lost, "samples of a stored batch were in damaged records; the sinks get the rest of it");
        }
        let start = Position { segment: pos.segment, offset: rebuilt.rows.start };
        let end = Position { segment: pos.segment, offset: rebuilt.rows.end };
        *used += rebuilt.rows.end - rebuilt.rows.start;
        out.push(Entry { project: project.clone(), start, end, record: Arc::new(rebuilt.record) });
        pos.offset = rebuilt.rows.end;
    }
}
