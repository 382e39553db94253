//! Reading the `[config]` table of a collector's manifest, as `init`
//! receives it: a list of `(key, value)` strings.

/// The value of `key`, if the manifest sets it.
pub fn get<'a>(config: &'a [(String, String)], key: &str) -> Option<&'a str> {
    config.iter().rev().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// A boolean setting: `true`/`false` (also `yes`/`no`, `on`/`off`, `1`/`0`),
/// or `default` when unset.
pub fn flag(config: &[(String, String)], key: &str, default: bool) -> Result<bool, String> {
    match get(config, key).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(default),
        Some(v) => match v.as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(format!("config.{key} must be true or false, not `{}`", v.escape_debug())),
        },
    }
}

/// An unsigned whole number in `range`, or `default` when unset.
pub fn number(
    config: &[(String, String)],
    key: &str,
    default: u64,
    range: std::ops::RangeInclusive<u64>,
) -> Result<u64, String> {
    let Some(v) = get(config, key) else {
        return Ok(default);
    };
    match v.trim().parse::<u64>() {
        Ok(n) if range.contains(&n) => Ok(n),
        _ => Err(format!(
            "config.{key} must be a whole number from {} to {}, not `{}`",
            range.start(),
            range.end(),
            v.escape_debug()
        )),
    }
}

/// Fails on a key outside `known`, so a typo in the manifest is reported
/// rather than silently ignored.
pub fn only(config: &[(String, String)], known: &[&str]) -> Result<(), String> {
    match config.iter().find(|(k, _)| !known.contains(&k.as_str())) {
        None => Ok(()),
        Some((k, _)) => Err(format!(
            "unknown config key `{}` (known: {})",
            k.escape_debug(),
            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn flags() {
        let c = cfg(&[("a", "true"), ("b", "0"), ("c", "maybe"), ("d", " Yes ")]);
        assert_eq!(flag(&c, "a", false), Ok(true));
        assert_eq!(flag(&c, "b", true), Ok(false));
        assert_eq!(flag(&c, "d", false), Ok(true));
        assert_eq!(flag(&c, "unset", true), Ok(true));
        assert!(flag(&c, "c", false).expect_err("bad").contains("config.c"));
    }

    #[test]
    fn numbers() {
        let c = cfg(&[("top", "7"), ("big", "1000"), ("neg", "-1"), ("txt", "five")]);
        assert_eq!(number(&c, "top", 5, 1..=100), Ok(7));
        assert_eq!(number(&c, "unset", 5, 1..=100), Ok(5));
        for key in ["big", "neg", "txt"] {
            assert!(number(&c, key, 5, 1..=100).is_err(), "{key}");
        }
    }

    #[test]
    fn unknown_keys() {
        let c = cfg(&[("top", "7")]);
        assert_eq!(only(&c, &["top"]), Ok(()));
        assert!(only(&c, &["tops"]).expect_err("typo").contains("`top`"));
        assert!(only(&[], &[]).is_ok());
    }

    #[test]
    fn last_setting_wins() {
        let c = cfg(&[("a", "1"), ("a", "2")]);
        assert_eq!(get(&c, "a"), Some("2"));
    }
}
