//! A minimal HTTP/1.1 client (hyper's connection API) for remote write and
//! `wasmtap-proxy ctl`: one kept-alive connection to one origin, reopened
//! when it breaks; `http://`, or `https://` given [`ClientTls`] settings.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper::header::{HOST, HeaderValue};
use hyper::{Request, StatusCode, Uri};
use hyper_util::rt::TokioIo;
use rustls_pki_types::ServerName;
use tokio_rustls::TlsConnector;

use crate::tls::ClientTls;

/// Largest response body read; longer ones are an error.
pub const MAX_RESPONSE_BODY: usize = 4 << 20;

/// Why a request got no response.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The URL is not `http(s)://host[:port]/…`, or is `https://` without TLS settings.
    #[error("unsupported url {0}")]
    Url(String),
    /// Connecting failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The TLS handshake failed (an untrusted certificate, say).
    #[error("TLS with {addr}: {source}")]
    Tls {
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
    /// How long the server asked to wait before retrying (`Retry-After`).
    pub retry_after: Option<Duration>,
    /// Its body.
    pub body: Bytes,
}

/// A `Retry-After` value, in seconds or as an HTTP date, from `now`.
pub fn retry_after(value: &HeaderValue, now: std::time::SystemTime) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = httpdate::parse_http_date(text).ok()?;
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A client for one `http://` or `https://` origin.
#[derive(Debug)]
pub struct Client {
    addr: String,
    host: HeaderValue,
    tls: Option<(ClientTls, ServerName<'static>)>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

/// HTTP/1.1 over an established byte stream; the connection runs in its own task.
async fn handshake<T>(io: TokioIo<T>) -> Result<SendRequest<Full<Bytes>>, ClientError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(io).await?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(error = %e, "http client connection ended");
        }
    });
    Ok(sender)
}

