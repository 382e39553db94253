//! `wasmtap-proxy query` and the read API: which stored values to print
//! ([`Filter`]), reading them from the store ([`scan`]), and counters as
//! per-second rates ([`rate`]).

pub mod rate;
pub mod scan;

#[cfg(test)]
mod scan_tests;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtap_protocol::message::Sample;

/// Why a filter argument was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FilterError {
    /// A `--label` is not `key=value`.
    #[error("--label {0:?} is not key=value")]
    Label(String),
    /// A time is neither RFC 3339, `unix-ms:<ms>` nor a duration ago.
    #[error(
        "{0:?} is neither a time like 2026-11-26T10:00:00Z or unix-ms:1795651200000 nor a duration like 15m"
    )]
    Time(String),
}

/// What to print; every condition set must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only this agent.
    pub agent: Option<String>,
    /// Only this collector.
    pub collector: Option<String>,
    /// Only series carrying all these labels.
    pub labels: Vec<(String, String)>,
    /// Only this field.
    pub field: Option<String>,
    /// Samples taken at or after this time (ms since the epoch).
    pub since_ms: Option<u64>,
    /// Samples taken before this time (ms since the epoch).
    pub until_ms: Option<u64>,
}

/// Parses `key=value`.
pub fn parse_label(text: &str) -> Result<(String, String), FilterError> {
    match text.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(FilterError::Label(text.to_owned())),
    }
}

/// Parses an RFC 3339 time, `unix-ms:<ms>` (milliseconds since the epoch,
/// as [`crate::display::format_time`] shows times beyond RFC 3339), or a
/// duration meaning that long before `now`.
pub fn parse_time(text: &str, now: SystemTime) -> Result<u64, FilterError> {
    if let Some(ms) = text.strip_prefix("unix-ms:") {
        return ms.parse().map_err(|_| FilterError::Time(text.to_owned()));
    }
    let at = humantime::parse_rfc3339_weak(text).or_else(|_| {
        humantime::parse_duration(text)
            .map_err(|_| FilterError::Time(text.to_owned()))
            .map(|ago| now.checked_sub(ago).unwrap_or(UNIX_EPOCH))
    })?;
    let ms = at.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO).as_millis();
    Ok(u64::try_from(ms).unwrap_or(u64::MAX))
}

impl Filter {
    /// Whether anything of `sample` from `agent` can match.
    pub fn sample(&self, agent: &str, sample: &Sample) -> bool {
        self.agent.as_ref().is_none_or(|a| a == agent)
            && self.collector.as_ref().is_none_or(|c| **c == *sample.collector)
            && self.since_ms.is_none_or(|t| sample.time_ms >= t)
            && self.until_ms.is_none_or(|t| sample.time_ms < t)
            && self.labels.iter().all(|want| sample.labels.contains(want))
    }

    /// `sample` with only the values this filter keeps.
    pub fn values(&self, sample: &Sample) -> Sample {
        let mut s = sample.clone();
        if let Some(f) = &self.field {
            s.values.retain(|(name, _)| **name == **f);
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use wasmtap_protocol::message::Value;

    use super::*;

    fn sample() -> Sample {
        Sample {
            collector: "cpu".into(),
            time_ms: 1_000,
            labels: vec![("cpu".into(), "0".into()), ("mode".into(), "all".into())].into(),
            values: vec![("user".into(), Value::Gauge(1.0)), ("system".into(), Value::Gauge(2.0))],
        }
    }

    #[test]
    fn every_condition_must_hold() {
        let s = sample();
        assert!(Filter::default().sample("a", &s));
        let f = Filter { labels: vec![("cpu".into(), "0".into())], ..Filter::default() };
        assert!(f.sample("a", &s));
        let f = Filter { labels: vec![("cpu".into(), "1".into())], ..Filter::default() };
        assert!(!f.sample("a", &s));
        let f = Filter { since_ms: Some(1_000), until_ms: Some(1_001), ..Filter::default() };
        assert!(f.sample("a", &s));
        let f = Filter { until_ms: Some(1_000), ..Filter::default() };
        assert!(!f.sample("a", &s));
        let f = Filter { agent: Some("b".into()), ..Filter::default() };
        assert!(!f.sample("a", &s));
        let f = Filter { field: Some("system".into()), ..Filter::default() };
        assert_eq!(f.values(&s).values.len(), 1);
    }

    #[test]
    fn times_and_labels_parse_or_say_why() {
        let now = UNIX_EPOCH + Duration::from_secs(3_600);
        assert_eq!(parse_time("15m", now), Ok(2_700_000));
        assert_eq!(parse_time("1970-01-01T00:00:01Z", now), Ok(1_000));
        assert!(parse_time("yesterday-ish", now).is_err());
        assert_eq!(parse_time("unix-ms:1795651200000", now), Ok(1_795_651_200_000));
        assert!(parse_time("unix-ms:soon", now).is_err());
        assert_eq!(parse_label("cpu=0"), Ok(("cpu".into(), "0".into())));
        assert!(parse_label("=0").is_err() && parse_label("cpu").is_err());
    }
}
