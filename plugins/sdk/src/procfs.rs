//! Small helpers for reading `/proc`, shared by the standard collectors.
//!
//! The agent grants collectors `/proc` read-only; these helpers turn I/O and
//! parse failures into the `String` errors `collect` returns, naming the file
//! or value at fault, and never panic on malformed input.

/// Reads a whole `/proc` file as text; the error names the file.
pub fn read(path: &str) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("reading {path}: {e}"))
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
    }
}
