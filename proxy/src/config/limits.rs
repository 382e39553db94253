//! The `[store]` and `[limits]` sections: how the store writes and keeps
//! data, and what the listener allows before and after authentication.

use std::time::Duration;

use serde::Deserialize;

use super::duration;
use crate::store::{DEFAULT_RETENTION, DEFAULT_SEGMENT_BYTES, Fsync, StoreConfig};

/// Longest timeout, wait or backoff accepted anywhere in `proxy.toml`: a
/// longer one is a mistake (and would overflow clock arithmetic).
pub const MAX_WAIT: Duration = Duration::from_secs(24 * 3600);
/// Longest retention or time to live accepted: 100 years (of 365.25 days).
pub const MAX_KEEP: Duration = Duration::from_secs(100 * 31_557_600);

/// Parses the duration `text` of `key`, at most `max`.
pub(super) fn bounded(key: &str, text: &str, max: Duration) -> Result<Duration, String> {
    let d = duration(key, text)?;
    if d > max {
        let most = humantime::format_duration(max);
        return Err(format!("{key} = {text:?} is longer than the most allowed, {most}"));
    }
    Ok(d)
}

/// Listener limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Time an agent has to complete the handshake.
    pub handshake_timeout: Duration,
    /// Time a new connection has to send its first frame (the hello).
    pub first_frame_timeout: Duration,
    /// Largest difference between an agent's clock and the proxy's that a
    /// hello (and a batch sequence number) may show.
    pub max_clock_skew: Duration,
    /// A session with no frame for this long is closed.
    pub idle_timeout: Duration,
    /// Connections not yet authenticated, in all.
    pub max_unauthenticated: usize,
    /// Connections not yet authenticated, per source network (an IPv4 /24
    /// or an IPv6 /64).
    pub max_unauthenticated_per_source: usize,
    /// New connections per second per source network (bursts of twice that).
    pub handshakes_per_source: u32,
    /// Bytes a session's series dictionary may hold.
    pub session_memory_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            handshake_timeout: Duration::from_secs(10),
            first_frame_timeout: Duration::from_secs(2),
            max_clock_skew: Duration::from_secs(120),
            idle_timeout: Duration::from_secs(120),
            max_unauthenticated: 1_024,
            max_unauthenticated_per_source: 64,
            handshakes_per_source: 20,
            session_memory_bytes: 32 << 20,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLimits {
    handshake_timeout: Option<String>,
    first_frame_timeout: Option<String>,
    max_clock_skew: Option<String>,
    idle_timeout: Option<String>,
    max_unauthenticated: Option<usize>,
    max_unauthenticated_per_source: Option<usize>,
    handshakes_per_source: Option<u32>,
    session_memory_bytes: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStore {
    fsync: Option<Fsync>,
    segment_bytes: Option<u64>,
    retention: Option<String>,
    max_size: Option<String>,
    compress: Option<bool>,
}

/// Parses a size such as `"100GiB"`, `"500MB"` or `"1048576"` (bytes) for `key`.
pub(super) fn size(key: &str, text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit_bytes: u64 = match unit.trim() {
        "" | "B" => 1,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        "TB" => 1_000_000_000_000,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "TiB" => 1 << 40,
        _ => return Err(format!("{key} = {text:?} is not a size like \"100GiB\" or \"500MB\"")),
    };
    let n: u64 =
        number.parse().map_err(|_| format!("{key} = {text:?} is not a size like \"100GiB\""))?;
    match n.checked_mul(unit_bytes) {
        Some(0) => Err(format!("{key} must be more than 0 bytes")),
        Some(bytes) => Ok(bytes),
        None => Err(format!("{key} = {text:?} is too large")),
    }
}

fn positive<T: PartialOrd + Default + Copy>(
    key: &str,
    v: Option<T>,
    default: T,
) -> Result<T, String> {
    match v {
        Some(v) if v <= T::default() => Err(format!("{key} must be greater than 0")),
        Some(v) => Ok(v),
        None => Ok(default),
    }
}

pub(super) fn limits(raw: Option<RawLimits>) -> Result<Limits, String> {
    let d = Limits::default();
    let Some(raw) = raw else { return Ok(d) };
    let time = |key: &str, v: &Option<String>, default| match v {
        Some(t) => bounded(key, t, MAX_WAIT).and_then(|d| {
            if d.is_zero() { Err(format!("{key} must be longer than 0")) } else { Ok(d) }
        }),
        None => Ok(default),
    };
    Ok(Limits {
        handshake_timeout: time("handshake_timeout", &raw.handshake_timeout, d.handshake_timeout)?,
        first_frame_timeout: time(
            "first_frame_timeout",
            &raw.first_frame_timeout,
            d.first_frame_timeout,
        )?,
        max_clock_skew: time("max_clock_skew", &raw.max_clock_skew, d.max_clock_skew)?,
        idle_timeout: time("idle_timeout", &raw.idle_timeout, d.idle_timeout)?,
        max_unauthenticated: positive(
            "max_unauthenticated",
            raw.max_unauthenticated,
            d.max_unauthenticated,
        )?,
        max_unauthenticated_per_source: positive(
            "max_unauthenticated_per_source",
            raw.max_unauthenticated_per_source,
            d.max_unauthenticated_per_source,
        )?,
        handshakes_per_source: positive(
            "handshakes_per_source",
            raw.handshakes_per_source,
            d.handshakes_per_source,
        )?,
        session_memory_bytes: positive(
            "session_memory_bytes",
            raw.session_memory_bytes,
            d.session_memory_bytes,
        )?,
    })
}

pub(super) fn store(raw: Option<RawStore>) -> Result<StoreConfig, String> {
    let Some(raw) = raw else { return Ok(StoreConfig::default()) };
    let retention = match raw.retention.as_deref() {
        None => Some(DEFAULT_RETENTION),
        Some("off") => None,
        Some(t) => Some(bounded("retention", t, MAX_KEEP)?),
    };
    if retention.is_some_and(|r| r.is_zero()) {
        return Err("retention must be longer than 0 (\"off\" keeps everything)".into());
    }
    let max_bytes = raw.max_size.as_deref().map(|t| size("max_size", t)).transpose()?;
    Ok(StoreConfig {
        fsync: raw.fsync.unwrap_or_default(),
        segment_bytes: positive("segment_bytes", raw.segment_bytes, DEFAULT_SEGMENT_BYTES)?,
        retention,
        max_bytes,
        compress: raw.compress.unwrap_or(true),
    })
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::config::Config;

    fn parse(section: &str) -> Result<Config, String> {
        Config::parse(&format!("data_dir = \"d\"\n{section}\n"), Path::new("."))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn durations_beyond_their_bound_are_refused_with_the_key_named() {
        // 500 billion years: a Duration, but past any clock's range.
        let huge = "500000000000y";
        let rw = "[[remote_write]]\nurl = \"http://h:1/w\"\n";
        let cases = [
            (format!("[limits]\nidle_timeout = \"{huge}\""), "idle_timeout"),
            ("[limits]\nhandshake_timeout = \"25h\"".to_owned(), "handshake_timeout"),
            (format!("[store]\nretention = \"{huge}\""), "retention"),
            ("[store]\nretention = \"101y\"".to_owned(), "retention"),
            (format!("[http]\nseries_ttl = \"{huge}\""), "series_ttl"),
            (format!("{rw}batch_wait = \"{huge}\""), "batch_wait"),
            (format!("{rw}timeout = \"{huge}\""), "timeout"),
            (format!("{rw}max_backoff = \"{huge}\""), "max_backoff"),
            (format!("{rw}min_backoff = \"2days\"\nmax_backoff = \"3days\""), "min_backoff"),
        ];
        for (text, key) in cases {
            let err = parse(&text).expect_err(&text);
            assert!(
                err.contains(key) && err.contains("longer than the most allowed"),
                "{text}: {err}"
            );
        }
    }

    #[test]
    fn retention_is_on_by_default_and_sizes_parse() {
        let c = parse("").expect("valid");
        assert_eq!(c.store.retention, Some(crate::store::DEFAULT_RETENTION));
        assert_eq!(c.store.max_bytes, None);
        let c = parse("[store]\nretention = \"off\"\nmax_size = \"2GiB\"").expect("valid");
        assert_eq!((c.store.retention, c.store.max_bytes), (None, Some(2 << 30)));
        assert_eq!(super::size("k", "500MB"), Ok(500_000_000));
        assert_eq!(super::size("k", "4096"), Ok(4096));
        for bad in ["0GiB", "5 parsecs", "GiB", "99999999999TiB", "-1"] {
            assert!(super::size("max_size", bad).is_err_and(|e| e.contains("max_size")), "{bad}");
        }
        assert!(parse("[store]\nretention = \"0s\"").is_err());
    }

    #[test]
    fn the_bounds_themselves_are_accepted() {
        let c = parse("[limits]\nidle_timeout = \"1day\"\n[store]\nretention = \"100y\"")
            .expect("valid");
        assert_eq!(c.limits.idle_timeout, super::MAX_WAIT);
        assert_eq!(c.store.retention, Some(super::MAX_KEEP));
        let c = parse(
            "[[remote_write]]\nurl = \"http://h:1/w\"\nmax_backoff = \"24h\"\nqueue_capacity = 5",
        )
        .expect("queue_capacity is accepted and ignored");
        assert_eq!(c.remote_write[0].max_backoff, super::MAX_WAIT);
    }
}
