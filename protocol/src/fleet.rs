//! Collector distribution (the fleet): the control commands a proxy sends
//! to bring an agent's managed collectors to the project's catalog, and the
//! JSON documents both sides exchange. The commands travel as ordinary
//! control requests, sealed on the data session: an agent that predates
//! them answers "unknown command" and is left alone.
//!
//! One sync of one agent:
//!
//! 1. [`STATE`] → [`State`]: the managed collectors the agent has, with
//!    their status, and the blobs it holds in part.
//! 2. [`PUT`] `SHA256 SIZE OFFSET DATA` (DATA in base64, at most [`CHUNK`]
//!    bytes) for every blob the agent lacks, from where its partial copy
//!    ends → [`Received`]. A transfer cut by a lost session resumes there.
//! 3. [`APPLY`] `DESIRED` (a [`Desired`] document) → [`State`] after
//!    installing: every wanted collector whose blob is complete and matches
//!    its SHA-256, whose manifest the agent's bounds allow and whose
//!    signature it trusts is installed; every managed collector not wanted
//!    is removed. Refusals are reported with their reason.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Asks for the agent's [`State`].
pub const STATE: &str = "fleet-state";
/// Sends a piece of a blob: `fleet-put SHA256 SIZE OFFSET BASE64`.
pub const PUT: &str = "fleet-put";
/// Sends the [`Desired`] set: `fleet-apply JSON`.
pub const APPLY: &str = "fleet-apply";
/// Largest piece of a blob in one [`PUT`] (before base64): a request of
/// about 350 KiB, well under a frame's 1 MiB.
pub const CHUNK: usize = 256 << 10;
/// Largest collector a proxy publishes and an agent accepts by default.
pub const DEFAULT_MAX_BLOB: u64 = 32 << 20;
/// Longest collector name.
pub const MAX_NAME: usize = 64;

/// What an agent has ([`STATE`]'s answer, and [`APPLY`]'s).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Whether the agent takes pushed collectors at all (`[plugins] managed`).
    pub managed: bool,
    /// Managed collectors, installed or refused.
    pub collectors: Vec<Installed>,
    /// Blobs received in part, to resume.
    #[serde(default)]
    pub partial: Vec<Partial>,
}

/// One managed collector on an agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installed {
    /// The collector's name.
    pub name: String,
    /// SHA-256 (hex) of the component the status is about.
    pub sha256: String,
    /// [`files_sha256`] of the manifest and signature installed with it
    /// (or refused with it): two releases of one component that differ
    /// only there are told apart by it. Absent from older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub files_sha256: Option<String>,
    /// How it fares.
    pub status: Status,
    /// Calls that failed since it was loaded (traps, errors, timeouts).
    #[serde(default)]
    pub failures: u64,
    /// Calls made since it was loaded, failed ones included. Absent from
    /// older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calls: Option<u64>,
    /// Why it is refused, failing or quarantined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The status of a managed collector on an agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Installed, not loaded yet (or loading).
    Installed,
    /// Loaded and called on its interval.
    Running,
    /// Loaded, its last call failed.
    Failing,
    /// Failed too often in a row: no longer called.
    Quarantined,
    /// Turned off by its manifest or an operator.
    Disabled,
    /// Installed but not loaded: the component did not load (the reason says why).
    Broken,
    /// Not installed: over the agent's bounds, unsigned, damaged, too large.
    Refused,
    /// Installed, but a local collector of the same name runs instead.
    Shadowed,
}

impl Status {
    /// Whether this status counts against a release under watch.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Failing | Self::Quarantined | Self::Broken | Self::Refused)
    }

    /// Its name, as the JSON documents spell it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Installed => "installed",
            Self::Running => "running",
            Self::Failing => "failing",
            Self::Quarantined => "quarantined",
            Self::Disabled => "disabled",
            Self::Broken => "broken",
            Self::Refused => "refused",
            Self::Shadowed => "shadowed",
        }
    }
}

/// A blob an agent holds in part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Partial {
    /// SHA-256 (hex) of the whole blob.
    pub sha256: String,
    /// Bytes received so far.
    pub bytes: u64,
}

/// [`PUT`]'s answer: how much of the blob the agent now holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Received {
    /// SHA-256 (hex) of the whole blob.
    pub sha256: String,
    /// Bytes held: where the next piece starts.
    pub bytes: u64,
}

/// The collectors an agent should run ([`APPLY`]'s argument).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    /// Every managed collector the agent should have; others go.
    pub collectors: Vec<Wanted>,
}

/// One collector an agent should run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Wanted {
    /// The collector's name (its `describe` name).
    pub name: String,
    /// Its declared version, for the logs.
    pub version: String,
    /// SHA-256 (hex) of the component.
    pub sha256: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its manifest (TOML text); none grants nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<String>,
    /// Its signature file's text, if it was published with one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// The SHA-256 of `bytes` in lower-case hex, as blobs are named.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// The SHA-256 (hex) of a release's manifest and signature texts, each
