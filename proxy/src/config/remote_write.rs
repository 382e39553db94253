//! `[[remote_write]]` entries: Prometheus remote-write endpoints, their
//! credentials, batch and retry settings.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use hyper::Uri;
use hyper::header::{HeaderName, HeaderValue};
use serde::Deserialize;
use zeroize::Zeroizing;

use super::ConfigError;
use crate::tls::{self, ClientTls};

/// Samples per request by default.
pub const DEFAULT_BATCH_SIZE: usize = 2_000;
/// How long a partial batch waits for more samples by default.
pub const DEFAULT_BATCH_WAIT: Duration = Duration::from_secs(1);
/// Deadline of one request by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// First retry delay by default; it doubles per failed attempt.
pub const DEFAULT_MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest retry delay by default.
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(10);

/// Headers the remote-write protocol sets itself; configuring them is an error.
const RESERVED_HEADERS: [&str; 6] = [
    "content-type",
    "content-encoding",
    "content-length",
    "host",
    "user-agent",
    "x-prometheus-remote-write-version",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRemoteWrite {
    url: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    bearer_token: Option<String>,
    basic_auth: Option<RawBasicAuth>,
    /// No longer used (the store is the queue); accepted with a warning.
    queue_capacity: Option<usize>,
    batch_size: Option<usize>,
    batch_wait: Option<String>,
    timeout: Option<String>,
    min_backoff: Option<String>,
    max_backoff: Option<String>,
    tls_ca_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBasicAuth {
    username: String,
    password: String,
}

/// A header value that may hold a credential: never printed.
#[derive(Clone)]
pub struct SecretHeader(pub HeaderValue);

impl std::fmt::Debug for SecretHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// One validated remote-write endpoint.
#[derive(Debug, Clone)]
pub struct RemoteWriteConfig {
    /// The endpoint, `http://` or `https://`.
    pub url: Uri,
    /// For `https://`: the trusted certificate authorities.
    pub tls: Option<ClientTls>,
    /// Extra headers (tenant ids and the like); values are treated as secrets.
    pub headers: Vec<(HeaderName, SecretHeader)>,
    /// Samples per request at most.
    pub batch_size: usize,
    /// How long a partial batch waits for more samples.
    pub batch_wait: Duration,
    /// Deadline of one request.
    pub timeout: Duration,
    /// First retry delay.
    pub min_backoff: Duration,
    /// Longest retry delay.
    pub max_backoff: Duration,
}

fn parse_url(text: &str) -> Result<Uri, String> {
    let uri: Uri = text.parse().map_err(|e| format!("url {text:?}: {e}"))?;
    match uri.scheme_str() {
        Some("http" | "https") => {}
        _ => return Err(format!("url {text:?} must start with http:// or https://")),
    }
    let authority = uri.authority().ok_or_else(|| format!("url {text:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!(
            "url {text:?}: put credentials in basic_auth or bearer_token, not in the url"
        ));
    }
    Ok(uri)
}

fn header(name: &str, value: &str) -> Result<(HeaderName, SecretHeader), String> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("headers: {name:?} is not a valid header name"))?;
    if RESERVED_HEADERS.contains(&n.as_str()) {
        return Err(format!("headers: {name:?} is set by the remote-write protocol"));
    }
    let mut v = HeaderValue::from_str(value)
        .map_err(|_| format!("headers: the value of {name:?} is not a valid header value"))?;
    v.set_sensitive(true);
    Ok((n, SecretHeader(v)))
}

fn authorization(raw: &RawRemoteWrite) -> Result<Option<(HeaderName, SecretHeader)>, String> {
    use base64::Engine as _;
    let value = match (&raw.bearer_token, &raw.basic_auth) {
        (Some(_), Some(_)) => return Err("set bearer_token or basic_auth, not both".into()),
        (Some(t), None) => Zeroizing::new(format!("Bearer {t}")),
        (None, Some(b)) => {
            if b.username.contains(':') {
                return Err("basic_auth: username may not contain ':'".into());
            }
            let pair = Zeroizing::new(format!("{}:{}", b.username, b.password));
            let encoded =
                Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(pair.as_bytes()));
            Zeroizing::new(format!("Basic {}", encoded.as_str()))
        }
        (None, None) => return Ok(None),
    };
    let mut v = HeaderValue::from_str(&value)
        .map_err(|_| "bearer_token or basic_auth holds characters not allowed in a header")?;
    v.set_sensitive(true);
    Ok(Some((hyper::header::AUTHORIZATION, SecretHeader(v))))
}

