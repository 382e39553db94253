//! A small tmpfs mounted for one test (a disk that fills up), unmounted on
//! drop. Mounting needs root; [`Tmpfs::mount`] says why when it cannot.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context as _, bail};

/// A mounted tmpfs.
#[derive(Debug)]
pub struct Tmpfs {
    /// The mount point.
    pub dir: PathBuf,
}

impl Tmpfs {
    /// Mounts a tmpfs of `bytes` at `dir` (created if missing).
    pub fn mount(dir: &Path, bytes: u64) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .output()
            .context("running mount")?;
        if !out.status.success() {
            bail!("mount -t tmpfs failed: {}", String::from_utf8_lossy(&out.stderr).trim());
        }
        Ok(Self { dir: dir.to_owned() })
    }

    /// Writes zeros to `file` in it until the filesystem is full; returns
    /// the bytes written.
    pub fn fill(&self, file: &Path) -> anyhow::Result<u64> {
        use std::io::Write as _;
        let mut f = std::fs::File::create(file)?;
        let chunk = vec![0u8; 4096];
        let mut written = 0u64;
        loop {
            match f.write(&chunk) {
                Ok(0) => break,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => return Err(e).context("filling the tmpfs"),
            }
        }
        Ok(written)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process still holding a file there must not keep it mounted.
        let _ = Command::new("umount").arg("-l").arg(&self.dir).status();
    }
}
