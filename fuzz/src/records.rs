//! A naive model of the record scanner (`wasmtap_protocol::record`), for
//! differential fuzzing: the same rules, written as plainly as possible
//! and without the search budget.

use wasmtap_protocol::record::{Damage, HEADER, SYNC};

/// The intact record at `pos`: its payload (without the marker) and its end.
pub fn intact(bytes: &[u8], pos: usize, max: u32) -> Option<(&[u8], usize)> {
    let header = bytes.get(pos..pos + HEADER)?;
    let len = u32::from_le_bytes(header[..4].try_into().ok()?);
    let crc = u32::from_le_bytes(header[4..].try_into().ok()?);
    if len == 0 || len > max {
        return None;
    }
    let contents = bytes.get(pos + HEADER..pos + HEADER + len as usize)?;
    (crc32fast::hash(contents) == crc)
        .then(|| (contents.strip_prefix(&SYNC).unwrap_or(contents), pos + HEADER + len as usize))
}

/// What a scan finds.
#[derive(Debug, Default)]
pub struct Scanned {
    /// Intact records: offset and payload.
    pub records: Vec<(usize, Vec<u8>)>,
    /// Spans skipped between intact records.
    pub damaged: Vec<Damage>,
    /// The end of the last intact record.
    pub valid_len: usize,
}

/// What a scan of `bytes` finds.
pub fn scan(bytes: &[u8], max: u32) -> Scanned {
    let (mut records, mut damaged, mut valid) = (Vec::new(), Vec::new(), 0);
    let mut pos = 0;
    while pos < bytes.len() {
        if let Some((payload, end)) = intact(bytes, pos, max) {
            records.push((pos, payload.to_vec()));
            pos = end;
            valid = end;
            continue;
        }
        // The nearest marked intact record, or the one the length points to.
        let marked = (pos + 1..bytes.len()).find(|&q| {
            bytes.get(q + HEADER..q + HEADER + SYNC.len()) == Some(&SYNC[..])
                && intact(bytes, q, max).is_some()
        });
        let pointed = bytes
            .get(pos..pos + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
            .filter(|len| *len > 0 && *len <= max as usize)
            .map(|len| pos + HEADER + len)
            .filter(|&next| intact(bytes, next, max).is_some());
        let next = match (marked, pointed) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => match a.or(b) {
                Some(n) => n,
                None => break,
            },
        };
        damaged.push(Damage { offset: pos, len: next - pos });
        pos = next;
    }
    Scanned { records, damaged, valid_len: valid }
}