impl Client {
    /// A client for the origin of `uri` (not connected yet); an `https://`
    /// origin needs `tls`.
    pub fn new(uri: &Uri, tls: Option<&ClientTls>) -> Result<Self, ClientError> {
        let bad = |why: &str| ClientError::Url(format!("{uri}: {why}"));
        let authority = uri.authority().ok_or_else(|| bad("no host"))?;
        let host = authority.host();
        // `[::1]` in a URL is `::1` to the resolver.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let (port, tls) = match (uri.scheme_str(), tls) {
            (Some("http"), _) => (80, None),
            (Some("https"), Some(t)) => {
                let name = ServerName::try_from(bare.to_owned())
                    .map_err(|_| bad("not a valid TLS server name"))?;
                (443, Some((t.clone(), name)))
            }
            (Some("https"), None) => return Err(bad("https needs TLS settings")),
            _ => return Err(bad("only http:// and https:// are supported")),
        };
        let port = authority.port_u16().unwrap_or(port);
        let host_header =
            HeaderValue::from_str(authority.as_str()).map_err(|_| bad("invalid host"))?;
        Ok(Self { addr: format!("{bare}:{port}"), host: host_header, tls, sender: None })
    }

    async fn connect(&self) -> Result<SendRequest<Full<Bytes>>, ClientError> {
        let connect_err = |source| ClientError::Connect { addr: self.addr.clone(), source };
        let stream = tokio::net::TcpStream::connect(&self.addr).await.map_err(connect_err)?;
        stream.set_nodelay(true).map_err(connect_err)?;
        let Some((tls, name)) = &self.tls else {
            return handshake(TokioIo::new(stream)).await;
        };
        let tls = TlsConnector::from(tls.0.clone())
            .connect(name.clone(), stream)
            .await
            .map_err(|source| ClientError::Tls { addr: self.addr.clone(), source })?;
        handshake(TokioIo::new(tls)).await
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
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| retry_after(v, std::time::SystemTime::now()));
        let body = Limited::new(response.into_body(), MAX_RESPONSE_BODY)
            .collect()
            .await
            .map_err(|e| ClientError::Body(e.to_string()))?
            .to_bytes();
        self.sender = Some(sender);
        Ok(Response { status, retry_after, body })
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::sync::Arc;

    use hyper::service::service_fn;
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

    use super::*;

    /// A certificate authority and a server certificate it signed for `names`.
    struct Pki {
        ca_pem: String,
        chain: Vec<CertificateDer<'static>>,
        key: Vec<u8>,
    }

    fn pki(names: &[&str]) -> Pki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca =
            CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("ca");
        let key = KeyPair::generate().expect("key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let leaf =
            CertificateParams::new(names).expect("params").signed_by(&key, &ca).expect("leaf");
        Pki { ca_pem: ca.pem(), chain: vec![leaf.der().clone()], key: key.serialize_der() }
    }

    fn trusting(dir: &std::path::Path, ca_pem: &str) -> ClientTls {
        let path = dir.join(format!("ca-{}.pem", rand::random::<u32>()));
        std::fs::write(&path, ca_pem).expect("write ca");
        crate::tls::client(Some(&path)).expect("tls settings")
    }

    /// An HTTPS server on 127.0.0.1 answering every request with "ok".
    async fn server(pki: &Pki) -> SocketAddr {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pki.key.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(pki.chain.clone(), key)
            .expect("server config");
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else { return };
                    let ok = service_fn(|_req| async {
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            Bytes::from_static(b"ok"),
                        )))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tls), ok)
                        .await;
                });
            }
        });
        addr
    }

    async fn get(url: &str, tls: Option<&ClientTls>) -> Result<Response, ClientError> {
        let uri: Uri = url.parse().expect("uri");
        let mut client = Client::new(&uri, tls)?;
        let request = Request::get("/").body(Full::new(Bytes::new())).expect("request");
        client.send(request, Duration::from_secs(10)).await
    }

    #[test]
    fn retry_after_takes_seconds_or_a_date() {
        let now = std::time::UNIX_EPOCH + Duration::from_secs(1_445_412_390);
        let v = |s: &'static str| HeaderValue::from_static(s);
        assert_eq!(retry_after(&v("120"), now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after(&v(" 0 "), now), Some(Duration::ZERO));
        // 07:28:00 is 90 s after `now` (07:26:30).
        let date = v("Wed, 21 Oct 2015 07:28:00 GMT");
        assert_eq!(retry_after(&date, now), Some(Duration::from_secs(90)));
        let past = v("Wed, 21 Oct 2015 07:00:00 GMT");
        assert_eq!(retry_after(&past, now), Some(Duration::ZERO));
        assert_eq!(retry_after(&v("soon"), now), None);
        assert_eq!(retry_after(&v("-5"), now), None);
    }

    #[tokio::test]
    async fn https_verifies_the_certificate_and_the_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pki = pki(&["localhost"]);
        let port = server(&pki).await.port();
        let trusted = trusting(dir.path(), &pki.ca_pem);

        let r = get(&format!("https://localhost:{port}/"), Some(&trusted)).await.expect("https");
        assert_eq!((r.status, &r.body[..]), (StatusCode::OK, &b"ok"[..]));

        let stranger = trusting(dir.path(), &self::pki(&["localhost"]).ca_pem);
        let e = get(&format!("https://localhost:{port}/"), Some(&stranger)).await;
        assert!(matches!(&e, Err(ClientError::Tls { .. })), "another CA's certificate: {e:?}");
        let shown = e.expect_err("refused").to_string();
        assert!(shown.contains("invalid peer certificate"), "{shown}");

        let e = get(&format!("https://127.0.0.1:{port}/"), Some(&trusted)).await;
        assert!(matches!(&e, Err(ClientError::Tls { .. })), "name not in the certificate: {e:?}");

        let e = get(&format!("https://localhost:{port}/"), None).await;
        assert!(matches!(e, Err(ClientError::Url(u)) if u.contains("https needs TLS settings")));
        let e = get(&format!("http://localhost:{port}/"), None).await;
        assert!(e.is_err(), "plain HTTP to a TLS port");
    }
}
