//! TLS of the broker's listeners and of its connections to other brokers,
//! built once at start from the configuration (docs/security.md, "TLS"):
//!
//! - client port (9092, implicit TLS as WIRE.md §7 says) and admin port
//!   (9096, gRPC): the broker certificate; client certificates verified
//!   against `tls_ca_file` as `tls_client_auth` says;
//! - cluster port (9093): the same certificate, and a client certificate
//!   signed by `tls_ca_file` required from every caller (mutual TLS between
//!   brokers);
//! - connections to other brokers: trust only `tls_ca_file`, present the
//!   broker certificate.
//!
//! Certificate, key and CA files are re-read every
//! `tls_reload_interval_secs`; unusable new files are logged and the
//! previous certificate stays in use.

use std::path::{Path, PathBuf};
use std::time::Duration;

use flymq_security::tls::peer::peer_client;
use flymq_security::tls::{ClientAuth, ServerTls, ServerTlsOptions, TlsClient, TlsError};
use thiserror::Error;
use tokio_rustls::TlsAcceptor;

use crate::config::{Config, TlsClientAuth};

/// Longest a TLS handshake on any listener may take; a slower (or
/// plaintext) client is disconnected without affecting anyone else.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Why TLS could not be set up; names the key to fix.
#[derive(Debug, Error)]
pub enum TlsSetupError {
    #[error("`{key}` is required when tls_enabled is true")]
    Missing { key: &'static str },
    #[error("TLS for the {listener} (check tls_cert_file, tls_key_file, tls_ca_file): {source}")]
    Load {
        listener: &'static str,
        #[source]
        source: TlsError,
    },
}

/// The TLS settings of one broker.
#[derive(Debug, Clone)]
pub struct BrokerTls {
    /// Client and admin ports.
    pub listeners: ServerTls,
    /// Cluster port and outgoing inter-broker connections (cluster mode).
    pub cluster: Option<ClusterTls>,
}

/// Mutual TLS between brokers.
#[derive(Debug, Clone)]
pub struct ClusterTls {
    /// The cluster port: callers must present a certificate of the cluster CA.
    pub server: ServerTls,
    /// Connections to peers.
    pub client: TlsClient,
}

fn required<'a>(value: &'a Option<PathBuf>, key: &'static str) -> Result<&'a Path, TlsSetupError> {
    value.as_deref().ok_or(TlsSetupError::Missing { key })
}

impl BrokerTls {
    /// `None` when `tls_enabled` is false. Needs a tokio runtime (the
    /// reload tasks).
    pub fn from_config(config: &Config) -> Result<Option<Self>, TlsSetupError> {
        if !config.tls_enabled {
            return Ok(None);
        }
        let cert = required(&config.tls_cert_file, "tls_cert_file")?;
        let key = required(&config.tls_key_file, "tls_key_file")?;
        let reload = Some(Duration::from_secs(config.tls_reload_interval_secs.max(1)));
        let base = ServerTlsOptions::new(cert, key).with_reload_interval(reload);
        let client_auth = match config.tls_client_auth {
            TlsClientAuth::None => ClientAuth::None,
            TlsClientAuth::Optional => ClientAuth::Optional,
            TlsClientAuth::Required => ClientAuth::Required,
        };
        let listener_options = match (&config.tls_ca_file, client_auth) {
            (_, ClientAuth::None) => base.clone(),
            (Some(ca), mode) => base.clone().with_client_auth(ca, mode),
            (None, _) => return Err(TlsSetupError::Missing { key: "tls_ca_file" }),
        };
        let listeners = ServerTls::new(listener_options).map_err(|source| TlsSetupError::Load {
            listener: "client and admin ports",
            source,
        })?;
        let cluster = if config.is_cluster() {
            let ca = required(&config.tls_ca_file, "tls_ca_file")?;
            let server = ServerTls::new(base.with_client_auth(ca, ClientAuth::Required)).map_err(|source| {
                TlsSetupError::Load {
                    listener: "cluster port",
                    source,
                }
            })?;
            let client = peer_client(ca, server.resolver().clone()).map_err(|source| TlsSetupError::Load {
                listener: "connections to other brokers",
                source,
            })?;
            Some(ClusterTls { server, client })
        } else {
            None
        };
        Ok(Some(Self { listeners, cluster }))
    }

    /// The client port's acceptor (no ALPN: WIRE.md §7).
    pub fn client_acceptor(&self) -> TlsAcceptor {
        self.listeners.acceptor()
    }

    /// The admin port's acceptor (ALPN `h2`).
    pub fn admin_acceptor(&self) -> Result<TlsAcceptor, TlsSetupError> {
        grpc_acceptor(&self.listeners, "admin port")
    }
}

/// An acceptor announcing `h2`, for a gRPC listener.
pub fn grpc_acceptor(tls: &ServerTls, listener: &'static str) -> Result<TlsAcceptor, TlsSetupError> {
    tls.config_with_alpn(vec![b"h2".to_vec()])
        .map(TlsAcceptor::from)
        .map_err(|source| TlsSetupError::Load { listener, source })
}
