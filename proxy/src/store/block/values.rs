//! Number columns: each value against the one before it in the same
//! series, the way the wire does it, packed into bits.
//!
//! - A value that is an exact decimal `m / 10^e` (`|m| ≤ 2^53`, `e ≤ 9`) at
//!   the scale of the series' last decimal is `0`, then
//!   `zigzag(m − m_prev)` in buckets (`0`; `10` + 6 bits; `110` + 13 bits;
//!   `1110` + 20 bits; `1111` + 64 bits): an unchanged value costs 2 bits.
//! - An exact decimal at another scale is `10`, `e` in 4 bits, then
//!   `zigzag(m)` in the same buckets.
//! - Anything else (NaN, infinities, −0, long fractions) is `11`, then the
//!   XOR of its IEEE-754 bits with the previous value's, Gorilla-style:
//!   `0` when equal; `10` and the meaningful bits when they fit the
//!   previous window of leading and trailing zeros; otherwise `11`, the
//!   leading zeros in 6 bits, the meaningful length − 1 in 6 bits and the
//!   meaningful bits.
//!
//! Values round-trip bit for bit.

use super::bits::{BitReader, BitWriter, Exhausted};
use super::ints::{put_bucketed, take_bucketed, unzigzag, zigzag};

/// Most decimal places tried.
const MAX_SCALE: u8 = 9;
const MAX_MANTISSA: i64 = 1 << 53;
const POW10: [f64; MAX_SCALE as usize + 1] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
/// Bucket widths of mantissas and their changes.
const MANTISSA: [u32; 3] = [6, 13, 20];
/// After this many values in a row that were not decimals, the encoder
/// looks for a decimal form only at every such count (a series of long
/// fractions does not pay for the search every time).
const NOT_DECIMAL_RUN: u32 = 16;

/// Why a number column cannot be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ValueError {
    /// The bits ran out.
    #[error(transparent)]
    Exhausted(#[from] Exhausted),
    /// A change of mantissa without a decimal before it, or out of range.
    #[error("malformed number column")]
    Malformed,
}

fn decimal_value(m: i64, e: u8) -> f64 {
    m as f64 / POW10[usize::from(e)]
}

/// `v` as `m / 10^e` exactly at scale `e`.
fn at_scale(v: f64, e: u8) -> Option<i64> {
    let scaled = (v * POW10[usize::from(e)]).round();
    if scaled.is_nan() || scaled.abs() > MAX_MANTISSA as f64 {
        return None;
    }
    let m = scaled as i64;
    (decimal_value(m, e).to_bits() == v.to_bits()).then_some(m)
}

/// `v` as `m / 10^e` exactly, with the fewest decimal places.
fn as_decimal(v: f64) -> Option<(i64, u8)> {
    if !v.is_finite() {
        return None;
    }
    (0..=MAX_SCALE).find_map(|e| at_scale(v, e).map(|m| (m, e)))
}

fn in_range(m: i64) -> bool {
    m.unsigned_abs() <= MAX_MANTISSA.unsigned_abs()
}

/// What both sides remember of a series' previous value.
#[derive(Debug, Clone, Copy, Default)]
struct State {
    bits: u64,
    decimal: Option<(i64, u8)>,
    /// Leading and trailing zeros of the last XOR window.
    window: Option<(u32, u32)>,
}

/// Writes a number column, value by value.
#[derive(Debug, Default)]
pub struct ValueEncoder {
    state: State,
    /// Values in a row that were not decimals.
    not_decimal: u32,
}

