//! A throwaway certificate authority and a server certificate it signed
//! for `localhost` and `127.0.0.1`, written as PEM files, with a rustls
//! client configuration that trusts only that authority.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls_pki_types::CertificateDer;

/// The files and the matching client settings.
#[derive(Debug, Clone)]
pub struct Pki {
    /// The authority's certificate (PEM).
    pub ca: PathBuf,
    /// The server's certificate (PEM).
    pub cert: PathBuf,
    /// The server's private key (PEM, PKCS#8).
    pub key: PathBuf,
    /// Trusts the authority and nothing else.
    pub client: Arc<rustls::ClientConfig>,
}

impl Pki {
    /// Creates an authority named `name` and its server certificate under `dir`.
    pub fn create(dir: &Path, name: &str) -> anyhow::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, format!("{name} test CA"));
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
        let key = KeyPair::generate()?;
        let mut params =
            CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
        params.distinguished_name.push(DnType::CommonName, "localhost");
        let cert = params.signed_by(&key, &ca)?;
        let paths = |f: &str| dir.join(format!("{name}-{f}"));
        let (ca_path, cert_path, key_path) = (paths("ca.pem"), paths("cert.pem"), paths("key.pem"));
        std::fs::write(&ca_path, ca.pem())?;
        std::fs::write(&cert_path, cert.pem())?;
        std::fs::write(&key_path, key.serialize_pem())?;
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from(ca.der().to_vec())).context("trusting the test CA")?;
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Self { ca: ca_path, cert: cert_path, key: key_path, client: Arc::new(client) })
    }
}
