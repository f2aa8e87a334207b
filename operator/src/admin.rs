//! The operator's view of the broker admin API (gRPC, port 9096).
//!
//! The admin API does not exist yet. Everything the operator needs from it
//! goes through [`BrokerAdmin`], so the reconcilers can be written and tested
//! now, and the gRPC client plugs in later. Until then the binary uses
//! [`Unavailable`], which refuses every call with an honest error: nothing is
//! pretended to have happened on the brokers.

use std::future::Future;
use std::pin::Pin;

/// Why an admin call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminError {
    /// This build of the operator has no admin API client.
    #[error("{operation} requires the admin API (not supported yet)")]
    NotAvailable {
        /// What was attempted, e.g. "scale-down".
        operation: &'static str,
    },
    /// The brokers answered with an error.
    #[error("broker admin API call {operation} failed: {message}")]
    Failed {
        /// The call.
        operation: &'static str,
        /// What the broker said.
        message: String,
    },
}

/// A boxed future, so the trait stays object-safe (`Arc<dyn BrokerAdmin>`).
pub type AdminFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, AdminError>> + Send + 'a>>;

/// Where a cluster's admin API is reached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterEndpoint {
    /// Namespace of the FlyMQCluster.
    pub namespace: String,
    /// Name of the FlyMQCluster.
    pub name: String,
}

impl ClusterEndpoint {
    /// `http://<name>.<namespace>.svc:9096`, the client Service's admin port.
    pub fn url(&self) -> String {
        format!(
            "http://{}.{}.svc:{}",
            self.name,
            self.namespace,
            crate::builders::ADMIN_PORT
        )
    }
}

/// Admin operations on a running cluster.
pub trait BrokerAdmin: Send + Sync {
    /// Moves every replica off `node_id`, removes it from Raft membership and
    /// returns once the broker can be deleted.
    fn decommission<'a>(&'a self, cluster: &'a ClusterEndpoint, node_id: i32) -> AdminFuture<'a, ()>;
}

/// Keeps one kind of broker-side object (topic, user, ACL) in step with its
/// custom resource. `apply` creates or updates it (the resource wins over
/// drift); `delete` removes it.
pub trait AdminSync<K>: Send + Sync {
    /// Creates or updates the broker-side object described by `obj`.
    fn apply<'a>(&'a self, cluster: &'a ClusterEndpoint, obj: &'a K) -> AdminFuture<'a, ()>;
    /// Deletes the broker-side object described by `obj`.
    fn delete<'a>(&'a self, cluster: &'a ClusterEndpoint, obj: &'a K) -> AdminFuture<'a, ()>;
}

/// The admin client of this build: the admin API does not exist yet.
#[derive(Debug, Default, Clone, Copy)]
pub struct Unavailable;

impl BrokerAdmin for Unavailable {
    fn decommission<'a>(&'a self, _: &'a ClusterEndpoint, _: i32) -> AdminFuture<'a, ()> {
        Box::pin(async {
            Err(AdminError::NotAvailable {
                operation: "scale-down",
            })
        })
    }
}

impl<K: Sync> AdminSync<K> for Unavailable {
    fn apply<'a>(&'a self, _: &'a ClusterEndpoint, _: &'a K) -> AdminFuture<'a, ()> {
        Box::pin(async {
            Err(AdminError::NotAvailable {
                operation: "reconciling this resource",
            })
        })
    }
    fn delete<'a>(&'a self, _: &'a ClusterEndpoint, _: &'a K) -> AdminFuture<'a, ()> {
        Box::pin(async {
            Err(AdminError::NotAvailable {
                operation: "deleting this resource",
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn unavailable_refuses_with_a_clear_message() {
        let ep = ClusterEndpoint {
            namespace: "prod".into(),
            name: "demo".into(),
        };
        let err = Unavailable.decommission(&ep, 2).await.expect_err("must refuse");
        assert_eq!(err.to_string(), "scale-down requires the admin API (not supported yet)");
        assert_eq!(ep.url(), "http://demo.prod.svc:9096");
    }
}
