//! The cryptographic primitives the channel is built from, each behind one
//! function so that test vectors exercise exactly the code the channel runs.
//!
//! - AEAD: AES-256-GCM with 96-bit nonces and 128-bit tags ([`Aead`]), from
//!   AWS-LC (`aws-lc-rs`); ChaCha20-Poly1305 ([`Aead::chacha20_poly1305`])
//!   from the same library for the simple path on CPUs without AES
//!   instructions. AEGIS-128L ([`aegis128l_seal`], [`aegis128l_open`]) from
//!   libaegis (the `aegis` crate), for the simple path where AES
//!   instructions exist.
//! - KDF: HKDF-SHA256 ([`hkdf_sha256`]).
//! - Key agreement: X25519 ([`EphemeralKey`], [`x25519_agree`]).
//! - Transcript hash: SHA-256 ([`sha256`]).
//!
//! Key material in AWS-LC: an [`Aead`] owns an `EVP_AEAD_CTX` that AWS-LC
//! allocated; the expanded key schedule (and GCM's hash key table) lives
//! inside it. Dropping the `Aead` frees it with `EVP_AEAD_CTX_free`, that
//! is `OPENSSL_free`, which `OPENSSL_cleanse`s the whole allocation before
//! releasing it (`crypto/mem.c` of the AWS-LC sources bundled in
//! `aws-lc-sys` 0.47; this holds as long as no custom allocator is
//! installed, and we install none). During a call AWS-LC copies GCM's hash
//! key into a context on the stack and does not wipe it afterwards, as
//! other libraries do not.

use aws_lc_rs::aead::{AES_256_GCM, Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, UnboundKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::secret::{Key256, Secret};

/// Length of an AEAD authentication tag.
pub const TAG_LEN: usize = 16;
/// Length of an AES-GCM (and ChaCha20-Poly1305) nonce.
pub const NONCE_LEN: usize = 12;

/// Authentication failed: wrong key, or the ciphertext, nonce or associated
/// data were altered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed")]
pub struct AuthError;

/// An AEAD key with its expanded key schedule: AES-256-GCM from
/// [`Aead::new`], ChaCha20-Poly1305 from [`Aead::chacha20_poly1305`].
/// Wiped when dropped (see the module docs).
pub struct Aead(LessSafeKey);

impl std::fmt::Debug for Aead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Aead([redacted])")
    }
}

impl Aead {
    /// Expands `key` for AES-256-GCM.
    pub fn new(key: &Key256) -> Self {
        Self::with(&AES_256_GCM, key)
    }

    /// Expands `key` for ChaCha20-Poly1305 (RFC 8439).
    pub fn chacha20_poly1305(key: &Key256) -> Self {
        Self::with(&CHACHA20_POLY1305, key)
    }

    fn with(algorithm: &'static aws_lc_rs::aead::Algorithm, key: &Key256) -> Self {
        match UnboundKey::new(algorithm, key.expose()) {
            Ok(k) => Self(LessSafeKey::new(k)),
            Err(_) => unreachable!("both algorithms take the 32-byte key they are given"),
        }
    }

    /// Encrypts `buf` in place and appends the tag.
    pub fn seal(&self, nonce: &[u8; NONCE_LEN], aad: &[u8], buf: &mut Vec<u8>) {
        let tag = self.seal_detached(nonce, aad, buf);
        buf.extend_from_slice(&tag);
    }

