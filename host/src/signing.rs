//! Signed collectors: an optional policy. When the agent config lists
//! trusted publisher keys, a collector loads only with a valid detached
//! signature (`<name>.wasm.sig`) by one of them.
//!
//! Text forms:
//! - public key: `ed25519:<base64 of 32 bytes>`
//! - signing key file: `wasmtap-signing-key-1 <base64 of the 32-byte seed>`
//! - signature file: `wasmtap-sig-1 ed25519:<public key> <base64 of 64 bytes>`
//!
//! The signed message is `"wasmtap collector signature v1\0" ‖ SHA-256(wasm)`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

const CONTEXT: &[u8] = b"wasmtap collector signature v1\0";
const SIG_TAG: &str = "wasmtap-sig-1";
const KEY_TAG: &str = "wasmtap-signing-key-1";

/// Why a signature, key or key file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    /// The policy requires a signature and there is none.
    #[error("no signature file {0} (trusted publisher keys are configured)")]
    Missing(PathBuf),
    /// A key or signature text is malformed.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// Signed by a key that is not trusted.
    #[error("signed by {0}, which is not a trusted publisher key")]
    Untrusted(String),
    /// The signature does not match the file: altered or signed for another file.
    #[error("signature does not match the collector (altered, or signed for another file)")]
    Invalid,
}

/// A publisher's public key.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", STANDARD.encode(self.0.to_bytes()))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl FromStr for PublicKey {
    type Err = SignatureError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b64 = s
            .trim()
            .strip_prefix("ed25519:")
            .ok_or(SignatureError::Malformed("public key (expected ed25519:…)"))?;
        let bytes: [u8; 32] = STANDARD
            .decode(b64)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(SignatureError::Malformed("public key"))?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| SignatureError::Malformed("public key"))
    }
}

/// A publisher's signing key. Zeroized on drop; never printed.
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey([redacted])")
    }
}

impl SecretKey {
    /// A fresh key.
    pub fn generate(rng: &mut impl rand::CryptoRng) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill_bytes(seed.as_mut());
        Self(SigningKey::from_bytes(&seed))
    }

    /// Its public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    /// The key file's text. Holds the secret: write it with care.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("{KEY_TAG} {}\n", STANDARD.encode(self.0.to_bytes())))
    }

    /// Parses a key file.
    pub fn from_file_text(text: &str) -> Result<Self, SignatureError> {
        let b64 = text
            .trim()
            .strip_prefix(KEY_TAG)
            .ok_or(SignatureError::Malformed("signing key file"))?;
        let seed: Zeroizing<Vec<u8>> = Zeroizing::new(
            STANDARD
                .decode(b64.trim())
                .map_err(|_| SignatureError::Malformed("signing key file"))?,
        );
        let seed: &[u8; 32] = seed
            .as_slice()
            .try_into()
            .map_err(|_| SignatureError::Malformed("signing key file"))?;
        Ok(Self(SigningKey::from_bytes(seed)))
    }

    /// The signature file's text for `wasm`.
    pub fn sign(&self, wasm: &[u8]) -> String {
        let sig = self.0.sign(&message(wasm));
        format!("{SIG_TAG} {} {}\n", self.public(), STANDARD.encode(sig.to_bytes()))
    }
}

fn message(wasm: &[u8]) -> Vec<u8> {
    [CONTEXT, Sha256::digest(wasm).as_slice()].concat()
}

/// Where the signature of `wasm_path` lives.
pub fn signature_path(wasm_path: &Path) -> PathBuf {
    let mut p = wasm_path.as_os_str().to_owned();
    p.push(".sig");
    PathBuf::from(p)
}

/// The key a signature file's text names as its signer (not yet verified).
pub fn signer_of(sig_text: &str) -> Result<PublicKey, SignatureError> {
    let mut parts = sig_text.split_whitespace();
    if parts.next() != Some(SIG_TAG) {
        return Err(SignatureError::Malformed("signature file"));
    }
    parts.next().ok_or(SignatureError::Malformed("signature file"))?.parse()
}

