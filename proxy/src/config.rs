//! The proxy's configuration file (`proxy.toml`), validated.
//!
//! The `[http]` section, `[[remote_write]]` entries and `[cluster]` are
//! validated in [`http`], [`remote_write`] and [`cluster`].

mod cluster;
mod http;
mod limits;
mod projects;
mod remote_write;

pub use cluster::{
    ClusterConfig, DEFAULT_CONFIRM_TIMEOUT, DEFAULT_DUPLICATE_WINDOW, DEFAULT_REPLICAS,
    DEFAULT_STREAM, NatsAuth, NatsTls,
};
pub use http::{
    DEFAULT_HTTP_LISTEN, DEFAULT_MAX_SERIES, DEFAULT_SERIES_TTL, HttpConfig, MIN_TOKEN_LEN, Token,
};
pub use limits::{Limits, MAX_KEEP, MAX_WAIT};
pub use projects::{DEFAULT_MAX_SESSIONS, Enroll, Project, Projects};
pub use remote_write::{
    DEFAULT_BATCH_SIZE, DEFAULT_BATCH_WAIT, DEFAULT_MAX_BACKOFF, DEFAULT_MIN_BACKOFF,
    DEFAULT_TIMEOUT, RemoteWriteConfig, SecretHeader,
};

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the proxy listens when the config names nothing.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:6600";
/// The identity key's file name in the data directory, by default.
pub const DEFAULT_IDENTITY_FILE: &str = "identity.key";

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Malformed TOML, unknown or mistyped keys.
    #[error("{path}: {source}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message.
        source: toml::de::Error,
    },
    /// A project entry is wrong.
    #[error("project `{project}`: {problem}")]
    Project {
        /// The project's name as written.
        project: String,
        /// What is wrong.
        problem: String,
    },
    /// `listen` is not a socket address.
    #[error("listen = {0:?} is not an address like \"0.0.0.0:6600\"")]
    Listen(String),
    /// The `[http]` section is wrong.
    #[error("[http]: {0}")]
    Http(String),
    /// A value in `[store]` or `[limits]` is wrong.
    #[error("[{0}]: {1}")]
    Section(&'static str, String),
    /// A `[[remote_write]]` entry is wrong.
    #[error("remote_write `{url}`: {problem}")]
    RemoteWrite {
        /// The entry's url as written.
        url: String,
        /// What is wrong.
        problem: String,
    },
}

/// Parses a duration such as `"10s"` or `"250ms"` for `key`.
fn duration(key: &str, text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("{key} = {text:?} is not a duration like \"10s\": {e}"))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    data_dir: PathBuf,
    identity_file: Option<PathBuf>,
    #[serde(default)]
    projects: Vec<projects::RawProject>,
    http: Option<http::RawHttp>,
    #[serde(default)]
    remote_write: Vec<remote_write::RawRemoteWrite>,
    store: Option<limits::RawStore>,
    limits: Option<limits::RawLimits>,
    fleet: Option<RawFleet>,
    cluster: Option<cluster::RawCluster>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    max_size: Option<String>,
}

/// `[fleet]`: collectors published to a project's agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// Largest component accepted for publishing.
    pub max_size: u64,
}

impl Default for FleetConfig {
    fn default() -> Self {
        Self { max_size: wasmtap_protocol::fleet::DEFAULT_MAX_BLOB }
    }
}

