//! The proxy's configuration file (`proxy.toml`), validated.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use wasmtap_protocol::access_key::{AccessKey, ProjectId};

/// Where the proxy listens when the config names nothing.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:6600";

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    listen: Option<String>,
    data_dir: PathBuf,
    #[serde(default)]
    projects: Vec<RawProject>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProject {
    name: String,
    access_key: String,
}

/// The validated proxy configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address agents connect to.
    pub listen: SocketAddr,
    /// Where the store lives.
    pub data_dir: PathBuf,
    /// The projects served, with their keys.
    pub projects: HashMap<ProjectId, AccessKey>,
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
        let mut projects = HashMap::new();
        for p in raw.projects {
            let problem =
                |problem: String| ConfigError::Project { project: p.name.clone(), problem };
            let id = ProjectId::new(&p.name).map_err(|e| problem(e.to_string()))?;
            let key: AccessKey =
                p.access_key.parse().map_err(|e| problem(format!("access_key: {e}")))?;
            if key.project() != &id {
                return Err(problem(format!(
                    "access_key belongs to project `{}`, not `{id}`",
                    key.project()
                )));
            }
            if projects.insert(id, key).is_some() {
                return Err(problem("listed twice".into()));
            }
        }
        Ok(Self { listen, data_dir: base.join(raw.data_dir), projects })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(c.projects.len(), 2);
    }

    #[test]
    fn bad_entries_name_the_project_and_the_problem() {
        let cases = [
            (
                format!(
                    "data_dir = \"d\"\n[[projects]]\nname = \"a\"\naccess_key = \"{}\"\n",
                    key("b")
                ),
                "project `a`: access_key belongs to project `b`",
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
            ("data_dir = \"d\"\nlisten = \"nowhere\"\n".to_owned(), "listen"),
            ("data_dir = \"d\"\nport = 1\n".to_owned(), "unknown field"),
        ];
        for (text, needle) in cases {
            let err = Config::parse(&text, Path::new(".")).expect_err(&text).to_string();
            assert!(err.contains(needle), "{err:?} should contain {needle:?}");
        }
    }
}