/// Checks `sig_text` over `wasm` against the `trusted` keys; returns the signer.
pub fn verify(
    wasm: &[u8],
    sig_text: &str,
    trusted: &[PublicKey],
) -> Result<PublicKey, SignatureError> {
    let mut parts = sig_text.split_whitespace();
    if parts.next() != Some(SIG_TAG) {
        return Err(SignatureError::Malformed("signature file"));
    }
    let key: PublicKey =
        parts.next().ok_or(SignatureError::Malformed("signature file"))?.parse()?;
    let sig: [u8; 64] = parts
        .next()
        .and_then(|s| STANDARD.decode(s).ok())
        .and_then(|b| b.try_into().ok())
        .ok_or(SignatureError::Malformed("signature"))?;
    if parts.next().is_some() {
        return Err(SignatureError::Malformed("signature file"));
    }
    if !trusted.contains(&key) {
        return Err(SignatureError::Untrusted(key.to_string()));
    }
    key.0
        .verify_strict(&message(wasm), &Signature::from_bytes(&sig))
        .map_err(|_| SignatureError::Invalid)?;
    Ok(key)
}

/// Applies the policy to the collector at `wasm_path` with content `wasm`:
/// with no trusted keys everything passes; otherwise a valid signature by a
/// trusted key is required.
pub fn check(
    wasm_path: &Path,
    wasm: &[u8],
    trusted: &[PublicKey],
) -> Result<Option<PublicKey>, SignatureError> {
    if trusted.is_empty() {
        return Ok(None);
    }
    let sig_path = signature_path(wasm_path);
    let text = std::fs::read_to_string(&sig_path).map_err(|_| SignatureError::Missing(sig_path))?;
    verify(wasm, &text, trusted).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn key(seed: u64) -> SecretKey {
        SecretKey::generate(&mut rand::rngs::StdRng::seed_from_u64(seed))
    }

    #[test]
    fn sign_and_verify() {
        let k = key(1);
        let sig = k.sign(b"component");
        assert_eq!(verify(b"component", &sig, &[k.public()]), Ok(k.public()));
        assert_eq!(signer_of(&sig), Ok(k.public()));
        assert!(signer_of("nonsense").is_err());
    }

    #[test]
    fn altered_file_untrusted_key_and_garbage_are_refused() {
        let (k, other) = (key(1), key(2));
        let sig = k.sign(b"component");
        assert_eq!(verify(b"c0mponent", &sig, &[k.public()]), Err(SignatureError::Invalid));
        assert!(matches!(
            verify(b"component", &sig, &[other.public()]),
            Err(SignatureError::Untrusted(_))
        ));
        assert!(matches!(
            verify(b"component", "nonsense", &[k.public()]),
            Err(SignatureError::Malformed(_))
        ));
        let forged =
            other.sign(b"component").replace(&other.public().to_string(), &k.public().to_string());
        assert_eq!(verify(b"component", &forged, &[k.public()]), Err(SignatureError::Invalid));
    }

    #[test]
    fn keys_round_trip_through_text_and_never_print() {
        let k = key(3);
        let back = SecretKey::from_file_text(&k.to_file_text()).expect("parses");
        assert_eq!(back.public(), k.public());
        assert_eq!(k.public().to_string().parse::<PublicKey>(), Ok(k.public()));
        assert_eq!(format!("{k:?}"), "SecretKey([redacted])");
        assert!(SecretKey::from_file_text("wasmtap-signing-key-1 AAAA").is_err());
        assert!("ed25519:xyz".parse::<PublicKey>().is_err());
    }

    #[test]
    fn policy_without_keys_allows_and_with_keys_requires_a_signature() {
        let dir = tempfile::tempdir().expect("tempdir");
        let wasm = dir.path().join("c.wasm");
        assert_eq!(check(&wasm, b"x", &[]), Ok(None));
        let k = key(4);
        assert!(matches!(check(&wasm, b"x", &[k.public()]), Err(SignatureError::Missing(_))));
        std::fs::write(signature_path(&wasm), k.sign(b"x")).expect("write");
        assert_eq!(check(&wasm, b"x", &[k.public()]), Ok(Some(k.public())));
        assert_eq!(signature_path(&wasm), dir.path().join("c.wasm.sig"));
    }
}