/// absent or present with its length, so that no two different pairs
/// share an input.
pub fn files_sha256(manifest: Option<&str>, signature: Option<&str>) -> String {
    let mut h = Sha256::new();
    for text in [manifest, signature] {
        match text {
            None => h.update([0u8]),
            Some(t) => {
                h.update([1u8]);
                h.update((t.len() as u64).to_be_bytes());
                h.update(t.as_bytes());
            }
        }
    }
    hex(&h.finalize())
}

impl Installed {
    /// Whether this report is about the component `sha256` with the files
    /// whose [`files_sha256`] is `files` (a report without files digest, from an
    /// older agent, is judged by the component alone).
    pub fn is(&self, name: &str, sha256: &str, files: &str) -> bool {
        self.name == name
            && self.sha256 == sha256
            && self.files_sha256.as_deref().is_none_or(|f| f == files)
    }

    /// Whether it runs and has been called without failing at least once
    /// (an older agent that does not count calls: whether it runs).
    pub fn has_run(&self) -> bool {
        self.status == Status::Running && self.calls.is_none_or(|c| c > self.failures)
    }
}

impl Wanted {
    /// [`files_sha256`] of this wanted version's manifest and signature.
    pub fn files_sha256(&self) -> String {
        files_sha256(self.manifest.as_deref(), self.signature.as_deref())
    }
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `text` is a SHA-256 in lower-case hex (64 digits), safe to use
/// in a file name.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Whether `name` may name a managed collector (and its files): 1 to
/// [`MAX_NAME`] characters of `a-z`, `0-9`, `_` and `-`, starting with a
/// letter or digit.
pub fn is_collector_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_digests_are_checked_before_they_name_files() {
        for ok in ["cpu", "my-disk_2", "0x"] {
            assert!(is_collector_name(ok), "{ok}");
        }
        for bad in ["", "..", "a/b", "-x", "_x", "Cpu", "a b", &"x".repeat(MAX_NAME + 1)] {
            assert!(!is_collector_name(bad), "{bad}");
        }
        let sum = sha256_hex(b"abc");
        assert_eq!(sum, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert!(is_sha256_hex(&sum));
        assert!(!is_sha256_hex(&sum.to_uppercase()));
        assert!(!is_sha256_hex(&sum[1..]));
        assert!(!is_sha256_hex("../../../../../../../../../../../../../../../../etc/passwd...."));
    }

    #[test]
    fn documents_keep_their_json_form() {
        let state = State {
            managed: true,
            collectors: vec![Installed {
                name: "cpu".into(),
                sha256: sha256_hex(b"x"),
                status: Status::Refused,
                failures: 0,
                calls: None,
                reason: Some("grants read /etc".into()),
                files_sha256: Some(files_sha256(Some("interval = \"1s\""), None)),
            }],
            partial: vec![Partial { sha256: sha256_hex(b"y"), bytes: 5 }],
        };
        let text = serde_json::to_string(&state).expect("encodes");
        assert!(text.contains(r#""status":"refused""#), "{text}");
        assert_eq!(serde_json::from_str::<State>(&text).expect("decodes"), state);
        // Optional parts may be left out.
        let wanted: Wanted =
            serde_json::from_str(r#"{"name":"cpu","version":"1","sha256":"00","size":3}"#)
                .expect("decodes");
        assert_eq!((wanted.manifest, wanted.signature), (None, None));
        assert!(Status::Quarantined.is_failure() && !Status::Shadowed.is_failure());
        for status in [Status::Installed, Status::Broken, Status::Shadowed, Status::Failing] {
            let json = serde_json::to_string(&status).expect("encodes");
            assert_eq!(json, format!("\"{}\"", status.name()));
        }
    }

    #[test]
    fn a_release_is_its_component_and_its_files() {
        let pairs = [
            (None, None),
            (Some(""), None),
            (None, Some("")),
            (Some(""), Some("")),
            (Some("a"), Some("b")),
            (Some("ab"), None),
            (Some("a"), Some("")),
        ];
        let digests: std::collections::HashSet<String> =
            pairs.iter().map(|(m, s)| files_sha256(*m, *s)).collect();
        assert_eq!(digests.len(), pairs.len(), "every pair its own digest");

        let files = files_sha256(Some("m"), None);
        let mut c = Installed {
            name: "cpu".into(),
            sha256: "aa".into(),
            status: Status::Running,
            failures: 0,
            calls: Some(0),
            reason: None,
            files_sha256: Some(files.clone()),
        };
        // Loaded, never called yet: it has not run.
        assert!(!c.has_run());
        c.calls = Some(2);
        assert!(c.has_run());
        c.failures = 2;
        assert!(!c.has_run(), "every call failed");
        c.failures = 0;
        assert!(c.is("cpu", "aa", &files));
        assert!(!c.is("cpu", "aa", &files_sha256(Some("other"), None)));
        assert!(!c.is("cpu", "bb", &files) && !c.is("mem", "aa", &files));
        // An older agent's report: the component alone.
        c.files_sha256 = None;
        assert!(c.is("cpu", "aa", &files_sha256(Some("other"), None)));
    }
}
