//! A minimal HTTP/1.1 client over plain TCP (hyper's connection API) for
//! remote write and `wasmtap-proxy ctl`: one kept-alive connection to one
//! host, reopened when it breaks. No TLS: `http://` only.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HOST, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;

/// Largest response body read; longer ones are an error.
pub const MAX_RESPONSE_BODY: usize = 4 << 20;

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not `http://host[:port]/…`.
    #[error("unsupported url {0}: only http://host[:port]/path is supported")]
    Url(String),
    /// Connecting failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// The response body was larger than [`MAX_RESPONSE_BODY`] or unreadable.
    #[error("response body: {0}")]
    Body(String),
    /// No complete response within the deadline.
    #[error("no response within {0:?}")]
    Timeout(Duration),
}

/// A response, body read in full.
#[derive(Debug)]
pub struct Response {
    /// Its status.
    pub status: StatusCode,
    /// Its body.
    pub body: Bytes,
}

/// A client for one `http://` origin.
#[derive(Debug)]
pub struct Client {
    addr: String,
    host: HeaderValue,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    /// A client for the origin of `uri` (not connected yet).
    pub fn new(uri: &Uri) -> Result<Self, ClientError> {
        let bad = || ClientError::Url(uri.to_string());
        if uri.scheme_str() != Some("http") {
            return Err(bad());
        }
        let authority = uri.authority().ok_or_else(bad)?;
        let port = authority.port_u16().unwrap_or(80);
        let host = authority.host();
        // `[::1]` in a URL is `::1` to the resolver.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let host_header = HeaderValue::from_str(authority.as_str()).map_err(|_| bad())?;
        Ok(Self { addr: format!("{bare}:{port}"), host: host_header, sender: None })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let connect_err = |source| ClientError::Connect { addr: self.addr.clone(), source };
        let stream = tokio::net::TcpStream::connect(&self.addr).await.map_err(connect_err)?;
        stream.set_nodelay(true).map_err(connect_err)?;
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "http client connection ended");
            }
        });
        Ok(sender)
    }

    /// Sends `request` (its URI is the path; the Host header is added) and
    /// reads the whole response, all within `timeout`.
    pub async fn send(
        &mut self,
        mut request: Request<Full<Bytes>>,
        timeout: Duration,
    ) -> Result<Response, ClientError> {
        request.headers_mut().insert(HOST, self.host.clone());
        match tokio::time::timeout(timeout, self.exchange(request)).await {
            Ok(Ok(r)) => Ok(r),
            Ok(Err(e)) => {
                self.sender = None;
                Err(e)
            }
            Err(_) => {
                self.sender = None;
                Err(ClientError::Timeout(timeout))
            }
        }
    }

    async fn exchange(&mut self, request: Request<Full<Bytes>>) -> Result<Response, ClientError> {
        let mut sender = match self.sender.take() {
            Some(mut s) => match s.ready().await {
                Ok(()) => s,
                Err(_) => self.connect().await?,
            },
            None => self.connect().await?,
        };
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BODY)
            .collect()
            .await
            .map_err(|e| ClientError::Body(e.to_string()))?
            .to_bytes();
        self.sender = Some(sender);
        Ok(Response { status, body })
    }
}
