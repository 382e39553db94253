//! Bit-level writing and reading, most significant bit first, for the
//! columns of a compressed segment.

/// Appends bits to a byte buffer.
#[derive(Debug, Default)]
pub struct BitWriter {
    out: Vec<u8>,
    /// Bits not yet flushed, in the low `n` bits.
    acc: u64,
    n: u32,
}

impl BitWriter {
    /// Writes the low `bits` bits of `value` (`bits` at most 64).
    pub fn write(&mut self, value: u64, bits: u32) {
        debug_assert!(bits <= 64);
        if bits == 0 {
            return;
        }
        let value = if bits == 64 { value } else { value & ((1 << bits) - 1) };
        let room = 64 - self.n;
        if bits <= room {
            self.acc = if bits == 64 { value } else { (self.acc << bits) | value };
            self.n += bits;
        } else {
            // Fill the accumulator, flush it, keep the rest.
            let rest = bits - room;
            self.acc = if room == 0 { self.acc } else { (self.acc << room) | (value >> rest) };
            self.n = 64;
            self.flush_full();
            self.acc = value & ((1 << rest) - 1);
            self.n = rest;
        }
        if self.n == 64 {
            self.flush_full();
        }
    }

    /// Writes one bit.
    pub fn bit(&mut self, set: bool) {
        self.write(u64::from(set), 1);
    }

    fn flush_full(&mut self) {
        self.out.extend_from_slice(&self.acc.to_be_bytes());
        self.acc = 0;
        self.n = 0;
    }

    /// The bytes written, the last one padded with zero bits.
    pub fn finish(mut self) -> Vec<u8> {
        let bytes = self.n.div_ceil(8);
        if bytes > 0 {
            let aligned = self.acc << (64 - self.n);
            self.out.extend_from_slice(&aligned.to_be_bytes()[..bytes as usize]);
        }
        self.out
    }

    /// Bits written so far.
    #[cfg(test)]
    pub fn len_bits(&self) -> u64 {
        self.out.len() as u64 * 8 + u64::from(self.n)
    }
}

/// The input ended before the bits asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("bit stream ended early")]
pub struct Exhausted;

/// Reads bits from a byte slice.
#[derive(Debug, Clone)]
pub struct BitReader<'a> {
    bytes: &'a [u8],
    /// Next bit to read, from the start of `bytes`.
    pos: u64,
}

impl<'a> BitReader<'a> {
    /// Reads `bytes` from the first bit.
    #[cfg(test)]
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    /// Reads `bytes` from bit `pos` (where an earlier reader stopped).
    pub fn at(bytes: &'a [u8], pos: u64) -> Self {
        Self { bytes, pos }
    }

    /// The next bit to read.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// The next `bits` bits (at most 64) as the low bits of a number.
    pub fn read(&mut self, bits: u32) -> Result<u64, Exhausted> {
        debug_assert!(bits <= 64);
        if bits == 0 {
            return Ok(0);
        }
        let end = self.pos.checked_add(u64::from(bits)).ok_or(Exhausted)?;
        if end > self.bytes.len() as u64 * 8 {
            return Err(Exhausted);
        }
        let first = (self.pos / 8) as usize;
        let skip = (self.pos % 8) as u32;
        // Up to 9 bytes hold the bits: read them into a u128.
        let mut window = [0u8; 16];
        let last = self.bytes.len().min(first + 9);
        window[..last - first].copy_from_slice(&self.bytes[first..last]);
        let wide = u128::from_be_bytes(window);
        let value = (wide << skip) >> (128 - bits);
        self.pos = end;
        Ok(value as u64)
    }

    /// The next bit.
    pub fn bit(&mut self) -> Result<bool, Exhausted> {
        Ok(self.read(1)? == 1)
    }

    /// Bits not yet read (the last byte's padding included).
    #[cfg(test)]
    pub fn remaining_bits(&self) -> u64 {
        (self.bytes.len() as u64 * 8).saturating_sub(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn widths_from_0_to_64_round_trip() {
        let mut w = BitWriter::default();
        for bits in 0..=64u32 {
            w.write(u64::MAX, bits);
            w.bit(false);
        }
        let total = w.len_bits();
        let bytes = w.finish();
        assert_eq!(bytes.len() as u64, total.div_ceil(8));
        let mut r = BitReader::new(&bytes);
        for bits in 0..=64u32 {
            let want = if bits == 64 { u64::MAX } else { (1u64 << bits) - 1 };
            assert_eq!(r.read(bits), Ok(want), "{bits} bits");
            assert_eq!(r.bit(), Ok(false));
        }
        assert!(r.remaining_bits() < 8);
        assert_eq!(BitReader::new(&[0xff]).read(9), Err(Exhausted));
    }

    proptest! {
        #[test]
        fn any_sequence_round_trips(items in prop::collection::vec((any::<u64>(), 0u32..=64), 0..200)) {
            let mut w = BitWriter::default();
            for (v, bits) in &items {
                w.write(*v, *bits);
            }
            let bytes = w.finish();
            let mut r = BitReader::new(&bytes);
            for (v, bits) in &items {
                let want = if *bits == 64 { *v } else { v & ((1u64 << bits) - 1) };
                prop_assert_eq!(r.read(*bits), Ok(want));
            }
        }
    }
}