/// The validated proxy configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address agents connect to.
    pub listen: SocketAddr,
    /// Where the store lives.
    pub data_dir: PathBuf,
    /// The proxy's identity key (default `<data_dir>/identity.key`); proxies
    /// that serve the same agents share it.
    pub identity_file: PathBuf,
    /// The projects served, with their keys.
    pub projects: Projects,
    /// The `/metrics` and admin listener; off without an `[http]` section.
    pub http: Option<HttpConfig>,
    /// Remote-write endpoints every stored sample is pushed to.
    pub remote_write: Vec<RemoteWriteConfig>,
    /// How the store writes and keeps data.
    pub store: crate::store::StoreConfig,
    /// What the listener allows.
    pub limits: Limits,
    /// Collector distribution.
    pub fleet: FleetConfig,
    /// The NATS JetStream cluster shared with other proxies; none by default.
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    /// Reads and validates `path`; a relative `data_dir` is relative to the file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|e| match e {
            ConfigError::Toml { source, .. } => ConfigError::Toml { path: path.to_owned(), source },
            other => other,
        })
    }

    /// Parses config text; relative paths resolve against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|source| ConfigError::Toml { path: PathBuf::new(), source })?;
        let listen_text = raw.listen.unwrap_or_else(|| DEFAULT_LISTEN.to_owned());
        let listen = listen_text.parse().map_err(|_| ConfigError::Listen(listen_text))?;
        let projects = projects::validate(raw.projects)?;
        let http = raw.http.map(http::validate).transpose()?;
        let remote_write = raw
            .remote_write
            .into_iter()
            .map(|r| remote_write::validate(r, base))
            .collect::<Result<_, _>>()?;
        let store = limits::store(raw.store).map_err(|e| ConfigError::Section("store", e))?;
        let limits = limits::limits(raw.limits).map_err(|e| ConfigError::Section("limits", e))?;
        let data_dir = base.join(raw.data_dir);
        let identity_file = match raw.identity_file {
            Some(f) => base.join(f),
            None => data_dir.join(DEFAULT_IDENTITY_FILE),
        };
        let fleet = match raw.fleet.and_then(|f| f.max_size) {
            Some(text) => FleetConfig {
                max_size: limits::size("max_size", &text)
                    .map_err(|e| ConfigError::Section("fleet", e))?,
            },
            None => FleetConfig::default(),
        };
        let cluster = raw.cluster.map(|c| cluster::validate(c, base)).transpose()?;
        Ok(Self {
            listen,
            data_dir,
            identity_file,
            projects,
            http,
            remote_write,
            store,
            limits,
            fleet,
            cluster,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use wasmtap_protocol::access_key::{AccessKey, ProjectId};
    use wasmtap_protocol::handshake::ProjectKeys as _;

    fn key(project: &str) -> String {
        AccessKey::generate(ProjectId::new(project).expect("valid"), &mut rand::rng())
            .to_key_string()
            .to_string()
    }

    #[test]
    fn parses_projects() {
        let text = format!(
            "listen = \"127.0.0.1:7000\"\ndata_dir = \"d\"\n[[projects]]\nname = \"a\"\naccess_key = \"{}\"\n[[projects]]\nname = \"b\"\naccess_key = \"{}\"\n",
            key("a"),
            key("b")
        );
        let c = Config::parse(&text, Path::new("/srv")).expect("valid");
        assert_eq!(c.listen.port(), 7000);
        assert_eq!(c.data_dir, Path::new("/srv/d"));
        assert_eq!(c.identity_file, Path::new("/srv/d/identity.key"));
        assert_eq!(c.projects.len(), 2);
    }

    #[test]
    fn projects_hold_several_keys_enrolment_and_a_session_cap() {
        let (k1, k2) = (key("a"), key("a"));
        let text = format!(
            "data_dir = \"d\"\nidentity_file = \"/etc/wasmtap/id.key\"\n[[projects]]\nname = \"a\"\naccess_key = \"{k1}\"\naccess_keys = [\"{k2}\"]\nenroll = \"closed\"\nmax_sessions = 5\n"
        );
        let c = Config::parse(&text, Path::new("/srv")).expect("valid");
        assert_eq!(c.identity_file, Path::new("/etc/wasmtap/id.key"));
        let a = c.projects.get(&ProjectId::new("a").expect("valid")).expect("a");
        assert_eq!((a.keys.len(), a.enroll, a.max_sessions), (2, Enroll::Closed, 5));
        for k in [&k1, &k2] {
            let k: AccessKey = k.parse().expect("key");
            assert!(c.projects.secret("a", k.key_id()).is_some());
        }
        assert!(c.projects.serves("a") && !c.projects.serves("b"));
    }

    #[test]
    fn bad_entries_name_the_project_and_the_problem() {
        let cases = [
            (
                format!(
                    "data_dir = \"d\"\n[[projects]]\nname = \"a\"\naccess_key = \"{}\"\n",
                    key("b")
                ),
                "project `a`: access_key: key belongs to project `b`",
            ),
            (
                "data_dir = \"d\"\n[[projects]]\nname = \"a\"\naccess_key = \"wtap1_a_xyz\"\n"
                    .to_owned(),
                "project `a`: access_key",
            ),
            (
                format!(
                    "data_dir = \"d\"\n[[projects]]\nname = \"a\"\naccess_key = \"{0}\"\n[[projects]]\nname = \"a\"\naccess_key = \"{0}\"\n",
                    key("a")
                ),
                "listed twice",
            ),
            (
                format!(
                    "data_dir = \"d\"\n[[projects]]\nname = \"a\"\naccess_key = \"{0}\"\naccess_keys = [\"{0}\"]\n",
                    key("a")
                ),
                "is listed twice",
            ),
            ("data_dir = \"d\"\n[[projects]]\nname = \"a\"\n".to_owned(), "needs access_key"),
            (
                format!(
                    "data_dir = \"d\"\n[[projects]]\nname = \"a\"\naccess_key = \"{}\"\nenroll = \"maybe\"\n",
                    key("a")
                ),
                "enroll",
            ),
            (
                format!(
                    "data_dir = \"d\"\n[[projects]]\nname = \"a\"\naccess_key = \"{}\"\nmax_sessions = 0\n",
                    key("a")
                ),
                "max_sessions must be at least 1",
            ),
            ("data_dir = \"d\"\nlisten = \"nowhere\"\n".to_owned(), "listen"),
            ("data_dir = \"d\"\nport = 1\n".to_owned(), "unknown field"),
        ];
        check_errors(&cases);
    }

    fn check_errors(cases: &[(String, &str)]) {
        for (text, needle) in cases {
            let err = Config::parse(text, Path::new(".")).expect_err(text).to_string();
            assert!(err.contains(needle), "{err:?} should contain {needle:?}");
        }
    }

    #[test]
    fn http_and_remote_write_sections() {
        let text = "data_dir = \"d\"\n[http]\ntoken = \"0123456789abcdef\"\nseries_ttl = \"1m\"\n\
            [[remote_write]]\nurl = \"http://127.0.0.1:9090/api/v1/write\"\nbearer_token = \"secret-bearer\"\n\
            headers = { \"X-Scope-OrgID\" = \"shop\" }\nbatch_size = 10\n";
        let c = Config::parse(text, Path::new(".")).expect("valid");
        let http = c.http.as_ref().expect("[http] present");
        assert_eq!(http.listen.to_string(), DEFAULT_HTTP_LISTEN);
        assert_eq!(http.series_ttl, std::time::Duration::from_secs(60));
        assert_eq!(http.max_series, DEFAULT_MAX_SERIES);
        assert!(http.token.as_ref().is_some_and(|t| t.matches(b"0123456789abcdef")));
        assert_eq!(c.remote_write.len(), 1);
        assert_eq!(c.remote_write[0].batch_size, 10);
        assert_eq!(c.remote_write[0].headers.len(), 2);
        let shown = format!("{c:?}");
        assert!(!shown.contains("0123456789abcdef") && !shown.contains("secret-bearer"), "{shown}");
        assert!(Config::parse("data_dir = \"d\"\n", Path::new(".")).expect("valid").http.is_none());
        // max_series = 0: no table of latest values (the proxy's own families stay).
        let off = Config::parse("data_dir = \"d\"\n[http]\nmax_series = 0\n", Path::new("."));
        assert_eq!(off.expect("valid").http.expect("[http]").max_series, 0);
    }

    #[test]
    fn bad_http_and_remote_write_entries_say_what_is_wrong() {
        let rw = |extra: &str| {
            format!("data_dir = \"d\"\n[[remote_write]]\nurl = \"http://h:1/w\"\n{extra}\n")
        };
        let cases = [
            (
                "data_dir = \"d\"\n[http]\ntoken = \"short\"\n".to_owned(),
                "[http]: token must be at least 16",
            ),
            ("data_dir = \"d\"\n[http]\nlisten = \"x\"\n".to_owned(), "[http]: listen"),
            ("data_dir = \"d\"\n[http]\nmetrics = 1\n".to_owned(), "unknown field `metrics`"),
            ("data_dir = \"d\"\n[http]\nseries_ttl = \"soon\"\n".to_owned(), "series_ttl"),
            (
                "data_dir = \"d\"\n[[remote_write]]\nurl = \"https://h/w\"\ntls_ca_file = \"nope.pem\"\n".to_owned(),
                "nope.pem: No such file",
            ),
            (rw("tls_ca_file = \"ca.pem\""), "only for https://"),
            ("data_dir = \"d\"\n[[remote_write]]\nurl = \"ftp://h/w\"\n".to_owned(), "https://"),
            (
                "data_dir = \"d\"\n[[remote_write]]\nurl = \"http://u:p@h/w\"\n".to_owned(),
                "not in the url",
            ),
            ("data_dir = \"d\"\n[[remote_write]]\nurl = \"h:1\"\n".to_owned(), "http://"),
            (rw("batch_size = 0"), "at least 1"),
            (rw("timeout = \"x\""), "timeout = \"x\""),
            (rw("min_backoff = \"5s\"\nmax_backoff = \"1s\""), "min_backoff"),
            (
                rw("bearer_token = \"a\"\nbasic_auth = { username = \"u\", password = \"p\" }"),
                "not both",
            ),
            (rw("headers = { \"Content-Type\" = \"x\" }"), "set by the remote-write protocol"),
            (rw("headers = { \"Authorization\" = \"x\" }\nbearer_token = \"t\""), "Authorization"),
            (rw("headers = { \"bad name\" = \"x\" }"), "not a valid header name"),
            (rw("colour = 1"), "unknown field `colour`"),
        ];
        check_errors(&cases);
    }
}
