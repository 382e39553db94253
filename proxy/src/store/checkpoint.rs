//! The writer's checkpoint of a project (`<project>/checkpoint`): which
//! batch sequence numbers each agent has had stored, as of a position in
//! the log. Opening a project then replays only what was written after
//! it, instead of every segment.
//!
//! ```text
//! one checksummed record:
//! 'K' version
//! segment, offset                   varints (everything before is included)
//! agents   count, each: name str, floor (0: none, else floor + 1),
//!          ranges count, each: start, end − start   varints
//! ```
//!
//! It is written (to a temporary file, synced, renamed) when a segment is
//! closed and when the store closes. A crash between two checkpoints costs
//! the replay of what follows the older one (at most a segment); a missing
//! or damaged checkpoint, a full replay. Either way the state is the one a
//! full replay would give.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write as _;
use std::path::Path;

use wasmtap_protocol::codec::{Reader, put_str, put_varint};
use wasmtap_protocol::record;

use super::{MAX_RECORD, StoreError, blocks, io_err};
use crate::dedup::SeqSet;

/// The checkpoint's file name in a project's directory.
pub const FILE: &str = "checkpoint";
const KIND: u8 = b'K';
const VERSION: u8 = 1;

/// What a checkpoint holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Checkpoint {
    /// The segment of the position.
    pub segment: u64,
    /// The byte offset in its row file: every record before it is included.
    pub offset: u64,
    /// Per agent, the sequence numbers stored.
    pub seen: HashMap<String, SeqSet>,
}

fn encode(c: &Checkpoint) -> Vec<u8> {
    let mut out = Vec::new();
    record::append_with(&mut out, |out| {
        out.extend_from_slice(&[KIND, VERSION]);
        put_varint(out, c.segment);
        put_varint(out, c.offset);
        let mut agents: Vec<(&String, &SeqSet)> = c.seen.iter().collect();
        agents.sort_by_key(|(a, _)| *a);
        put_varint(out, agents.len() as u64);
        for (agent, set) in agents {
            put_str(out, agent);
            let (floor, ranges) = set.parts();
            put_varint(out, floor.map_or(0, |f| f.saturating_add(1)));
            let ranges: Vec<(u64, u64)> = ranges.collect();
            put_varint(out, ranges.len() as u64);
            for (start, end) in ranges {
                put_varint(out, start);
                put_varint(out, end - start);
            }
        }
    });
    out
}

fn decode(bytes: &[u8]) -> Option<Checkpoint> {
    let (payload, end) = record::intact_at(bytes, 0, MAX_RECORD)?;
    if end != bytes.len() {
        return None;
    }
    let mut r = Reader::new(payload);
    if r.u8().ok()? != KIND || r.u8().ok()? != VERSION {
        return None;
    }
    let (segment, offset) = (r.varint().ok()?, r.varint().ok()?);
    let mut seen = HashMap::new();
    for _ in 0..r.count().ok()? {
        let agent = r.str().ok()?.to_owned();
        let floor = r.varint().ok()?.checked_sub(1);
        let n = r.count().ok()?;
        let mut ranges = Vec::with_capacity(n);
        for _ in 0..n {
            let start = r.varint().ok()?;
            ranges.push((start, start.checked_add(r.varint().ok()?)?));
        }
        seen.insert(agent, SeqSet::from_parts(floor, ranges.into_iter())?);
    }
    r.finish().ok()?;
    Some(Checkpoint { segment, offset, seen })
}

/// Writes `c` as `dir`'s checkpoint, durably.
pub fn save(dir: &Path, c: &Checkpoint) -> Result<(), StoreError> {
    let path = dir.join(FILE);
    let tmp = dir.join(format!("{FILE}.tmp"));
    let mut f = File::create(&tmp).map_err(io_err(&tmp))?;
    f.write_all(&encode(c)).and_then(|()| f.sync_all()).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &path).map_err(io_err(&path))?;
    blocks::sync_dir(dir)
}

/// `dir`'s checkpoint, if it has an intact one (a damaged one is logged).
pub fn load(dir: &Path) -> Option<Checkpoint> {
    let path = dir.join(FILE);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(checkpoint = %path.display(), error = %e, "cannot read the checkpoint; replaying every segment");
            return None;
        }
    };
    let c = decode(&bytes);
    if c.is_none() {
        tracing::warn!(checkpoint = %path.display(), "damaged checkpoint; replaying every segment");
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_damage_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut seen: HashMap<String, SeqSet> = HashMap::new();
        for (agent, seqs) in [("a", vec![1, 2, 3, 7]), ("é", vec![u64::MAX]), ("c", vec![])] {
            let set = seen.entry(agent.to_owned()).or_default();
            for s in seqs {
                set.insert(s);
            }
        }
        let c = Checkpoint { segment: 4, offset: 1_234, seen };
        save(dir.path(), &c).expect("save");
        assert_eq!(load(dir.path()), Some(c.clone()));
        let bytes = encode(&c);
        for i in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[i] ^= 0x10;
            assert_eq!(decode(&damaged), None, "byte {i}");
        }
        assert_eq!(decode(&bytes[..bytes.len() - 1]), None);
        std::fs::write(dir.path().join(FILE), b"junk").expect("write");
        assert_eq!(load(dir.path()), None);
    }
}
