//! `[cluster]`: proxies that share a NATS JetStream cluster.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use zeroize::Zeroizing;

use super::ConfigError;

/// The stream batches go to, unless configured.
pub const DEFAULT_STREAM: &str = "wasmtap";
/// Copies JetStream keeps of each batch, unless configured.
pub const DEFAULT_REPLICAS: usize = 3;
/// How long JetStream remembers a message id, unless configured.
pub const DEFAULT_DUPLICATE_WINDOW: Duration = Duration::from_secs(600);
/// How long a publish waits for JetStream's confirmation, unless configured.
pub const DEFAULT_CONFIRM_TIMEOUT: Duration = Duration::from_secs(10);
/// Most replicas JetStream allows.
pub const MAX_REPLICAS: usize = 5;
/// How long the stream keeps a batch, unless configured: long enough for
/// a proxy or a remote-write backend that was down a week to catch up.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(7 * 24 * 3600);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    nats: Vec<String>,
    name: Option<String>,
    stream: Option<String>,
    replicas: Option<usize>,
    duplicate_window: Option<String>,
    confirm_timeout: Option<String>,
    store: Option<bool>,
    max_age: Option<String>,
    max_bytes: Option<String>,
    credentials_file: Option<PathBuf>,
    nkey_seed_file: Option<PathBuf>,
    user: Option<String>,
    password: Option<String>,
    token: Option<String>,
    tls_ca_file: Option<PathBuf>,
    tls_cert_file: Option<PathBuf>,
    tls_key_file: Option<PathBuf>,
    tls_required: Option<bool>,
}

/// How the proxy proves itself to NATS.
#[derive(Clone, Default)]
pub enum NatsAuth {
    /// No credentials.
    #[default]
    None,
    /// A credentials file (user JWT and nkey seed), as `nsc` writes it.
    CredentialsFile(PathBuf),
    /// A file holding an nkey seed (`SU…`).
    NkeySeedFile(PathBuf),
    /// User name and password.
    UserPassword(String, Zeroizing<String>),
    /// A token.
    Token(Zeroizing<String>),
}

impl std::fmt::Debug for NatsAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::None => f.write_str("None"),
            Self::CredentialsFile(p) => f.debug_tuple("CredentialsFile").field(p).finish(),
            Self::NkeySeedFile(p) => f.debug_tuple("NkeySeedFile").field(p).finish(),
            Self::UserPassword(u, _) => f.debug_tuple("UserPassword").field(u).field(&"…").finish(),
            Self::Token(_) => f.write_str("Token(…)"),
        }
    }
}

/// TLS towards the NATS servers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NatsTls {
    /// Require TLS even for `nats://` URLs.
    pub required: bool,
    /// Extra certificate authorities (PEM) trusted for the servers.
    pub ca_file: Option<PathBuf>,
    /// A client certificate and its key (PEM), for servers that verify clients.
    pub client: Option<(PathBuf, PathBuf)>,
}

/// The validated `[cluster]` section.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    /// NATS server URLs (`nats://` or `tls://`), tried in turn.
    pub nats: Vec<String>,
    /// This proxy's name in the cluster: its durable consumers are named
    /// after it. Unique per proxy, stable across restarts.
    pub name: String,
    /// The JetStream stream of batches.
    pub stream: String,
    /// Copies JetStream keeps of each batch.
    pub replicas: usize,
    /// How long JetStream remembers a batch's message id.
    pub duplicate_window: Duration,
    /// How long a batch waits for JetStream's confirmation before the
    /// session gives up on it (the agent resends it).
    pub confirm_timeout: Duration,
    /// Keep a local copy of the cluster's batches in the embedded store,
    /// for `query`, `/metrics` and remote write.
    pub store: bool,
    /// How long the stream keeps a batch (`None`: for good).
    pub max_age: Option<Duration>,
    /// Most bytes the stream keeps, the oldest batches going first
    /// (`None`: no cap).
    pub max_bytes: Option<u64>,
    /// Credentials.
    pub auth: NatsAuth,
    /// TLS settings.
    pub tls: NatsTls,
}

/// Whether `name` can be a JetStream stream or consumer name: letters,
/// digits, `-` and `_`, at most 64.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// This machine's host name, as a default proxy name.
fn host_name() -> Option<String> {
    let text = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name: String = text
        .trim()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .take(64)
        .collect();
    (!name.is_empty()).then_some(name)
}

