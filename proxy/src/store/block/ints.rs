//! Integer columns (sample times, batch numbers): the first value as a
//! varint, then each value as `zigzag(delta − previous delta)` (delta of
//! delta), a varint: a regular step costs one zero byte, which the chunk's
//! zstd then all but removes. Arithmetic wraps, so any `u64` sequence
//! round-trips.

use wasmtap_protocol::codec::{DecodeError, Reader, put_varint};

/// `v` with its sign in the lowest bit.
pub fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// The inverse of [`zigzag`].
pub fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

/// Writes an integer column, value by value.
#[derive(Debug, Default)]
pub struct IntEncoder {
    prev: u64,
    delta: i64,
    started: bool,
}

impl IntEncoder {
    /// Appends `v` to `out`.
    pub fn push(&mut self, out: &mut Vec<u8>, v: u64) {
        if self.started {
            let delta = v.wrapping_sub(self.prev) as i64;
            put_varint(out, zigzag(delta.wrapping_sub(self.delta)));
            self.delta = delta;
        } else {
            put_varint(out, v);
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
    pub fn next(&mut self, r: &mut Reader<'_>) -> Result<u64, DecodeError> {
        if self.started {
            self.delta = self.delta.wrapping_add(unzigzag(r.varint()?));
            self.prev = self.prev.wrapping_add(self.delta as u64);
        } else {
            self.prev = r.varint()?;
            self.started = true;
        }
        Ok(self.prev)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn round_trip(values: &[u64]) -> (Vec<u64>, Vec<u8>) {
        let mut out = Vec::new();
        let mut e = IntEncoder::default();
        for v in values {
            e.push(&mut out, *v);
        }
        let mut r = Reader::new(&out);
        let mut d = IntDecoder::default();
        let back = values.iter().map(|_| d.next(&mut r).expect("enough bytes")).collect();
        assert_eq!(r.remaining(), 0);
        (back, out)
    }

    #[test]
    fn regular_steps_are_zero_bytes() {
        let times: Vec<u64> = (0..1_000).map(|i| 1_795_651_200_000 + i * 1_000).collect();
        let (back, bytes) = round_trip(&times);
        assert_eq!(back, times);
        assert!(bytes[8..].iter().all(|b| *b == 0), "after the first value and step");
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
