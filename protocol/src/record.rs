//! Checksummed records for append-only files (the agent's spool, the
//! proxy's store). Byte functions only; the callers own the files.
//!
//! ```text
//! +------------------+------------------+----------------------+
//! | length (u32 LE)  | CRC-32 (u32 LE)  | payload (`length` B) |
//! +------------------+------------------+----------------------+
//! ```
//!
//! A reader stops at the first record that is short (a torn write), longer
//! than the limit, or fails its checksum; everything before it is intact.

/// Bytes before each payload.
pub const HEADER: usize = 8;

/// Appends one record holding `payload` to `out`.
pub fn encode(payload: &[u8], out: &mut Vec<u8>) {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    out.reserve(HEADER + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// Appends one record to `out` whose payload `write` appends in place (no
/// intermediate buffer); the header is filled in afterwards.
pub fn append_with(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
    write(out);
    let payload = &out[start + HEADER..];
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX).to_le_bytes();
    let crc = crc32fast::hash(payload).to_le_bytes();
    out[start..start + 4].copy_from_slice(&len);
    out[start + 4..start + HEADER].copy_from_slice(&crc);
}

/// Iterates over the intact records of `bytes`; afterwards
/// [`Records::valid_len`] is the length of the intact prefix.
#[derive(Debug, Clone)]
pub struct Records<'a> {
    bytes: &'a [u8],
    pos: usize,
    max: u32,
    stopped: bool,
}

/// Reads `bytes` as records of at most `max` payload bytes each.
pub fn scan(bytes: &[u8], max: u32) -> Records<'_> {
    Records { bytes, pos: 0, max, stopped: false }
}

impl Records<'_> {
    /// Length of the intact records read so far.
    pub fn valid_len(&self) -> usize {
        self.pos
    }

    /// Stops the iteration here (the caller found a payload it cannot use):
    /// [`Records::valid_len`] then excludes the last record returned.
    pub fn reject_last(&mut self, payload_len: usize) {
        self.pos -= HEADER + payload_len;
        self.stopped = true;
    }
}

impl<'a> Iterator for Records<'a> {
    /// The record's offset and its payload.
    type Item = (usize, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        if self.stopped {
            return None;
        }
        let header = self.bytes.get(self.pos..self.pos + HEADER)?;
        let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let crc = u32::from_le_bytes([header[4], header[5], header[6], header[7]]);
        let start = self.pos + HEADER;
        let payload = (len <= self.max)
            .then(|| self.bytes.get(start..start + len as usize))
            .flatten()
            .filter(|p| crc32fast::hash(p) == crc);
        let Some(payload) = payload else {
            self.stopped = true;
            return None;
        };
        let offset = self.pos;
        self.pos = start + payload.len();
        Some((offset, payload))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_back_and_stops_at_damage() {
        let mut bytes = Vec::new();
        encode(b"one", &mut bytes);
        encode(b"", &mut bytes);
        let good = bytes.len();
        encode(b"three", &mut bytes);
        let all: Vec<_> = scan(&bytes, 100).map(|(_, p)| p.to_vec()).collect();
        assert_eq!(all, [b"one".to_vec(), vec![], b"three".to_vec()]);

        for cut in good..bytes.len() {
            let mut r = scan(&bytes[..cut], 100);
            assert_eq!(r.by_ref().count(), 2);
            assert_eq!(r.valid_len(), good);
        }
        let mut flipped = bytes.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        let mut r = scan(&flipped, 100);
        assert_eq!(r.by_ref().count(), 2);
        assert_eq!(r.valid_len(), good);
        let mut r = scan(&bytes, 4);
        assert_eq!(r.by_ref().count(), 2, "over the limit ends the scan");
        assert_eq!(scan(&[0xff; 8], u32::MAX).count(), 0);
    }

    #[test]
    fn appended_in_place_is_the_same_record() {
        let mut direct = b"prefix".to_vec();
        encode(b"payload", &mut direct);
        let mut in_place = b"prefix".to_vec();
        append_with(&mut in_place, |out| out.extend_from_slice(b"payload"));
        assert_eq!(in_place, direct);
        let mut empty = Vec::new();
        append_with(&mut empty, |_| {});
        assert_eq!(scan(&empty, 10).map(|(_, p)| p.len()).collect::<Vec<_>>(), [0]);
    }

    #[test]
    fn a_rejected_record_is_not_counted_valid() {
        let mut bytes = Vec::new();
        encode(b"ok", &mut bytes);
        encode(b"bad", &mut bytes);
        let mut r = scan(&bytes, 100);
        let _ = r.next();
        let (_, p) = r.next().expect("second");
        r.reject_last(p.len());
        assert_eq!(r.valid_len(), HEADER + 2);
        assert!(r.next().is_none());
    }
}
