//! The operator's view of the broker admin API (gRPC, port 9096).
//!
//! The reconcilers talk to the brokers only through [`BrokerAdmin`] (cluster
//! membership) and [`AdminSync`] (topics, users, ACLs), so they can be tested
//! with fakes; [`grpc::GrpcAdmin`] implements both over the generated tonic
//! client. Failures are typed ([`AdminError`]) by what the caller should do
//! about them: retry soon, wait for a newer broker, or fix the spec.

pub mod credentials;
#[cfg(test)]
pub(crate) mod fake_broker;
pub mod grpc;

use std::future::Future;
use std::pin::Pin;

use crate::crd::cluster::ClusterMember;

pub use grpc::GrpcAdmin;

/// Why an admin call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// The admin API could not be reached or has no leader right now
    /// (connection refused, DNS, timeout, gRPC UNAVAILABLE). Retried soon.
    #[error("cannot reach the broker admin API for {operation}: {message}; retrying")]
    Unreachable {
        /// The call, e.g. `CreateTopic`.
        operation: &'static str,
        /// What went wrong, with the address.
        message: String,
    },
    /// The brokers do not implement this yet (gRPC UNIMPLEMENTED).
    #[error("the broker does not support {feature} yet ({operation}: {message})")]
    NotSupported {
        /// What is missing, e.g. `users/ACLs`.
        feature: &'static str,
        /// The call.
        operation: &'static str,
        /// What the broker said.
        message: String,
    },
    /// The request was refused as it stands (INVALID_ARGUMENT,
    /// FAILED_PRECONDITION, or a change the operator will not make, such as
    /// removing partitions). Retrying soon will not help; the spec or the
    /// cluster has to change.
    #[error("{operation} refused: {message}")]
    Rejected {
        /// The call.
        operation: &'static str,
        /// PascalCase reason used in the `Ready` condition.
        reason: &'static str,
        /// What to do about it.
        message: String,
    },
    /// The object or node does not exist on the brokers (NOT_FOUND).
    #[error("{operation}: not found on the brokers: {message}")]
    NotFound {
        /// The call.
        operation: &'static str,
        /// What the broker said.
        message: String,
    },
    /// The operator's own admin credentials for the cluster cannot be read
    /// (the FlyMQCluster or its admin Secret is missing or incomplete).
    /// Retried soon: the cluster controller creates the Secret.
    #[error("cannot read the admin credentials for FlyMQCluster {cluster}: {message}")]
    Credentials {
        /// `<namespace>/<name>` of the FlyMQCluster.
        cluster: String,
        /// What is missing and where.
        message: String,
    },
    /// Any other failure reported by the brokers.
    #[error("broker admin API call {operation} failed: {message}")]
    Failed {
        /// The call.
        operation: &'static str,
        /// What the broker said.
        message: String,
    },
}

/// A boxed future, so the traits stay object-safe (`Arc<dyn BrokerAdmin>`).
pub type AdminFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, AdminError>> + Send + 'a>>;

/// Where a cluster's admin API is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEndpoint {
    /// Namespace of the FlyMQCluster.
    pub namespace: String,
    /// Name of the FlyMQCluster.
    pub name: String,
}

/// The default admin URL template: the headless Service's `admin` port
/// (the client Service does not expose it).
pub const DEFAULT_URL_TEMPLATE: &str = "http://{name}-headless.{namespace}.svc:9096";

impl ClusterEndpoint {
    /// `http://<name>-headless.<namespace>.svc:9096`, the headless Service's
    /// admin port.
    pub fn url(&self) -> String {
        self.url_from(DEFAULT_URL_TEMPLATE)
    }

    /// The URL from a template with `{name}` and `{namespace}` placeholders
    /// (an operator running outside the cluster reaches the brokers through
    /// a port-forward or an ingress).
    pub fn url_from(&self, template: &str) -> String {
        template
            .replace("{name}", &self.name)
            .replace("{namespace}", &self.namespace)
    }
}

/// The operator's credentials on one cluster's admin API: the cluster's
/// admin Secret. `Debug` never shows the password, and it is wiped from
/// memory when dropped.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminCredentials {
    username: String,
    password: zeroize::Zeroizing<String>,
}

impl AdminCredentials {
    /// Credentials of `username`.
    pub fn new(username: impl Into<String>, password: impl Into<String>) -> Self {
        AdminCredentials {
            username: username.into(),
            password: zeroize::Zeroizing::new(password.into()),
        }
    }

    /// The user name.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The password (only for requests that set it, such as UpsertUser).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The `authorization` metadata value: `Basic base64(user:password)`.
    pub fn authorization(&self) -> zeroize::Zeroizing<String> {
        zeroize::Zeroizing::new(flymq_security::tls::grpc::basic_authorization(
            &self.username,
            &self.password,
        ))
    }
}

impl std::fmt::Debug for AdminCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminCredentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Where the admin client gets each cluster's credentials. `None`: the
/// cluster runs without authentication, calls carry no credentials.
pub trait CredentialSource: Send + Sync {
    /// The credentials for `cluster`.
    fn credentials<'a>(&'a self, cluster: &'a ClusterEndpoint) -> AdminFuture<'a, Option<AdminCredentials>>;

    /// How to reach `cluster` over TLS; `None`: plaintext (no `spec.tls`).
    fn tls<'a>(&'a self, _cluster: &'a ClusterEndpoint) -> AdminFuture<'a, Option<AdminTls>> {
        Box::pin(async { Ok(None) })
    }
}

