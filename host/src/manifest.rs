//! Collector manifests: `<name>.toml` beside `<name>.wasm`, saying what the
//! operator grants the collector. No manifest means no grants at all.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// Call deadline when the manifest names none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(100);
/// Linear-memory cap when the manifest names none.
pub const DEFAULT_MEMORY: u64 = 16 << 20;
/// Largest memory a manifest may grant.
pub const MAX_MEMORY: u64 = 1 << 30;
/// Shortest collection interval a manifest may ask for.
pub const MIN_INTERVAL: Duration = Duration::from_millis(100);
/// Longest collection interval a manifest may ask for (the scheduler adds
/// it to the clock, which a larger value could overflow).
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

/// Why a manifest was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ManifestError {
    /// The file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The manifest.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Malformed TOML, unknown keys or mistyped values.
    #[error("{path}: {source}")]
    Toml {
        /// The manifest.
        path: PathBuf,
        /// The parser's message.
        source: toml::de::Error,
    },
    /// A value is out of range.
    #[error("{path}: {message}")]
    Invalid {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    interval: Option<String>,
    timeout: Option<String>,
    memory: Option<String>,
    enabled: Option<bool>,
    #[serde(default)]
    grants: RawGrants,
    #[serde(default)]
    config: BTreeMap<String, toml::Value>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGrants {
    #[serde(default)]
    read: Vec<PathBuf>,
    #[serde(default)]
    usage: Vec<PathBuf>,
    #[serde(default)]
    env: Vec<String>,
}

/// A validated manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// Collection interval; `None` uses the collector's own default.
    pub interval: Option<Duration>,
    /// Deadline of every call into the collector.
    pub timeout: Duration,
    /// Linear-memory cap in bytes.
    pub memory: u64,
    /// Whether the collector runs at all.
    pub enabled: bool,
    /// Absolute host paths granted read-only, each at the same path in the guest.
    pub read: Vec<PathBuf>,
    /// Absolute host paths under which the collector may ask how full the
    /// filesystem is (the `filesystem.usage` import), without reading any
    /// file there. Paths under `read` may be asked too.
    pub usage: Vec<PathBuf>,
    /// Environment variables passed through from the agent's environment.
    pub env: Vec<String>,
    /// Values passed to `init`.
    pub config: Vec<(String, String)>,
}

impl Default for Manifest {
    /// What a collector without a manifest gets: nothing beyond defaults.
    fn default() -> Self {
        Self {
            interval: None,
            timeout: DEFAULT_TIMEOUT,
            memory: DEFAULT_MEMORY,
            enabled: true,
            read: Vec::new(),
            usage: Vec::new(),
            env: Vec::new(),
            config: Vec::new(),
        }
    }
}

