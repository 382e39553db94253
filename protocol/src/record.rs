//! Checksummed records for append-only files (the agent's spool, the
//! proxy's store), and the scanner that reads them back after a crash or
//! damage. Byte functions only; the callers own the files.
//!
//! ```text
//! +-----------------+-----------------+----------------+-----------------+
//! | length (u32 LE) | CRC-32 (u32 LE) | sync 00 ff 77 74 | payload         |
//! +-----------------+-----------------+----------------+-----------------+
//!                    `length` and the CRC cover the sync marker and the payload
//! ```
//!
//! The sync marker lets a reader find the next record after damage
//! without trusting a damaged length. Records written before the marker
//! existed (header, then payload) are still read: their payloads never
//! start with the marker (the spool's start with a kind byte 1 or 2, the
//! store's with `00 02` or a name length below 256).
//!
//! [`scan`] reads records in order. At a record that fails (a length of
//! zero or over the limit, a short record, a checksum mismatch) it looks
//! for the next intact record: the nearest marked record whose checksum
//! verifies, or the record the failed header's length points to, if that
//! one is intact. The bytes in between are reported as [`Damage`]; later
//! records are kept. Damage with no intact record after it is a *torn
//! tail* (what a crash in the middle of a write leaves), which the caller
//! may cut off at [`Records::valid_len`].
//!
//! A payload that itself holds a complete record with a marker (say, text
//! a collector chose) could be taken for a record if its own record is
//! damaged; the callers check what they decode.

/// Bytes of the length and checksum before each record's contents.
pub const HEADER: usize = 8;
/// The sync marker at the start of every record's checksummed contents.
pub const SYNC: [u8; 4] = [0x00, 0xff, 0x77, 0x74];
/// Bytes a record adds to its payload.
pub const OVERHEAD: usize = HEADER + SYNC.len();
/// Checksummed bytes a search for the next record may hash, per byte searched,
/// on top of [`SEARCH_BASE`]: crafted input cannot make recovery quadratic.
pub const SEARCH_FACTOR: usize = 16;
/// Checksummed bytes any search may hash.
pub const SEARCH_BASE: usize = 4 << 20;

/// Appends one record holding `payload` to `out`.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    append_with(out, |out| out.extend_from_slice(payload));
}

/// Appends one record to `out` whose payload `write` appends in place (no
/// intermediate buffer); the header is filled in afterwards.
pub fn append_with(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    out.extend_from_slice(&SYNC);
    write(out);
    let contents = &out[start + HEADER..];
    let len = u32::try_from(contents.len()).unwrap_or(u32::MAX).to_le_bytes();
    let crc = crc32fast::hash(contents).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + HEADER].copy_from_slice(&crc);
}

/// Bytes skipped between two intact records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Damage {
    /// Where the damaged bytes start.
    pub offset: usize,
    /// How many there are.
    pub len: usize,
}

/// Iterates over the intact records of `bytes`, skipping damage; see the
/// module docs.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    bytes: &'a [u8],
    pos: usize,
    max: u32,
    valid_len: usize,
    damaged: Vec<Damage>,
    stopped: bool,
    gave_up: bool,
}

/// Reads `bytes` as records whose length field is at most `max` each.
pub fn scan(bytes: &[u8], max: u32) -> Records<'_> {
    Records {
        bytes,
        pos: 0,
        max,
        valid_len: 0,
        damaged: Vec::new(),
        stopped: false,
        gave_up: false,
    }
}

/// The intact record at `pos` (length field at most `max`), without
/// looking further: its payload and where it ends.
pub fn intact_at(bytes: &[u8], pos: usize, max: u32) -> Option<(&[u8], usize)> {
    let header = bytes.get(pos..pos.checked_add(HEADER)?)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
    let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
    if len == 0 || len > max {
        // A zero length is what a zero-filled tail looks like; no writer
        // ever wrote an empty record.
        return None;
    }
    let end = (pos + HEADER).checked_add(len as usize)?;
    let contents = bytes.get(pos + HEADER..end)?;
    if crc32fast::hash(contents) != crc {
        return None;
    }
    Some((contents.strip_prefix(&SYNC).unwrap_or(contents), end))
}

/// The stored length of the header at `pos`, if it has one.
fn length_at(bytes: &[u8], pos: usize) -> Option<usize> {
    let b = bytes.get(pos..pos.checked_add(4)?)?;
    Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
}

impl Records<'_> {
    /// The end of the last intact record read so far: what follows it,
    /// once the iteration has ended, is a torn tail (unless
    /// [`Records::gave_up`]).
    pub fn valid_len(&self) -> usize {
        self.valid_len
    }

    /// The damaged spans skipped so far, in order; each is followed by an
    /// intact record.
    pub fn damaged(&self) -> &[Damage] {
        &self.damaged
    }

    /// Whether the search for a record after damage hashed its budget
    /// without finding one: the rest of the bytes were not examined, so
    /// they are not known to be a torn tail and must not be cut off.
    pub fn gave_up(&self) -> bool {
        self.gave_up
    }

    /// The start of the next intact record after the failed one at `from`.
    fn resync(&mut self, from: usize) -> Option<usize> {
        let bytes = self.bytes;
        // The record the failed header's length points to, if intact.
        let pointed = length_at(bytes, from)
            .filter(|len| *len > 0 && *len <= self.max as usize)
            .and_then(|len| from.checked_add(HEADER)?.checked_add(len))
            .filter(|&next| intact_at(bytes, next, self.max).is_some());
        let mut budget =
            SEARCH_BASE.saturating_add(SEARCH_FACTOR.saturating_mul(bytes.len() - from));
        let limit = pointed.unwrap_or(bytes.len());
        let mut at = from + 1;
        while at < limit {
            // The next marker at `at + HEADER` or later.
            let Some(window) = bytes.get(at + HEADER..) else { break };
            let Some(i) = window.windows(SYNC.len()).position(|w| w == SYNC) else { break };
            let candidate = at + i;
            if candidate >= limit {
                break;
            }
            let len = length_at(bytes, candidate).unwrap_or(0);
            let fits = candidate + HEADER + len <= bytes.len();
            if len > 0 && len <= self.max as usize && fits {
                let Some(left) = budget.checked_sub(len) else {
                    self.gave_up = true;
                    return None;
                };
                budget = left;
                if intact_at(bytes, candidate, self.max).is_some() {
                    return Some(candidate);
                }
            }
            at = candidate + 1;
        }
        pointed
    }
}

impl<'a> Iterator for Records<'a> {
    /// The record's offset and its payload.
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.stopped || self.pos >= self.bytes.len() {
                self.stopped = true;
                return None;
            }
            if let Some((payload, end)) = intact_at(self.bytes, self.pos, self.max) {
                let offset = self.pos;
                self.pos = end;
                self.valid_len = end;
                return Some((offset, payload));
            }
            match self.resync(self.pos) {
                Some(next) => {
                    self.damaged.push(Damage { offset: self.pos, len: next - self.pos });
                    self.pos = next;
                }
                None => {
                    self.stopped = true;
                    return None;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
