//! What `cargo xtask test` needs from the system beyond rustup, checked
//! and, when missing, installed with apt-get (the project's machines run
//! Debian): Prometheus, nats-server, python3 with venv, Node.js 20 or
//! newer with npm.
//! A C toolchain is needed before xtask itself can be built, so the README
//! asks for it first.

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// Node.js major version the JavaScript tools (jco, ComponentizeJS) need.
const MIN_NODE: u32 = 20;

/// One thing the tests need: what it is for, whether it is here, and the
/// Debian packages that provide it.
pub struct Need {
    /// What it is for, as the error messages say it.
    pub what: &'static str,
    /// Whether it is installed.
    pub present: fn() -> bool,
    /// The Debian packages that provide it.
    pub packages: &'static [&'static str],
}

const NEEDS: &[Need] = &[
    Need {
        what: "Prometheus (receives remote writes in the tests)",
        present: || Path::new("/usr/bin/prometheus").exists(),
        packages: &["prometheus"],
    },
    Need {
        what: "nats-server (the JetStream cluster of the cluster tests)",
        present: || Path::new("/usr/sbin/nats-server").exists(),
        packages: &["nats-server"],
    },
    Need {
        what: "python3 with venv (componentize-py, for Python collectors)",
        present: || succeeds("python3", &["-c", "import venv, ensurepip"]),
        packages: &["python3", "python3-venv"],
    },
    Need {
        what: "Node.js 20 or newer with npm (jco, for JavaScript collectors)",
        present: || node_major().is_some_and(|v| v >= MIN_NODE) && succeeds("npm", &["--version"]),
        packages: &["nodejs", "npm"],
    },
];

fn succeeds(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The major version of `node`, if it runs.
fn node_major() -> Option<u32> {
    let out = Command::new("node").arg("--version").output().ok()?;
    major(String::from_utf8_lossy(&out.stdout).trim().trim_start_matches('v'))
}

/// The leading number of a version such as `20.19.2` or `18.19.0+dfsg-6`.
fn major(version: &str) -> Option<u32> {
    let digits: String = version.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The version apt would install of `package`.
fn apt_candidate(package: &str) -> Option<String> {
    let out = Command::new("apt-cache").args(["policy", package]).output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let v = text.lines().find_map(|l| l.trim().strip_prefix("Candidate: "))?.trim().to_owned();
    // An epoch (`1:20.1`) comes first.
    let v = v.rsplit_once(':').map_or(v.clone(), |(_, rest)| rest.to_owned());
    (v != "(none)").then_some(v)
}

/// Installs whatever in [`NEEDS`] is missing; quiet and idempotent
/// (nothing runs when all is present).
pub fn ensure() -> anyhow::Result<()> {
    install(NEEDS)
}

/// Installs whatever of `needs` is missing.
pub fn install(needs: &[Need]) -> anyhow::Result<()> {
    let missing: Vec<&Need> = needs.iter().filter(|n| !(n.present)()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let what: Vec<&str> = missing.iter().map(|n| n.what).collect();
    if !Path::new("/usr/bin/apt-get").exists() {
        bail!("missing, and no apt-get here to install them: {}", what.join("; "));
    }
    let packages: Vec<&str> = missing.iter().flat_map(|n| n.packages.iter().copied()).collect();
    eprintln!("xtask: installing {} with apt-get", packages.join(", "));
    // A fresh machine may have no package lists yet: update them first.
    if packages.iter().any(|p| apt_candidate(p).is_none()) {
        apt(&["update", "-qq"])?;
    }
    if packages.contains(&"nodejs")
        && let Some(v) = apt_candidate("nodejs").filter(|v| major(v).is_none_or(|m| m < MIN_NODE))
    {
        bail!(
            "Node.js {MIN_NODE} or newer is needed and apt offers nodejs {v} (Debian 12 has 18): \
             install Node.js {MIN_NODE}+ with npm from nodejs.org or NodeSource, then run this again"
        );
    }
    let install: Vec<&str> = ["install", "-y", "-qq", "--no-install-recommends"]
        .into_iter()
        .chain(packages.iter().copied())
        .collect();
    // Stale package lists fail with 404s: update and try once more.
    if !(apt(&install)? || (apt(&["update", "-qq"])? && apt(&install)?)) {
        bail!("apt-get could not install {}", packages.join(", "));
    }
    let still: Vec<&str> = missing.iter().filter(|n| !(n.present)()).map(|n| n.what).collect();
    if !still.is_empty() {
        bail!("still missing after apt-get: {}", still.join("; "));
    }
    Ok(())
}

/// Runs apt-get: directly as root, else through `sudo -n` (non-interactive).
fn apt(args: &[&str]) -> anyhow::Result<bool> {
    let as_root =
        Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let mut cmd = if as_root { Command::new("apt-get") } else { Command::new("sudo") };
    if !as_root {
        cmd.args(["-n", "apt-get"]);
    }
    let status = cmd
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdout(Stdio::null())
        .status()
        .context("running apt-get")?;
    Ok(status.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_read_by_their_major_number() {
        assert_eq!(major("20.19.2"), Some(20));
        assert_eq!(major("18.19.0+dfsg-6~deb12u2"), Some(18));
        assert_eq!(major("(none)"), None);
    }
}
