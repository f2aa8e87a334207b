//! gRPC (tonic 0.14) over the TLS configurations of this crate, and the
//! admin API's credential contract.
//!
//! tonic's own TLS (`tls-ring`) takes a fixed PEM identity, so it cannot
//! serve a reloading certificate. Instead:
//!
//! - **Server**: [`TlsIncoming`] accepts TCP connections, runs each TLS
//!   handshake in its own task (a slow or plaintext client holds up nobody)
//!   and yields the established streams for
//!   `Server::builder()...serve_with_incoming(incoming)`. Each stream
//!   carries a [`TlsConnectInfo`] that handlers read with
//!   `request.extensions().get::<TlsConnectInfo>()` to learn the peer's
//!   certificate identity (mTLS).
//! - **Client**: [`channel`] / [`lazy_channel`] build a tonic `Channel`
//!   whose connector dials TCP and runs the rustls handshake (ALPN `h2`).
//!
//! ## Admin API credentials
//!
//! A client authenticates each admin call either with a client certificate
//! (mTLS; the identity is [`CertIdentity::username`]) or with the metadata
//! entry `authorization: Basic base64(user ":" password)` (RFC 7617,
//! standard base64 with padding, UTF-8). Build it with
//! [`basic_authorization`]; the broker parses it with
//! [`parse_basic_authorization`]. Send it only over TLS.

use std::fmt;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use futures::Stream;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tonic::transport::server::Connected;
use tonic::transport::{Channel, Endpoint};

use super::identity::CertIdentity;
use super::server::accept;
use super::{TlsClient, TlsError};

/// Most established connections waiting to be picked up by the server.
const INCOMING_QUEUE: usize = 64;

/// What a gRPC handler can learn about the TLS connection of a call.
#[derive(Debug, Clone)]
pub struct TlsConnectInfo {
    /// The client's address.
    pub remote_addr: Option<SocketAddr>,
    /// The local address.
    pub local_addr: Option<SocketAddr>,
    /// The verified client certificate chain, when the client sent one
    /// (needs [`ClientAuth::Optional`](super::ClientAuth) or `Required`).
    pub peer_certificates: Option<Arc<Vec<CertificateDer<'static>>>>,
    /// Names of the client certificate.
    pub identity: Option<CertIdentity>,
}

impl TlsConnectInfo {
    /// The user the client certificate stands for.
    pub fn username(&self) -> Option<&str> {
        self.identity.as_ref().and_then(CertIdentity::username)
    }
}

/// A server-side TLS connection for tonic.
pub struct TlsConnection {
    stream: tokio_rustls::server::TlsStream<TcpStream>,
    info: TlsConnectInfo,
}

impl fmt::Debug for TlsConnection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConnection").field("info", &self.info).finish()
    }
}

impl TlsConnection {
    /// Wraps an established server-side stream.
    pub fn new(stream: tokio_rustls::server::TlsStream<TcpStream>) -> Self {
        let (tcp, conn) = stream.get_ref();
        let peer_certificates = conn
            .peer_certificates()
            .map(|chain| Arc::new(chain.iter().map(|c| c.clone().into_owned()).collect::<Vec<_>>()));
        let identity = CertIdentity::of_peer(peer_certificates.as_deref().map(Vec::as_slice));
        let info = TlsConnectInfo {
            remote_addr: tcp.peer_addr().ok(),
            local_addr: tcp.local_addr().ok(),
            peer_certificates,
            identity,
        };
        Self { stream, info }
    }

    /// The connection's details.
    pub fn info(&self) -> &TlsConnectInfo {
        &self.info
    }
}

impl Connected for TlsConnection {
    type ConnectInfo = TlsConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConnection {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConnection {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }
}

/// A stream of established TLS connections for tonic's
/// `serve_with_incoming`. Failed handshakes are logged at debug level and
/// skipped. Dropping the stream stops the accept task.
pub struct TlsIncoming {
    rx: mpsc::Receiver<TlsConnection>,
    task: tokio::task::AbortHandle,
}

impl fmt::Debug for TlsIncoming {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIncoming").finish_non_exhaustive()
    }
}