impl Manifest {
    /// Reads the manifest at `path`; a missing file is the no-grants default.
    pub fn load(path: &Path) -> Result<Self, ManifestError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(&text, path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ManifestError::Read { path: path.to_owned(), source }),
        }
    }

    /// Parses manifest text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Self, ManifestError> {
        let invalid = |message: String| ManifestError::Invalid { path: path.to_owned(), message };
        let raw: RawManifest = toml::from_str(text)
            .map_err(|source| ManifestError::Toml { path: path.to_owned(), source })?;
        let duration = |key: &str, v: &str| {
            humantime::parse_duration(v).map_err(|e| invalid(format!("{key} = {v:?}: {e}")))
        };
        let interval = raw.interval.as_deref().map(|v| duration("interval", v)).transpose()?;
        if interval.is_some_and(|i| !(MIN_INTERVAL..=MAX_INTERVAL).contains(&i)) {
            return Err(invalid(format!(
                "interval must be between {} and {}",
                humantime::format_duration(MIN_INTERVAL),
                humantime::format_duration(MAX_INTERVAL)
            )));
        }
        let timeout = raw.timeout.as_deref().map(|v| duration("timeout", v)).transpose()?;
        let timeout = timeout.unwrap_or(DEFAULT_TIMEOUT);
        if timeout.is_zero() || timeout > Duration::from_secs(60) {
            return Err(invalid("timeout must be between 1ms and 60s".into()));
        }
        let memory = match raw.memory.as_deref() {
            Some(v) => parse_size(v)
                .ok_or_else(|| invalid(format!("memory = {v:?} is not a size like \"16MiB\"")))?,
            None => DEFAULT_MEMORY,
        };
        if !(64 << 10..=MAX_MEMORY).contains(&memory) {
            return Err(invalid("memory must be between 64KiB and 1GiB".into()));
        }
        for (key, paths) in [("read", &raw.grants.read), ("usage", &raw.grants.usage)] {
            if let Some(p) = paths.iter().find(|p| !p.is_absolute()) {
                return Err(invalid(format!("grants.{key} path {} must be absolute", p.display())));
            }
        }
        let config = raw
            .config
            .into_iter()
            .map(|(k, v)| match v {
                toml::Value::String(s) => Ok((k, s)),
                toml::Value::Table(_) | toml::Value::Array(_) => {
                    Err(invalid(format!("config.{k} must be a string, number or boolean")))
                }
                other => Ok((k, other.to_string())),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            interval,
            timeout,
            memory,
            enabled: raw.enabled.unwrap_or(true),
            read: raw.grants.read,
            usage: raw.grants.usage,
            env: raw.grants.env,
            config,
        })
    }
}

/// Parses `16MiB`, `512KiB`, `1GiB`, `65536` (bytes). Binary units only.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        _ => return None,
    };
    n.checked_mul(mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_manifest() {
        let m = Manifest::parse(
            "interval = \"10s\"\ntimeout = \"50ms\"\nmemory = \"8MiB\"\nenabled = false\n[grants]\nread = [\"/proc\"]\nusage = [\"/\"]\nenv = [\"HOME\"]\n[config]\nmount = \"/\"\ntop = 5\n",
            Path::new("x.toml"),
        )
        .expect("valid");
        assert_eq!(m.interval, Some(Duration::from_secs(10)));
        assert_eq!(m.timeout, Duration::from_millis(50));
        assert_eq!(m.memory, 8 << 20);
        assert!(!m.enabled);
        assert_eq!(m.read, [PathBuf::from("/proc")]);
        assert_eq!(m.usage, [PathBuf::from("/")]);
        assert_eq!(m.env, ["HOME"]);
        assert_eq!(m.config, [("mount".into(), "/".into()), ("top".into(), "5".into())]);
    }

    #[test]
    fn missing_manifest_grants_nothing() {
        let m = Manifest::load(Path::new("/nonexistent/x.toml")).expect("default");
        assert!(m.read.is_empty() && m.env.is_empty());
        assert_eq!(m, Manifest::default());
    }

    #[test]
    fn bad_manifests_say_why() {
        for (text, needle) in [
            ("intervl = \"1s\"", "unknown field"),
            ("interval = \"1ms\"", "interval"),
            ("interval = \"500000000000years\"", "interval must be between 100ms and 1day"),
            ("interval = \"2days\"", "interval must be between 100ms and 1day"),
            ("timeout = \"500000000000years\"", "timeout"),
            ("timeout = \"0s\"", "timeout"),
            ("memory = \"16MB\"", "memory"),
            ("memory = \"2GiB\"", "memory"),
            ("[grants]\nread = [\"proc\"]", "absolute"),
            ("[grants]\nusage = [\"/\", \"home\"]", "grants.usage path home must be absolute"),
            ("[grants]\nwrite = [\"/\"]", "unknown field"),
            ("[config]\nx = [1]", "config.x"),
        ] {
            let err = Manifest::parse(text, Path::new("c.toml")).expect_err(text).to_string();
            assert!(err.contains(needle), "{err:?} should mention {needle}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("16MiB"), Some(16 << 20));
        assert_eq!(parse_size("1024"), Some(1024));
        assert_eq!(parse_size("1GiB"), Some(1 << 30));
        assert_eq!(parse_size("x"), None);
        assert_eq!(parse_size("99999999999999999999GiB"), None);
    }
}
