//! Integer columns (sample times, batch numbers): each value as the change
//! of its difference from the one before (delta of delta), which is zero
//! for regular steps and then costs one bit.
//!
//! ```text
//! first value   64 bits
//! then, per value, z = zigzag(delta - previous delta):
//!   z = 0          0
//!   z < 2^7        10   + 7 bits
//!   z < 2^12       110  + 12 bits
//!   z < 2^20       1110 + 20 bits
//!   otherwise      1111 + 64 bits
//! ```
//!
//! Arithmetic wraps, so any `u64` sequence round-trips.

use super::bits::{BitReader, BitWriter, Exhausted};

/// `v` with its sign in the lowest bit.
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// A prefix code for small numbers: `0`, then buckets of `widths` bits
/// behind one more `1` each, the last bucket holding any `u64`.
pub fn put_bucketed(w: &mut BitWriter, z: u64, widths: &[u32; 3]) {
    if z == 0 {
        w.bit(false);
        return;
    }
    for (i, &bits) in widths.iter().enumerate() {
        if z < 1 << bits {
            // i + 1 ones, then a zero.
            w.write((1 << (i + 2)) - 2, i as u32 + 2);
            w.write(z, bits);
            return;
        }
    }
    w.write(0b1111, 4);
    w.write(z, 64);
}

/// Reads what [`put_bucketed`] wrote.
pub fn take_bucketed(r: &mut BitReader<'_>, widths: &[u32; 3]) -> Result<u64, Exhausted> {
    if !r.bit()? {
        return Ok(0);
    }
    for &bits in widths {
        if !r.bit()? {
            return r.read(bits);
        }
    }
    r.read(64)
}

/// The widths of the delta-of-delta buckets.
const DOD: [u32; 3] = [7, 12, 20];

/// Writes an integer column, value by value.
#[derive(Debug, Default)]
pub struct IntEncoder {
    prev: u64,
    delta: i64,
    started: bool,
}

impl IntEncoder {
    /// Appends `v`.
    pub fn push(&mut self, w: &mut BitWriter, v: u64) {
        if self.started {
            let delta = v.wrapping_sub(self.prev) as i64;
            put_bucketed(w, zigzag(delta.wrapping_sub(self.delta)), &DOD);
            self.delta = delta;
        } else {
            w.write(v, 64);
            self.started = true;
        }
        self.prev = v;
    }
}

/// Reads an integer column, value by value.
#[derive(Debug, Default, Clone)]
pub struct IntDecoder {
    prev: u64,
    delta: i64,
    started: bool,
}

impl IntDecoder {
    /// The next value.
    pub fn next(&mut self, r: &mut BitReader<'_>) -> Result<u64, Exhausted> {
        if self.started {
            let dod = unzigzag(take_bucketed(r, &DOD)?);
            self.delta = self.delta.wrapping_add(dod);
            self.prev = self.prev.wrapping_add(self.delta as u64);
        } else {
            self.prev = r.read(64)?;
            self.started = true;
        }
        Ok(self.prev)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn round_trip(values: &[u64]) -> (Vec<u64>, usize) {
        let mut w = BitWriter::default();
        let mut e = IntEncoder::default();
        for v in values {
            e.push(&mut w, *v);
        }
        let bytes = w.finish();
        let mut r = BitReader::new(&bytes);
        let mut d = IntDecoder::default();
        let back = values.iter().map(|_| d.next(&mut r).expect("enough bits")).collect();
        (back, bytes.len())
    }

    #[test]
    fn regular_steps_cost_a_bit_each() {
        let times: Vec<u64> = (0..1_000).map(|i| 1_795_651_200_000 + i * 1_000).collect();
        let (back, bytes) = round_trip(&times);
        assert_eq!(back, times);
        // 64 bits, one delta of 1000 (14 + 20 bits... 24 bits), then 998 single bits.
        assert!(bytes <= 8 + 4 + 125, "{bytes} bytes");
    }

    #[test]
    fn buckets_round_trip_at_their_edges() {
        for z in [0, 1, 127, 128, 4095, 4096, (1 << 20) - 1, 1 << 20, u64::MAX] {
            let mut w = BitWriter::default();
            put_bucketed(&mut w, z, &DOD);
            let bytes = w.finish();
            assert_eq!(take_bucketed(&mut BitReader::new(&bytes), &DOD), Ok(z));
        }
        for v in [0, 1, -1, i64::MAX, i64::MIN] {
            assert_eq!(unzigzag(zigzag(v)), v);
        }
    }

    proptest! {
        #[test]
        fn any_column_round_trips(values in prop::collection::vec(any::<u64>(), 0..300)) {
            prop_assert_eq!(round_trip(&values).0, values);
        }

        #[test]
        fn jittered_times_round_trip(start in any::<u64>(), jitter in prop::collection::vec(-50i64..50, 0..300)) {
            let values: Vec<u64> = jitter.iter().enumerate()
                .map(|(i, j)| start.wrapping_add(i as u64 * 1_000).wrapping_add(*j as u64))
                .collect();
            prop_assert_eq!(round_trip(&values).0, values);
        }
    }
}
