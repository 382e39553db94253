//! Reading an agent's spool from outside, as a test does after killing the
//! agent: its batch records, where each one lies, and what it holds.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use wasmtap_protocol::message::{self, Batch};
use wasmtap_protocol::record;

/// A batch record in a spool segment.
#[derive(Debug, Clone)]
pub struct Spooled {
    /// The segment file.
    pub segment: PathBuf,
    /// Where the record starts.
    pub offset: usize,
    /// Its length on disk.
    pub len: usize,
    /// The batch.
    pub batch: Batch,
}

/// The intact batch records under `<data_dir>/spool/`, in order (none if
/// there is no spool yet).
pub fn batches(data_dir: &Path) -> anyhow::Result<Vec<Spooled>> {
    let dir = data_dir.join("spool");
    let mut segments: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()
            .with_context(|| format!("listing {}", dir.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {}", dir.display())),
    };
    segments.retain(|p| p.extension().is_some_and(|x| x == "seg"));
    segments.sort();
    let mut out = Vec::new();
    for segment in segments {
        let bytes = std::fs::read(&segment)?;
        let mut records = record::scan(&bytes, u32::MAX);
        while let Some((offset, payload)) = records.next() {
            // Kind 1 is a batch (2 an acknowledgement).
            if let Some((&1, body)) = payload.split_first() {
                let batch = message::decode(body).context("a spooled batch")?;
                let len = records.valid_len() - offset;
                out.push(Spooled { segment: segment.clone(), offset, len, batch });
            }
        }
    }
    Ok(out)
}

/// Writes `batches` into `<data_dir>/spool/` as the first segment, as an
/// agent that spooled them and never reached a proxy would have left them.
pub fn seed(data_dir: &Path, batches: &[Batch]) -> anyhow::Result<()> {
    let dir = data_dir.join("spool");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut bytes = Vec::new();
    for batch in batches {
        // Kind 1: a batch.
        record::append_with(&mut bytes, |out| {
            out.push(1);
            out.extend_from_slice(&message::encode(batch));
        });
    }
    let path = dir.join(format!("{:020}.seg", 1));
    std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))
}
