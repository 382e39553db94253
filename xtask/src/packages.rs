//! System packages the end-to-end tests need, installed with apt-get when
//! missing (the project's machines run Debian).

use std::path::Path;
use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

/// Debian packages and the file each one provides.
const NEEDED: &[(&str, &str)] = &[("prometheus", "/usr/bin/prometheus")];

/// Installs every package in [`NEEDED`] whose file is missing; quiet and
/// idempotent (nothing runs when all files exist).
pub fn ensure() -> anyhow::Result<()> {
    install_missing(NEEDED)
}

/// Installs every `(package, file)` of `needed` whose file is missing.
pub fn install_missing(needed: &[(&str, &str)]) -> anyhow::Result<()> {
    let missing: Vec<&str> =
        needed.iter().filter(|(_, file)| !Path::new(file).exists()).map(|(p, _)| *p).collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("xtask: installing {} with apt-get", missing.join(", "));
    if !Path::new("/usr/bin/apt-get").exists() {
        bail!("{} missing and no apt-get here: install them by hand", missing.join(", "));
    }
    // Root runs apt-get directly; anyone else through sudo (non-interactive).
    let as_root =
        Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout.trim_ascii() == b"0");
    let apt = |args: &[&str]| -> anyhow::Result<bool> {
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
    };
    let install: Vec<&str> = ["install", "-y", "-qq", "--no-install-recommends"]
        .into_iter()
        .chain(missing.iter().copied())
        .collect();
    // A fresh machine may have no package lists yet: update once and retry.
    let installed = apt(&install)? || (apt(&["update", "-qq"])? && apt(&install)?);
    if !installed {
        bail!("apt-get could not install {}", missing.join(", "));
    }
    Ok(())
}
