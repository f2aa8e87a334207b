//! Server-side TLS: configurations from PEM files, certificate reloading and
//! client-certificate verification.
//!
//! ```no_run
//! # async fn demo() -> Result<(), flymq_security::tls::TlsError> {
//! use flymq_security::tls::{ClientAuth, ServerTls, ServerTlsOptions};
//!
//! let tls = ServerTls::new(ServerTlsOptions::new("/etc/flymq/tls/tls.crt", "/etc/flymq/tls/tls.key"))?;
//! let acceptor = tls.acceptor(); // client port: implicit TLS, no ALPN
//! let grpc_config = tls.config_with_alpn(vec![b"h2".to_vec()])?; // admin / cluster ports
//! # let _ = (acceptor, grpc_config);
//! # Ok(()) }
//! ```

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use sha2::{Digest, Sha256};
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::{PROTOCOL_VERSIONS, TlsError, certified_key, crypto_provider, read_file, root_store_from_pem};

/// Default interval between two checks of the certificate files.
pub const DEFAULT_RELOAD_INTERVAL: Duration = Duration::from_secs(5);
/// Default limit for one server-side handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether clients must present a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClientAuth {
    /// No client certificate is requested (Go parity; the default).
    #[default]
    None,
    /// A certificate is requested and verified if sent; clients without
    /// one are still accepted (they authenticate with AUTH instead).
    Optional,
    /// Every client must present a certificate signed by the client CA.
    Required,
}

/// Settings of a TLS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsOptions {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key_file: PathBuf,
    /// PEM CA bundle that client certificates must chain to; needed for
    /// [`ClientAuth::Optional`] and [`ClientAuth::Required`].
    pub client_ca_file: Option<PathBuf>,
    /// Client-certificate verification.
    pub client_auth: ClientAuth,
    /// How often the certificate and key files are checked for changes;
    /// `None` disables reloading.
    pub reload_interval: Option<Duration>,
}

impl ServerTlsOptions {
    /// Certificate and key files, no client certificates, reloading every
    /// [`DEFAULT_RELOAD_INTERVAL`].
    pub fn new(cert_file: impl Into<PathBuf>, key_file: impl Into<PathBuf>) -> Self {
        Self {
            cert_file: cert_file.into(),
            key_file: key_file.into(),
            client_ca_file: None,
            client_auth: ClientAuth::None,
            reload_interval: Some(DEFAULT_RELOAD_INTERVAL),
        }
    }

    /// Verifies client certificates against `ca_file`.
    pub fn with_client_auth(mut self, ca_file: impl Into<PathBuf>, mode: ClientAuth) -> Self {
        self.client_ca_file = Some(ca_file.into());
        self.client_auth = mode;
        self
    }

    /// Sets (or with `None` disables) certificate reloading.
    pub fn with_reload_interval(mut self, interval: Option<Duration>) -> Self {
        self.reload_interval = interval;
        self
    }
}

/// A server certificate resolver that always answers with the current
/// certificate and can reload it from its files. Reloading keeps the old
/// certificate when the new files are unreadable, not PEM, or the key does
/// not match the certificate (an error is logged once per distinct file
/// contents), so a half-written rotation never breaks the listener.
pub struct ReloadingCertResolver {
    cert_path: PathBuf,
    key_path: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// Digest of the (certificate, key) contents last looked at, good or bad.
    last_seen: Mutex<[u8; 32]>,
}

impl fmt::Debug for ReloadingCertResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingCertResolver")
            .field("cert_path", &self.cert_path)
            .field("key_path", &self.key_path)
            .finish()
    }
}

fn digest(cert: &[u8], key: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update((cert.len() as u64).to_be_bytes());
    hasher.update(cert);
    hasher.update(key);
    hasher.finalize().into()
}

impl ReloadingCertResolver {
    /// Loads the certificate and key; fails if they are not usable.
    pub fn load(
        cert_path: impl Into<PathBuf>,
        key_path: impl Into<PathBuf>,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let cert_path = cert_path.into();
        let key_path = key_path.into();
        let cert_pem = read_file("certificate", &cert_path)?;
        let key_pem = zeroize::Zeroizing::new(read_file("private key", &key_path)?);
        let key = certified_key(&cert_path, &cert_pem, &key_path, &key_pem, &provider)?;
        Ok(Self {
            last_seen: Mutex::new(digest(&cert_pem, &key_pem)),
            cert_path,
            key_path,
            provider,
            current: RwLock::new(key),
        })
    }

    /// The certificate currently served.
    pub fn current(&self) -> Arc<CertifiedKey> {
        self.current.read().clone()
    }

