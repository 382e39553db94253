//! TLS client settings for `https://` remote-write endpoints: which
//! certificate authorities are trusted (the system's, or only those of a
//! PEM file), over rustls with the AWS-LC provider. Certificates and host
//! names are always verified; there is no setting that turns that off.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;

/// A ready rustls client configuration.
#[derive(Clone)]
pub struct ClientTls(pub Arc<rustls::ClientConfig>);

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientTls")
    }
}

/// Trusts the certificates of `ca_file` (PEM) or, without one, the system's
/// certificate store. The error says what is wrong, for the config message.
pub fn client(ca_file: Option<&Path>) -> Result<ClientTls, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(path) => {
            let bytes =
                std::fs::read(path).map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
            let mut found = 0;
            for cert in CertificateDer::pem_slice_iter(&bytes) {
                let cert = cert.map_err(|e| format!("tls_ca_file {}: {e}", path.display()))?;
                roots.add(cert).map_err(|e| {
                    format!("tls_ca_file {}: unusable certificate: {e}", path.display())
                })?;
                found += 1;
            }
            if found == 0 {
                return Err(format!("tls_ca_file {}: no PEM certificates in it", path.display()));
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
            if roots.is_empty() {
                let why = native.errors.first().map(ToString::to_string).unwrap_or_default();
                return Err(format!(
                    "no trusted CA certificates found on this system ({why}); \
                     install ca-certificates or set tls_ca_file"
                ));
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(ClientTls(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_file_must_hold_certificates() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("missing.pem");
        let e = client(Some(&missing)).expect_err("missing file");
        assert!(e.contains("missing.pem"), "{e}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let e = client(Some(&empty)).expect_err("no certificates");
        assert!(e.contains("no PEM certificates"), "{e}");
        let key = rcgen::KeyPair::generate().expect("key");
        let params = rcgen::CertificateParams::new(vec!["localhost".into()]).expect("params");
        let cert = params.self_signed(&key).expect("cert");
        let good = dir.path().join("ca.pem");
        std::fs::write(&good, cert.pem()).expect("write");
        assert!(client(Some(&good)).is_ok());
        assert_eq!(format!("{:?}", client(Some(&good)).expect("ok")), "ClientTls");
    }
}
