//! Fixed-size key material that wipes itself on drop and never prints.

use std::fmt;

use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

/// `N` bytes of secret key material.
///
/// Zeroized on drop; `Debug` prints `[redacted]`; equality is constant-time.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret<const N: usize>([u8; N]);

impl<const N: usize> Secret<N> {
    /// Wraps `bytes`; the caller should not keep another copy.
    pub fn new(bytes: [u8; N]) -> Self {
        Self(bytes)
    }

    /// Fresh random key material from a cryptographic generator.
    pub fn random(rng: &mut impl rand::CryptoRng) -> Self {
        let mut bytes = [0u8; N];
        rng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The raw bytes, for handing to a cipher or KDF.
    pub fn expose(&self) -> &[u8; N] {
        &self.0
    }
}

impl<const N: usize> fmt::Debug for Secret<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<const N: usize> PartialEq for Secret<N> {
    fn eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }
}

impl<const N: usize> Eq for Secret<N> {}

/// A 256-bit key.
pub type Key256 = Secret<32>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = Key256::new([7; 32]);
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert!(!format!("{s:?}").contains('7'));
    }

    #[test]
    fn equality_compares_contents() {
        assert_eq!(Key256::new([1; 32]), Key256::new([1; 32]));
        assert_ne!(Key256::new([1; 32]), Key256::new([2; 32]));
    }
}
