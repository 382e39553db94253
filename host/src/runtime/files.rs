//! The `wasmtap:collector/files` import: whole files and directory
//! listings inside a collector's `read` grants, one host call each.
//!
//! A path is checked lexically first (absolute, no `..`, under a grant),
//! then opened beneath the grant's directory, which was opened when the
//! instance was made: `openat2` with `RESOLVE_BENEATH` and no magic links
//! where the kernel has it, a walk component by component where it does
//! not (`cap-primitives`, as WASI's own preopens). A link can therefore not
//! lead out of a grant, and `/proc/1/root` is refused as WASI refuses it.
//!
//! Collectors granted only `/proc` and `/sys` read on the calling thread:
//! the kernel answers from memory, and a blocking-thread hop per file was
//! most of what a collector cost. Any other grant reads on a blocking
//! thread, one query per path at a time, so that a file that never answers
//! (a FIFO nobody writes, a dead network mount) holds up neither the
//! agent's tasks nor the call's deadline.

use std::fs::File;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use cap_primitives::fs::{OpenOptions, ReadDir};

use super::bindings::wasmtap::collector::files::FileError;
use super::inflight::InFlightSet;
use super::usage::clean_absolute;

/// The most a single call reads, whatever the collector's memory limit.
pub const MAX_READ: usize = 16 << 20;
/// What a read asks the kernel for at first (a `/proc` file fits).
const FIRST_READ: usize = 4096;

/// A granted directory, open.
#[derive(Debug)]
struct Root {
    path: PathBuf,
    dir: File,
}

/// Where one collector may read whole files and list directories.
#[derive(Debug, Clone)]
pub struct FileGrants {
    roots: Arc<[Root]>,
    /// Whether reads run on the calling thread (grants only in `/proc` and `/sys`).
    inline: bool,
    /// Largest file or listing returned, in bytes.
    limit: usize,
    in_flight: InFlightSet,
}

impl FileGrants {
    /// Opens the granted directories. `inline` reads on the calling
    /// thread; `memory` is the collector's memory limit, which also bounds
    /// what one call returns.
    pub fn open(
        grants: &[PathBuf],
        inline: bool,
        memory: usize,
    ) -> Result<Self, (PathBuf, io::Error)> {
        let roots = grants
            .iter()
            .map(|path| {
                let dir =
                    cap_primitives::fs::open_ambient_dir(path, cap_primitives::ambient_authority())
                        .map_err(|e| (path.clone(), e))?;
                Ok(Root { path: path.clone(), dir })
            })
            .collect::<Result<Arc<[Root]>, _>>()?;
        Ok(Self { roots, inline, limit: memory.min(MAX_READ), in_flight: InFlightSet::default() })
    }

    /// The bytes of the file at `path`.
    pub async fn read(&self, path: String) -> Result<Vec<u8>, FileError> {
        let limit = self.limit;
        self.run(path, move |dir, rel| read_beneath(dir, rel, limit)).await
    }

    /// The names in the directory at `path`.
    pub async fn read_dir(&self, path: String) -> Result<Vec<String>, FileError> {
        let limit = self.limit;
        self.run(path, move |dir, rel| list_beneath(dir, rel, limit)).await
    }

    /// Runs `op` on the grant holding `path` and the path below it, on
    /// this thread or a blocking one (see the module docs).
    async fn run<T: Send + 'static>(
        &self,
        path: String,
        op: impl FnOnce(&File, &Path) -> io::Result<T> + Send + 'static,
    ) -> Result<T, FileError> {
        let path = PathBuf::from(path);
        let Some(root) = self.grant_of(&path) else {
            return Err(FileError::Refused(format!(
                "{} is outside the collector's read grants",
                path.display()
            )));
        };
        let rel = path.strip_prefix(&self.roots[root].path).unwrap_or(Path::new("")).to_owned();
        if self.inline {
            return op(&self.roots[root].dir, &rel).map_err(|e| file_error(&path, &e));
        }
        let guard = self.in_flight.enter(&path).ok_or_else(|| {
            FileError::Failed(format!("an earlier read of {} has not returned yet", path.display()))
        })?;
        let roots = self.roots.clone();
        let job = tokio::task::spawn_blocking(move || {
            let _guard = guard;
            op(&roots[root].dir, &rel).map_err(|e| file_error(&path, &e))
        });
        job.await.map_err(|e| FileError::Failed(format!("read failed: {e}")))?
    }

    /// The grant `path` lies lexically inside (the deepest, when grants nest).
    fn grant_of(&self, path: &Path) -> Option<usize> {
        if !clean_absolute(path) {
            return None;
        }
        (0..self.roots.len())
            .filter(|&i| path.starts_with(&self.roots[i].path))
            .max_by_key(|&i| self.roots[i].path.components().count())
    }
}