impl TlsIncoming {
    /// Accepts on `listener`, handshaking with `acceptor` (build it from
    /// [`ServerTls::config_with_alpn`](super::ServerTls::config_with_alpn)
    /// with `h2`) within `handshake_timeout`. Needs a tokio runtime.
    pub fn new(listener: TcpListener, acceptor: TlsAcceptor, handshake_timeout: Duration) -> Self {
        let (tx, rx) = mpsc::channel(INCOMING_QUEUE);
        let task = tokio::spawn(async move {
            loop {
                let (socket, peer) = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok(pair) => pair,
                        Err(err) => {
                            // EMFILE and friends: back off instead of spinning.
                            tracing::warn!(error = %err, "accept failed on a TLS gRPC listener");
                            tokio::time::sleep(Duration::from_millis(100)).await;
                            continue;
                        }
                    },
                    () = tx.closed() => return,
                };
                let _ = socket.set_nodelay(true);
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match accept(&acceptor, socket, handshake_timeout).await {
                        Ok(stream) => {
                            let _ = tx.send(TlsConnection::new(stream)).await;
                        }
                        Err(err) => tracing::debug!(%peer, error = %err, "TLS handshake failed on a gRPC listener"),
                    }
                });
            }
        })
        .abort_handle();
        Self { rx, task }
    }
}

impl Drop for TlsIncoming {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Stream for TlsIncoming {
    type Item = Result<TlsConnection, std::io::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|conn| conn.map(Ok))
    }
}

fn endpoint(addr: &str, connect_timeout: Duration) -> Result<Endpoint, TlsError> {
    Endpoint::from_shared(format!("http://{addr}"))
        .map(|e| e.connect_timeout(connect_timeout))
        .map_err(|e| TlsError::Config(format!("address '{addr}' is not usable: {e}")))
}

/// The tower connector: TCP, then the rustls handshake.
fn connector(
    tls: TlsClient,
) -> impl tower::Service<
    http::Uri,
    Response = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
    Error = std::io::Error,
    Future = impl Future<
        Output = Result<hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<TcpStream>>, std::io::Error>,
    > + Send,
> + Clone
+ Send
+ 'static {
    tower::service_fn(move |uri: http::Uri| {
        let tls = tls.clone();
        async move {
            let host = uri.host().unwrap_or_default().to_owned();
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host.trim_start_matches('[').trim_end_matches(']'), port)).await?;
            let _ = tcp.set_nodelay(true);
            let stream = tls.connect(&host, tcp).await.map_err(std::io::Error::other)?;
            Ok(hyper_util::rt::TokioIo::new(stream))
        }
    })
}

/// Connects a tonic channel to `addr` (`host:port`) over TLS. `tls` should
/// come from [`TlsClient::for_grpc`] (ALPN `h2`).
pub async fn channel(
    addr: &str,
    tls: TlsClient,
    connect_timeout: Duration,
) -> Result<Channel, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))?.connect_timeout(connect_timeout);
    endpoint.connect_with_connector(connector(tls)).await
}

/// A tonic channel to `addr` that connects (over TLS) on first use and
/// reconnects by itself, for inter-broker clients.
pub fn lazy_channel(addr: &str, tls: TlsClient, connect_timeout: Duration) -> Result<Channel, TlsError> {
    Ok(endpoint(addr, connect_timeout)?.connect_with_connector_lazy(connector(tls)))
}

/// Like [`lazy_channel`], on an endpoint configured by the caller
/// (keep-alive, timeouts); its `http://` scheme is kept, TLS comes from
/// `tls`.
pub fn lazy_channel_on(endpoint: Endpoint, tls: TlsClient) -> Channel {
    endpoint.connect_with_connector_lazy(connector(tls))
}

/// User name and password from an `authorization: Basic` value. `Debug`
/// hides the password.
#[derive(Clone, PartialEq, Eq)]
pub struct BasicCredentials {
    /// User name.
    pub username: String,
    /// Password.
    pub password: String,
}

