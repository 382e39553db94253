//! The client side of the admin API, for `wasmtap-proxy ctl`: the address
//! and token come from the config's `[http]` section.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Uri};

use crate::config::{HttpConfig, Token};
use crate::http_client::{Client, ClientError};
use crate::sessions::DEFAULT_REQUEST_TIMEOUT;

/// Time allowed on top of a control request's own timeout.
const SLACK: Duration = Duration::from_secs(5);

/// Why a `ctl` command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CtlError {
    /// The config has no `[http]` section.
    #[error("the config has no [http] section, so the proxy serves no admin API")]
    NoHttp,
    /// `[http]` has no token.
    #[error("[http] has no token, so the proxy's admin API is off")]
    NoToken,
    /// `[http] listen` has port 0, so the address is only known to the running proxy.
    #[error("[http] listen = \"{0}\" has port 0: pass the proxy's address with --addr")]
    PortZero(SocketAddr),
    /// The request could not be made.
    #[error("admin API at {addr}: {source}")]
    Client {
        /// Where.
        addr: SocketAddr,
        /// Why.
        source: ClientError,
    },
    /// The proxy answered with an error.
    #[error("{message} (HTTP {status})")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The proxy's `error` text, or its body.
        message: String,
    },
    /// The answer is not JSON.
    #[error("the admin API answered with something other than JSON: {0}")]
    NotJson(String),
}

/// The address to reach a listener bound to `listen`: an unspecified
/// address (`0.0.0.0`, `::`) is reached on loopback.
pub fn target(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, listen.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, listen.port()).into(),
        _ => listen,
    }
}

/// A running proxy's admin API.
#[derive(Debug)]
pub struct AdminApi<'a> {
    addr: SocketAddr,
    token: &'a Token,
}

impl<'a> AdminApi<'a> {
    /// The API described by `http`, reached at `addr` if given, else at
    /// `[http] listen` (an unspecified address on loopback).
    pub fn new(http: &'a HttpConfig, addr: Option<SocketAddr>) -> Result<Self, CtlError> {
        let token = http.token.as_ref().ok_or(CtlError::NoToken)?;
        let addr = match addr {
            Some(a) => a,
            None if http.listen.port() == 0 => return Err(CtlError::PortZero(http.listen)),
            None => target(http.listen),
        };
        Ok(Self { addr, token })
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<serde_json::Value>,
        timeout: Duration,
    ) -> Result<serde_json::Value, CtlError> {
        let addr = self.addr;
        let client_err = |source| CtlError::Client { addr, source };
        let uri: Uri = format!("http://{addr}/")
            .parse()
            .map_err(|_| client_err(ClientError::Url(addr.to_string())))?;
        let mut client = Client::new(&uri, None).map_err(client_err)?;
        let mut bearer = HeaderValue::from_str(&format!("Bearer {}", self.token.expose()))
            .map_err(|_| client_err(ClientError::Url("token".into())))?;
        bearer.set_sensitive(true);
        let mut request = Request::builder().method(method).uri(path).header(AUTHORIZATION, bearer);
        let body = match body {
            Some(b) => {
                request = request.header(CONTENT_TYPE, "application/json");
                Bytes::from(b.to_string())
            }
            None => Bytes::new(),
        };
        let request =
            request.body(Full::new(body)).map_err(|_| client_err(ClientError::Url(path.into())))?;
        let response = client.send(request, timeout).await.map_err(client_err)?;
        let text = String::from_utf8_lossy(&response.body).into_owned();
        let value: Result<serde_json::Value, _> = serde_json::from_str(&text);
        if !response.status.is_success() {
            let message = match &value {
                Ok(v) => v["error"].as_str().map_or_else(|| v.to_string(), str::to_owned),
                Err(_) => text.trim().to_owned(),
            };
            return Err(CtlError::Refused { status: response.status.as_u16(), message });
        }
        value.map_err(|_| CtlError::NotJson(text))
    }

    /// `GET /api/agents`: the connected agents.
    pub async fn agents(&self) -> Result<serde_json::Value, CtlError> {
        self.call(Method::GET, "/api/agents", None, SLACK * 2).await
    }

    /// `GET /api/bindings`: which identity owns each agent name.
    pub async fn bindings(&self, project: Option<&str>) -> Result<serde_json::Value, CtlError> {
        let path = match project {
            Some(p) => format!("/api/bindings?project={}", percent_encode(p)),
            None => "/api/bindings".to_owned(),
        };
        self.call(Method::GET, &path, None, SLACK * 2).await
    }