/// `raw`'s relative `tls_ca_file` resolves against `base`.
pub(super) fn validate(raw: RawRemoteWrite, base: &Path) -> Result<RemoteWriteConfig, ConfigError> {
    let url_text = raw.url.clone();
    let problem = |problem: String| ConfigError::RemoteWrite { url: url_text.clone(), problem };
    let url = parse_url(&raw.url).map_err(problem)?;
    let tls = match (url.scheme_str(), &raw.tls_ca_file) {
        (Some("https"), ca) => {
            let ca = ca.as_ref().map(|p| base.join(p));
            Some(tls::client(ca.as_deref()).map_err(problem)?)
        }
        (_, Some(_)) => return Err(problem("tls_ca_file is only for https:// urls".into())),
        (_, None) => None,
    };
    let mut headers = Vec::new();
    for (name, value) in &raw.headers {
        headers.push(header(name, value).map_err(problem)?);
    }
    if let Some(auth) = authorization(&raw).map_err(problem)? {
        if headers.iter().any(|(n, _)| *n == auth.0) {
            return Err(problem(
                "headers: Authorization is set by bearer_token or basic_auth".into(),
            ));
        }
        headers.push(auth);
    }
    let dur = |key: &str, text: &Option<String>, default: Duration| match text {
        Some(t) => super::limits::bounded(key, t, super::MAX_WAIT).map_err(problem),
        None => Ok(default),
    };
    if raw.queue_capacity.is_some() {
        tracing::warn!(url = %url_text, "remote_write queue_capacity is no longer used: values wait in the store, not in memory");
    }
    let config = RemoteWriteConfig {
        url,
        tls,
        headers,
        batch_size: raw.batch_size.unwrap_or(DEFAULT_BATCH_SIZE),
        batch_wait: dur("batch_wait", &raw.batch_wait, DEFAULT_BATCH_WAIT)?,
        timeout: dur("timeout", &raw.timeout, DEFAULT_TIMEOUT)?,
        min_backoff: dur("min_backoff", &raw.min_backoff, DEFAULT_MIN_BACKOFF)?,
        max_backoff: dur("max_backoff", &raw.max_backoff, DEFAULT_MAX_BACKOFF)?,
    };
    if config.batch_size == 0 {
        return Err(problem("batch_size must be at least 1".into()));
    }
    if config.timeout.is_zero() {
        return Err(problem("timeout must be more than 0".into()));
    }
    if config.min_backoff.is_zero() || config.min_backoff > config.max_backoff {
        return Err(problem("min_backoff must be more than 0 and at most max_backoff".into()));
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let raw = RawRemoteWrite {
            url: "http://127.0.0.1:9090/api/v1/write".into(),
            headers: BTreeMap::from([("X-Scope-OrgID".into(), "tenant-secret".into())]),
            bearer_token: None,
            basic_auth: Some(RawBasicAuth { username: "u".into(), password: "hunter2".into() }),
            queue_capacity: None,
            batch_size: None,
            batch_wait: None,
            timeout: None,
            min_backoff: None,
            max_backoff: None,
            tls_ca_file: None,
        };
        let c = validate(raw, Path::new(".")).expect("valid");
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2") && !shown.contains("tenant-secret"), "{shown}");
        let auth = c.headers.iter().find(|(n, _)| n == hyper::header::AUTHORIZATION);
        assert_eq!(auth.map(|(_, v)| v.0.as_bytes()), Some(&b"Basic dTpodW50ZXIy"[..]));
    }
}
