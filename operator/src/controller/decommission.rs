//! Decommissioning as a resumable step: one broker at a time, in the
//! background, so a reconcile never holds the (up to ten-minute) admin call.
//!
//! The StatefulSet is the record of progress: while it has more replicas than
//! the spec asks for, broker `replicas - 1` is being decommissioned; once that
//! finished the StatefulSet shrinks by one and the next pass starts on the
//! next broker. An operator restarted mid-way finds the StatefulSet as it was
//! and calls Decommission for the same broker again, which the broker treats
//! as the continuation (a node that is no longer a member is already done).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::admin::{AdminError, BrokerAdmin, ClusterEndpoint};

/// How long a pass waits for a decommission it started or is following
/// before it reports progress and comes back later.
pub const PASS_WAIT: Duration = Duration::from_secs(2);

/// Where one broker's decommission stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecommissionState {
    /// Its replicas moved and it left the membership: its pod may go.
    Done,
    /// Still moving replicas.
    Running,
    /// The brokers refused or the call failed; the next pass tries again.
    Failed(AdminError),
}

struct Task {
    node: i32,
    handle: JoinHandle<Result<(), AdminError>>,
}

/// The decommissions in flight, one per cluster at most.
#[derive(Default)]
pub struct Decommissions {
    tasks: Mutex<HashMap<String, Task>>,
}

impl Decommissions {
    /// Starts (or follows) the decommission of `node` in `cluster` and waits
    /// up to `wait` for it.
    pub async fn step(
        &self,
        admin: Arc<dyn BrokerAdmin>,
        cluster: &ClusterEndpoint,
        node: i32,
        wait: Duration,
    ) -> DecommissionState {
        let key = format!("{}/{}", cluster.namespace, cluster.name);
        let task = {
            let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
            match tasks.remove(&key) {
                Some(t) if t.node == node => t,
                other => {
                    if let Some(stale) = other {
                        // The spec changed under it (e.g. scaled up again).
                        stale.handle.abort();
                    }
                    info!(cluster = %key, node, "decommissioning broker");
                    let endpoint = cluster.clone();
                    Task {
                        node,
                        handle: tokio::spawn(async move { admin.decommission(&endpoint, node).await }),
                    }
                }
            }
        };
        let Task { node, mut handle } = task;
        match tokio::time::timeout(wait, &mut handle).await {
            Err(_) => {
                self.tasks
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .insert(key, Task { node, handle });
                DecommissionState::Running
            }
            Ok(Ok(Ok(()))) => {
                info!(cluster = %key, node, "broker decommissioned");
                DecommissionState::Done
            }
            Ok(Ok(Err(e))) => {
                warn!(cluster = %key, node, error = %e, "decommission failed");
                DecommissionState::Failed(e)
            }
            Ok(Err(join)) => DecommissionState::Failed(AdminError::Failed {
                operation: "Decommission",
                message: format!("the decommission task ended abnormally: {join}"),
            }),
        }
    }

    /// Stops following `cluster` (deleted, paused, or scaled up again).
    pub fn forget(&self, cluster: &ClusterEndpoint) {
        let key = format!("{}/{}", cluster.namespace, cluster.name);
        if let Some(t) = self.tasks.lock().unwrap_or_else(PoisonError::into_inner).remove(&key) {
            t.handle.abort();
        }
    }

    /// The node being decommissioned in `cluster`, if any.
    pub fn in_flight(&self, cluster: &ClusterEndpoint) -> Option<i32> {
        let key = format!("{}/{}", cluster.namespace, cluster.name);
        self.tasks
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
            .map(|t| t.node)
    }
}
