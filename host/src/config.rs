//! The agent's configuration file (`agent.toml`), in two stages: a serde
//! struct that rejects unknown keys, then a validated [`Config`]. A legacy
//! `whatap.conf`-style properties file is accepted too ([`legacy`]).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub mod legacy;
use wasmtap_protocol::access_key::{AccessKey, AccessKeyError};

/// Port of the proxies when the config names none.
pub const DEFAULT_PORT: u16 = 6600;
/// Longest wait between reconnect attempts.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);
/// The range `server.max_backoff` may take: above it a lost proxy would be
/// retried too rarely (and a deadline of `now + backoff` could overflow the
/// clock), below it reconnects would spin.
pub const MAX_BACKOFF_RANGE: (Duration, Duration) =
    (Duration::from_millis(100), Duration::from_secs(3600));
/// The range `agent.batch_interval` may take.
pub const BATCH_INTERVAL_RANGE: (Duration, Duration) =
    (Duration::from_millis(10), Duration::from_secs(3600));

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
    /// The TOML is malformed or has unknown or mistyped keys.
    #[error("{path}: {source}")]
    Toml {
        /// The file.
        path: PathBuf,
        /// The parser's message, with line and column.
        source: toml::de::Error,
    },
    /// `server.access_key` is not a valid access key.
    #[error("server.access_key: {0}")]
    AccessKey(#[from] AccessKeyError),
    /// A value is out of range.
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    server: RawServer,
    #[serde(default)]
    agent: RawAgent,
    plugins: RawPlugins,
}

/// `server.hosts`: a list, or the legacy string form `"10.0.3.1/10.0.3.2"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawHosts {
    List(Vec<String>),
    Legacy(String),
}

/// Splits the legacy host string on `/`, `,` and white space.
pub fn split_hosts(text: &str) -> Vec<String> {
    text.split(|c: char| c == '/' || c == ',' || c.is_whitespace())
        .filter(|h| !h.is_empty())
        .map(str::to_owned)
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    hosts: RawHosts,
    #[serde(default)]
    port: Option<u16>,
    access_key: String,
    proxy_identity: Option<String>,
    #[serde(default, with = "humantime_serde_opt")]
    max_backoff: Option<Duration>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAgent {
    name: Option<String>,
    data_dir: Option<PathBuf>,
    spool_cap: Option<RawSize>,
    #[serde(default, with = "humantime_serde_opt")]
    batch_interval: Option<Duration>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
}

/// A size: a number of bytes, or a string such as `"256MiB"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum RawSize {
    Bytes(u64),
    Text(String),
}

impl RawSize {
    fn bytes(&self, key: &str) -> Result<u64, ConfigError> {
        let text = match self {
            RawSize::Bytes(n) => return Ok(*n),
            RawSize::Text(t) => t.trim(),
        };
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (digits, unit) = text.split_at(split);
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => 0,
        };
        digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(factor))
            .filter(|n| *n > 0)
            .ok_or_else(|| {
                ConfigError::Invalid(format!(
                    "{key}: `{text}` is not a size (a number of bytes, or e.g. \"512KiB\", \"256MiB\", \"2GiB\")"
                ))
            })
    }
}

/// How the agent writes its log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlugins {
    dir: PathBuf,
    quarantine_after: Option<u32>,
    #[serde(default)]
    trusted_keys: Vec<String>,
    managed: Option<bool>,
    allow_read: Option<Vec<PathBuf>>,
    allow_usage: Option<Vec<PathBuf>>,
    allow_env: Option<Vec<String>>,
    max_managed_size: Option<RawSize>,
    max_managed_memory: Option<RawSize>,
}

mod humantime_serde_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else {
            return Ok(None);
        };
        humantime::parse_duration(&text).map(Some).map_err(serde::de::Error::custom)
    }
}

