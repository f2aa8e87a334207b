//! Inter-broker authentication (docs/security.md, "Inter-broker
//! authentication"): only brokers of this cluster may call the cluster port.
//!
//! - With TLS on, the cluster port requires a client certificate signed by
//!   the cluster CA (see `crate::tls`), and brokers dial each other with
//!   theirs.
//! - The shared cluster secret (`FLYMQ_CLUSTER_SECRET` or
//!   `cluster_secret_file`), when set, is attached to every outgoing
//!   inter-broker call and checked on every incoming one, whether TLS is on
//!   or not. A cluster needs at least one of the two: a broker in cluster
//!   mode with neither refuses to start.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use flymq_security::tls::TlsClient;
use flymq_security::tls::grpc::{ClusterSecret, TlsConnectInfo};
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// How this broker proves, and checks, membership of the cluster.
#[derive(Debug, Clone, Default)]
pub struct PeerAuth {
    /// Mutual TLS to peers (TLS on).
    pub tls: Option<TlsClient>,
    /// The shared secret.
    pub secret: Option<ClusterSecret>,
}

impl PeerAuth {
    /// Adds the cluster secret (if any) to every outgoing call.
    pub fn attach(&self) -> AttachSecret {
        AttachSecret(self.secret.clone())
    }

    /// Checks the cluster secret (if any) on every incoming call.
    pub fn check(&self) -> CheckSecret {
        CheckSecret(self.secret.clone())
    }
}

/// Client interceptor: attaches the cluster secret.
#[derive(Debug, Clone)]
pub struct AttachSecret(Option<ClusterSecret>);

impl Interceptor for AttachSecret {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(secret) = &self.0 {
            secret.attach(&mut request);
        }
        Ok(request)
    }
}

/// Server interceptor: refuses calls without the right cluster secret with
/// `Unauthenticated` (the message names what is wrong, never the secret).
#[derive(Debug, Clone)]
pub struct CheckSecret(Option<ClusterSecret>);

/// Unix second of the last refusal logged (refused peers retry every
/// heartbeat: one line per 10 s is enough).
static LAST_REFUSAL_LOGGED: AtomicU64 = AtomicU64::new(0);

impl Interceptor for CheckSecret {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(secret) = &self.0 else {
            return Ok(request);
        };
        match secret.check(&request) {
            Ok(()) => Ok(request),
            Err(status) => {
                let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
                let last = LAST_REFUSAL_LOGGED.load(Ordering::Relaxed);
                if now >= last + 10
                    && LAST_REFUSAL_LOGGED
                        .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                        .is_ok()
                {
                    let peer = request
                        .remote_addr()
                        .or_else(|| request.extensions().get::<TlsConnectInfo>()?.remote_addr)
                        .map_or_else(|| "unknown".to_owned(), |a| a.to_string());
                    tracing::warn!(%peer, reason = status.message(), "inter-broker call refused");
                }
                Err(status)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_attached_and_checked() {
        let secret = ClusterSecret::new("0123456789abcdef0123456789abcdef").expect("secret");
        let auth = PeerAuth {
            tls: None,
            secret: Some(secret),
        };
        let sent = auth.attach().call(Request::new(())).expect("attach");
        auth.check().call(sent).expect("same secret passes");
        let status = auth.check().call(Request::new(())).expect_err("no secret");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        let other = PeerAuth {
            tls: None,
            secret: Some(ClusterSecret::new("another-secret-of-another-cluster").expect("secret")),
        };
        let status = auth
            .check()
            .call(other.attach().call(Request::new(())).expect("attach"))
            .expect_err("wrong secret");
        assert_eq!(status.code(), tonic::Code::Unauthenticated);
        assert!(!status.message().contains("0123456789"), "{}", status.message());
        // No secret configured (TLS only): nothing is checked.
        PeerAuth::default().check().call(Request::new(())).expect("no check");
    }
}
