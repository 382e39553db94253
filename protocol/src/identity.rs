//! Long-term identities: the X25519 static key pair of a proxy deployment
//! and of every agent.
//!
//! - [`Identity`] is a public key. Its text form is
//!   `wtapid1_<base64url(public ‖ CRC-32(“wtapid1” ‖ public))>`, so a
//!   mistyped identity in a config file is an error, not a refusal later.
//! - [`StaticKey`] is the private half, zeroized on drop, printed as
//!   `[redacted]`. Its file form is
//!   `wtapsk1_<base64url(secret ‖ CRC-32(“wtapsk1” ‖ secret))>`.
//!
//! The handshake proves possession of a static key by Diffie-Hellman with
//! the peer's ephemeral key; it never signs.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::crypto::{LowOrderShare, x25519_agree};
use crate::secret::Secret;

const PUBLIC_PREFIX: &str = "wtapid1";
const SECRET_PREFIX: &str = "wtapsk1";
const KEY_LEN: usize = 32;
const CHECK_LEN: usize = 4;

/// Why an identity or key text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The text does not start with the expected prefix.
    #[error("expected text starting with `{0}_`")]
    BadPrefix(&'static str),
    /// Not base64url, or the wrong length.
    #[error("not a valid encoding (wrong length or characters)")]
    BadEncoding,
    /// The checksum does not match: mistyped or truncated.
    #[error("checksum mismatch: the text was mistyped or truncated")]
    Checksum,
}

fn checksum(prefix: &str, key: &[u8; KEY_LEN]) -> [u8; CHECK_LEN] {
    let mut h = crc32fast::Hasher::new();
    h.update(prefix.as_bytes());
    h.update(key);
    h.finalize().to_be_bytes()
}

fn encode(prefix: &str, key: &[u8; KEY_LEN]) -> zeroize::Zeroizing<String> {
    let mut body = zeroize::Zeroizing::new([0u8; KEY_LEN + CHECK_LEN]);
    body[..KEY_LEN].copy_from_slice(key);
    body[KEY_LEN..].copy_from_slice(&checksum(prefix, key));
    zeroize::Zeroizing::new(format!("{prefix}_{}", URL_SAFE_NO_PAD.encode(body.as_slice())))
}

fn decode(prefix: &'static str, text: &str) -> Result<Secret<KEY_LEN>, IdentityError> {
    let body = text
        .trim()
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .ok_or(IdentityError::BadPrefix(prefix))?;
    let decoded = zeroize::Zeroizing::new(
        URL_SAFE_NO_PAD.decode(body).map_err(|_| IdentityError::BadEncoding)?,
    );
    if decoded.len() != KEY_LEN + CHECK_LEN {
        return Err(IdentityError::BadEncoding);
    }
    let mut key = [0u8; KEY_LEN];
    key.copy_from_slice(&decoded[..KEY_LEN]);
    let key = Secret::new(key);
    let expected = checksum(prefix, key.expose());
    if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], &decoded[KEY_LEN..])) {
        return Err(IdentityError::Checksum);
    }
    Ok(key)
}

/// A public identity: an X25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Identity([u8; KEY_LEN]);

impl Identity {
    /// Wraps raw public key bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// The raw public key.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// The text form, `wtapid1_…`.
    pub fn to_text(&self) -> String {
        encode(PUBLIC_PREFIX, &self.0).to_string()
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_text())
    }
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Identity({self})")
    }
}

impl FromStr for Identity {
    type Err = IdentityError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Self(*decode(PUBLIC_PREFIX, s)?.expose()))
    }
}

/// A static X25519 key pair: the private key and its [`Identity`].
#[derive(Clone)]
pub struct StaticKey {
    secret: Secret<KEY_LEN>,
    public: Identity,
}

impl fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKey").field("public", &self.public).finish_non_exhaustive()
    }
}

impl StaticKey {
    /// A fresh key pair.
    pub fn generate(rng: &mut impl rand::CryptoRng) -> Self {
        Self::from_secret(Secret::random(rng))
    }

    fn from_secret(secret: Secret<KEY_LEN>) -> Self {
        let public =
            x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*secret.expose()));
        Self { secret, public: Identity(public.to_bytes()) }
    }

    /// The public half.
    pub fn identity(&self) -> Identity {
        self.public
    }

    /// Diffie-Hellman with a peer's public key.
    pub fn agree(&self, peer: &[u8; KEY_LEN]) -> Result<Secret<KEY_LEN>, LowOrderShare> {
        x25519_agree(self.secret.expose(), peer)
    }

    /// The file form, `wtapsk1_…`. It holds the private key: never log it.
    pub fn to_file_text(&self) -> zeroize::Zeroizing<String> {
        let mut text = encode(SECRET_PREFIX, self.secret.expose());
        text.push('\n');
        text
    }

    /// Parses the file form.
    pub fn from_file_text(text: &str) -> Result<Self, IdentityError> {
        Ok(Self::from_secret(decode(SECRET_PREFIX, text)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn key() -> StaticKey {
        StaticKey::generate(&mut rand::rngs::StdRng::seed_from_u64(4))
    }

    #[test]
    fn identity_round_trips_and_catches_typos() {
        let id = key().identity();
        let text = id.to_text();
        assert!(text.starts_with("wtapid1_"));
        assert_eq!(text.parse::<Identity>(), Ok(id));
        let mut typo = text.clone().into_bytes();
        let last = typo.len() - 5;
        typo[last] = if typo[last] == b'A' { b'B' } else { b'A' };
        let typo = String::from_utf8(typo).expect("ascii");
        assert!(typo.parse::<Identity>().is_err(), "{typo}");
        assert_eq!("wtap1_x".parse::<Identity>(), Err(IdentityError::BadPrefix("wtapid1")));
        assert_eq!(text[..20].parse::<Identity>(), Err(IdentityError::BadEncoding));
    }

    #[test]
    fn key_file_round_trips_and_never_prints() {
        let k = key();
        let text = k.to_file_text();
        let back = StaticKey::from_file_text(&text).expect("parses");
        assert_eq!(back.identity(), k.identity());
        let body = text.trim().strip_prefix("wtapsk1_").expect("prefix");
        assert!(!format!("{k:?}").contains(body));
        // The public text form is not accepted as a private key, nor the reverse.
        assert!(StaticKey::from_file_text(&k.identity().to_text()).is_err());
        assert!(text.parse::<Identity>().is_err());
    }

    #[test]
    fn agreement_is_symmetric() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let (a, b) = (StaticKey::generate(&mut rng), StaticKey::generate(&mut rng));
        let ab = a.agree(b.identity().as_bytes()).expect("ok");
        let ba = b.agree(a.identity().as_bytes()).expect("ok");
        assert_eq!(ab, ba);
        assert!(a.agree(&[0; 32]).is_err());
    }
}