/// The validated agent configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Proxy host names or addresses, tried in random order.
    pub hosts: Vec<String>,
    /// The port every proxy listens on.
    pub port: u16,
    /// The project access key.
    pub access_key: AccessKey,
    /// The identity every proxy must prove (`wtapid1_…`); without it the
    /// agent pins the first identity it sees.
    pub proxy_identity: Option<wasmtap_protocol::identity::Identity>,
    /// Longest wait between reconnect attempts.
    pub max_backoff: Duration,
    /// This agent's name, as the proxy stores it.
    pub name: String,
    /// Where the agent keeps its state (compile cache, collector state, spool).
    pub data_dir: PathBuf,
    /// Most bytes the spool of unacknowledged batches may use.
    pub spool_cap: u64,
    /// How long samples wait to be batched.
    pub batch_interval: Duration,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (`info`, `debug`, `wasmtap_host=debug,info`, ...); `RUST_LOG` overrides it.
    pub log_level: String,
    /// Where collectors (`*.wasm` plus manifests) are loaded from.
    pub plugins_dir: PathBuf,
    /// Consecutive failures before a collector is quarantined.
    pub quarantine_after: u32,
    /// Publisher keys collectors must be signed by (none: no signature needed).
    pub trusted_keys: Vec<crate::signing::PublicKey>,
    /// Whether collectors pushed by the proxy are taken (`[plugins] managed`).
    pub managed: bool,
    /// What a pushed collector's manifest may grant at most.
    pub bounds: crate::fleet::Bounds,
    /// Largest pushed collector.
    pub max_managed_size: u64,
    /// Not from the file: the executable that compiles collectors in a
    /// short-lived child, so neither the compiler's code nor its memory is
    /// ever in the agent; `None` compiles in this process (which needs the
    /// `compiler` feature). The `wasmtap` binary sets it to the
    /// `wasmtap-compile` installed beside it.
    pub compile_with: Option<PathBuf>,
}

impl Config {
    /// Reads and validates `path`. Relative paths in the file are taken
    /// relative to the file's directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        if legacy::is_legacy_path(path) {
            return legacy::parse(&text, base).map_err(|e| match e {
                ConfigError::Invalid(msg) => {
                    ConfigError::Invalid(format!("{}: {msg}", path.display()))
                }
                other => other,
            });
        }
        Self::parse(&text, base).map_err(|e| match e {
            ConfigError::Toml { source, .. } => ConfigError::Toml { path: path.to_owned(), source },
            other => other,
        })
    }

    /// Parses and validates config text; relative paths resolve against `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, ConfigError> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|source| ConfigError::Toml { path: PathBuf::new(), source })?;
        let hosts: Vec<String> = match &raw.server.hosts {
            RawHosts::List(list) => list.iter().map(|h| h.trim().to_owned()).collect(),
            RawHosts::Legacy(text) => split_hosts(text),
        };
        if hosts.is_empty() || hosts.iter().any(String::is_empty) {
            return Err(ConfigError::Invalid("server.hosts must list at least one host".into()));
        }
        let port = raw.server.port.unwrap_or(DEFAULT_PORT);
        if port == 0 {
            return Err(ConfigError::Invalid("server.port must not be 0".into()));
        }
        let access_key: AccessKey = raw.server.access_key.parse()?;
        let proxy_identity = raw
            .server
            .proxy_identity
            .as_deref()
            .map(|t| {
                t.parse().map_err(|e| {
                    ConfigError::Invalid(format!(
                        "server.proxy_identity: {e} (print it on the proxy with `wasmtap-proxy identity`)"
                    ))
                })
            })
            .transpose()?;
        let name = match raw.agent.name {
            Some(n) => n,
            None => host_name(),
        };
        if name.is_empty() || name.len() > wasmtap_protocol::handshake::MAX_AGENT_NAME {
            return Err(ConfigError::Invalid("agent.name must be 1 to 255 bytes".into()));
        }
        let data_dir = raw.agent.data_dir.unwrap_or_else(|| PathBuf::from("wasmtap-data"));
        let spool_cap = match &raw.agent.spool_cap {
            Some(size) => size.bytes("agent.spool_cap")?,
            None => crate::spool::DEFAULT_CAP_BYTES,
        };
        let log_level = raw.agent.log_level.unwrap_or_else(|| "info".to_owned());
        check_log_level(&log_level)?;
        let batch_interval = in_range(
            "agent.batch_interval",
            raw.agent.batch_interval.unwrap_or(crate::uplink::batcher::BATCH_INTERVAL),
            BATCH_INTERVAL_RANGE,
        )?;
        let max_backoff = in_range(
            "server.max_backoff",
            raw.server.max_backoff.unwrap_or(DEFAULT_MAX_BACKOFF),
            MAX_BACKOFF_RANGE,
        )?;
        Ok(Self {
            compile_with: None,
            batch_interval,
            spool_cap,
            log_format: raw.agent.log_format.unwrap_or_default(),
            log_level,
            hosts,
            port,
            access_key,
            proxy_identity,
            max_backoff,
            name,
            data_dir: base.join(data_dir),
            plugins_dir: base.join(raw.plugins.dir),
            quarantine_after: match raw.plugins.quarantine_after {
                Some(0) => {
                    return Err(ConfigError::Invalid(
                        "plugins.quarantine_after must be at least 1".into(),
                    ));
                }
                Some(n) => n,
                None => crate::scheduler::DEFAULT_QUARANTINE_AFTER,
            },
            managed: raw.plugins.managed.unwrap_or(true),
            bounds: crate::fleet::Bounds::new(
                raw.plugins.allow_read,
                raw.plugins.allow_usage,
                raw.plugins.allow_env,
            )
            .map_err(ConfigError::Invalid)?
            .with_memory(match &raw.plugins.max_managed_memory {
                Some(size) => size.bytes("plugins.max_managed_memory")?,
                None => crate::fleet::bounds::DEFAULT_MEMORY,
            }),
            max_managed_size: match &raw.plugins.max_managed_size {
                Some(size) => size.bytes("plugins.max_managed_size")?,
                None => wasmtap_protocol::fleet::DEFAULT_MAX_BLOB,
            },
            trusted_keys: raw
                .plugins
                .trusted_keys
                .iter()
                .enumerate()
                .map(|(i, k)| {
                    k.parse().map_err(|e| {
                        ConfigError::Invalid(format!("plugins.trusted_keys[{i}]: {e}"))
                    })
                })
                .collect::<Result<_, _>>()?,
        })
    }
}