impl fmt::Debug for BasicCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BasicCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The gRPC metadata key of the credentials.
pub const AUTHORIZATION_METADATA: &str = "authorization";

/// `Basic base64(user:password)`, the value of the `authorization` metadata
/// entry of admin API calls.
pub fn basic_authorization(username: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{username}:{password}")))
}

/// Parses an `authorization` value. `None` when it is not `Basic` with
/// valid base64 of UTF-8 `user:password` (the user name cannot contain
/// `:`; the password may). The scheme name is case-insensitive.
pub fn parse_basic_authorization(value: &str) -> Option<BasicCredentials> {
    let (scheme, encoded) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = zeroize::Zeroizing::new(STANDARD.decode(encoded.trim()).ok()?);
    let text = std::str::from_utf8(&decoded).ok()?;
    let (username, password) = text.split_once(':')?;
    Some(BasicCredentials {
        username: username.to_owned(),
        password: password.to_owned(),
    })
}

/// Metadata key of the shared cluster secret on inter-broker calls when
/// TLS is off.
pub const CLUSTER_SECRET_METADATA: &str = "x-flymq-cluster-secret";

/// Shortest cluster secret accepted, in bytes.
pub const MIN_CLUSTER_SECRET_LEN: usize = 16;

/// The secret every broker of one cluster shares, sent with each
/// inter-broker RPC when mutual TLS is not in use. `Debug` hides it.
#[derive(Clone)]
pub struct ClusterSecret(Arc<zeroize::Zeroizing<String>>);

impl fmt::Debug for ClusterSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ClusterSecret(<redacted>)")
    }
}

impl ClusterSecret {
    /// A secret from text (surrounding whitespace removed): at least
    /// [`MIN_CLUSTER_SECRET_LEN`] bytes of printable ASCII (it travels as
    /// gRPC metadata).
    pub fn new(text: &str) -> Result<Self, TlsError> {
        let secret = text.trim();
        if secret.len() < MIN_CLUSTER_SECRET_LEN {
            return Err(TlsError::Config(format!(
                "the cluster secret is {} bytes long; use at least {MIN_CLUSTER_SECRET_LEN} (for example `openssl rand -hex 32`)",
                secret.len()
            )));
        }
        if !secret.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(TlsError::Config(
                "the cluster secret must be printable ASCII without spaces (for example `openssl rand -hex 32`)".into(),
            ));
        }
        Ok(Self(Arc::new(zeroize::Zeroizing::new(secret.to_owned()))))
    }

    /// Reads the secret from a file (a Kubernetes Secret volume).
    pub fn from_file(path: &std::path::Path) -> Result<Self, TlsError> {
        let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|source| TlsError::Io {
            what: "cluster secret",
            path: path.display().to_string(),
            source,
        })?);
        Self::new(&text)
    }

    /// Adds the secret to an outgoing request.
    pub fn attach<T>(&self, request: &mut tonic::Request<T>) {
        if let Ok(mut value) = tonic::metadata::MetadataValue::try_from(self.0.as_str()) {
            value.set_sensitive(true);
            request.metadata_mut().insert(CLUSTER_SECRET_METADATA, value);
        }
    }

    /// Checks an incoming request in constant time. The refusal names
    /// what is missing, never the secret.
    pub fn check<T>(&self, request: &tonic::Request<T>) -> Result<(), tonic::Status> {
        use subtle::ConstantTimeEq;
        let Some(given) = request.metadata().get(CLUSTER_SECRET_METADATA) else {
            return Err(tonic::Status::unauthenticated(
                "inter-broker call without the cluster secret: is this peer a member of this cluster?",
            ));
        };
        let expected = self.0.as_bytes();
        let given = given.as_bytes();
        // Length is not secret (it is fixed per cluster); content is
        // compared in constant time.
        if given.len() == expected.len() && bool::from(given.ct_eq(expected)) {
            Ok(())
        } else {
            Err(tonic::Status::unauthenticated(
                "wrong cluster secret: this peer belongs to another cluster or has an old secret",
            ))
        }
    }
}