    /// `POST /api/projects/{project}/agents/{agent}/{action}`, where the
    /// action is `forget` or `approve`.
    pub async fn binding(
        &self,
        project: &str,
        agent: &str,
        action: &str,
    ) -> Result<serde_json::Value, CtlError> {
        let path = format!(
            "/api/projects/{}/agents/{}/{action}",
            percent_encode(project),
            percent_encode(agent)
        );
        self.call(Method::POST, &path, None, SLACK * 2).await
    }

    /// `POST /api/agents/{agent}/request`: a control request and its answer.
    pub async fn request(
        &self,
        project: Option<&str>,
        agent: &str,
        command: &str,
        args: &[String],
        timeout: Option<Duration>,
    ) -> Result<serde_json::Value, CtlError> {
        let mut body = serde_json::json!({ "command": command, "args": args });
        if let Some(p) = project {
            body["project"] = p.into();
        }
        if let Some(t) = timeout {
            body["timeout_ms"] = u64::try_from(t.as_millis()).unwrap_or(u64::MAX).into();
        }
        let path = format!("/api/agents/{}/request", percent_encode(agent));
        let wait = timeout.unwrap_or(DEFAULT_REQUEST_TIMEOUT) + SLACK;
        self.call(Method::POST, &path, Some(body), wait).await
    }
}

impl AdminApi<'_> {
    /// `POST /api/projects/{project}/collectors`: publishes a collector
    /// (`body` as [`crate::fleet::api`] describes it).
    pub async fn publish(
        &self,
        project: &str,
        body: serde_json::Value,
    ) -> Result<serde_json::Value, CtlError> {
        let path = format!("/api/projects/{}/collectors", percent_encode(project));
        // The proxy compiles the component to check it.
        self.call(Method::POST, &path, Some(body), PUBLISH_TIMEOUT).await
    }

    /// `GET /api/projects/{project}/collectors[/{name}]`: the releases, or
    /// where each agent stands with `name`.
    pub async fn collectors(
        &self,
        project: &str,
        name: Option<&str>,
    ) -> Result<serde_json::Value, CtlError> {
        let mut path = format!("/api/projects/{}/collectors", percent_encode(project));
        if let Some(n) = name {
            path = format!("{path}/{}", percent_encode(n));
        }
        self.call(Method::GET, &path, None, SLACK * 2).await
    }

    /// `POST /api/projects/{project}/collectors/{name}/{action}`, where the
    /// action is `promote`, `rollback` or `remove`.
    pub async fn collector_action(
        &self,
        project: &str,
        name: &str,
        action: &str,
    ) -> Result<serde_json::Value, CtlError> {
        let path = format!(
            "/api/projects/{}/collectors/{}/{action}",
            percent_encode(project),
            percent_encode(name)
        );
        self.call(Method::POST, &path, None, SLACK * 2).await
    }
}

/// How long a publish may take (upload, compile, checks).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(300);

/// Escapes everything but unreserved URL characters.
fn percent_encode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listen_addresses_are_reached_on_loopback() {
        let t = |s: &str| target(s.parse().expect("addr")).to_string();
        assert_eq!(t("0.0.0.0:6680"), "127.0.0.1:6680");
        assert_eq!(t("[::]:6680"), "[::1]:6680");
        assert_eq!(t("10.0.0.1:6680"), "10.0.0.1:6680");
        assert_eq!(percent_encode("web 01/ä"), "web%2001%2F%C3%A4");
    }

    #[test]
    fn the_address_comes_from_the_config_or_the_caller() {
        let cfg = |listen: &str, token: Option<&str>| HttpConfig {
            listen: listen.parse().expect("addr"),
            token: token.map(|t| Token::new(t.into()).expect("token")),
            max_series: 1,
            series_ttl: Duration::from_secs(1),
        };
        let t = Some("0123456789abcdef");
        let c = cfg("0.0.0.0:6680", t);
        assert_eq!(AdminApi::new(&c, None).map(|a| a.addr.port()).ok(), Some(6680));
        let c = cfg("127.0.0.1:0", t);
        let err = AdminApi::new(&c, None).expect_err("port 0").to_string();
        assert!(err.contains("--addr"), "{err}");
        let given = "127.0.0.1:7000".parse().ok();
        assert_eq!(AdminApi::new(&c, given).map(|a| a.addr.port()).ok(), Some(7000));
        let c = cfg("127.0.0.1:6680", None);
        assert!(matches!(AdminApi::new(&c, None), Err(CtlError::NoToken)));
    }
}