    /// Encrypts `buf` in place and returns the tag (for callers that write
    /// the ciphertext straight into their output buffer).
    pub fn seal_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let nonce = Nonce::assume_unique_for_key(*nonce);
        // Fails only past the algorithms' message limits (2^36 bytes for
        // GCM), which the frame size limit keeps us far from.
        match self.0.seal_in_place_separate_tag(nonce, Aad::from(aad), buf) {
            Ok(tag) => match tag.as_ref().try_into() {
                Ok(tag) => tag,
                Err(_) => unreachable!("both algorithms have 16-byte tags"),
            },
            Err(_) => unreachable!("AEAD encryption below the size limit cannot fail"),
        }
    }

    /// Checks the tag and decrypts `buf` in place, removing the tag.
    pub fn open(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buf: &mut Vec<u8>,
    ) -> Result<(), AuthError> {
        let nonce = Nonce::assume_unique_for_key(*nonce);
        let len = self.0.open_in_place(nonce, Aad::from(aad), buf).map_err(|_| AuthError)?.len();
        buf.truncate(len);
        Ok(())
    }

    /// Checks `tag` and decrypts `buf` in place.
    pub fn open_detached(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        tag: &[u8; TAG_LEN],
        buf: &mut [u8],
    ) -> Result<(), AuthError> {
        let nonce = Nonce::assume_unique_for_key(*nonce);
        self.0
            .open_in_place_separate_tag(nonce, Aad::from(aad), tag, buf)
            .map(|_| ())
            .map_err(|_| AuthError)
    }
}

/// AEGIS-128L (draft-irtf-cfrg-aegis-aead) with a 128-bit tag: encrypts
/// `buf` in place and returns the tag. libaegis keeps its state on the
/// stack during the call and does not wipe it; the `aegis` crate also makes
/// a short-lived copy of the key that is not wiped.
pub fn aegis128l_seal(
    key: &Secret<16>,
    nonce: &[u8; 16],
    aad: &[u8],
    buf: &mut [u8],
) -> [u8; TAG_LEN] {
    aegis::aegis128l::Aegis128L::<TAG_LEN>::new(key.expose(), nonce).encrypt_in_place(buf, aad)
}

/// AEGIS-128L: checks `tag` and decrypts `buf` in place (on failure `buf`
/// is zeroed).
pub fn aegis128l_open(
    key: &Secret<16>,
    nonce: &[u8; 16],
    aad: &[u8],
    tag: &[u8; TAG_LEN],
    buf: &mut [u8],
) -> Result<(), AuthError> {
    aegis::aegis128l::Aegis128L::<TAG_LEN>::new(key.expose(), nonce)
        .decrypt_in_place(buf, tag, aad)
        .map_err(|_| AuthError)
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
    fn detached_tags_match_appended_ones() {
        for aead in
            [Aead::new(&Key256::new([4; 32])), Aead::chacha20_poly1305(&Key256::new([4; 32]))]
        {
            let mut appended = b"numbers".to_vec();
            aead.seal(&[5; 12], b"hdr", &mut appended);
            let mut detached = b"numbers".to_vec();
            let tag = aead.seal_detached(&[5; 12], b"hdr", &mut detached);
            assert_eq!(appended, [&detached[..], &tag].concat());
            aead.open_detached(&[5; 12], b"hdr", &tag, &mut detached).expect("opens");
            assert_eq!(detached, b"numbers");
            let mut bad = tag;
            bad[0] ^= 1;
            assert_eq!(aead.open_detached(&[5; 12], b"hdr", &bad, &mut detached), Err(AuthError));
        }
    }

    #[test]
    fn chacha20_poly1305_matches_rfc_8439() {
        // RFC 8439, section 2.8.2.
        let key: [u8; 32] = std::array::from_fn(|i| 0x80 + i as u8);
        let nonce = [0x07, 0, 0, 0, 0x40, 0x41, 0x42, 0x43, 0x44, 0x45, 0x46, 0x47];
        let aad = [0x50, 0x51, 0x52, 0x53, 0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7];
        let mut buf = b"Ladies and Gentlemen of the class of '99: If I could offer you only one \
tip for the future, sunscreen would be it."
            .to_vec();
        let tag = Aead::chacha20_poly1305(&Key256::new(key)).seal_detached(&nonce, &aad, &mut buf);
        assert_eq!(&buf[..8], &[0xd3, 0x1a, 0x8d, 0x34, 0x64, 0x8e, 0x60, 0xdb]);
        assert_eq!(
            tag,
            [
                0x1a, 0xe1, 0x0b, 0x59, 0x4f, 0x09, 0xe2, 0x6a, 0x7e, 0x90, 0x2e, 0xcb, 0xd0, 0x60,
                0x06, 0x91
            ]
        );
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
