//! How commands become durable and where partitions live: the `Replicator`
//! the broker core proposes to. A standalone broker uses the local
//! group-commit writer (`core::local`); a cluster uses Raft groups
//! (`cluster::ClusterNode`). The core never branches on the mode.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::oneshot;

use super::catalog::TopicView;
use super::command::{Applied, Command};
use super::error::BrokerResult;

/// Where one partition lives, as metadata answers report it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// Node id of the leader (or of the preferred leader when unknown here).
    pub leader_id: String,
    pub leader_addr: String,
    /// The leader's term (Raft) or 1 (standalone).
    pub epoch: u64,
    /// A leader is known, or the partition is hosted elsewhere and will redirect.
    pub online: bool,
    pub replicas: Vec<String>,
    pub isr: Vec<String>,
}

/// One broker of the cluster as CLUSTER_STATUS reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMember {
    pub node_id: String,
    pub address: String,
    pub role: &'static str,
    pub state: &'static str,
}

pub trait Replicator: Send + Sync + 'static {
    /// Queues a command; the receiver yields its result once it is durable
    /// (and, in a cluster, committed). Queueing is synchronous, so the
    /// commands of one connection are applied in the order they were submitted.
    fn submit(&self, command: Command) -> oneshot::Receiver<BrokerResult<Applied>>;

    /// The id of the cluster this broker belongs to ("" until known).
    fn cluster_id(&self) -> String;

    /// Whether this broker may serve clients: joined, a leader known, and
    /// caught up with what is committed.
    fn is_ready(&self) -> bool;

    /// Replica sets (node ids, preferred leader first) for `partitions` new
    /// partitions of topic `name`; empty sets on a standalone broker.
    fn assign(&self, name: &str, partitions: u32, replication_factor: u32) -> BrokerResult<Vec<Vec<u64>>>;

    /// Ok when reads of this partition are served here (and this replica
    /// has applied every write to it this broker acknowledged); otherwise
    /// the redirect error naming a broker that has the partition, or a
    /// retriable "catching up" error.
    fn check_readable(&self, view: &TopicView, partition: u32) -> BrokerResult<()>;

    /// Ok when this broker's copy of the metadata (topics, committed
    /// offsets) includes every metadata write it acknowledged; otherwise a
    /// retriable error. A cheap local check for reads on hot paths (schema
    /// checks of produces).
    fn check_metadata_fresh(&self) -> BrokerResult<()> {
        Ok(())
    }

    /// Resolves once this broker's copy of the metadata includes every
    /// metadata write committed anywhere before the call (a linearizable
    /// read barrier; immediate on a standalone broker). Reads of committed
    /// offsets and groups wait for it, so a client never reads back an
    /// older offset than one it committed, through whichever broker.
    fn metadata_barrier(&self) -> BoxFuture<'static, BrokerResult<()>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Whether this broker leads the metadata (it finishes the delivery of
    /// committed transactions whose broker could not). Always, standalone.
    fn leads_metadata(&self) -> bool {
        true
    }

    /// Whether this broker leads the partition (it decides retention).
    fn leads(&self, topic_id: u32, partition: u32) -> bool;

    /// Where a partition lives.
    fn placement(&self, view: &TopicView, partition: u32) -> Placement;

    /// Every broker of the cluster.
    fn members(&self) -> Vec<ClusterMember>;

    /// Resolves once every partition of `topic` has an elected leader that
    /// can take writes, or fails after `timeout`.
    fn wait_writable(&self, topic: Arc<TopicView>, timeout: Duration) -> BoxFuture<'static, BrokerResult<()>>;

    /// Adds mode-specific details to the `/health` document.
    fn describe_health(&self, _body: &mut serde_json::Value) {}

    /// Refreshes mode-specific gauges (when metrics are scraped).
    fn refresh_metrics(&self) {}

    /// Stops accepting commands after the queued ones are durable.
    fn close(&self);
}