impl ValueEncoder {
    /// Appends `v`.
    pub fn push(&mut self, w: &mut BitWriter, v: f64) {
        let s = &mut self.state;
        if let Some((pm, e)) = s.decimal
            && let Some(m) = at_scale(v, e)
        {
            w.bit(false);
            put_bucketed(w, zigzag(m.wrapping_sub(pm)), &MANTISSA);
            s.decimal = Some((m, e));
            s.bits = v.to_bits();
            self.not_decimal = 0;
            return;
        }
        let search =
            self.not_decimal < NOT_DECIMAL_RUN || self.not_decimal.is_multiple_of(NOT_DECIMAL_RUN);
        if let Some((m, e)) = as_decimal(v).filter(|_| search) {
            w.write(0b10, 2);
            w.write(u64::from(e), 4);
            put_bucketed(w, zigzag(m), &MANTISSA);
            s.decimal = Some((m, e));
            s.bits = v.to_bits();
            self.not_decimal = 0;
            return;
        }
        self.not_decimal = self.not_decimal.saturating_add(1);
        w.write(0b11, 2);
        let x = v.to_bits() ^ s.bits;
        s.bits = v.to_bits();
        if x == 0 {
            w.bit(false);
            return;
        }
        let (lz, tz) = (x.leading_zeros(), x.trailing_zeros());
        match s.window {
            Some((wl, wt)) if lz >= wl && tz >= wt => {
                w.write(0b10, 2);
                w.write(x >> wt, 64 - wl - wt);
            }
            _ => {
                let len = 64 - lz - tz;
                w.write(0b11, 2);
                w.write(u64::from(lz), 6);
                w.write(u64::from(len - 1), 6);
                w.write(x >> tz, len);
                s.window = Some((lz, tz));
            }
        }
    }
}

/// Reads a number column, value by value.
#[derive(Debug, Default, Clone)]
pub struct ValueDecoder {
    state: State,
}

impl ValueDecoder {
    /// The next value.
    pub fn next(&mut self, r: &mut BitReader<'_>) -> Result<f64, ValueError> {
        let s = &mut self.state;
        if !r.bit()? {
            let (pm, e) = s.decimal.ok_or(ValueError::Malformed)?;
            let m = pm.checked_add(unzigzag(take_bucketed(r, &MANTISSA)?));
            let m = m.filter(|m| in_range(*m)).ok_or(ValueError::Malformed)?;
            return Ok(self.decimal(m, e));
        }
        if !r.bit()? {
            let e = r.read(4)? as u8;
            let m = unzigzag(take_bucketed(r, &MANTISSA)?);
            if e > MAX_SCALE || !in_range(m) {
                return Err(ValueError::Malformed);
            }
            return Ok(self.decimal(m, e));
        }
        let x = if !r.bit()? {
            0
        } else if !r.bit()? {
            let (wl, wt) = s.window.ok_or(ValueError::Malformed)?;
            r.read(64 - wl - wt)? << wt
        } else {
            let lz = r.read(6)? as u32;
            let len = r.read(6)? as u32 + 1;
            if lz + len > 64 {
                return Err(ValueError::Malformed);
            }
            let tz = 64 - lz - len;
            s.window = Some((lz, tz));
            r.read(len)? << tz
        };
        s.bits ^= x;
        Ok(f64::from_bits(s.bits))
    }

    fn decimal(&mut self, m: i64, e: u8) -> f64 {
        let v = decimal_value(m, e);
        self.state.decimal = Some((m, e));
        self.state.bits = v.to_bits();
        v
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn encode(values: &[f64]) -> Vec<u8> {
        let mut w = BitWriter::default();
        let mut e = ValueEncoder::default();
        for v in values {
            e.push(&mut w, *v);
        }
        w.finish()
    }

    fn decode(bytes: &[u8], n: usize) -> Result<Vec<u64>, ValueError> {
        let mut r = BitReader::new(bytes);
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
        let bytes = encode(&values);
        assert_eq!(decode(&bytes, values.len()), Ok(bits(&values)));
    }

    #[test]
    fn steady_values_are_small() {
        let constant = vec![42.5; 1_000];
        assert!(encode(&constant).len() <= 260, "{}", encode(&constant).len());
        let counter: Vec<f64> = (0..1_000).map(|i| f64::from(i) * 17.0).collect();
        let len = encode(&counter).len();
        // 9 bits a value: a decimal at the same scale, a change in 6 bits.
        assert!(len <= 1_130, "{len} bytes for a counter of small steps");
        assert_eq!(decode(&encode(&counter), 1_000), Ok(bits(&counter)));
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