/// `value` if it lies within `range` (inclusive), else an error naming `key`.
fn in_range(
    key: &str,
    value: Duration,
    (min, max): (Duration, Duration),
) -> Result<Duration, ConfigError> {
    if (min..=max).contains(&value) {
        return Ok(value);
    }
    Err(ConfigError::Invalid(format!(
        "{key} must be between {} and {} (found {})",
        humantime::format_duration(min),
        humantime::format_duration(max),
        humantime::format_duration(value)
    )))
}

/// Checks a log filter as `RUST_LOG` would read it.
pub fn check_log_level(level: &str) -> Result<(), ConfigError> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    if !level.contains(['=', ',']) && !LEVELS.contains(&level.trim().to_ascii_lowercase().as_str())
    {
        return Err(ConfigError::Invalid(format!(
            "agent.log_level `{level}`: not one of {} nor a filter such as `wasmtap_host=debug,info`",
            LEVELS.join(", ")
        )));
    }
    tracing_subscriber::EnvFilter::try_new(level)
        .map(|_| ())
        .map_err(|e| ConfigError::Invalid(format!("agent.log_level `{level}`: {e}")))
}

/// The machine's host name, or `wasmtap-agent` when it cannot be read.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "wasmtap-agent".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtap_protocol::access_key::ProjectId;

    /// A fresh access key for project `demo`, as text.
    pub(super) fn key() -> String {
        let k = AccessKey::generate(ProjectId::new("demo").expect("valid"), &mut rand::rng());
        k.to_key_string().to_string()
    }

    /// Each config text is refused with an error that mentions its needle
    /// and never contains the secret part of `key`.
    pub(super) fn assert_refused(
        parse: impl Fn(&str) -> Result<Config, ConfigError>,
        cases: &[(String, &str)],
        key: &str,
    ) {
        for (text, needle) in cases {
            let err = parse(text).expect_err(text).to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle}");
            assert!(!err.contains(&key[12..]), "error leaks the key: {err}");
        }
    }

    #[test]
    fn parses_a_full_config() {
        let text = format!(
            "[server]\nhosts = [\"127.0.0.1\", \"proxy.example\"]\nport = 7000\naccess_key = \"{}\"\nmax_backoff = \"5s\"\n[agent]\nname = \"web-01\"\ndata_dir = \"data\"\n[plugins]\ndir = \"/opt/p\"\n",
            key()
        );
        let c = Config::parse(&text, Path::new("/etc/wasmtap")).expect("valid");
        assert_eq!(c.hosts, ["127.0.0.1", "proxy.example"]);
        assert_eq!(c.port, 7000);
        assert_eq!(c.max_backoff, Duration::from_secs(5));
        assert_eq!(c.name, "web-01");
        assert_eq!(c.data_dir, Path::new("/etc/wasmtap/data"));
        assert_eq!(c.plugins_dir, Path::new("/opt/p"));
    }

    #[test]
    fn defaults_apply() {
        let text = format!(
            "[server]\nhosts = [\"h\"]\naccess_key = \"{}\"\n[plugins]\ndir = \"p\"\n",
            key()
        );
        let c = Config::parse(&text, Path::new(".")).expect("valid");
        assert_eq!(c.port, DEFAULT_PORT);
        assert_eq!(c.max_backoff, DEFAULT_MAX_BACKOFF);
        assert!(!c.name.is_empty());
        assert_eq!(c.spool_cap, crate::spool::DEFAULT_CAP_BYTES);
        assert_eq!(c.batch_interval, crate::uplink::batcher::BATCH_INTERVAL);
        assert_eq!(c.log_format, LogFormat::Text);
    }

    #[test]
    fn legacy_host_strings_and_agent_settings_parse() {
        let text = format!(
            "[server]\nhosts = \"10.0.3.1/10.0.3.2, proxy.example\"\naccess_key = \"{}\"\n[agent]\nspool_cap = \"512KiB\"\nbatch_interval = \"250ms\"\nlog_format = \"json\"\nlog_level = \"wasmtap_host=debug,info\"\n[plugins]\ndir = \"p\"\n",
            key()
        );
        let c = Config::parse(&text, Path::new(".")).expect("valid");
        assert_eq!(c.hosts, ["10.0.3.1", "10.0.3.2", "proxy.example"]);
        assert_eq!(c.spool_cap, 512 * 1024);
        assert_eq!(c.batch_interval, Duration::from_millis(250));
        assert_eq!(c.log_format, LogFormat::Json);
    }

    #[test]
    fn bad_configs_say_why() {
        let k = key();
        let cases = [
            (format!("[server]\nhosts = []\naccess_key = \"{k}\"\n[plugins]\ndir = \"p\"\n"), "server.hosts"),
            (format!("[server]\nhosts = [\"h\"]\naccess_key = \"{k}\"\ncolour = 1\n[plugins]\ndir = \"p\"\n"), "unknown field"),
            ("[server]\nhosts = [\"h\"]\naccess_key = \"wtap1_demo_AAAA\"\n[plugins]\ndir = \"p\"\n".to_owned(), "access_key"),
            (format!("[server]\nhosts = [\"h\"]\nport = 0\naccess_key = \"{k}\"\n[plugins]\ndir = \"p\"\n"), "port"),
            (format!("[server]\nhosts = [\"h\"]\naccess_key = \"{k}\"\nmax_backoff = \"soon\"\n[plugins]\ndir = \"p\"\n"), "max_backoff"),
            (format!("[server]\nhosts = [\"h\"]\naccess_key = \"{k}\"\n[agent]\nbatch_interval = \"1ms\"\n[plugins]\ndir = \"p\"\n"), "batch_interval"),
            (format!("[server]\nhosts = [\"h\"]\naccess_key = \"{k}\"\n[agent]\nspool_cap = \"12 parsecs\"\n[plugins]\ndir = \"p\"\n"), "spool_cap"),
            (format!("[server]\nhosts = [\"h\"]\naccess_key = \"{k}\"\n[agent]\nlog_level = \"loud\"\n[plugins]\ndir = \"p\"\n"), "log_level"),
            (format!("[server]\nhosts = [\"h\"]\naccess_key = \"{k}\"\n[agent]\nlog_format = \"xml\"\n[plugins]\ndir = \"p\"\n"), "log_format"),
            ("[server]\nhosts = [\"h\"]\n".to_owned(), "access_key"),
        ];
        assert_refused(|t| Config::parse(t, Path::new(".")), &cases, &k);
    }

    /// Durations that `Instant + Duration` cannot hold, or that make no
    /// sense, are refused with the key and the allowed range.
    #[test]
    fn durations_out_of_range_are_refused() {
        let k = key();
        let server = |v: &str| {
            format!(
                "[server]\nhosts = [\"h\"]\naccess_key = \"{k}\"\nmax_backoff = \"{v}\"\n[plugins]\ndir = \"p\"\n"
            )
        };
        let agent = |v: &str| {
            format!(
                "[server]\nhosts = [\"h\"]\naccess_key = \"{k}\"\n[agent]\nbatch_interval = \"{v}\"\n[plugins]\ndir = \"p\"\n"
            )
        };
        let cases = [
            (server("500000000000years"), "server.max_backoff must be between 100ms and 1h"),
            (server("2h"), "server.max_backoff must be between 100ms and 1h"),
            (server("0s"), "server.max_backoff must be between 100ms and 1h"),
            (server("18446744073709551615s"), "max_backoff"),
            (agent("500000000000years"), "agent.batch_interval must be between 10ms and 1h"),
        ];
        assert_refused(|t| Config::parse(t, Path::new(".")), &cases, &k);
        for ok in ["100ms", "1h"] {
            let c = Config::parse(&server(ok), Path::new(".")).expect(ok);
            assert_eq!(c.max_backoff, humantime::parse_duration(ok).expect("duration"));
        }
    }
}
