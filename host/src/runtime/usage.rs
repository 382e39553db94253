//! The `wasmtap:collector/filesystem` import: how full a filesystem is,
//! for paths inside a collector's `read` or `usage` grants.
//!
//! A path is checked twice: lexically (absolute, no `..`, under a grant)
//! before anything touches the disk, then after resolving symbolic links,
//! so that a link inside a grant (`/proc/1/root`, say) cannot name a
//! filesystem outside it. `statvfs` on a dead network mount can block in
//! the kernel for minutes, so it runs on a blocking thread: the call's
//! deadline still ends the collector's call on time, and while an earlier
//! query of the same path has not returned, a new one fails at once rather
//! than parking another thread.

use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use super::bindings::wasmtap::collector::filesystem::FsUsage;
use super::inflight::InFlightSet;

/// Where one collector may ask for filesystem usage.
#[derive(Debug, Clone, Default)]
pub struct UsageGrants {
    roots: Arc<[PathBuf]>,
    in_flight: InFlightSet,
}

impl UsageGrants {
    /// Grants for the given roots (the manifest's `read` and `usage` paths).
    pub fn new(roots: impl IntoIterator<Item = PathBuf>) -> Self {
        Self { roots: roots.into_iter().collect(), in_flight: InFlightSet::default() }
    }

    /// The usage of the filesystem holding `path`, or why it is refused.
    pub async fn usage(&self, path: String) -> Result<FsUsage, String> {
        let path = PathBuf::from(path);
        if !self.allows(&path) {
            return Err(format!(
                "{} is outside the collector's read and usage grants",
                path.display()
            ));
        }
        let guard = self.in_flight.enter(&path).ok_or_else(|| {
            format!("an earlier usage query of {} has not returned yet", path.display())
        })?;
        let roots = self.roots.clone();
        let query = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            statvfs_within(&path, &roots)
        });
        query.await.map_err(|e| format!("usage query failed: {e}"))?
    }

    /// Whether `path` lies lexically inside a grant.
    fn allows(&self, path: &Path) -> bool {
        clean_absolute(path) && self.roots.iter().any(|root| path.starts_with(root))
    }
}

/// Absolute, and free of `..` (which `starts_with` would not see through).
pub(super) fn clean_absolute(path: &Path) -> bool {
    path.is_absolute() && path.components().all(|c| !matches!(c, Component::ParentDir))
}

/// `statvfs(path)`, once the path with its links resolved is still inside a grant.
fn statvfs_within(path: &Path, roots: &[PathBuf]) -> Result<FsUsage, String> {
    let fail = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
    let real = std::fs::canonicalize(path).map_err(|e| fail(&e))?;
    let inside = roots.iter().any(|root| {
        path.starts_with(root)
            && std::fs::canonicalize(root).is_ok_and(|real_root| real.starts_with(real_root))
    });
    if !inside {
        return Err(format!(
            "{} resolves to {}, outside the collector's read and usage grants",
            path.display(),
            real.display()
        ));
    }
    let st = rustix::fs::statvfs(&real).map_err(|e| fail(&e))?;
    let block = st.f_frsize.max(1);
    Ok(FsUsage {
        total_bytes: st.f_blocks.saturating_mul(block),
        free_bytes: st.f_bfree.saturating_mul(block),
        available_bytes: st.f_bavail.saturating_mul(block),
        total_inodes: st.f_files,
        free_inodes: st.f_ffree,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(roots: &[&Path]) -> UsageGrants {
        UsageGrants::new(roots.iter().map(|p| p.to_path_buf()))
    }

    #[tokio::test]
    async fn answers_inside_grants_like_statvfs() {
        let dir = tempfile::tempdir().expect("tempdir");
        let g = grants(&[dir.path()]);
        let u = g.usage(dir.path().display().to_string()).await.expect("inside the grant");
        assert!(u.total_bytes > 0 && u.available_bytes <= u.free_bytes);
        assert!(u.free_bytes <= u.total_bytes);
        let sub = dir.path().join("a");
        std::fs::create_dir(&sub).expect("mkdir");
        g.usage(sub.display().to_string()).await.expect("below the grant");
    }

    #[tokio::test]
    async fn refuses_paths_outside_grants() {
        let dir = tempfile::tempdir().expect("tempdir");
        let g = grants(&[&dir.path().join("granted")]);
        std::fs::create_dir(dir.path().join("granted")).expect("mkdir");
        for path in [
            "/".to_owned(),
            "relative".to_owned(),
            dir.path().display().to_string(),
            format!("{}/granted/../", dir.path().display()),
            format!("{}/grantedx", dir.path().display()),
        ] {
            let err = g.usage(path.clone()).await.expect_err(&path);
            assert!(err.contains("outside"), "{path}: {err}");
        }
        assert!(grants(&[]).usage("/".into()).await.is_err(), "no grants, no answers");
    }

    #[tokio::test]
    async fn a_link_out_of_a_grant_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let granted = dir.path().join("granted");
        std::fs::create_dir(&granted).expect("mkdir");
        std::os::unix::fs::symlink("/", granted.join("root")).expect("symlink");
        let err = grants(&[&granted])
            .usage(granted.join("root").display().to_string())
            .await
            .expect_err("the link leaves the grant");
        assert!(err.contains("resolves to /"), "{err}");
    }

    #[tokio::test]
    async fn a_missing_path_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = grants(&[dir.path()])
            .usage(dir.path().join("gone").display().to_string())
            .await
            .expect_err("missing");
        assert!(err.contains("gone"), "{err}");
    }
}
