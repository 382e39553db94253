//! Who this agent is and which proxy it trusts.
//!
//! - The agent's identity key lives in `<data_dir>/agent.key` (mode 0600),
//!   created at first start. The proxy binds the agent's name to it.
//! - The proxy's identity is pinned: by `[server] proxy_identity` when set,
//!   otherwise by the first identity a proxy proves, kept in
//!   `<data_dir>/proxy.identity`. A proxy that proves another identity is
//!   refused before anything is sent to it.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, PoisonError};

use wasmtap_protocol::identity::{Identity, StaticKey};
use wasmtap_protocol::keyfile::{self, KeyFileError, Origin};

/// The agent's key file in the data directory.
pub const AGENT_KEY_FILE: &str = "agent.key";
/// The learned proxy identity in the data directory.
pub const PIN_FILE: &str = "proxy.identity";

/// Why the identities could not be loaded or the pin recorded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityError {
    /// The agent's key file.
    #[error(transparent)]
    Key(#[from] KeyFileError),
    /// The pin file could not be read or written.
    #[error("{path}: {message}")]
    Pin {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// Where the pin comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinSource {
    /// `[server] proxy_identity`.
    Config,
    /// Learned at first contact.
    Learned,
}

/// The agent's identity and its pin of the proxy's.
#[derive(Debug)]
pub struct Identities {
    /// This agent's key pair.
    pub agent: StaticKey,
    pin: Mutex<Option<(Identity, PinSource)>>,
    pin_file: PathBuf,
}

impl Identities {
    /// Loads (or creates) the agent's key in `data_dir` and the pin: the
    /// configured identity, else the learned one if any.
    pub fn load(data_dir: &Path, configured: Option<Identity>) -> Result<Self, IdentityError> {
        let (agent, origin) =
            keyfile::load_or_create(&data_dir.join(AGENT_KEY_FILE), &mut rand::rng())?;
        if origin == Origin::Created {
            tracing::info!(identity = %agent.identity(), "created this agent's identity key");
        }
        let pin_file = data_dir.join(PIN_FILE);
        let pin = match configured {
            Some(id) => Some((id, PinSource::Config)),
            None => read_pin(&pin_file)?.map(|id| (id, PinSource::Learned)),
        };
        Ok(Self { agent, pin: Mutex::new(pin), pin_file })
    }

    /// The proxy identity this agent insists on, if any yet.
    pub fn pinned(&self) -> Option<(Identity, PinSource)> {
        *self.pin.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The file a learned pin is kept in.
    pub fn pin_file(&self) -> &Path {
        &self.pin_file
    }

    /// Pins `proxy` when nothing is pinned yet (first contact), keeping it
    /// on disk; `true` when it was pinned now.
    pub fn learn(&self, proxy: Identity) -> Result<bool, IdentityError> {
        let mut pin = self.pin.lock().unwrap_or_else(PoisonError::into_inner);
        if pin.is_some() {
            return Ok(false);
        }
        write_pin(&self.pin_file, &proxy)?;
        *pin = Some((proxy, PinSource::Learned));
        Ok(true)
    }
}

fn read_pin(path: &Path) -> Result<Option<Identity>, IdentityError> {
    let err = |message: String| IdentityError::Pin { path: path.to_owned(), message };
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map(Some).map_err(|e| {
            err(format!("{e}; delete the file to pin the next proxy's identity again"))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(e.to_string())),
    }
}

fn write_pin(path: &Path, id: &Identity) -> Result<(), IdentityError> {
    let err =
        |e: std::io::Error| IdentityError::Pin { path: path.to_owned(), message: e.to_string() };
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp).map_err(err)?;
    writeln!(f, "{id}").and_then(|()| f.sync_all()).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proxy() -> Identity {
        StaticKey::generate(&mut rand::rng()).identity()
    }

    #[test]
    fn the_first_proxy_is_pinned_and_remembered() {
        let dir = tempfile::tempdir().expect("dir");
        let ids = Identities::load(dir.path(), None).expect("load");
        assert_eq!(ids.pinned(), None);
        let (first, second) = (proxy(), proxy());
        assert!(ids.learn(first).expect("pin"));
        assert!(!ids.learn(second).expect("already pinned"));
        let again = Identities::load(dir.path(), None).expect("reload");
        assert_eq!(again.pinned(), Some((first, PinSource::Learned)));
        assert_eq!(again.agent.identity(), ids.agent.identity(), "the agent keeps its key");
    }

    #[test]
    fn a_configured_pin_wins_and_a_damaged_pin_file_is_an_error() {
        let dir = tempfile::tempdir().expect("dir");
        let (learned, configured) = (proxy(), proxy());
        Identities::load(dir.path(), None).expect("load").learn(learned).expect("pin");
        let ids = Identities::load(dir.path(), Some(configured)).expect("load");
        assert_eq!(ids.pinned(), Some((configured, PinSource::Config)));
        std::fs::write(dir.path().join(PIN_FILE), "wtapid1_garbage\n").expect("write");
        let err = Identities::load(dir.path(), None).expect_err("damaged");
        assert!(err.to_string().contains("delete the file"), "{err}");
    }
}