/// How the caller of a gRPC request identified itself.
#[derive(Clone, PartialEq, Eq)]
pub enum CallCredentials {
    /// `authorization: Basic ...` (preferred when both are present).
    Basic(BasicCredentials),
    /// The user name of a verified client certificate.
    Certificate(String),
    /// Neither.
    None,
}

impl fmt::Debug for CallCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallCredentials::Basic(b) => f.debug_tuple("Basic").field(b).finish(),
            CallCredentials::Certificate(u) => f.debug_tuple("Certificate").field(u).finish(),
            CallCredentials::None => f.write_str("None"),
        }
    }
}

/// Extracts the credentials of a call: a malformed `authorization` entry
/// is refused (`Unauthenticated`) rather than ignored.
pub fn call_credentials<T>(request: &tonic::Request<T>) -> Result<CallCredentials, tonic::Status> {
    if let Some(value) = request.metadata().get(AUTHORIZATION_METADATA) {
        let creds = value.to_str().ok().and_then(parse_basic_authorization).ok_or_else(|| {
            tonic::Status::unauthenticated("the authorization metadata is not 'Basic base64(user:password)'")
        })?;
        return Ok(CallCredentials::Basic(creds));
    }
    let from_cert = request
        .extensions()
        .get::<TlsConnectInfo>()
        .and_then(|info| info.username().map(str::to_owned));
    Ok(from_cert.map_or(CallCredentials::None, CallCredentials::Certificate))
}

