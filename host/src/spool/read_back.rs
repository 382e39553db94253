//! Pending batches read back from their segments when they are due to be
//! sent, and what happens when one cannot be.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;
use std::sync::Arc;

use wasmtap_protocol::message::Batch;
use wasmtap_protocol::record;

use super::{
    MAX_READ_ATTEMPTS, MAX_RECORD, Pending, Record, Spool, SpoolError, decode_record, io_err,
    segment_path,
};

impl Spool {
    /// The pending batch `seq`, from memory or read back from its segment;
    /// `None` if it is no longer pending (acknowledged or dropped). A batch
    /// whose record is damaged, or that failed to be read
    /// [`MAX_READ_ATTEMPTS`] times, is counted as lost
    /// ([`super::SpoolStats::corrupt_batches`]), logged and dropped: `None`. Any
    /// other failure is an error, and the batch stays pending.
    pub fn get(&mut self, seq: u64) -> Result<Option<Arc<Batch>>, SpoolError> {
        let i = self.pending.partition_point(|p| p.seq < seq);
        let Some(p) = self.pending.get_mut(i).filter(|p| p.seq == seq) else {
            return Ok(None);
        };
        if let Some(b) = &p.cached {
            return Ok(Some(b.clone()));
        }
        let e = match read_back(&self.dir, p) {
            Ok(b) => return Ok(Some(Arc::new(b))),
            Err(e) => e,
        };
        p.read_failures = p.read_failures.saturating_add(1);
        let lost = match &e {
            SpoolError::Corrupt { .. } => true,
            SpoolError::Io { source, .. } => {
                matches!(
                    source.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::UnexpectedEof
                ) || p.read_failures >= MAX_READ_ATTEMPTS
            }
        };
        if !lost {
            return Err(e);
        }
        if let Some(p) = self.remove_pending(i) {
            self.stats.corrupt_batches += 1;
            self.stats.corrupt_samples += p.samples as u64;
            tracing::error!(
                seq,
                samples = p.samples,
                error = %e,
                total_corrupt_batches = self.stats.corrupt_batches,
                "spool: a pending batch cannot be read back; counted as lost"
            );
        }
        Ok(None)
    }
}

/// Reads pending batch `p` from its segment.
fn read_back(dir: &Path, p: &Pending) -> Result<Batch, SpoolError> {
    let path = segment_path(dir, p.segment);
    let corrupt = || SpoolError::Corrupt { path: path.clone(), offset: p.offset };
    let mut f = File::open(&path).map_err(io_err(&path))?;
    f.seek(SeekFrom::Start(p.offset)).map_err(io_err(&path))?;
    let mut buf = vec![0u8; p.len];
    f.read_exact(&mut buf).map_err(io_err(&path))?;
    let mut records = record::scan(&buf, MAX_RECORD);
    match records.next().map(|(_, payload)| decode_record(payload)) {
        Some(Some(Record::Batch(b))) if b.seq == p.seq && records.valid_len() == p.len => Ok(b),
        _ => Err(corrupt()),
    }
}