/// Reads the file `rel` below `dir` to its end, refusing more than `limit` bytes.
fn read_beneath(dir: &File, rel: &Path, limit: usize) -> io::Result<Vec<u8>> {
    // The grant itself is `.` (an empty path would not be found).
    let rel = if rel.as_os_str().is_empty() { Path::new(".") } else { rel };
    let mut file = cap_primitives::fs::open(dir, rel, OpenOptions::new().read(true))?;
    let mut buf = Vec::new();
    loop {
        let filled = buf.len();
        if filled > limit {
            return Err(too_large(limit));
        }
        // Ask for as much again as there is (so a large file takes few
        // reads), at least a page, and one byte past the limit at most.
        let want = filled.max(FIRST_READ).min(limit + 1 - filled);
        buf.resize(filled + want, 0);
        let n = match file.read(&mut buf[filled..]) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                buf.truncate(filled);
                continue;
            }
            Err(e) => return Err(e),
        };
        buf.truncate(filled + n);
        if n == 0 {
            return Ok(buf);
        }
    }
}

/// Lists the directory `rel` below `dir`, refusing names of more than `limit` bytes in all.
fn list_beneath(dir: &File, rel: &Path, limit: usize) -> io::Result<Vec<String>> {
    let entries: ReadDir = if rel.as_os_str().is_empty() {
        cap_primitives::fs::read_base_dir(dir)?
    } else {
        cap_primitives::fs::read_dir(dir, rel)?
    };
    let mut names = Vec::new();
    let mut bytes = 0usize;
    for entry in entries {
        let name = entry?.file_name().to_string_lossy().into_owned();
        bytes += name.len();
        if bytes > limit {
            return Err(too_large(limit));
        }
        names.push(name);
    }
    Ok(names)
}

fn too_large(limit: usize) -> io::Error {
    io::Error::other(format!("larger than the {limit} bytes one call may return"))
}

