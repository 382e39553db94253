//! Number columns: each value against the one before it in the same
//! series, as the wire does it (`PROTOCOL.md`, compact batches), one
//! varint tag per value:
//!
//! - an exact decimal `m / 10^e` (`|m| ≤ 2^53`, `e ≤ 9`) at the scale of
//!   the series' last decimal: `zigzag(m − m_prev) << 1`, so an unchanged
//!   value or a small step is one byte;
//! - an exact decimal at another scale: `1 | e << 2`, then `zigzag(m)`;
//! - anything else (NaN, infinities, −0, long fractions): `3`, then the
//!   XOR of its IEEE-754 bits with the previous value's, as a varint.
//!
//! The chunk's zstd then codes these bytes by how often each occurs.
//! Values round-trip bit for bit.

use wasmtap_protocol::codec::{Reader, put_varint};
use wasmtap_protocol::decimal::{self, MAX_SCALE, at_scale, in_range};

use super::ints::{unzigzag, zigzag};
/// After this many values in a row that were not decimals at the scale of
/// the one before, the encoder looks for a decimal form only at every such
/// count (a series of long fractions does not pay for the search every time).
const NOT_DECIMAL_RUN: u32 = 16;

/// Why a number column cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The bytes ran out or a varint is invalid.
    #[error(transparent)]
    Bytes(#[from] wasmtap_protocol::codec::DecodeError),
    /// A change of mantissa without a decimal before it, or out of range.
    #[error("malformed number column")]
    Malformed,
}

/// Writes a number column, value by value.
#[derive(Debug, Default)]
pub struct ValueEncoder {
    bits: u64,
    decimal: Option<(i64, u8)>,
    /// Values in a row that were not decimals at the last decimal's scale.
    not_decimal: u32,
}

impl ValueEncoder {
    /// Appends `v` to `out`.
    pub fn push(&mut self, out: &mut Vec<u8>, v: f64) {
        let bits = v.to_bits();
        if let Some((pm, e)) = self.decimal
            && let Some(m) = at_scale(v, e)
        {
            put_varint(out, zigzag(m.wrapping_sub(pm)) << 1);
            (self.decimal, self.bits, self.not_decimal) = (Some((m, e)), bits, 0);
            return;
        }
        // A value not at the last one's scale is a miss, even when the
        // search finds it at another (a ratio is now and then a short decimal).
        let search =
            self.not_decimal < NOT_DECIMAL_RUN || self.not_decimal.is_multiple_of(NOT_DECIMAL_RUN);
        self.not_decimal = self.not_decimal.saturating_add(1);
        if let Some((m, e)) = search.then(|| decimal::fewest(v)).flatten() {
            put_varint(out, 1 | u64::from(e) << 2);
            put_varint(out, zigzag(m));
            (self.decimal, self.bits) = (Some((m, e)), bits);
            return;
        }
        put_varint(out, 3);
        put_varint(out, bits ^ self.bits);
        self.bits = bits;
    }
}

/// Reads a number column, value by value.
#[derive(Debug, Default, Clone)]
pub struct ValueDecoder {
    bits: u64,
    decimal: Option<(i64, u8)>,
}

impl ValueDecoder {
    /// The next value.
    pub fn next(&mut self, r: &mut Reader<'_>) -> Result<f64, ValueError> {
        let tag = r.varint()?;
        let (m, e) = if tag & 1 == 0 {
            let (pm, e) = self.decimal.ok_or(ValueError::Malformed)?;
            let m = pm.checked_add(unzigzag(tag >> 1)).filter(|m| in_range(*m));
            (m.ok_or(ValueError::Malformed)?, e)
        } else if tag & 3 == 1 {
            let e = u8::try_from(tag >> 2).ok().filter(|e| *e <= MAX_SCALE);
            let m = unzigzag(r.varint()?);
            match e {
                Some(e) if in_range(m) => (m, e),
                _ => return Err(ValueError::Malformed),
            }
        } else if tag == 3 {
            self.bits ^= r.varint()?;
            return Ok(f64::from_bits(self.bits));
        } else {
            return Err(ValueError::Malformed);
        };
        let v = decimal::value(m, e);
        (self.decimal, self.bits) = (Some((m, e)), v.to_bits());
        Ok(v)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn encode(values: &[f64]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut e = ValueEncoder::default();
        for v in values {
            e.push(&mut out, *v);
        }
        out
    }

    fn decode(bytes: &[u8], n: usize) -> Result<Vec<u64>, ValueError> {
        let mut r = Reader::new(bytes);
        let mut d = ValueDecoder::default();
        (0..n).map(|_| d.next(&mut r).map(f64::to_bits)).collect()
    }

    fn bits(values: &[f64]) -> Vec<u64> {
        values.iter().map(|v| v.to_bits()).collect()
    }

    #[test]
    fn special_values_round_trip_bit_for_bit() {
        let values = [
            0.0,
            -0.0,
            f64::NAN,
            -f64::NAN,
            f64::from_bits(0x7ff8_0000_dead_beef),
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::MIN_POSITIVE,
            f64::MAX,
            f64::MIN,
            1e300,
            12.34,
            12.35,
            9_007_199_254_740_993.0,
            0.1 + 0.2,
            1.0 / 3.0,
            2.0 / 3.0,
            5.0,
        ];
        assert_eq!(decode(&encode(&values), values.len()), Ok(bits(&values)));
    }

    #[test]
    fn steady_values_are_a_byte_each() {
        let constant = vec![42.5; 1_000];
        assert!(encode(&constant).len() <= 1_010);
        let counter: Vec<f64> = (0..1_000).map(|i| f64::from(i) * 17.0).collect();
        let bytes = encode(&counter);
        assert!(bytes.len() <= 1_010, "{} bytes for a counter of small steps", bytes.len());
        assert_eq!(decode(&bytes, 1_000), Ok(bits(&counter)));
    }

    #[test]
    fn damage_is_an_error_or_a_value_never_a_panic() {
        let values: Vec<f64> = (0..100).map(|i| f64::from(i) / 7.0).collect();
        let bytes = encode(&values);
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x5a;
            let _ = decode(&flipped, values.len());
        }
        assert!(decode(&bytes[..bytes.len() / 2], values.len()).is_err());
    }

    fn value() -> impl Strategy<Value = f64> {
        prop_oneof![
            any::<f64>(),
            (-1_000_000i64..1_000_000, 0u32..4).prop_map(|(m, e)| m as f64 / 10f64.powi(e as i32)),
            any::<u64>().prop_map(f64::from_bits),
            Just(f64::NAN),
            Just(-0.0),
        ]
    }

    proptest! {
        #[test]
        fn any_column_round_trips_bit_for_bit(values in prop::collection::vec(value(), 0..300)) {
            prop_assert_eq!(decode(&encode(&values), values.len()), Ok(bits(&values)));
        }

        #[test]
        fn random_walks_round_trip(start in -1e6f64..1e6, steps in prop::collection::vec(-500i64..500, 0..300)) {
            let mut v = (start * 100.0).round() / 100.0;
            let values: Vec<f64> = steps.iter().map(|s| { v += *s as f64 / 100.0; v }).collect();
            prop_assert_eq!(decode(&encode(&values), values.len()), Ok(bits(&values)));
        }
    }
}
