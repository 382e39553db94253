//! Identity key files on disk (feature `keyfile`): the one part of this
//! crate that touches the filesystem, kept apart from the sans-IO core.
//!
//! A key file holds one [`StaticKey`] in its text form. It is created with
//! mode 0600 (owner only), written and synced before it is used, and
//! refused when its group or others may read it: a key that others could
//! have copied is no proof of identity.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use crate::identity::{IdentityError, StaticKey};

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// Reading, creating or syncing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Group or others may read or write it.
    #[error(
        "{path}: mode {mode:o} lets others read the private key; fix it with `chmod 600 {path}` \
         (and replace the key if others may have copied it)"
    )]
    Exposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file does not hold a key.
    #[error("{path}: not a wasmtap key file: {source}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// Why.
        source: IdentityError,
    },
}

/// Whether the key was read or made.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// It was in the file already.
    Loaded,
    /// The file was missing; a fresh key was written to it.
    Created,
}

/// Reads the key in `path`.
pub fn load(path: &Path) -> Result<StaticKey, KeyFileError> {
    let io = |source| KeyFileError::Io { path: path.to_owned(), source };
    let file = File::open(path).map_err(io)?;
    let mode = file.metadata().map_err(io)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Exposed { path: path.to_owned(), mode });
    }
    let text = zeroize::Zeroizing::new(std::io::read_to_string(file).map_err(io)?);
    StaticKey::from_file_text(&text)
        .map_err(|source| KeyFileError::Malformed { path: path.to_owned(), source })
}

/// Reads the key in `path`, or creates the file with a fresh key when it
/// does not exist (never overwriting one: two processes racing both end up
/// with the key that won).
pub fn load_or_create(
    path: &Path,
    rng: &mut impl rand::CryptoRng,
) -> Result<(StaticKey, Origin), KeyFileError> {
    let io = |source| KeyFileError::Io { path: path.to_owned(), source };
    if path.exists() {
        return Ok((load(path)?, Origin::Loaded));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let key = StaticKey::generate(rng);
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).mode(0o600).open(&tmp)?;
        f.write_all(key.to_file_text().as_bytes())?;
        f.sync_all()?;
        // Publish without replacing a file another process created meanwhile.
        std::fs::hard_link(&tmp, path)
    })();
    let _ = std::fs::remove_file(&tmp);
    match written {
        Ok(()) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
            }
            Ok((key, Origin::Created))
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            Ok((load(path)?, Origin::Loaded))
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "wasmtap-keyfile-{}-{}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir_all(&d).expect("temp dir");
        d
    }

    #[test]
    fn created_once_then_loaded_with_owner_only_mode() {
        let d = dir();
        let path = d.join("sub/identity.key");
        let (made, origin) = load_or_create(&path, &mut rand::rng()).expect("created");
        assert_eq!(origin, Origin::Created);
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, origin) = load_or_create(&path, &mut rand::rng()).expect("loaded");
        assert_eq!((again.identity(), origin), (made.identity(), Origin::Loaded));
        std::fs::remove_dir_all(d).expect("cleanup");
    }

    #[test]
    fn exposed_and_malformed_files_are_refused() {
        let d = dir();
        let path = d.join("identity.key");
        load_or_create(&path, &mut rand::rng()).expect("created");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        let err = load(&path).expect_err("readable by others");
        assert!(matches!(err, KeyFileError::Exposed { mode: 0o644, .. }), "{err}");
        assert!(err.to_string().contains("chmod 600"));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        std::fs::write(&path, "not a key\n").expect("write");
        assert!(matches!(load(&path), Err(KeyFileError::Malformed { .. })));
        std::fs::remove_dir_all(d).expect("cleanup");
    }
}