/// TLS to one cluster's admin API: the CA that signed the brokers'
/// certificates and the operator's client certificate (the admin port asks
/// for one when `spec.tls.requireClientCert` is set). `Debug` never shows
/// the key.
#[derive(Clone, PartialEq, Eq)]
pub struct AdminTls {
    /// PEM CA bundle.
    pub ca_pem: Vec<u8>,
    /// PEM client certificate.
    pub cert_pem: Vec<u8>,
    /// PEM private key of the client certificate.
    pub key_pem: zeroize::Zeroizing<Vec<u8>>,
}

impl std::fmt::Debug for AdminTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminTls")
            .field("ca_pem", &format!("{} bytes", self.ca_pem.len()))
            .field("cert_pem", &format!("{} bytes", self.cert_pem.len()))
            .field("key_pem", &"<redacted>")
            .finish()
    }
}

impl AdminTls {
    /// A fingerprint of the material (SHA-256), so a renewed certificate
    /// gets a new connection.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::new()
            .chain_update(&self.ca_pem)
            .chain_update(&self.cert_pem)
            .chain_update(self.key_pem.as_slice())
            .finalize();
        digest.iter().take(8).map(|b| format!("{b:02x}")).collect()
    }
}

/// The metadata Raft group as the brokers report it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClusterInfo {
    /// Id of the cluster the brokers belong to (empty when not reported).
    pub cluster_id: String,
    /// Node id of the metadata leader, if one is known.
    pub leader: Option<i64>,
    /// Every member, ordered by node id.
    pub members: Vec<ClusterMember>,
    /// `<topic>/<partition>` of partition groups with fewer in-sync replicas
    /// than replicas.
    pub under_replicated: Vec<String>,
}

impl ClusterInfo {
    /// The member with node id `id`.
    pub fn member(&self, id: i64) -> Option<&ClusterMember> {
        self.members.iter().find(|m| m.id == id)
    }
}

/// What the brokers hold after a successful [`AdminSync::apply`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Synced {
    /// One line for the `Ready` condition, e.g. "topic 'orders': 6
    /// partitions, replication factor 3, ...".
    pub message: String,
    /// A User's roles as applied.
    pub roles: Option<Vec<String>>,
    /// The Secret key a User's password was applied from (never the password).
    pub password_secret: Option<crate::crd::SecretKeyRef>,
    /// Something applied but worth a warning (an ACL naming a user the
    /// brokers do not know): its condition type, reason and message.
    pub warning: Option<Warning>,
    /// The condition type [`Synced::warning`] is reported under, `True`
    /// when there is no warning (e.g. `PrincipalsKnown` of an ACL).
    pub checked: Option<&'static str>,
}

/// A warning about something that was applied anyway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// PascalCase reason.
    pub reason: &'static str,
    /// What is wrong and what to do.
    pub message: String,
}

impl Synced {
    /// Only a message.
    pub fn new(message: impl Into<String>) -> Self {
        Synced {
            message: message.into(),
            ..Synced::default()
        }
    }
}

/// Admin operations on a running cluster.
pub trait BrokerAdmin: Send + Sync {
    /// Moves every replica off `node_id`, removes it from Raft membership and
    /// returns once the broker can be deleted. A node that is not a member
    /// (already decommissioned) is not an error.
    fn decommission<'a>(&'a self, cluster: &'a ClusterEndpoint, node_id: i32) -> AdminFuture<'a, ()>;
    /// The metadata group's leader and members.
    fn cluster_status<'a>(&'a self, cluster: &'a ClusterEndpoint) -> AdminFuture<'a, ClusterInfo>;
    /// Moves every Raft leadership `from_node` holds to caught-up voters;
    /// returns how many moved.
    fn transfer_leadership<'a>(&'a self, cluster: &'a ClusterEndpoint, from_node: i32) -> AdminFuture<'a, u32>;
}

/// Keeps one kind of broker-side object (topic, user, ACL) in step with its
/// custom resource. `apply` creates or updates it (the resource wins over
/// drift); `delete` removes it. Deletion policies are the reconciler's
/// business: `delete` always deletes.
pub trait AdminSync<K>: Send + Sync {
    /// Creates or updates the broker-side object described by `obj`.
    fn apply<'a>(&'a self, cluster: &'a ClusterEndpoint, obj: &'a K) -> AdminFuture<'a, Synced>;
    /// Deletes the broker-side object described by `obj`. An object that
    /// does not exist is not an error.
    fn delete<'a>(&'a self, cluster: &'a ClusterEndpoint, obj: &'a K) -> AdminFuture<'a, ()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_urls() {
        let ep = ClusterEndpoint {
            namespace: "prod".into(),
            name: "demo".into(),
        };
        assert_eq!(ep.url(), "http://demo-headless.prod.svc:9096");
        assert_eq!(
            ep.url(),
            format!("http://demo-headless.prod.svc:{}", crate::builders::ADMIN_PORT),
            "the default URL uses the admin port the headless Service exposes"
        );
        assert_eq!(ep.url_from("http://127.0.0.1:19096"), "http://127.0.0.1:19096");
        assert_eq!(
            ep.url_from("http://{namespace}-{name}.example:80"),
            "http://prod-demo.example:80"
        );
    }

    #[test]
    fn credentials_never_show_the_password() {
        let c = AdminCredentials::new("admin", "s3cret-pw");
        assert!(!format!("{c:?}").contains("s3cret-pw"));
        assert_eq!(c.authorization().as_str(), "Basic YWRtaW46czNjcmV0LXB3");
    }

    #[test]
    fn errors_say_what_to_do() {
        let e = AdminError::NotSupported {
            feature: "users/ACLs",
            operation: "UpsertAcl",
            message: "not supported yet".into(),
        };
        assert_eq!(
            e.to_string(),
            "the broker does not support users/ACLs yet (UpsertAcl: not supported yet)"
        );
    }
}
