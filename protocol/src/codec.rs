//! Byte-level reading and writing for hand-written layouts (the handshake,
//! the proxy's store records): fixed fields, LEB128 varints, texts.

/// The input ended early or held an invalid value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Fewer bytes than the layout needs.
    #[error("message truncated")]
    Truncated,
    /// Bytes left over after the last field.
    #[error("{0} unexpected trailing bytes")]
    Trailing(usize),
    /// A text field is not UTF-8.
    #[error("text field is not valid UTF-8")]
    Utf8,
    /// A value outside its allowed range.
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// A cursor over a received message.
#[derive(Debug)]
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    /// Reads from `buf`.
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.buf.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }

    /// A fixed-size array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// A big-endian `u64`.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// A text of at most 255 bytes, prefixed by its length as one byte.
    pub fn short_str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.u8()?;
        std::str::from_utf8(self.take(usize::from(n))?).map_err(|_| DecodeError::Utf8)
    }

    /// An unsigned LEB128 varint of at most 10 bytes.
    pub fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for i in 0..10 {
            let b = self.u8()?;
            let bits = u64::from(b & 0x7f);
            if i == 9 && b > 1 {
                return Err(DecodeError::Invalid("varint"));
            }
            value |= bits << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Invalid("varint"))
    }

    /// A varint count of items that each take at least one byte: larger
    /// than what is left means the input is damaged (and it is safe to
    /// reserve room for).
    pub fn count(&mut self) -> Result<usize, DecodeError> {
        let n = self.varint()?;
        match usize::try_from(n) {
            Ok(n) if n <= self.buf.len() => Ok(n),
            _ => Err(DecodeError::Truncated),
        }
    }

    /// A text prefixed by its length as a varint.
    pub fn str(&mut self) -> Result<&'a str, DecodeError> {
        let n = self.count()?;
        std::str::from_utf8(self.take(n)?).map_err(|_| DecodeError::Utf8)
    }

    /// How many bytes are not yet read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
    }

    /// Everything not yet read, left unread.
    pub fn unread(&self) -> &'a [u8] {
        self.buf
    }

    /// Everything not yet read.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    /// Fails if bytes remain.
    pub fn finish(self) -> Result<(), DecodeError> {
        match self.buf.len() {
            0 => Ok(()),
            n => Err(DecodeError::Trailing(n)),
        }
    }
}

/// Appends a text of at most 255 bytes with a one-byte length prefix.
///
/// Longer text is a programming error on our side: callers validate first.
pub fn put_short_str(out: &mut Vec<u8>, s: &str) {
    // Cut at a character boundary so that the result is always valid UTF-8.
    let mut n = s.len().min(usize::from(u8::MAX));
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    out.push(n as u8);
    out.extend_from_slice(&s.as_bytes()[..n]);
}

/// Appends `v` as an unsigned LEB128 varint. Inlined, with one bounds
/// check per varint: the coders write one or two for every value.
#[inline]
pub fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    if v < 0x80 {
        out.push(v as u8);
        return;
    }
    let mut buf = [0u8; 10];
    let mut n = 0;
    while v >= 0x80 {
        buf[n] = (v as u8) | 0x80;
        v >>= 7;
        n += 1;
    }
    buf[n] = v as u8;
    // All ten bytes, then cut back: a copy of a fixed length is a couple
    // of moves, one of a variable length a call into `memcpy`.
    let len = out.len() + n + 1;
    out.extend_from_slice(&buf);
    out.truncate(len);
}

/// Appends a text with its length as a varint.
pub fn put_str(out: &mut Vec<u8>, s: &str) {
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s.as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_was_written() {
        let mut out = vec![7];
        out.extend_from_slice(&42u64.to_be_bytes());
        put_short_str(&mut out, "agent-1");
        let mut r = Reader::new(&out);
        assert_eq!(r.u8(), Ok(7));
        assert_eq!(r.u64(), Ok(42));
        assert_eq!(r.short_str(), Ok("agent-1"));
        r.finish().expect("nothing left");
    }

    proptest::proptest! {
        #[test]
        fn any_varint_round_trips_in_its_shortest_form(v: u64, before in proptest::collection::vec(0u8..=255, 0..12)) {
            let mut out = before.clone();
            put_varint(&mut out, v);
            let bits = 64 - v.leading_zeros() as usize;
            proptest::prop_assert_eq!(out.len() - before.len(), bits.div_ceil(7).max(1));
            proptest::prop_assert_eq!(&out[..before.len()], &before[..]);
            let mut r = Reader::new(&out[before.len()..]);
            proptest::prop_assert_eq!(r.varint(), Ok(v));
            proptest::prop_assert!(r.finish().is_ok());
        }
    }

    #[test]
    fn varints_and_texts_round_trip_and_damage_is_refused() {
        let values = [0, 1, 127, 128, 300, u64::from(u32::MAX), u64::MAX];
        let mut out = Vec::new();
        for v in values {
            put_varint(&mut out, v);
        }
        put_str(&mut out, "séries");
        let mut r = Reader::new(&out);
        for v in values {
            assert_eq!(r.varint(), Ok(v));
        }
        assert_eq!(r.str(), Ok("séries"));
        r.finish().expect("nothing left");
        assert_eq!(Reader::new(&[0x80; 10]).varint(), Err(DecodeError::Invalid("varint")));
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02]).varint(),
            Err(DecodeError::Invalid("varint"))
        );
        assert_eq!(Reader::new(&[0x80]).varint(), Err(DecodeError::Truncated));
        assert_eq!(
            Reader::new(&[5, b'a']).str(),
            Err(DecodeError::Truncated),
            "count beyond the input"
        );
        assert_eq!(
            Reader::new(&[0xff, 0xff, 0xff, 0xff, 0x0f]).count(),
            Err(DecodeError::Truncated)
        );
    }

    #[test]
    fn long_text_is_cut_on_a_character_boundary() {
        let mut out = Vec::new();
        put_short_str(&mut out, &"é".repeat(200));
        let mut r = Reader::new(&out);
        assert_eq!(r.short_str().map(str::len), Ok(254));
    }

    #[test]
    fn truncation_and_trailing_are_errors() {
        assert_eq!(Reader::new(&[1, 2]).u64(), Err(DecodeError::Truncated));
        assert_eq!(Reader::new(&[3, b'a']).short_str(), Err(DecodeError::Truncated));
        assert_eq!(Reader::new(&[1]).finish(), Err(DecodeError::Trailing(1)));
        assert_eq!(Reader::new(&[1, 0xff]).short_str(), Err(DecodeError::Utf8));
    }
}
