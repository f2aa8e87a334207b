//! TLS with rustls 0.23 and the `ring` provider (WIRE.md §7).
//!
//! - [`server`]: server configurations from PEM files, with a certificate
//!   resolver that reloads the files when they change (cert-manager
//!   rotations apply without a restart) and optional client-certificate
//!   verification (mTLS).
//! - [`client`]: client configurations (CA file or the system roots,
//!   optional client certificate, server-name override, an explicit
//!   insecure mode for tests) and a connector.
//! - [`identity`]: the user name a client certificate stands for.
//! - [`grpc`]: tonic over these configurations, and the admin API's
//!   `authorization: Basic` contract.
//! - [`peer`]: the inter-broker client (mutual TLS with the cluster CA).
//!
//! Protocol versions are TLS 1.3 and 1.2. TLS 1.2 is limited to ECDHE key
//! exchange with AES-GCM or ChaCha20-Poly1305 (the only TLS 1.2 suites
//! rustls implements; listed explicitly in [`crypto_provider`] so that a
//! future rustls cannot widen the set silently).

pub mod client;
pub mod grpc;
pub mod identity;
pub mod peer;
pub mod server;

use std::path::Path;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::crypto::ring as ring_provider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

pub use client::{ClientTlsOptions, TlsClient};
pub use identity::CertIdentity;
pub use server::{ClientAuth, ReloadingCertResolver, ReloadingClientVerifier, ServerTls, ServerTlsOptions};

/// The protocol versions offered and accepted.
pub static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// Errors of loading certificates and keys and of TLS connections.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file cannot be read.
    #[error("cannot read {what} file {path}: {source}")]
    Io {
        /// Which file (certificate, private key, CA).
        what: &'static str,
        /// Its path.
        path: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A PEM file holds no certificate / key, or is not PEM.
    #[error("{what} file {path} is not usable: {reason}")]
    BadPem {
        /// Which file.
        what: &'static str,
        /// Its path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The private key does not belong to the certificate, or rustls
    /// refused the key or configuration.
    #[error("TLS configuration error: {0}")]
    Config(String),
    /// The name to verify the server certificate against is not a DNS name
    /// or IP address.
    #[error("'{0}' is not a valid TLS server name (a DNS name or IP address)")]
    InvalidServerName(String),
    /// The TLS handshake failed.
    #[error("TLS handshake with {peer} failed: {reason}")]
    Handshake {
        /// The other side.
        peer: String,
        /// Why.
        reason: String,
    },
    /// The TLS handshake did not finish in time.
    #[error("TLS handshake with {peer} did not finish within {after:?}")]
    HandshakeTimeout {
        /// The other side.
        peer: String,
        /// The limit.
        after: std::time::Duration,
    },
}

/// The ring provider with the cipher suites WIRE.md §7 allows: the three
/// TLS 1.3 suites, and for TLS 1.2 only ECDHE with AES-GCM or
/// ChaCha20-Poly1305.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    use ring_provider::cipher_suite as cs;
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            cs::TLS13_AES_256_GCM_SHA384,
            cs::TLS13_AES_128_GCM_SHA256,
            cs::TLS13_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
            cs::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
            cs::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
            cs::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        ],
        ..ring_provider::default_provider()
    })
}

fn read_file(what: &'static str, path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Io {
        what,
        path: path.display().to_string(),
        source,
    })
}

/// Parses every certificate of a PEM document.
pub fn parse_certificates(
    what: &'static str,
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bad = |reason: String| TlsError::BadPem {
        what,
        path: path.display().to_string(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(bad("no CERTIFICATE block found".into()));
    }
    Ok(certs)
}

/// Parses the first private key (PKCS#8, PKCS#1 or SEC1) of a PEM document.
pub fn parse_private_key(path: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| TlsError::BadPem {
        what: "private key",
        path: path.display().to_string(),
        // The pki-types error names the problem, never the key bytes.
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => "no PRIVATE KEY block found".into(),
            other => format!("invalid PEM: {other}"),
        },
    })
}

/// Reads every certificate of a PEM file.
pub fn load_certificates(what: &'static str, path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read_file(what, path)?;
    parse_certificates(what, path, &pem)
}

/// Reads a CA bundle into a root store.
pub fn load_root_store(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    let pem = read_file("CA certificate", path)?;
    root_store_from_pem(path, &pem)
}

/// Parses a PEM CA bundle (read from `path`) into a root store.
pub fn root_store_from_pem(path: &Path, pem: &[u8]) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in parse_certificates("CA certificate", path, pem)? {
        roots.add(cert).map_err(|e| TlsError::BadPem {
            what: "CA certificate",
            path: path.display().to_string(),
            reason: format!("certificate not usable as a trust anchor: {e}"),
        })?;
    }
    Ok(roots)
}

/// Builds a certified key (chain + signing key) and checks that the key
/// belongs to the first certificate.
pub fn certified_key(
    cert_path: &Path,
    cert_pem: &[u8],
    key_path: &Path,
    key_pem: &[u8],
    provider: &CryptoProvider,
) -> Result<Arc<rustls::sign::CertifiedKey>, TlsError> {
    let chain = parse_certificates("certificate", cert_path, cert_pem)?;
    let key = parse_private_key(key_path, key_pem)?;
    let certified = rustls::sign::CertifiedKey::from_der(chain, key, provider).map_err(|e| {
        TlsError::Config(format!(
            "certificate {} and private key {} do not form a usable pair: {e}",
            cert_path.display(),
            key_path.display()
        ))
    })?;
    Ok(Arc::new(certified))
}