/// Authenticates a call and checks that the caller may administer the
/// cluster, per the admin API contract: Basic credentials (verified with a
/// per-snapshot cache, on the blocking pool) or a client certificate
/// naming a known, enabled user; then the admin check. Returns the user
/// name. With auth disabled every call passes (the name is the one given,
/// or empty).
///
/// Statuses: `Unauthenticated` (`authentication required` / `invalid
/// username or password`), `PermissionDenied` (`unauthorized`, `user
/// account is disabled`).
pub async fn authorize_admin_call(
    credentials: CallCredentials,
    authorizer: &crate::authorizer::Authorizer,
    hasher: Arc<crate::password::PasswordHasher>,
) -> Result<String, tonic::Status> {
    use crate::authorizer::{AuthFailure, AuthzError};
    let user = match credentials {
        CallCredentials::Basic(b) => {
            match authorizer
                .authenticate_cached_blocking(hasher, b.username, b.password)
                .await
            {
                Ok(ok) => ok.username,
                Err(AuthFailure::AccountDisabled) => {
                    return Err(tonic::Status::permission_denied(
                        AuthzError::AccountDisabled.to_string(),
                    ));
                }
                Err(AuthFailure::Internal { detail }) => {
                    tracing::error!(%detail, "admin API authentication failed internally");
                    return Err(tonic::Status::unauthenticated(crate::authorizer::INVALID_CREDENTIALS));
                }
                Err(AuthFailure::InvalidCredentials) => {
                    return Err(tonic::Status::unauthenticated(crate::authorizer::INVALID_CREDENTIALS));
                }
            }
        }
        CallCredentials::Certificate(user) => user,
        CallCredentials::None => String::new(),
    };
    if !authorizer.auth_enabled() {
        return Ok(user);
    }
    match authorizer.check_admin(&user) {
        Ok(()) => Ok(user),
        Err(AuthzError::AuthenticationRequired) => Err(tonic::Status::unauthenticated(
            "authentication required: send 'authorization: Basic base64(user:password)' over TLS, or a client certificate",
        )),
        Err(other) => Err(tonic::Status::permission_denied(other.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorizer::Authorizer;
    use crate::model::{SecuritySettings, SecurityState};
    use crate::password::{PasswordHasher, PasswordParams};

    #[test]
    fn cluster_secret() {
        assert!(ClusterSecret::new("short").is_err());
        assert!(ClusterSecret::new("has a space in the middle").is_err());
        let secret = ClusterSecret::new(" 0123456789abcdef0123 \n").expect("secret");
        assert!(!format!("{secret:?}").contains("0123"));
        let mut req = tonic::Request::new(());
        assert_eq!(secret.check(&req).unwrap_err().code(), tonic::Code::Unauthenticated);
        secret.attach(&mut req);
        secret.check(&req).expect("same secret");
        let other = ClusterSecret::new("another-cluster-secret").expect("secret");
        let err = other.check(&req).unwrap_err();
        assert!(err.message().contains("another cluster") && !err.message().contains("0123"));
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("secret");
        std::fs::write(&path, "0123456789abcdef0123\n").expect("write");
        ClusterSecret::from_file(&path)
            .expect("file")
            .check(&req)
            .expect("same");
    }

    #[tokio::test]
    async fn admin_calls_need_an_admin() {
        let hasher = Arc::new(PasswordHasher::new(PasswordParams::INSECURE_FAST_FOR_TESTS).expect("hasher"));
        let mut state = SecurityState::new(SecuritySettings {
            auth_enabled: true,
            ..SecuritySettings::default()
        });
        let hash = || hasher.hash("pw").expect("hash");
        state
            .create_user("root", vec!["admin".into()], hash(), true, 0)
            .expect("user");
        state
            .create_user("app", vec!["producer".into()], hash(), true, 0)
            .expect("user");
        state
            .create_user("operator", vec!["admin".into()], Default::default(), true, 0)
            .expect("user");
        let authz = Authorizer::new(&state);
        let basic = |u: &str, p: &str| {
            let mut req = tonic::Request::new(());
            req.metadata_mut().insert(
                AUTHORIZATION_METADATA,
                basic_authorization(u, p).parse().expect("ascii"),
            );
            call_credentials(&req).expect("credentials")
        };
        let ok = authorize_admin_call(basic("root", "pw"), &authz, hasher.clone()).await;
        assert_eq!(ok.expect("admin"), "root");
        let code = |r: Result<String, tonic::Status>| r.unwrap_err().code();
        assert_eq!(
            code(authorize_admin_call(basic("root", "bad"), &authz, hasher.clone()).await),
            tonic::Code::Unauthenticated
        );
        assert_eq!(
            code(authorize_admin_call(basic("app", "pw"), &authz, hasher.clone()).await),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            code(authorize_admin_call(CallCredentials::None, &authz, hasher.clone()).await),
            tonic::Code::Unauthenticated
        );
        let cert = authorize_admin_call(CallCredentials::Certificate("operator".into()), &authz, hasher.clone()).await;
        assert_eq!(cert.expect("certificate user"), "operator");
        assert_eq!(
            code(authorize_admin_call(CallCredentials::Certificate("stranger".into()), &authz, hasher.clone()).await),
            tonic::Code::PermissionDenied
        );
        let mut bad = tonic::Request::new(());
        bad.metadata_mut()
            .insert(AUTHORIZATION_METADATA, "Bearer x".parse().expect("ascii"));
        assert_eq!(call_credentials(&bad).unwrap_err().code(), tonic::Code::Unauthenticated);
        assert_eq!(
            call_credentials(&tonic::Request::new(())).expect("none"),
            CallCredentials::None
        );
        // Auth disabled: everyone passes.
        let open = Authorizer::new(&SecurityState::default());
        assert!(authorize_admin_call(CallCredentials::None, &open, hasher).await.is_ok());
    }

    #[test]
    fn basic_authorization_round_trip() {
        let value = basic_authorization("alice", "p:ss w\u{f6}rd");
        assert_eq!(value, format!("Basic {}", STANDARD.encode("alice:p:ss w\u{f6}rd")));
        let creds = parse_basic_authorization(&value).expect("parse");
        assert_eq!(creds.username, "alice");
        assert_eq!(creds.password, "p:ss w\u{f6}rd");
        assert!(!format!("{creds:?}").contains("ss w"));
        assert!(parse_basic_authorization(&value.replace("Basic", "bAsIc")).is_some());
        for bad in ["", "Basic", "Bearer abc", "Basic !!!", "Basic YWxpY2U="] {
            assert!(parse_basic_authorization(bad).is_none(), "{bad:?}");
        }
    }
}
