//! Compressing a closed segment: its row file `NNN.seg` is read record by
//! record (damage passed over and counted), turned into a block
//! (`block::build`), written with its index through temporary files
//! that are synced and renamed, and only then is the row file removed.
//! A crash at any point leaves either the row file (compressed again at
//! the next start) or a complete block (the row file, if still there, is
//! removed then).

use std::path::Path;

use super::block::Builder;
use super::blocks;
use super::catalog::row_path;
use super::rows::{Item, RowFile};
use super::{StoreError, io_err};

/// What compressing a segment came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compacted {
    /// Written: bytes of the row file and of the block, damaged bytes passed over.
    Done {
        /// The row file's length.
        rows: u64,
        /// The block's length.
        block: u64,
        /// Damaged bytes of the row file that could not be carried over.
        damaged: u64,
    },
    /// The row file is gone (deleted by retention meanwhile).
    Gone,
}

/// Compresses segment `id` of the project directory `dir`; see the module docs.
pub fn compact(dir: &Path, id: u64) -> Result<Compacted, StoreError> {
    let path = row_path(dir, id);
    let Some(file) = RowFile::open(&path).map_err(io_err(&path))? else {
        return Ok(Compacted::Gone);
    };
    let len = file.size().map_err(io_err(&path))?;
    let mut builder = Builder::new(id);
    let mut failed = None;
    let mut damaged = 0;
    let mut at = 0;
    while at < len && failed.is_none() {
        at = file
            .window(at, len, true, |item| match item {
                Item::Record { at, payload } => {
                    if let Err(e) = builder.add(at.clone(), payload) {
                        failed.get_or_insert(format!("record at byte {}: {e}", at.start));
                    }
                }
                Item::Damage { offset, len } => {
                    damaged += len;
                    builder.damaged(len);
                    tracing::error!(segment = %path.display(), offset, bytes = len, "damaged stored records are not carried into the compressed segment");
                }
            })
            .map_err(io_err(&path))?;
    }
    if let Some(message) = failed {
        return Err(StoreError::Unreadable { path, message });
    }
    let (block, index) = builder.finish(len);
    blocks::write(dir, id, &block, &index)?;
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_err(&path)(e)),
    }
    blocks::sync_dir(dir)?;
    Ok(Compacted::Done { rows: len, block: block.len() as u64, damaged })
}
