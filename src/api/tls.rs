//! TLS for both ports (rustls with the `ring` provider), and making a
//! self-signed certificate for first use.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the certificate {path}: {message}")]
    Certificate { path: String, message: String },
    #[error("cannot read the private key {path}: {message}")]
    Key { path: String, message: String },
    #[error("the certificate and key do not make a TLS configuration: {0}")]
    Config(String),
    #[error("cannot make a certificate: {0}")]
    Generate(String),
    #[error("cannot write {path}: {source}")]
    Write { path: String, source: std::io::Error },
}

/// A TLS acceptor from PEM files (the certificate file may hold a chain).
pub fn acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, TlsError> {
    let cert_err = |message: String| TlsError::Certificate { path: cert.display().to_string(), message };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| cert_err(e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| cert_err(e.to_string()))?;
    if certs.is_empty() {
        return Err(cert_err("no certificate in it".into()));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| TlsError::Key { path: key.display().to_string(), message: e.to_string() })?;
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// Writes a self-signed certificate for `names` and its key (mode 0600).
pub fn self_signed(cert: &Path, key: &Path, names: Vec<String>) -> Result<(), TlsError> {
    let made = rcgen::generate_simple_self_signed(names).map_err(|e| TlsError::Generate(e.to_string()))?;
    let write = |path: &Path, mode: u32, text: String| {
        let werr = |source| TlsError::Write { path: path.display().to_string(), source };
        let mut f =
            std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(mode).open(path).map_err(werr)?;
        f.write_all(text.as_bytes()).map_err(werr)
    };
    write(key, 0o600, made.signing_key.serialize_pem())?;
    write(cert, 0o644, made.cert.pem())
}
