//! The `[http]` section: the listener for `/metrics` and the admin API, its
//! bearer token and the bounds of the latest-value table behind `/metrics`.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Deserialize;
use subtle::ConstantTimeEq as _;
use zeroize::Zeroizing;

use super::ConfigError;

/// Where the HTTP listener binds when `[http]` names no address: loopback only.
pub const DEFAULT_HTTP_LISTEN: &str = "127.0.0.1:6680";
/// Shortest accepted admin token, in characters.
pub const MIN_TOKEN_LEN: usize = 16;
/// Series `/metrics` keeps at most by default; further series are dropped and counted.
pub const DEFAULT_MAX_SERIES: usize = 1_000_000;
/// A series not updated for this long leaves `/metrics` by default.
pub const DEFAULT_SERIES_TTL: Duration = Duration::from_secs(10 * 60);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    listen: Option<String>,
    token: Option<String>,
    max_series: Option<usize>,
    series_ttl: Option<String>,
}

/// The admin API's bearer token. Never printed; compared in constant time.
#[derive(Clone)]
pub struct Token(Zeroizing<String>);

impl Token {
    /// Accepts `text` as a token if it is long enough and has no whitespace
    /// or control characters (it travels in an HTTP header).
    pub fn new(text: String) -> Result<Self, &'static str> {
        let text = Zeroizing::new(text);
        if text.chars().count() < MIN_TOKEN_LEN {
            return Err("token must be at least 16 characters");
        }
        if !text.chars().all(|c| c.is_ascii_graphic()) {
            return Err("token may only contain printable ASCII without spaces");
        }
        Ok(Self(text))
    }

    /// The token text, for the `ctl` client's `Authorization` header.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether `presented` is this token; the time taken does not depend on
    /// where the two differ.
    pub fn matches(&self, presented: &[u8]) -> bool {
        bool::from(self.0.as_bytes().ct_eq(presented))
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[redacted]")
    }
}

/// The validated `[http]` section.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Address of the `/metrics` and admin listener.
    pub listen: SocketAddr,
    /// Bearer token for everything under `/api/`; without one the admin API is off.
    pub token: Option<Token>,
    /// Most series `/metrics` holds; 0 keeps no table of latest values
    /// (`/metrics` then has the proxy's own families only).
    pub max_series: usize,
    /// How long a series stays in `/metrics` without an update.
    pub series_ttl: Duration,
}

pub(super) fn validate(raw: RawHttp) -> Result<HttpConfig, ConfigError> {
    let problem = |p: String| ConfigError::Http(p);
    let listen_text = raw.listen.unwrap_or_else(|| DEFAULT_HTTP_LISTEN.to_owned());
    let listen = listen_text.parse().map_err(|_| {
        problem(format!("listen = {listen_text:?} is not an address like \"127.0.0.1:6680\""))
    })?;
    let token = raw.token.map(Token::new).transpose().map_err(|e| problem(e.to_owned()))?;
    let max_series = raw.max_series.unwrap_or(DEFAULT_MAX_SERIES);
    let series_ttl = match raw.series_ttl {
        Some(t) => super::limits::bounded("series_ttl", &t, super::MAX_KEEP).map_err(problem)?,
        None => DEFAULT_SERIES_TTL,
    };
    Ok(HttpConfig { listen, token, max_series, series_ttl })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_is_redacted_and_compared_exactly() {
        let t = Token::new("0123456789abcdef".into()).expect("valid");
        assert_eq!(format!("{t:?}"), "[redacted]");
        assert!(t.matches(b"0123456789abcdef"));
        assert!(!t.matches(b"0123456789abcdeF"));
        assert!(!t.matches(b"0123456789abcdef0"));
        assert!(!t.matches(b""));
        assert!(Token::new("short".into()).is_err());
        assert!(Token::new("0123456789 abcdef".into()).is_err());
    }
}
