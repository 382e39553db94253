//! What a pushed collector's manifest may grant at most: `[plugins]
//! allow_read`, `allow_usage` and `allow_env` of the agent's own config.
//! The proxy decides what to push; the agent decides what it runs.

use std::path::{Component, Path, PathBuf};

use crate::manifest::Manifest;

/// Read grants allowed by default: the kernel's views of the machine.
pub const DEFAULT_READ: [&str; 2] = ["/proc", "/sys"];
/// Usage grants (how full a filesystem is, no file read) allowed by default.
pub const DEFAULT_USAGE: [&str; 1] = ["/"];
/// The most memory a published collector may ask for by default.
pub const DEFAULT_MEMORY: u64 = 64 << 20;

/// The most a pushed manifest may grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bounds {
    read: Vec<PathBuf>,
    usage: Vec<PathBuf>,
    env: Vec<String>,
    memory: u64,
}

impl Default for Bounds {
    fn default() -> Self {
        Self {
            read: DEFAULT_READ.iter().map(PathBuf::from).collect(),
            usage: DEFAULT_USAGE.iter().map(PathBuf::from).collect(),
            env: Vec::new(),
            memory: DEFAULT_MEMORY,
        }
    }
}

impl Bounds {
    /// Bounds from the config's lists (`None` takes the default); every
    /// path must be absolute and plain (no `..`).
    pub fn new(
        read: Option<Vec<PathBuf>>,
        usage: Option<Vec<PathBuf>>,
        env: Option<Vec<String>>,
    ) -> Result<Self, String> {
        let d = Self::default();
        let bounds = Self {
            read: read.unwrap_or(d.read),
            usage: usage.unwrap_or(d.usage),
            env: env.unwrap_or(d.env),
            memory: d.memory,
        };
        for (key, paths) in [("allow_read", &bounds.read), ("allow_usage", &bounds.usage)] {
            if let Some(p) = paths.iter().find(|p| !plain_absolute(p)) {
                return Err(format!(
                    "plugins.{key}: `{}` must be an absolute path without `..`",
                    p.display()
                ));
            }
        }
        Ok(bounds)
    }

    /// These bounds with at most `bytes` of memory per collector.
    pub fn with_memory(self, bytes: u64) -> Self {
        Self { memory: bytes, ..self }
    }

    /// Whether `manifest` stays within these bounds; the error names the
    /// first grant beyond them. A grant is judged by its text and by where
    /// it leads on this machine: `/proc/1/root` is spelled under `/proc`
    /// but is the root directory, so it is refused.
    pub fn check(&self, manifest: &Manifest) -> Result<(), String> {
        let list = |v: &[PathBuf]| v.iter().map(|p| p.display().to_string()).collect::<Vec<_>>();
        for p in manifest.read.iter().chain(&manifest.usage) {
            let real = std::fs::canonicalize(p).map_err(|e| {
                format!("grants {}, which cannot be resolved here: {e}", p.display())
            })?;
            let bounds = if manifest.read.contains(p) { &self.read } else { &self.usage };
            let bounds: Vec<PathBuf> = bounds
                .iter()
                .chain(if manifest.read.contains(p) { [].iter() } else { self.read.iter() })
                .map(|b| std::fs::canonicalize(b).unwrap_or_else(|_| b.clone()))
                .collect();
            if !within(&real, &bounds) {
                return Err(format!(
                    "grants {}, which leads to {}, beyond this agent's bounds {:?}",
                    p.display(),
                    real.display(),
                    list(&bounds)
                ));
            }
        }
        for p in &manifest.read {
            if !within(p, &self.read) {
                return Err(format!(
                    "grants read of {}, beyond this agent's allow_read {:?}",
                    p.display(),
                    list(&self.read)
                ));
            }
        }
        for p in &manifest.usage {
            if !within(p, &self.usage) && !within(p, &self.read) {
                return Err(format!(
                    "grants usage of {}, beyond this agent's allow_usage {:?}",
                    p.display(),
                    list(&self.usage)
                ));
            }
        }
        if manifest.memory > self.memory {
            return Err(format!(
                "asks for {} MiB of memory, beyond this agent's max_managed_memory of {} MiB",
                manifest.memory >> 20,
                self.memory >> 20
            ));
        }
        if let Some(var) = manifest.env.iter().find(|v| !self.env.contains(v)) {
            return Err(format!(
                "grants the environment variable {var}, beyond this agent's allow_env {:?}",
                self.env
            ));
        }
        Ok(())
    }
}

fn plain_absolute(p: &Path) -> bool {
    p.is_absolute()
        && p.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)))
}

/// Whether `p` is one of `bases` or lies beneath one (component by
/// component: `/procfs` is not under `/proc`, `/proc/../etc` under nothing).
fn within(p: &Path, bases: &[PathBuf]) -> bool {
    plain_absolute(p) && bases.iter().any(|b| p.starts_with(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str) -> Manifest {
        Manifest::parse(text, Path::new("x.toml")).expect("manifest parses")
    }

    fn read(path: &str) -> Manifest {
        manifest(&format!("[grants]\nread = [\"{path}\"]\n"))
    }

    #[test]
    fn defaults_allow_the_standard_collectors_grants_and_nothing_else() {
        let b = Bounds::default();
        for ok in [
            "[grants]\nread = [\"/proc\"]\n",
            "[grants]\nread = [\"/proc/sys/kernel/random\", \"/sys\"]\nusage = [\"/\"]\n",
            "",
        ] {
            assert_eq!(b.check(&manifest(ok)), Ok(()), "{ok}");
        }
        for (bad, says) in [
            (manifest("memory = \"128MiB\"\n"), "max_managed_memory"),
            (read("/etc"), "/etc"),
            (read("/"), "grants /,"),
            (manifest("[grants]\nenv = [\"HOME\"]\n"), "HOME"),
        ] {
            let err = b.check(&bad).expect_err(says);
            assert!(err.contains(says), "{says}: {err}");
        }
    }

    #[test]
    fn paths_that_climb_out_are_never_within() {
        assert!(!within(Path::new("/proc/../etc"), &[PathBuf::from("/proc")]));
        assert!(!within(Path::new("/procfs"), &[PathBuf::from("/proc")]));
        assert!(within(Path::new("/proc/1/stat"), &[PathBuf::from("/proc")]));
        assert!(Bounds::new(Some(vec!["/proc/..".into()]), None, None).is_err());
        assert!(Bounds::new(None, Some(vec!["relative".into()]), None).is_err());
        let b =
            Bounds::new(Some(vec!["/etc".into()]), None, Some(vec!["HOME".into()])).expect("valid");
        assert_eq!(b.check(&manifest("[grants]\nread = [\"/etc\"]\nenv = [\"HOME\"]\n")), Ok(()));
        assert!(b.check(&read("/proc")).is_err());
    }

    #[test]
    fn grants_are_judged_by_where_they_lead() {
        let b = Bounds::default();
        // Spelled under /proc, but the root directory, the agent's working
        // directory or whatever a descriptor is.
        for bad in ["/proc/1/root", "/proc/self/root", "/proc/self/cwd", "/proc/self/fd/0"] {
            assert!(b.check(&read(bad)).is_err(), "{bad} allowed");
        }
        let usage = b.check(&manifest("[grants]\nusage = [\"/proc/self/root\"]\n"));
        assert_eq!(usage, Ok(()), "usage of / is allowed by default");
        let missing = b.check(&read("/proc/no-such-thing")).expect_err("refused");
        assert!(missing.contains("cannot be resolved"), "{missing}");
    }
}
