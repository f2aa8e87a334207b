//! The operator's view of the broker admin API (gRPC, port 9096).
//!
//! The reconcilers talk to the brokers only through [`BrokerAdmin`] (cluster
//! membership) and [`AdminSync`] (topics, users, ACLs), so they can be tested
//! with fakes; [`grpc::GrpcAdmin`] implements both over the generated tonic
//! client. Failures are typed ([`AdminError`]) by what the caller should do
//! about them: retry soon, wait for a newer broker, or fix the spec.

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

/// The default admin URL template: the client Service's `admin` port.
pub const DEFAULT_URL_TEMPLATE: &str = "http://{name}.{namespace}.svc:9096";

impl ClusterEndpoint {
    /// `http://<name>.<namespace>.svc:9096`, the client Service's admin port.
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synced {
    /// One line for the `Ready` condition, e.g. "topic 'orders': 6
    /// partitions, replication factor 3, ...".
    pub message: String,
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
        assert_eq!(ep.url(), "http://demo.prod.svc:9096");
        assert_eq!(
            ep.url(),
            format!("http://demo.prod.svc:{}", crate::builders::ADMIN_PORT),
            "the default URL uses the admin port the Service exposes"
        );
        assert_eq!(ep.url_from("http://127.0.0.1:19096"), "http://127.0.0.1:19096");
        assert_eq!(
            ep.url_from("http://{namespace}-{name}.example:80"),
            "http://prod-demo.example:80"
        );
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
