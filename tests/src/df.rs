//! What `df -B1` says of a path: the reference for filesystem usage.

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;

/// Size, used and available bytes of the filesystem holding a path.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Df {
    /// Size of the filesystem.
    pub size: f64,
    /// Bytes in use (size − free).
    pub used: f64,
    /// Bytes available to unprivileged users.
    pub avail: f64,
}

/// `df -B1 --output=size,used,avail path`.
pub fn df(path: &Path) -> anyhow::Result<Df> {
    let out = Command::new("df")
        .args(["-B1", "--output=size,used,avail"])
        .arg(path)
        .output()
        .context("running df")?;
    let text = String::from_utf8(out.stdout)?;
    let numbers: Vec<f64> = text.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    match numbers[..] {
        [size, used, avail] => Ok(Df { size, used, avail }),
        _ => anyhow::bail!("df {} printed {text:?}", path.display()),
    }
}