/// What a failed read or listing of `path` tells the collector.
fn file_error(path: &Path, e: &io::Error) -> FileError {
    // cap-primitives reports a path escaping its directory as a permission
    // error of its own, without an OS error number; a link the kernel will
    // not follow beneath the grant is ELOOP or EXDEV.
    let escaped = match e.raw_os_error() {
        None => e.kind() == io::ErrorKind::PermissionDenied,
        Some(code) => code == libc::ELOOP || code == libc::EXDEV,
    };
    if e.kind() == io::ErrorKind::NotFound {
        FileError::NotFound
    } else if escaped {
        FileError::Refused(format!(
            "{}: a link on the way leads out of the read grants",
            path.display()
        ))
    } else {
        FileError::Failed(format!("{}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grants(roots: &[&Path], inline: bool) -> FileGrants {
        let roots: Vec<PathBuf> = roots.iter().map(|p| p.to_path_buf()).collect();
        FileGrants::open(&roots, inline, 1 << 20).expect("grants open")
    }

    fn path(p: &Path) -> String {
        p.display().to_string()
    }

    /// A temporary directory holding `granted/` (empty) and `secret` beside it.
    fn granted_and_secret() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let granted = dir.path().join("granted");
        std::fs::create_dir(&granted).expect("mkdir");
        std::fs::write(dir.path().join("secret"), b"s").expect("write");
        (dir, granted)
    }

    #[tokio::test]
    async fn reads_files_and_lists_directories_inside_grants() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join("sub")).expect("mkdir");
        std::fs::write(dir.path().join("sub/a"), b"alpha\n").expect("write");
        let big: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        std::fs::write(dir.path().join("big"), &big).expect("write");
        for inline in [true, false] {
            let g = grants(&[dir.path()], inline);
            let a = g.read(path(&dir.path().join("sub/a"))).await.expect("sub/a");
            assert_eq!(a, b"alpha\n");
            assert_eq!(g.read(path(&dir.path().join("big"))).await.expect("big"), big);
            let mut names = g.read_dir(path(dir.path())).await.expect("the grant itself");
            names.sort();
            assert_eq!(names, ["big", "sub"]);
            assert_eq!(g.read_dir(path(&dir.path().join("sub"))).await.expect("sub"), ["a"]);
        }
    }

    #[tokio::test]
    async fn reads_proc_like_the_kernel_writes_it() {
        let g = grants(&[Path::new("/proc")], true);
        let text = g.read("/proc/self/stat".into()).await.expect("own stat");
        let mine = std::fs::read("/proc/self/stat").expect("std");
        // The same process, the same pid and name.
        let head = |b: &[u8]| b.split(|c| *c == b')').next().map(<[u8]>::to_vec);
        assert_eq!(head(&text), head(&mine));
        let names = g.read_dir("/proc".into()).await.expect("listing /proc");
        assert!(names.iter().any(|n| *n == std::process::id().to_string()), "{names:?}");
    }

    #[tokio::test]
    async fn refuses_paths_outside_grants() {
        let (dir, granted) = granted_and_secret();
        let g = grants(&[&granted], true);
        for p in [
            "/etc/hostname".to_owned(),
            "relative".to_owned(),
            path(&dir.path().join("secret")),
            format!("{}/../secret", granted.display()),
            format!("{}x", granted.display()),
        ] {
            let err = g.read(p.clone()).await.expect_err(&p);
            assert!(
                matches!(err, FileError::Refused(ref m) if m.contains("outside")),
                "{p}: {err:?}"
            );
            assert!(g.read_dir(p.clone()).await.is_err(), "{p}");
        }
    }

    #[tokio::test]
    async fn links_out_of_a_grant_are_refused() {
        let (dir, granted) = granted_and_secret();
        std::os::unix::fs::symlink(dir.path().join("secret"), granted.join("abs")).expect("link");
        std::os::unix::fs::symlink("../secret", granted.join("rel")).expect("link");
        std::os::unix::fs::symlink("/", granted.join("root")).expect("link");
        let g = grants(&[&granted], true);
        for name in ["abs", "rel"] {
            let err = g.read(path(&granted.join(name))).await.expect_err(name);
            assert!(matches!(err, FileError::Refused(_)), "{name}: {err:?}");
        }
        let err = g.read_dir(path(&granted.join("root"))).await.expect_err("root");
        assert!(matches!(err, FileError::Refused(_)), "{err:?}");
        // A magic link of /proc (a process's root directory) is refused as WASI refuses it.
        let proc = grants(&[Path::new("/proc")], true);
        let err = proc.read("/proc/self/root/etc/hostname".into()).await.expect_err("magic link");
        assert!(matches!(err, FileError::Refused(_)), "{err:?}");
    }

    #[tokio::test]
    async fn missing_large_and_wrong_kinds_fail_cleanly() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("big"), vec![7u8; 5000]).expect("write");
        let small = FileGrants::open(&[dir.path().to_path_buf()], true, 4096).expect("open");
        let gone = path(&dir.path().join("gone"));
        assert!(matches!(small.read(gone.clone()).await, Err(FileError::NotFound)));
        assert!(matches!(small.read_dir(gone).await, Err(FileError::NotFound)));
        let err = small.read(path(&dir.path().join("big"))).await.expect_err("over the limit");
        assert!(matches!(err, FileError::Failed(ref m) if m.contains("larger")), "{err:?}");
        let err = small.read(path(dir.path())).await.expect_err("a directory");
        assert!(matches!(err, FileError::Failed(_)), "{err:?}");
        let err = small.read_dir(path(&dir.path().join("big"))).await.expect_err("a file");
        assert!(matches!(err, FileError::Failed(_)), "{err:?}");
    }

    #[test]
    fn a_missing_grant_is_named() {
        let (at, _) = FileGrants::open(&[PathBuf::from("/nonexistent/wasmtap")], true, 1024)
            .expect_err("missing grant");
        assert_eq!(at, Path::new("/nonexistent/wasmtap"));
    }

    #[tokio::test]
    async fn a_file_that_never_answers_holds_one_thread_and_fails_further_reads() {
        let dir = tempfile::tempdir().expect("tempdir");
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
        assert!(made.success());
        let g = grants(&[dir.path()], false);
        let first =
            tokio::time::timeout(std::time::Duration::from_millis(100), g.read(path(&fifo)));
        assert!(first.await.is_err(), "nobody writes: the read does not return");
        let again = g.read(path(&fifo)).await.expect_err("still in flight");
        assert!(
            matches!(again, FileError::Failed(ref m) if m.contains("not returned")),
            "{again:?}"
        );
        // Release the parked thread: a writer comes and goes (read and
        // write, so that this open does not wait for a reader itself).
        let writer = std::fs::OpenOptions::new().read(true).write(true).open(&fifo);
        drop(writer.expect("writer"));
    }
}
