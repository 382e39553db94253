//! The files of a project's store and what each segment is stored as.
//!
//! `NNN.seg` holds row records (the newest segment always, being written;
//! older ones until the compactor has replaced them); `NNN.blk` and its
//! index `NNN.idx` hold a compressed segment. Both forms of a segment
//! may exist for a moment (the compactor removes the row file once the
//! block is durable), and either may vanish between listing and opening
//! (retention, compaction): readers look again.

use std::path::{Path, PathBuf};

use super::{StoreError, io_err};

/// How a segment is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    /// Row records, `NNN.seg`.
    Rows,
    /// A compressed block, `NNN.blk` (with `NNN.idx`).
    Block,
}

/// A segment present in a project's directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// Its number.
    pub id: u64,
    /// Whether it has its row file.
    pub rows: bool,
    /// Whether it has its block.
    pub block: bool,
}

impl Segment {
    /// The form a reader of values prefers: the block when there is one.
    pub fn form(&self) -> Form {
        if self.block { Form::Block } else { Form::Rows }
    }
}

/// The row file of segment `id` in `dir`.
pub fn row_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.seg"))
}

/// The block of segment `id` in `dir`.
pub fn block_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.blk"))
}

/// The index of segment `id`'s block in `dir`.
pub fn index_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{id:020}.idx"))
}

/// The segment number and extension of a store file name.
fn parse(name: &str) -> Option<(u64, &str)> {
    let (stem, ext) = name.split_once('.')?;
    if stem.len() != 20 {
        return None;
    }
    Some((stem.parse().ok()?, ext))
}

/// The segments in `dir`, in order (none if it does not exist).
pub fn list(dir: &Path) -> Result<Vec<Segment>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut found = std::collections::BTreeMap::<u64, Segment>::new();
    for entry in entries {
        let name = entry.map_err(io_err(dir))?.file_name();
        let Some((id, ext)) = name.to_str().and_then(parse) else { continue };
        let s = found.entry(id).or_insert(Segment { id, rows: false, block: false });
        match ext {
            "seg" => s.rows = true,
            "blk" => s.block = true,
            _ => {}
        }
    }
    Ok(found.into_values().filter(|s| s.rows || s.block).collect())
}

/// Leftovers of writes a crash interrupted (`*.tmp`) and indexes whose
/// block is gone, in `dir`.
pub fn leftovers(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_err(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_err(dir))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let orphan =
            parse(name).is_some_and(|(id, ext)| ext == "idx" && !block_path(dir, id).exists());
        if (parse(name).is_some() && name.ends_with(".tmp")) || orphan {
            out.push(path);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_forms_are_listed_once_per_segment() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        for p in
            [row_path(d, 1), block_path(d, 1), index_path(d, 1), block_path(d, 2), row_path(d, 3)]
        {
            std::fs::write(p, b"").expect("write");
        }
        std::fs::write(d.join("checkpoint"), b"").expect("write");
        std::fs::write(index_path(d, 7), b"").expect("write");
        std::fs::write(d.join(format!("{:020}.blk.tmp", 4)), b"").expect("write");
        let segs = list(d).expect("list");
        let got: Vec<(u64, Form, bool)> = segs.iter().map(|s| (s.id, s.form(), s.rows)).collect();
        assert_eq!(got, [(1, Form::Block, true), (2, Form::Block, false), (3, Form::Rows, true)]);
        let mut left = leftovers(d).expect("list");
        left.sort();
        assert_eq!(left, [d.join(format!("{:020}.blk.tmp", 4)), index_path(d, 7)]);
        assert!(list(&d.join("missing")).expect("none").is_empty());
    }
}
