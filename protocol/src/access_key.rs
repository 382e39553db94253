//! Project access keys: the long-lived secret an agent is configured with.
//!
//! Text form: `wtap1_<project>_<body>` where `body` is unpadded base64url of
//! the 32-byte secret followed by a 4-byte big-endian CRC-32 over
//! `"wtap1" || project || secret`. The checksum turns a mistyped key into a
//! clear error at start-up instead of a handshake failure.

use std::fmt;
use std::str::FromStr;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use crate::secret::Key256;

const PREFIX: &str = "wtap1";
const SECRET_LEN: usize = 32;
const CHECK_LEN: usize = 4;
/// Longest project name, in bytes.
pub const MAX_PROJECT_LEN: usize = 64;

/// Why a project name or an access key string was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum AccessKeyError {
    /// The key does not start with `wtap1_`.
    #[error("access key must start with `{PREFIX}_` (is this a wasmtap key?)")]
    BadPrefix,
    /// The key does not have the three `_`-separated parts.
    #[error("access key is malformed: expected `{PREFIX}_<project>_<secret>`")]
    Malformed,
    /// The project part is not a valid project name.
    #[error("invalid project name: {0}")]
    Project(#[from] ProjectNameError),
    /// The secret part is not valid base64url or has the wrong length.
    #[error("access key secret is not valid (wrong length or characters)")]
    BadEncoding,
    /// The checksum does not match: the key was mistyped or truncated.
    #[error("access key checksum mismatch: the key was mistyped or truncated")]
    Checksum,
}

/// Why a project name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProjectNameError {
    /// Empty name.
    #[error("project name is empty")]
    Empty,
    /// Longer than [`MAX_PROJECT_LEN`].
    #[error("project name is longer than {MAX_PROJECT_LEN} bytes")]
    TooLong,
    /// A character outside `a-z`, `0-9` and `-`, or a leading `-`.
    #[error("project name `{0}` may only hold a-z, 0-9 and `-`, and must not start with `-`")]
    BadChar(String),
}

/// A validated project name: `[a-z0-9][a-z0-9-]{0,63}`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ProjectId(String);

impl ProjectId {
    /// Validates `name` as a project name.
    pub fn new(name: &str) -> Result<Self, ProjectNameError> {
        if name.is_empty() {
            return Err(ProjectNameError::Empty);
        }
        if name.len() > MAX_PROJECT_LEN {
            return Err(ProjectNameError::TooLong);
        }
        let ok_char = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if !name.chars().all(ok_char) || name.starts_with('-') {
            return Err(ProjectNameError::BadChar(name.escape_debug().to_string()));
        }
        Ok(Self(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ProjectId({})", self.0)
    }
}

/// A short public name for one of a project's access keys, sent in the
/// clear so that a proxy holding several keys for a project (while one is
/// rotated out) knows which one to try. It is derived from the key, so it
/// needs no configuration: the first four bytes of
/// SHA-256(“wasmtap key id” ‖ project ‖ secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct KeyId(pub u32);

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08x}", self.0)
    }
}

/// A project access key: the project it belongs to and its 256-bit secret.
///
/// `Debug` and `Display` never show the secret. [`AccessKey::to_key_string`]
/// is the only way to get the text form back.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessKey {
    project: ProjectId,
    secret: Key256,
}

impl AccessKey {
    /// Issues a fresh key for `project`.
    pub fn generate(project: ProjectId, rng: &mut impl rand::CryptoRng) -> Self {
        Self { project, secret: Key256::random(rng) }
    }

    /// Builds a key from its parts.
    pub fn from_parts(project: ProjectId, secret: Key256) -> Self {
        Self { project, secret }
    }

    /// The project this key belongs to.
    pub fn project(&self) -> &ProjectId {
        &self.project
    }

    /// The 256-bit project secret.
    pub fn secret(&self) -> &Key256 {
        &self.secret
    }

    /// This key's [`KeyId`].
    pub fn key_id(&self) -> KeyId {
        let h = crate::crypto::sha256(&[
            b"wasmtap key id",
            self.project.as_str().as_bytes(),
            self.secret.expose(),
        ]);
        KeyId(u32::from_be_bytes([h[0], h[1], h[2], h[3]]))
    }

    /// The text form, for `wasmtap-proxy keygen` and config files.
    ///
    /// The returned string holds the secret: do not log it.
    pub fn to_key_string(&self) -> zeroize::Zeroizing<String> {
        let mut body = zeroize::Zeroizing::new([0u8; SECRET_LEN + CHECK_LEN]);
        body[..SECRET_LEN].copy_from_slice(self.secret.expose());
        body[SECRET_LEN..].copy_from_slice(&checksum(&self.project, self.secret.expose()));
        zeroize::Zeroizing::new(format!(
            "{PREFIX}_{}_{}",
            self.project,
            URL_SAFE_NO_PAD.encode(body.as_slice())
        ))
    }
}

