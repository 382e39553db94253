//! Numeric payloads: the only thing the simple path carries. A
//! [`NumericPayload`] can be built only from numbers, with [`NumericWriter`].

/// A payload of numbers, encoded compactly. It can only be built with
/// [`NumericWriter`], so it never holds text.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NumericPayload {
    pub(super) bytes: Vec<u8>,
}

impl NumericPayload {
    /// Encoded size in bytes.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether it holds no numbers.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Its encoded bytes.
    #[cfg(test)]
    pub(crate) fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// A reader over the numbers, in the order they were written.
    pub fn reader(&self) -> NumericReader<'_> {
        NumericReader { buf: &self.bytes }
    }
}

/// Builds a [`NumericPayload`] from unsigned, signed and floating-point numbers.
#[derive(Debug, Default)]
pub struct NumericWriter {
    bytes: Vec<u8>,
}

impl NumericWriter {
    /// An empty writer.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an unsigned integer (LEB128 varint: 1 byte below 128).
    pub fn u64(&mut self, mut v: u64) -> &mut Self {
        loop {
            let byte = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                self.bytes.push(byte);
                return self;
            }
            self.bytes.push(byte | 0x80);
        }
    }

    /// Appends a signed integer (zigzag, then varint: small magnitudes are short).
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.u64(((v << 1) ^ (v >> 63)) as u64)
    }

    /// Appends a float as its 8 IEEE-754 bytes, little-endian.
    pub fn f64(&mut self, v: f64) -> &mut Self {
        self.bytes.extend_from_slice(&v.to_le_bytes());
        self
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The finished payload.
    pub fn finish(self) -> NumericPayload {
        NumericPayload { bytes: self.bytes }
    }
}

/// A numeric payload ended early or holds an overlong varint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed numeric payload")]
pub struct NumericError;

/// Reads numbers back from a [`NumericPayload`].
#[derive(Debug)]
pub struct NumericReader<'a> {
    buf: &'a [u8],
}

impl NumericReader<'_> {
    /// The next unsigned integer.
    pub fn u64(&mut self) -> Result<u64, NumericError> {
        let mut v = 0u64;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or(NumericError)?;
            self.buf = rest;
            if i == 9 && b > 1 {
                return Err(NumericError);
            }
            v |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(NumericError)
    }

    /// The next signed integer.
    pub fn i64(&mut self) -> Result<i64, NumericError> {
        let z = self.u64()?;
        Ok(((z >> 1) as i64) ^ -((z & 1) as i64))
    }

    /// The next float.
    pub fn f64(&mut self) -> Result<f64, NumericError> {
        let (head, rest) = self.buf.split_first_chunk::<8>().ok_or(NumericError)?;
        self.buf = rest;
        Ok(f64::from_le_bytes(*head))
    }

    /// Whether every number was read.
    pub fn is_done(&self) -> bool {
        self.buf.is_empty()
    }
}
