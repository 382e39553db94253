//! The cryptographic primitives the channel is built from, each behind one
//! function so that test vectors exercise exactly the code the channel runs.
//!
//! - AEAD: AES-256-GCM with 96-bit nonces and 128-bit tags ([`Aead`]).
//! - KDF: HKDF-SHA256 ([`hkdf_sha256`]).
//! - Key agreement: X25519 ([`EphemeralKey`], [`x25519_agree`]).
//! - Transcript hash: SHA-256 ([`sha256`]).

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::secret::{Key256, Secret};

/// Length of an AES-GCM authentication tag.
pub const TAG_LEN: usize = 16;
/// Length of an AES-GCM nonce.
pub const NONCE_LEN: usize = 12;

/// Authentication failed: wrong key, or the ciphertext, nonce or associated
/// data were altered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed")]
pub struct AuthError;

/// An AES-256-GCM key with its expanded key schedule.
#[derive(Clone)]
pub struct Aead(Aes256Gcm);

impl std::fmt::Debug for Aead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Aead([redacted])")
    }
}

impl Aead {
    /// Expands `key`.
    pub fn new(key: &Key256) -> Self {
        Self(Aes256Gcm::new(key.expose().into()))
    }

    /// Encrypts `buf` in place and appends the tag.
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut Vec<u8>) {
        // Infallible for Vec buffers below the GCM message limit (2^36 bytes),
        // which the frame size limit keeps us far from.
        let nonce = Nonce::from(*nonce);
        if self.0.encrypt_in_place(&nonce, aad, buf).is_err() {
            unreachable!("AES-GCM encryption into a Vec below the size limit cannot fail");
        }
    }

    /// Encrypts `buf` in place and returns the tag (for callers that write
    /// the ciphertext straight into their output buffer).
    pub fn seal_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let nonce = Nonce::from(*nonce);
        match self.0.encrypt_inout_detached(&nonce, aad, buf.into()) {
            Ok(tag) => tag.into(),
            Err(_) => unreachable!("AES-GCM encryption below the size limit cannot fail"),
        }
    }

    /// Checks the tag and decrypts `buf` in place, removing the tag.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), AuthError> {
        let nonce = Nonce::from(*nonce);
        self.0.decrypt_in_place(&nonce, aad, buf).map_err(|_| AuthError)
    }
}

/// HKDF-SHA256: extract with `salt` from the concatenation of `ikm`, then
/// expand with `info` into `out`.
///
/// # Panics
/// If `out` is longer than 255 × 32 bytes (a programming error: every caller
/// asks for a fixed, small length).
pub fn hkdf_sha256(salt: &[u8], ikm: &[&[u8]], info: &[u8], out: &mut [u8]) {
    let mut material = Zeroizing::new(Vec::with_capacity(ikm.iter().map(|p| p.len()).sum()));
    for part in ikm {
        material.extend_from_slice(part);
    }
    let hk = hkdf::Hkdf::<Sha256>::new(Some(salt), &material);
    if hk.expand(info, out).is_err() {
        unreachable!("HKDF output length {} is a fixed small constant", out.len());
    }
}

/// Derives a 256-bit key with [`hkdf_sha256`].
pub fn derive_key(salt: &[u8], ikm: &[&[u8]], info: &[u8]) -> Key256 {
    let mut out = [0u8; 32];
    hkdf_sha256(salt, ikm, info, &mut out);
    let key = Key256::new(out);
    zeroize::Zeroize::zeroize(&mut out);
    key
}

/// SHA-256 over the concatenation of `parts`.
pub fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().into()
}

/// The peer's X25519 share is of low order: the shared secret would be zero
/// and known to an attacker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("peer sent a low-order X25519 share")]
pub struct LowOrderShare;

/// X25519 on raw bytes, refusing a non-contributory (all-zero) result.
pub fn x25519_agree(secret: &[u8; 32], peer: &[u8; 32]) -> Result<Secret<32>, LowOrderShare> {
    let shared = Secret::new(x25519_dalek::x25519(*secret, *peer));
    if shared.expose().iter().all(|&b| b == 0) {
        return Err(LowOrderShare);
    }
    Ok(shared)
}

/// A one-use X25519 key pair, for one handshake. The private half is
/// wiped when the key is dropped.
pub struct EphemeralKey {
    secret: Secret<32>,
    public: [u8; 32],
}

impl std::fmt::Debug for EphemeralKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EphemeralKey").field("public", &self.public).finish_non_exhaustive()
    }
}

impl EphemeralKey {
    /// A fresh key pair.
    pub fn generate(rng: &mut impl rand::CryptoRng) -> Self {
        let secret = Secret::<32>::random(rng);
        // Fixed-base multiplication with precomputed tables: the same result as
        // `x25519(secret, basepoint)`, about three times faster.
        let public =
            x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*secret.expose()));
        Self { secret, public: public.to_bytes() }
    }

    /// The public share to send to the peer.
    pub fn public(&self) -> [u8; 32] {
        self.public
    }

    /// Computes the shared secret with a peer's public key.
    pub fn agree(&self, peer: &[u8; 32]) -> Result<Secret<32>, LowOrderShare> {
        x25519_agree(self.secret.expose(), peer)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn aead_round_trip_and_tamper() {
        let aead = Aead::new(&Key256::new([3; 32]));
        let mut buf = b"hello".to_vec();
        aead.seal(&[1; 12], b"ad", &mut buf);
        assert_eq!(buf.len(), 5 + TAG_LEN);
        let sealed = buf.clone();
        aead.open(&[1; 12], b"ad", &mut buf).expect("opens");
        assert_eq!(buf, b"hello");
        let mut wrong_ad = sealed.clone();
        assert_eq!(aead.open(&[1; 12], b"ae", &mut wrong_ad), Err(AuthError));
        let mut wrong_nonce = sealed;
        assert_eq!(aead.open(&[2; 12], b"ad", &mut wrong_nonce), Err(AuthError));
    }

    #[test]
    fn ephemeral_agreement_matches() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let a = EphemeralKey::generate(&mut rng);
        let b = EphemeralKey::generate(&mut rng);
        let (pa, pb) = (a.public(), b.public());
        assert_eq!(a.agree(&pb).expect("ok"), b.agree(&pa).expect("ok"));
    }

    #[test]
    fn fixed_base_public_key_matches_the_ladder() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        for _ in 0..8 {
            let k = EphemeralKey::generate(&mut rng);
            let ladder =
                x25519_dalek::x25519(*k.secret.expose(), x25519_dalek::X25519_BASEPOINT_BYTES);
            assert_eq!(k.public(), ladder);
        }
    }

    #[test]
    fn low_order_share_is_refused() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let a = EphemeralKey::generate(&mut rng);
        assert_eq!(a.agree(&[0; 32]), Err(LowOrderShare));
    }
}
