//! Client-side TLS: configuration and connector.
//!
//! The server certificate is verified against the CA file when one is
//! given, else against the system's trust store, and its name against the
//! server-name override or the host that was dialled (also sent as SNI),
//! as pyflymq does. `insecure_skip_verify` accepts any certificate: for
//! tests only.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;

use super::{PROTOCOL_VERSIONS, TlsError, crypto_provider, load_certificates, load_root_store, parse_private_key};

/// Settings of a TLS client.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientTlsOptions {
    /// PEM CA bundle to verify the server with; `None` uses the system's
    /// trust store.
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate chain (mTLS); needs `client_key_file`.
    pub client_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate.
    pub client_key_file: Option<PathBuf>,
    /// Name to verify the server certificate against and to send as SNI,
    /// instead of the host dialled.
    pub server_name: Option<String>,
    /// Accept any server certificate. Only for tests: it allows anyone on
    /// the path to read and change the traffic.
    pub insecure_skip_verify: bool,
}

/// A TLS connector with its settings. Cheap to clone.
#[derive(Clone)]
pub struct TlsClient {
    connector: TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for TlsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsClient")
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl TlsClient {
    /// A client for the FlyMQ binary protocol (no ALPN).
    pub fn new(options: &ClientTlsOptions) -> Result<Self, TlsError> {
        Self::with_alpn(options, Vec::new())
    }

    /// A client for gRPC (ALPN `h2`).
    pub fn for_grpc(options: &ClientTlsOptions) -> Result<Self, TlsError> {
        Self::with_alpn(options, vec![b"h2".to_vec()])
    }

    /// A client announcing `alpn`.
    pub fn with_alpn(options: &ClientTlsOptions, alpn: Vec<Vec<u8>>) -> Result<Self, TlsError> {
        let mut config = client_config(options)?;
        config.alpn_protocols = alpn;
        let server_name = options
            .server_name
            .as_deref()
            .map(|name| ServerName::try_from(name.to_owned()).map_err(|_| TlsError::InvalidServerName(name.to_owned())))
            .transpose()?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// A client with a configuration built elsewhere (e.g. [`super::peer`]).
    pub fn from_config(config: rustls::ClientConfig, server_name: Option<ServerName<'static>>) -> Self {
        Self {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
        }
    }

    /// The name the certificate of `host` is checked against: the override,
    /// else `host` (brackets of an IPv6 literal removed).
    pub fn server_name_for(&self, host: &str) -> Result<ServerName<'static>, TlsError> {
        if let Some(name) = &self.server_name {
            return Ok(name.clone());
        }
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        ServerName::try_from(bare.to_owned()).map_err(|_| TlsError::InvalidServerName(host.to_owned()))
    }

    /// Runs the client side of the handshake on `stream`, connected to `host`.
    pub async fn connect<S>(&self, host: &str, stream: S) -> Result<tokio_rustls::client::TlsStream<S>, TlsError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = self.server_name_for(host)?;
        self.connector
            .connect(name, stream)
            .await
            .map_err(|err| TlsError::Handshake {
                peer: host.to_owned(),
                reason: describe_handshake_error(&err),
            })
    }
}

/// Explains common handshake failures in words a user can act on.
fn describe_handshake_error(err: &std::io::Error) -> String {
    let text = err.to_string();
    if text.contains("UnknownIssuer") || text.contains("BadSignature") {
        format!("{text} (the server certificate is not signed by a trusted CA; pass the CA with --tls-ca)")
    } else if text.contains("NotValidForName") {
        format!("{text} (the server certificate does not name this host; set --tls-server-name)")
    } else if text.contains("Expired") {
        format!("{text} (the server certificate has expired)")
    } else if text.contains("InvalidContentType") || text.contains("corrupt message") {
        format!("{text} (is the server speaking TLS on this port?)")
    } else {
        text
    }
}

/// Builds a rustls client configuration (TLS 1.2/1.3, §7 suites).
pub fn client_config(options: &ClientTlsOptions) -> Result<rustls::ClientConfig, TlsError> {
    let provider = crypto_provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = if options.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoServerVerification(provider)))
    } else {
        let roots = match &options.ca_file {
            Some(path) => load_root_store(path)?,
            None => system_roots()?,
        };
        builder.with_root_certificates(roots)
    };
    match (&options.client_cert_file, &options.client_key_file) {
        (Some(cert), Some(key)) => {
            let chain = load_certificates("client certificate", cert)?;
            let key_pem = zeroize::Zeroizing::new(std::fs::read(key).map_err(|source| TlsError::Io {
                what: "client private key",
                path: key.display().to_string(),
                source,
            })?);
            let key = parse_private_key(key, &key_pem)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::Config(format!("client certificate and key: {e}")))
        }
        (None, None) => Ok(builder.with_no_client_auth()),
        _ => Err(TlsError::Config(
            "a client certificate needs both a certificate file and a key file (--tls-cert and --tls-key)".into(),
        )),
    }
}

/// A gRPC (ALPN `h2`) client from PEM held in memory rather than files
/// (the operator reads its cluster's CA and client certificate from a
/// Secret): trusts only `ca_pem`, presents `client` (certificate chain and
/// key) when given. `source` names where the PEM came from in errors.
pub fn grpc_client_from_pem(
    source: &str,
    ca_pem: &[u8],
    client: Option<(&[u8], &[u8])>,
) -> Result<TlsClient, TlsError> {
    let path = std::path::Path::new(source);
    let roots = super::root_store_from_pem(path, ca_pem)?;
    let builder = rustls::ClientConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_root_certificates(roots);
    let mut config = match client {
        Some((cert_pem, key_pem)) => {
            let chain = super::parse_certificates("client certificate", path, cert_pem)?;
            let key = parse_private_key(path, key_pem)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| TlsError::Config(format!("client certificate and key from {source}: {e}")))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(TlsClient::from_config(config, None))
}

fn system_roots() -> Result<rustls::RootCertStore, TlsError> {
    let found = rustls_native_certs::load_native_certs();
    let mut roots = rustls::RootCertStore::empty();
    let (added, _) = roots.add_parsable_certificates(found.certs);
    if added == 0 {
        return Err(TlsError::Config(
            "no trusted CA certificates found in the system store; give a CA file (--tls-ca)".into(),
        ));
    }
    Ok(roots)
}

/// Accepts any server certificate but still checks the handshake
/// signatures (so the session keys belong to whoever holds the presented
/// key). Tests only.
#[derive(Debug)]
struct NoServerVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoServerVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