    /// Re-reads the files. `Ok(true)`: a new certificate is in use;
    /// `Ok(false)`: the files did not change (or changed back to contents
    /// already refused); `Err`: the new contents are unusable and the old
    /// certificate stays.
    pub fn reload(&self) -> Result<bool, TlsError> {
        let cert_pem = read_file("certificate", &self.cert_path)?;
        let key_pem = zeroize::Zeroizing::new(read_file("private key", &self.key_path)?);
        let seen = digest(&cert_pem, &key_pem);
        {
            let mut last = self.last_seen.lock();
            if *last == seen {
                return Ok(false);
            }
            *last = seen;
        }
        let key = certified_key(&self.cert_path, &cert_pem, &self.key_path, &key_pem, &self.provider)?;
        *self.current.write() = key;
        Ok(true)
    }

    /// Starts a task that calls [`ReloadingCertResolver::reload`] every
    /// `interval` and logs the outcome. The task stops when the returned
    /// handle is dropped. Needs a tokio runtime.
    pub fn spawn_reloader(self: &Arc<Self>, interval: Duration) -> ReloadTask {
        spawn_reload_loop(self, interval)
    }
}

/// Something that re-reads its files.
trait Reload: Send + Sync + 'static {
    /// See [`ReloadingCertResolver::reload`].
    fn reload(&self) -> Result<bool, TlsError>;
    /// The files, for log lines.
    fn files(&self) -> String;
}

impl Reload for ReloadingCertResolver {
    fn reload(&self) -> Result<bool, TlsError> {
        ReloadingCertResolver::reload(self)
    }

    fn files(&self) -> String {
        format!("{} + {}", self.cert_path.display(), self.key_path.display())
    }
}

fn spawn_reload_loop<T: Reload>(target: &Arc<T>, interval: Duration) -> ReloadTask {
    let target = Arc::downgrade(target);
    let task = tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let Some(target) = target.upgrade() else {
                return;
            };
            // File reads are small, but keep them off the runtime threads.
            let t = target.clone();
            match tokio::task::spawn_blocking(move || t.reload()).await {
                Ok(Ok(true)) => tracing::info!(files = %target.files(), "TLS files reloaded; new handshakes use them"),
                Ok(Ok(false)) => {}
                Ok(Err(err)) => tracing::error!(
                    files = %target.files(),
                    error = %err,
                    "TLS certificate reload failed; keeping the previous certificate"
                ),
                Err(err) => tracing::error!(error = %err, "TLS certificate reload task failed"),
            }
        }
    });
    ReloadTask(task.abort_handle())
}

impl ResolvesServerCert for ReloadingCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Stops the reload task when dropped.
#[derive(Debug)]
pub struct ReloadTask(tokio::task::AbortHandle);

impl Drop for ReloadTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A client-certificate verifier that rebuilds itself when the CA file
/// changes (a new or additional client CA applies without a restart; a
/// garbage file keeps the previous CA). It sends no CA names in its
/// certificate request: clients send their certificate anyway.
pub struct ReloadingClientVerifier {
    ca_path: PathBuf,
    mode: ClientAuth,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<dyn ClientCertVerifier>>,
    last_seen: Mutex<[u8; 32]>,
}

impl fmt::Debug for ReloadingClientVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReloadingClientVerifier")
            .field("ca_path", &self.ca_path)
            .field("mode", &self.mode)
            .finish()
    }
}

impl ReloadingClientVerifier {
    /// Loads the CA file; fails if it is not usable.
    pub fn load(
        ca_path: impl Into<PathBuf>,
        mode: ClientAuth,
        provider: Arc<CryptoProvider>,
    ) -> Result<Self, TlsError> {
        let ca_path = ca_path.into();
        let pem = read_file("client CA", &ca_path)?;
        let verifier = client_verifier(&ca_path, &pem, mode, provider.clone())?;
        Ok(Self {
            last_seen: Mutex::new(digest(&pem, b"")),
            ca_path,
            mode,
            provider,
            current: RwLock::new(verifier),
        })
    }

    /// Re-reads the CA file (see [`ReloadingCertResolver::reload`]).
    pub fn reload(&self) -> Result<bool, TlsError> {
        let pem = read_file("client CA", &self.ca_path)?;
        let seen = digest(&pem, b"");
        {
            let mut last = self.last_seen.lock();
            if *last == seen {
                return Ok(false);
            }
            *last = seen;
        }
        let verifier = client_verifier(&self.ca_path, &pem, self.mode, self.provider.clone())?;
        *self.current.write() = verifier;
        Ok(true)
    }

    fn current(&self) -> Arc<dyn ClientCertVerifier> {
        self.current.read().clone()
    }
}