pub(super) fn validate(raw: RawCluster, base: &Path) -> Result<ClusterConfig, ConfigError> {
    let bad = |problem: String| ConfigError::Section("cluster", problem);
    if raw.nats.is_empty() {
        return Err(
            bad("nats needs at least one server URL, like \"nats://10.0.0.1:4222\"".into()),
        );
    }
    for url in &raw.nats {
        let rest = url.strip_prefix("nats://").or_else(|| url.strip_prefix("tls://"));
        if rest.is_none_or(|r| r.is_empty() || r.contains(['/', ' '])) {
            return Err(bad(format!(
                "nats = {url:?}: a server URL is nats://HOST:PORT or tls://HOST:PORT"
            )));
        }
        if rest.is_some_and(|r| r.contains('@')) {
            return Err(bad(format!(
                "nats = {url:?}: put credentials in user/password, token or credentials_file, not in the URL"
            )));
        }
    }
    let name = match raw.name {
        Some(n) if valid_name(&n) => n,
        Some(n) => {
            return Err(bad(format!(
                "name = {n:?}: use letters, digits, `-` and `_` (at most 64)"
            )));
        }
        None => host_name()
            .ok_or_else(|| bad("name is needed: this machine has no host name".into()))?,
    };
    let stream = raw.stream.unwrap_or_else(|| DEFAULT_STREAM.to_owned());
    if !valid_name(&stream) {
        return Err(bad(format!(
            "stream = {stream:?}: use letters, digits, `-` and `_` (at most 64)"
        )));
    }
    let replicas = raw.replicas.unwrap_or(DEFAULT_REPLICAS);
    if !(1..=MAX_REPLICAS).contains(&replicas) {
        return Err(bad(format!("replicas = {replicas}: JetStream keeps 1 to {MAX_REPLICAS}")));
    }
    let duration = |key: &str, text: Option<String>, default: Duration| match text {
        Some(t) => super::duration(key, &t).map_err(bad),
        None => Ok(default),
    };
    let duplicate_window =
        duration("duplicate_window", raw.duplicate_window, DEFAULT_DUPLICATE_WINDOW)?;
    if duplicate_window < Duration::from_secs(1) {
        return Err(bad("duplicate_window must be at least 1s".into()));
    }
    let confirm_timeout =
        duration("confirm_timeout", raw.confirm_timeout, DEFAULT_CONFIRM_TIMEOUT)?;
    if confirm_timeout < Duration::from_millis(100) {
        return Err(bad("confirm_timeout must be at least 100ms".into()));
    }
    let max_age = match raw.max_age.as_deref() {
        None => Some(DEFAULT_MAX_AGE),
        Some("off") => None,
        Some(t) => Some(super::limits::bounded("max_age", t, super::MAX_KEEP).map_err(bad)?),
    };
    if max_age.is_some_and(|a| a < Duration::from_secs(60)) {
        return Err(bad("max_age must be at least 1m (\"off\" keeps everything)".into()));
    }
    let max_bytes = match raw.max_bytes.as_deref() {
        None | Some("off") => None,
        Some(t) => Some(super::limits::size("max_bytes", t).map_err(bad)?),
    };
    let file = |key: &str, p: PathBuf| {
        let p = base.join(p);
        if p.is_file() { Ok(p) } else { Err(bad(format!("{key}: {} is not a file", p.display()))) }
    };
    let mut auths = Vec::new();
    if let Some(p) = raw.credentials_file {
        auths.push(NatsAuth::CredentialsFile(file("credentials_file", p)?));
    }
    if let Some(p) = raw.nkey_seed_file {
        auths.push(NatsAuth::NkeySeedFile(file("nkey_seed_file", p)?));
    }
    match (raw.user, raw.password) {
        (Some(u), Some(p)) => auths.push(NatsAuth::UserPassword(u, Zeroizing::new(p))),
        (None, None) => {}
        _ => return Err(bad("user and password go together".into())),
    }
    if let Some(t) = raw.token {
        auths.push(NatsAuth::Token(Zeroizing::new(t)));
    }
    if auths.len() > 1 {
        return Err(bad(
            "choose one of credentials_file, nkey_seed_file, user/password and token".into()
        ));
    }
    let client = match (raw.tls_cert_file, raw.tls_key_file) {
        (Some(c), Some(k)) => Some((file("tls_cert_file", c)?, file("tls_key_file", k)?)),
        (None, None) => None,
        _ => return Err(bad("tls_cert_file and tls_key_file go together".into())),
    };
    let tls = NatsTls {
        required: raw.tls_required.unwrap_or(false)
            || raw.nats.iter().any(|u| u.starts_with("tls://")),
        ca_file: raw.tls_ca_file.map(|p| file("tls_ca_file", p)).transpose()?,
        client,
    };
    Ok(ClusterConfig {
        nats: raw.nats,
        name,
        stream,
        replicas,
        duplicate_window,
        confirm_timeout,
        store: raw.store.unwrap_or(true),
        max_age,
        max_bytes,
        auth: auths.pop().unwrap_or_default(),
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn parse(section: &str) -> Result<Config, ConfigError> {
        Config::parse(&format!("data_dir = \"d\"\n[cluster]\n{section}\n"), Path::new("."))
    }

    #[test]
    fn defaults_and_settings() {
        let c = parse("nats = [\"nats://127.0.0.1:4222\"]\nname = \"proxy-a\"").expect("valid");
        let cluster = c.cluster.expect("[cluster]");
        assert_eq!(cluster.name, "proxy-a");
        assert_eq!(cluster.stream, DEFAULT_STREAM);
        assert_eq!(cluster.replicas, DEFAULT_REPLICAS);
        assert_eq!(cluster.duplicate_window, DEFAULT_DUPLICATE_WINDOW);
        assert!(cluster.store && !cluster.tls.required);
        assert_eq!((cluster.max_age, cluster.max_bytes), (Some(DEFAULT_MAX_AGE), None));
        let c = parse(
            "nats = [\"tls://a:4222\", \"tls://b:4222\"]\nname = \"b\"\nstream = \"metrics_1\"\n\
             replicas = 1\nduplicate_window = \"2m\"\nstore = false\nmax_age = \"off\"\nmax_bytes = \"10GiB\"\nuser = \"u\"\npassword = \"hunter2hunter2\"",
        )
        .expect("valid");
        let cluster = c.cluster.expect("[cluster]");
        assert_eq!((cluster.replicas, cluster.duplicate_window.as_secs()), (1, 120));
        assert_eq!((cluster.max_age, cluster.max_bytes), (None, Some(10 << 30)));
        assert!(!cluster.store && cluster.tls.required);
        let shown = format!("{cluster:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(
            Config::parse("data_dir = \"d\"\n", Path::new(".")).expect("valid").cluster.is_none()
        );
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        let n = "nats = [\"nats://h:4222\"]\nname = \"p\"\n";
        let cases = [
            ("nats = []".to_owned(), "at least one server URL"),
            ("nats = [\"http://h:4222\"]".to_owned(), "nats://HOST:PORT"),
            ("nats = [\"nats://u:p@h:4222\"]".to_owned(), "not in the URL"),
            ("name = \"p\"".to_owned(), "missing field `nats`"),
            (format!("{n}stream = \"a.b\""), "stream = \"a.b\""),
            ("nats = [\"nats://h:4222\"]\nname = \"a b\"".to_owned(), "name = \"a b\""),
            (format!("{n}replicas = 0"), "1 to 5"),
            (format!("{n}replicas = 7"), "1 to 5"),
            (format!("{n}duplicate_window = \"soon\""), "duplicate_window"),
            (format!("{n}duplicate_window = \"10ms\""), "at least 1s"),
            (format!("{n}user = \"u\""), "go together"),
            (format!("{n}max_age = \"10s\""), "at least 1m"),
            (format!("{n}max_age = \"later\""), "max_age"),
            (format!("{n}max_bytes = \"lots\""), "max_bytes"),
            (format!("{n}user = \"u\"\npassword = \"p\"\ntoken = \"t\""), "choose one"),
            (format!("{n}credentials_file = \"missing.creds\""), "missing.creds is not a file"),
            (format!("{n}tls_cert_file = \"c.pem\""), "go together"),
            (format!("{n}colour = 1"), "unknown field `colour`"),
        ];
        for (text, needle) in cases {
            let err = parse(&text).expect_err(&text).to_string();
            assert!(err.contains(needle), "{err:?} should contain {needle:?}");
            assert!(err.starts_with("[cluster]") || needle.contains("field"), "{err}");
        }
    }
}
