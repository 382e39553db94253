//! Small helpers for reading `/proc` and `/sys`, shared by the standard
//! collectors.
//!
//! Inside the agent, files are read and directories listed through the
//! host's `files` import: one call per file, within the same `read` grants
//! as WASI's files, where reading through WASI costs an open, a stat, reads
//! and a close, each a call into the host. Built for the machine the tests
//! run on, they read through `std::fs`. They turn I/O and parse failures
//! into the `String` errors `collect` returns, naming the file or value at
//! fault, and never panic on malformed input.

/// Reads a whole file as text; the error names the file.
pub fn read(path: &str) -> Result<String, String> {
    read_if_exists(path)?.ok_or_else(|| format!("reading {path}: not found"))
}

/// Reads a whole file; the error names the file.
pub fn read_bytes(path: &str) -> Result<Vec<u8>, String> {
    read_bytes_if_exists(path)?.ok_or_else(|| format!("reading {path}: not found"))
}

/// Reads a whole file as text, `None` when it does not exist (a kernel
/// without the feature, a process that has exited); the error names the file.
pub fn read_if_exists(path: &str) -> Result<Option<String>, String> {
    match read_bytes_if_exists(path)? {
        None => Ok(None),
        Some(b) => {
            String::from_utf8(b).map(Some).map_err(|_| format!("reading {path}: not UTF-8 text"))
        }
    }
}

fn read_bytes_if_exists(path: &str) -> Result<Option<Vec<u8>>, String> {
    match imp::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(Missing::NotFound) => Ok(None),
        Err(Missing::Failed(e)) => Err(format!("reading {path}: {e}")),
    }
}

/// Why a file was not read: absent, or anything else.
enum Missing {
    NotFound,
    Failed(String),
}

/// The names in a directory, without `.` and `..`; the error names the directory.
pub fn list(path: &str) -> Result<Vec<String>, String> {
    imp::list(path).map_err(|e| match e {
        Missing::NotFound => format!("listing {path}: not found"),
        Missing::Failed(e) => format!("listing {path}: {e}"),
    })
}

#[cfg(target_arch = "wasm32")]
mod imp {
    use super::Missing;
    use crate::bindings::wasmtap::collector::files::{self, FileError};

    fn missing(e: FileError) -> Missing {
        match e {
            FileError::NotFound => Missing::NotFound,
            FileError::Refused(m) | FileError::Failed(m) => Missing::Failed(m),
        }
    }

    pub(super) fn read(path: &str) -> Result<Vec<u8>, Missing> {
        files::read(path).map_err(missing)
    }

    pub(super) fn list(path: &str) -> Result<Vec<String>, Missing> {
        files::read_dir(path).map_err(missing)
    }
}

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use super::Missing;

    fn missing(e: std::io::Error) -> Missing {
        match e.kind() {
            std::io::ErrorKind::NotFound => Missing::NotFound,
            _ => Missing::Failed(e.to_string()),
        }
    }

    pub(super) fn read(path: &str) -> Result<Vec<u8>, Missing> {
        std::fs::read(path).map_err(missing)
    }

    pub(super) fn list(path: &str) -> Result<Vec<String>, Missing> {
        let name = |e: std::fs::DirEntry| e.file_name().to_string_lossy().into_owned();
        std::fs::read_dir(path).map_err(missing)?.map(|e| e.map(name).map_err(missing)).collect()
    }
}

/// Parses one unsigned decimal number; `what` names it in the error.
pub fn parse_u64(word: &str, what: &str) -> Result<u64, String> {
    word.parse().map_err(|_| format!("bad {what} `{}`", word.escape_debug()))
}

/// Parses every whitespace-separated word of `words` as an unsigned number;
/// `what` names the line or file in the error.
pub fn parse_u64s<'a>(
    words: impl IntoIterator<Item = &'a str>,
    what: &str,
) -> Result<Vec<u64>, String> {
    words.into_iter().map(|w| parse_u64(w, what)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(parse_u64("42", "x"), Ok(42));
        assert_eq!(parse_u64s("1 2  3".split_whitespace(), "row"), Ok(vec![1, 2, 3]));
        let err = parse_u64s("1 -2".split_whitespace(), "row").expect_err("negative");
        assert!(err.contains("row") && err.contains("-2"), "{err}");
        assert!(parse_u64("", "x").is_err());
        assert!(parse_u64("18446744073709551616", "x").is_err(), "overflow");
    }

    #[test]
    fn missing_file_names_the_path() {
        let err = read("/nonexistent/wasmtap").expect_err("missing");
        assert!(err.contains("/nonexistent/wasmtap"), "{err}");
        assert_eq!(read_if_exists("/nonexistent/wasmtap"), Ok(None));
        let err = list("/nonexistent/wasmtap").expect_err("missing");
        assert!(err.contains("listing /nonexistent/wasmtap"), "{err}");
    }

    #[test]
    fn reads_and_lists_proc() {
        assert!(read("/proc/uptime").expect("uptime").contains('.'));
        let pids = list("/proc").expect("listing /proc");
        assert!(pids.contains(&std::process::id().to_string()), "{pids:?}");
        assert!(!pids.iter().any(|n| n == "." || n == ".."));
    }
}