impl Reload for ReloadingClientVerifier {
    fn reload(&self) -> Result<bool, TlsError> {
        ReloadingClientVerifier::reload(self)
    }

    fn files(&self) -> String {
        self.ca_path.display().to_string()
    }
}

impl ClientCertVerifier for ReloadingClientVerifier {
    fn offer_client_auth(&self) -> bool {
        self.current().offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.current().client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.current().verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.current().verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.current().supported_verify_schemes()
    }
}

/// A TLS listener's configuration: one reloading certificate, shared by
/// every configuration built from it (client port without ALPN, gRPC ports
/// with `h2`).
#[derive(Debug, Clone)]
pub struct ServerTls {
    resolver: Arc<ReloadingCertResolver>,
    verifier: Option<Arc<ReloadingClientVerifier>>,
    provider: Arc<CryptoProvider>,
    config: Arc<rustls::ServerConfig>,
    _reloaders: Arc<Vec<ReloadTask>>,
}

impl ServerTls {
    /// Loads the files, builds the verifier and, when a reload interval is
    /// set, starts the reload task (which then needs a tokio runtime).
    pub fn new(options: ServerTlsOptions) -> Result<Self, TlsError> {
        let provider = crypto_provider();
        let resolver = Arc::new(ReloadingCertResolver::load(
            &options.cert_file,
            &options.key_file,
            provider.clone(),
        )?);
        let verifier = match (options.client_auth, &options.client_ca_file) {
            (ClientAuth::None, _) => None,
            (mode, Some(ca)) => Some(Arc::new(ReloadingClientVerifier::load(ca, mode, provider.clone())?)),
            (mode, None) => {
                return Err(TlsError::Config(format!(
                    "client certificate verification ({mode:?}) needs a client CA file"
                )));
            }
        };
        let config = build_config(&provider, &resolver, &verifier, Vec::new())?;
        let mut reloaders = Vec::new();
        if let Some(interval) = options.reload_interval {
            reloaders.push(spawn_reload_loop(&resolver, interval));
            if let Some(verifier) = &verifier {
                reloaders.push(spawn_reload_loop(verifier, interval));
            }
        }
        Ok(Self {
            resolver,
            verifier,
            provider,
            config,
            _reloaders: Arc::new(reloaders),
        })
    }

    /// The configuration without ALPN (the FlyMQ client port: WIRE.md §7
    /// uses no ALPN).
    pub fn config(&self) -> Arc<rustls::ServerConfig> {
        self.config.clone()
    }

    /// A configuration announcing `alpn` (use `vec![b"h2".to_vec()]` for
    /// gRPC), sharing the reloading certificate.
    pub fn config_with_alpn(&self, alpn: Vec<Vec<u8>>) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        build_config(&self.provider, &self.resolver, &self.verifier, alpn)
    }

    /// An acceptor for the client port.
    pub fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(self.config())
    }

    /// The reloading certificate resolver.
    pub fn resolver(&self) -> &Arc<ReloadingCertResolver> {
        &self.resolver
    }
}

fn build_config(
    provider: &Arc<CryptoProvider>,
    resolver: &Arc<ReloadingCertResolver>,
    verifier: &Option<Arc<ReloadingClientVerifier>>,
    alpn: Vec<Vec<u8>>,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let builder = match verifier {
        Some(v) => builder.with_client_cert_verifier(v.clone() as Arc<dyn ClientCertVerifier>),
        None => builder.with_no_client_auth(),
    };
    let mut config = builder.with_cert_resolver(resolver.clone());
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

fn client_verifier(
    ca_file: &Path,
    pem: &[u8],
    mode: ClientAuth,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let roots = Arc::new(root_store_from_pem(ca_file, pem)?);
    let builder = WebPkiClientVerifier::builder_with_provider(roots, provider);
    let builder = if mode == ClientAuth::Optional {
        builder.allow_unauthenticated()
    } else {
        builder
    };
    builder
        .build()
        .map_err(|e| TlsError::Config(format!("client CA {}: {e}", ca_file.display())))
}

/// Runs the server side of a handshake on an accepted socket, within
/// `timeout`. A failure (a plaintext client, an untrusted certificate)
/// affects this connection only.
pub async fn accept(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    timeout: Duration,
) -> Result<tokio_rustls::server::TlsStream<TcpStream>, TlsError> {
    let peer = stream
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| "unknown peer".into());
    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Ok(tls),
        Ok(Err(err)) => Err(TlsError::Handshake {
            peer,
            reason: err.to_string(),
        }),
        Err(_) => Err(TlsError::HandshakeTimeout { peer, after: timeout }),
    }
}
