//! Exact decimal forms of floating-point values: `v = m / 10^e` with
//! `|m| ≤ 2^53` and `e ≤ 9`, which the compact wire codec and the proxy's
//! store both code as a change of `m` (one byte for a small step).

/// Most decimal places tried.
pub const MAX_SCALE: u8 = 9;
/// Largest mantissa: every integer up to it is exact in an `f64`.
pub const MAX_MANTISSA: i64 = 1 << 53;
const POW10: [f64; MAX_SCALE as usize + 1] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// `m / 10^e`. `e` must be at most [`MAX_SCALE`].
pub fn value(m: i64, e: u8) -> f64 {
    m as f64 / POW10[usize::from(e.min(MAX_SCALE))]
}

/// Whether `m` is a mantissa coders send (`|m| ≤ 2^53`); peers may send any
/// `i64`, `i64::MIN` included, whose `abs` would overflow.
pub fn in_range(m: i64) -> bool {
    m.unsigned_abs() <= MAX_MANTISSA.unsigned_abs()
}

/// `x` rounded half away from zero, as `f64::round`, without its call into
/// the C library (x86-64's baseline has no rounding instruction, and the
/// coders round every value they see): below 2^53 an `f64` splits exactly
/// into its integer part and its fraction; from 2^53 on, every `f64` is an
/// integer already. NaN and the infinities come back as they are.
fn round_half_away(x: f64) -> f64 {
    const INTEGERS_FROM: f64 = 9_007_199_254_740_992.0; // 2^53
    if x.is_nan() || x.abs() >= INTEGERS_FROM {
        return x;
    }
    let whole = x as i64 as f64;
    let fraction = x - whole;
    if fraction >= 0.5 {
        whole + 1.0
    } else if fraction <= -0.5 {
        whole - 1.0
    } else {
        // Keeps the sign of zero: -0.3 rounds to -0, as `f64::round` does.
        whole.copysign(x)
    }
}

/// `v` as `m / 10^e` exactly at scale `e` (bit for bit), if it is one.
pub fn at_scale(v: f64, e: u8) -> Option<i64> {
    let scaled = round_half_away(v * POW10[usize::from(e.min(MAX_SCALE))]);
    if scaled.is_nan() || scaled.abs() > MAX_MANTISSA as f64 {
        return None;
    }
    let m = scaled as i64;
    (value(m, e).to_bits() == v.to_bits()).then_some(m)
}

/// `v` rounded to `e` decimal places (at most [`MAX_SCALE`]), half away
/// from zero, as the exact decimal `m / 10^e` nearest to it; a value that
/// rounds to zero is +0 (−0 is not a decimal). Values whose last place
/// lies beyond 2^53 units, NaN and infinities are returned unchanged.
pub fn round(v: f64, e: u8) -> f64 {
    let scaled = round_half_away(v * POW10[usize::from(e.min(MAX_SCALE))]);
    if scaled == 0.0 {
        0.0
    } else if scaled.is_finite() && scaled.abs() <= MAX_MANTISSA as f64 {
        value(scaled as i64, e)
    } else {
        v
    }
}

/// `v` as `m / 10^e` exactly, with the fewest decimal places.
pub fn fewest(v: f64) -> Option<(i64, u8)> {
    if !v.is_finite() || !near_whole_at_max_scale(v) {
        return None;
    }
    (0..=MAX_SCALE).find_map(|e| at_scale(v, e).map(|m| (m, e)))
}

/// Whether `v · 10^9` is within a few units in the last place of a whole
/// number, which every decimal `m / 10^e` (`e ≤ 9`) is: `v` is within half
/// an ulp of `m / 10^e` and the product adds half an ulp more, so the
/// product is within 2^-52 of its size from the whole `m · 10^(9−e)`. A
/// ratio or other long fraction fails this one multiplication instead of
/// ten attempts at a scale; what passes is still checked exactly.
fn near_whole_at_max_scale(v: f64) -> bool {
    let s = v * POW10[usize::from(MAX_SCALE)];
    (s - round_half_away(s)).abs() <= s.abs() * 1e-15
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_decimals_and_the_rest() {
        assert_eq!(fewest(12.5), Some((125, 1)));
        assert_eq!(fewest(-3.0), Some((-3, 0)));
        assert_eq!(fewest(0.1 + 0.2), None, "0.30000000000000004 has 17 places");
        assert_eq!(fewest(f64::NAN), None);
        assert_eq!(fewest(-0.0), None, "−0 is not m / 10^e for any m");
        assert_eq!(fewest(1e300), None);
        assert_eq!(at_scale(12.3, 2), Some(1230), "a coarser value at a finer scale");
        assert_eq!(at_scale(12.35, 1), None);
        assert!(in_range(MAX_MANTISSA) && !in_range(i64::MIN));
    }

    #[test]
    fn rounding_is_the_standard_librarys() {
        let edges = [
            0.5,
            -0.5,
            1.5,
            2.5,
            -2.5,
            0.49999999999999994,
            -0.49999999999999994,
            0.3,
            -0.3,
            0.0,
            -0.0,
            4_503_599_627_370_495.5,
            9_007_199_254_740_991.0,
            9_007_199_254_740_992.0,
            1e300,
            -1e300,
            f64::MAX,
            f64::MIN_POSITIVE,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        for x in edges {
            assert_eq!(round_half_away(x).to_bits(), x.round().to_bits(), "{x:e}");
        }
        assert!(round_half_away(f64::NAN).is_nan());
    }

    proptest::proptest! {
        #[test]
        fn rounding_agrees_for_any_value(bits: u64, scale in 0u8..=MAX_SCALE) {
            let x = f64::from_bits(bits);
            proptest::prop_assume!(!x.is_nan());
            let scaled = x * POW10[usize::from(scale)];
            proptest::prop_assert_eq!(round_half_away(scaled).to_bits(), scaled.round().to_bits());
        }

        #[test]
        fn fewest_is_the_exhaustive_search(bits: u64, m in -MAX_MANTISSA..=MAX_MANTISSA, e in 0u8..=MAX_SCALE) {
            let exhaustive = |v: f64| {
                v.is_finite().then(|| (0..=MAX_SCALE).find_map(|e| at_scale(v, e).map(|m| (m, e)))).flatten()
            };
            let any = f64::from_bits(bits);
            proptest::prop_assert_eq!(fewest(any), exhaustive(any));
            let small = (m % 1_000_000_000) as f64 / POW10[usize::from(e)];
            // Decimals and the values one ulp beside them.
            for v in [value(m, e), small] {
                for v in [v, f64::from_bits(v.to_bits() + 1), f64::from_bits(v.to_bits().wrapping_sub(1))] {
                    proptest::prop_assert_eq!(fewest(v), exhaustive(v), "{:e}", v);
                }
            }
            for v in [small, -small] {
                proptest::prop_assert!(fewest(v).is_some(), "{:e} is a decimal", v);
            }
        }

        #[test]
        fn rounding_agrees_near_halves(whole in -1i64 << 52..1i64 << 52, tenths in 0u8..10) {
            let x = whole as f64 + f64::from(tenths) / 10.0;
            proptest::prop_assert_eq!(round_half_away(x).to_bits(), x.round().to_bits());
        }
    }
}
