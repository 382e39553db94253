//! Compressed segments on disk: writing a block and its index durably,
//! reading an index (rebuilding it when it is missing, damaged or stale),
//! and reading single records of a block for queries.

use std::fs::File;
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::path::Path;

use wasmtap_protocol::record::{self, OVERHEAD};

use super::block::index::{All, ChunkRef, Select, TableRef};
use super::block::table::{self, BatchMeta};
use super::block::{BlockError, Index};
use super::catalog::{block_path, index_path};
use super::{MAX_RECORD, StoreError, io_err};

/// Syncs the directory `dir` (a rename or removal in it is then durable).
pub fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Writes `bytes` to `path` through a temporary file, synced, then renamed.
fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or_default()
    ));
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

/// Writes segment `id`'s block and its index in `dir`, durably.
pub fn write(dir: &Path, id: u64, block: &[u8], index: &Index) -> Result<(), StoreError> {
    write_atomic(&block_path(dir, id), block)?;
    write_atomic(&index_path(dir, id), &index.to_bytes())?;
    sync_dir(dir)
}

fn damaged(path: &Path, e: BlockError) -> StoreError {
    StoreError::Unreadable { path: path.to_owned(), message: e.to_string() }
}

/// Segment `id`'s index, read from its file or, when that is missing,
/// damaged or of another block, rebuilt from the block (and written again,
/// if the directory allows). `None` if the block is gone.
pub fn index(dir: &Path, id: u64) -> Result<Option<Index>, StoreError> {
    index_where(dir, id, &All)
}

/// [`index`] with only the chunk entries `select` wants.
pub fn index_where(dir: &Path, id: u64, select: &dyn Select) -> Result<Option<Index>, StoreError> {
    let path = block_path(dir, id);
    let len = match std::fs::metadata(&path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let idx = index_path(dir, id);
    if let Ok(bytes) = std::fs::read(&idx)
        && let Ok(index) = Index::from_bytes_where(&bytes, select)
        && index.block_len == len
    {
        return Ok(Some(index));
    }
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err(&path)(e)),
    };
    let (index, damage) = Index::from_block(id, &bytes).map_err(|e| damaged(&path, e))?;
    for d in &damage {
        tracing::error!(block = %path.display(), offset = d.offset, bytes = d.len, "damaged records in a compressed segment; the rest of it is kept");
    }
    let bytes = index.to_bytes();
    match write_atomic(&idx, &bytes) {
        Ok(()) => {
            tracing::warn!(index = %idx.display(), "index missing or damaged: rebuilt from its block")
        }
        Err(e) => {
            tracing::warn!(index = %idx.display(), error = %e, "index rebuilt in memory; it could not be written")
        }
    }
    // Selected as a read of the file would have been.
    Index::from_bytes_where(&bytes, select).map(Some).map_err(|e| damaged(&idx, e))
}

/// The payload of the record at `offset` (`len` bytes, header included)
/// of the open block `file`; `None` if it fails its checksum.
pub fn record_at(file: &File, offset: u64, len: u64) -> std::io::Result<Option<Vec<u8>>> {
    let len = usize::try_from(len).unwrap_or(usize::MAX).min(MAX_RECORD as usize + OVERHEAD);
    let mut bytes = vec![0; len];
    file.read_exact_at(&mut bytes, offset).or_else(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => Ok(()),
        _ => Err(e),
    })?;
    Ok(record::intact_at(&bytes, 0, MAX_RECORD)
        .filter(|(_, end)| *end == bytes.len())
        .map(|(p, _)| p.to_vec()))
}

/// The chunk `c` of the open block `file`: its payload, if intact.
pub fn chunk(file: &File, c: &ChunkRef) -> std::io::Result<Option<Vec<u8>>> {
    record_at(file, c.offset, c.len)
}

/// The batch table of the open block `file`, by batch number (`None`
/// for batches whose part is damaged).
pub fn batch_table(file: &File, tables: &[TableRef]) -> std::io::Result<Vec<Option<BatchMeta>>> {
    let mut out: Vec<Option<BatchMeta>> = Vec::new();
    for t in tables {
        let Some(payload) = record_at(file, t.offset, t.len)? else { continue };
        let Ok((first, metas)) = table::decode(&payload) else { continue };
        for (i, m) in metas.into_iter().enumerate() {
            let Some(at) = usize::try_from(first).ok().and_then(|f| f.checked_add(i)) else {
                continue;
            };
            if at >= 1 << 26 {
                continue;
            }
            if out.len() <= at {
                out.resize(at + 1, None);
            }
            out[at] = Some(m);
        }
    }
    Ok(out)
}