fn checksum(project: &ProjectId, secret: &[u8; SECRET_LEN]) -> [u8; CHECK_LEN] {
    let mut h = crc32fast::Hasher::new();
    h.update(PREFIX.as_bytes());
    h.update(project.as_str().as_bytes());
    h.update(secret);
    h.finalize().to_be_bytes()
}

impl FromStr for AccessKey {
    type Err = AccessKeyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let rest = s
            .strip_prefix(PREFIX)
            .and_then(|r| r.strip_prefix('_'))
            .ok_or(AccessKeyError::BadPrefix)?;
        let (project, body) = rest.split_once('_').ok_or(AccessKeyError::Malformed)?;
        let project = ProjectId::new(project)?;
        let mut decoded = zeroize::Zeroizing::new(
            URL_SAFE_NO_PAD.decode(body).map_err(|_| AccessKeyError::BadEncoding)?,
        );
        if decoded.len() != SECRET_LEN + CHECK_LEN {
            return Err(AccessKeyError::BadEncoding);
        }
        let mut secret = [0u8; SECRET_LEN];
        secret.copy_from_slice(&decoded[..SECRET_LEN]);
        let secret = Key256::new(secret);
        let expected = checksum(&project, secret.expose());
        if !bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], &decoded[SECRET_LEN..])) {
            return Err(AccessKeyError::Checksum);
        }
        zeroize::Zeroize::zeroize(&mut *decoded);
        Ok(Self { project, secret })
    }
}

impl fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessKey")
            .field("project", &self.project)
            .field("secret", &self.secret)
            .finish()
    }
}

impl fmt::Display for AccessKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}_{}_[redacted]", self.project)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn key() -> AccessKey {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        AccessKey::generate(ProjectId::new("shop-prod").expect("valid"), &mut rng)
    }

    #[test]
    fn round_trips_through_text() {
        let k = key();
        let text = k.to_key_string();
        assert!(text.starts_with("wtap1_shop-prod_"));
        let back: AccessKey = text.parse().expect("parses");
        assert_eq!(back, k);
    }

    #[test]
    fn never_prints_the_secret() {
        let k = key();
        let text = k.to_key_string();
        let body = text.rsplit('_').next().expect("body");
        for shown in [format!("{k:?}"), format!("{k}")] {
            assert!(!shown.contains(body), "{shown}");
            assert!(shown.contains("redacted"));
        }
    }

    #[test]
    fn every_single_character_typo_is_caught() {
        let text = key().to_key_string().to_string();
        let alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        for (i, c) in text.char_indices() {
            for r in alphabet.chars().filter(|&r| r != c) {
                let mut typo = text.clone();
                typo.replace_range(i..i + 1, r.encode_utf8(&mut [0; 4]));
                assert!(typo.parse::<AccessKey>().is_err(), "typo at {i} accepted: {typo}");
            }
        }
    }

    #[test]
    fn bad_keys_say_why() {
        let text = key().to_key_string().to_string();
        assert_eq!("nope".parse::<AccessKey>(), Err(AccessKeyError::BadPrefix));
        assert_eq!("wtap1_x".parse::<AccessKey>(), Err(AccessKeyError::Malformed));
        assert_eq!(text[..text.len() - 3].parse::<AccessKey>(), Err(AccessKeyError::BadEncoding));
        assert!(matches!("wtap1_Bad_xx".parse::<AccessKey>(), Err(AccessKeyError::Project(_))));
        let other = text.replacen("shop-prod", "shop-prox", 1);
        assert_eq!(other.parse::<AccessKey>(), Err(AccessKeyError::Checksum));
    }

    #[test]
    fn key_ids_differ_between_keys_and_stay_put() {
        let k = key();
        assert_eq!(k.key_id(), k.clone().key_id());
        let other = AccessKey::generate(k.project().clone(), &mut rand::rng());
        assert_ne!(k.key_id(), other.key_id());
        assert_eq!(k.key_id().to_string().len(), 8);
    }

    #[test]
    fn project_names_are_validated() {
        assert!(ProjectId::new("a").is_ok());
        assert_eq!(ProjectId::new(""), Err(ProjectNameError::Empty));
        assert_eq!(ProjectId::new(&"a".repeat(65)), Err(ProjectNameError::TooLong));
        assert!(ProjectId::new("-a").is_err());
        assert!(ProjectId::new("a_b").is_err());
        assert!(ProjectId::new("A").is_err());
    }
}
