//! Linearizable reads of a group (the metadata group's committed offsets
//! and consumer groups): before answering, a broker learns the group's
//! read index from its leader - the leader confirms with a quorum round
//! that it still leads (openraft's ReadIndex) and names its commit index -
//! and waits until its own replica has applied that far.
//!
//! So a client never reads back an older value than a write acknowledged
//! anywhere in the cluster before its read, whichever broker took the
//! write (one a "not leader" redirect named, another bootstrap address
//! after a reconnect), and even when the broker it asks led the group
//! until moments ago and has not heard yet that it no longer does.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::ReadPolicy;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::{LinearizableReadError, RaftError};

use super::node::{ClusterNode, Group};
use super::proposer::{LEADER_WAIT, not_leader};
use super::service::{GroupOp, UNDECODABLE_PAYLOAD};
use super::types::decode;
use crate::core::error::{BrokerError, BrokerResult};

/// How long one read-index round (the leader's quorum round) may take.
const READ_INDEX_WAIT: Duration = Duration::from_secs(5);
/// How long a read waits for this replica to apply up to the read index.
const APPLY_WAIT: Duration = Duration::from_secs(5);

/// Why a read index could not be had.
enum ReadIndexError {
    /// No leader known, or the one asked no longer leads: ask again.
    Retry(BrokerError),
    /// The leader is a broker from before read indexes (a rolling upgrade
    /// in progress): it cannot decode the request.
    Unsupported,
    /// The leader could not be asked or did not answer.
    Failed(BrokerError),
}

impl ClusterNode {
    /// Returns once this broker's replica of `group_id` has applied every
    /// entry committed before the call. A broker without a replica has
    /// nothing to wait for. Fails with a retriable error (no leader, or
    /// this replica is catching up) rather than answer an older state.
    pub async fn read_barrier(&self, group_id: u64) -> BrokerResult<()> {
        let Some(group) = self.group(group_id) else {
            return Ok(());
        };
        let deadline = Instant::now() + LEADER_WAIT;
        let index = loop {
            match self.read_index(&group).await {
                Ok(index) => break index,
                Err(ReadIndexError::Retry(err)) => {
                    if Instant::now() >= deadline {
                        return Err(err);
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                // Only during an upgrade: fall back to what older brokers
                // checked (the writes this broker acknowledged).
                Err(ReadIndexError::Unsupported) => return self.check_forwarded_applied(&group),
                Err(ReadIndexError::Failed(err)) => return Err(err),
            }
        };
        self.wait_applied(&group, index).await
    }

    /// The group's read index: from this broker when it leads the group,
    /// otherwise from the leader it knows.
    async fn read_index(&self, group: &Arc<Group>) -> Result<u64, ReadIndexError> {
        if group.raft.is_leader() {
            match leader_read_index(group).await {
                Ok(index) => return Ok(index),
                // Deposed meanwhile: ask the new leader below.
                Err(ReadIndexError::Retry(_)) if !group.raft.is_leader() => {}
                Err(err) => return Err(err),
            }
        }
        let me = self.node_id();
        let Some((leader, info)) = self.leader_of(group.id).filter(|(id, _)| *id != me) else {
            return Err(ReadIndexError::Retry(not_leader(None)));
        };
        let failed = |e: String| ReadIndexError::Failed(BrokerError::Remote(e));
        let answer = self
            .manage(
                leader,
                &info.cluster_addr,
                group.id,
                &GroupOp::ReadIndex,
                READ_INDEX_WAIT + Duration::from_secs(1),
            )
            .await;
        match answer {
            Ok(result) => decode::<u64>(&result).map_err(|e| failed(e.to_string())),
            // It no longer leads, or cannot reach a quorum: retry, maybe elsewhere.
            Err(status) if status.code() == tonic::Code::Unavailable => Err(ReadIndexError::Retry(
                BrokerError::NotLeader(format!("no leader confirmed: {}", status.message())),
            )),
            Err(status)
                if status.code() == tonic::Code::InvalidArgument
                    && status.message().starts_with(UNDECODABLE_PAYLOAD) =>
            {
                Err(ReadIndexError::Unsupported)
            }
            Err(status) => Err(failed(format!(
                "read index from node {leader} at {}: {}",
                info.cluster_addr,
                status.message()
            ))),
        }
    }

    /// Waits until this replica has applied `index`, or says it is catching up.
    async fn wait_applied(&self, group: &Arc<Group>, index: u64) -> BrokerResult<()> {
        let applied =
            |m: &openraft::RaftMetrics<super::types::TypeConfig>| m.last_applied.as_ref().map_or(0, |l| l.index);
        let waited = group
            .raft
            .wait(Some(APPLY_WAIT))
            .metrics(|m| applied(m) >= index, "applied up to the read index")
            .await;
        match waited {
            Ok(_) => Ok(()),
            Err(_) => Err(BrokerError::CatchingUp {
                what: self.group_name(group.id),
                applied: applied(&group.raft.metrics().borrow_watched()),
                needed: index,
            }),
        }
    }
}

/// On the group's leader: confirms leadership with a quorum round and
/// returns the index reads must wait for. Errors that mean "ask again
/// (maybe another broker)" are `Retry`.
async fn leader_read_index(group: &Group) -> Result<u64, ReadIndexError> {
    let linearizer = tokio::time::timeout(READ_INDEX_WAIT, group.raft.get_read_linearizer(ReadPolicy::ReadIndex)).await;
    match linearizer {
        Ok(Ok(linearizer)) => Ok(linearizer.read_log_id().index()),
        Ok(Err(RaftError::APIError(LinearizableReadError::ForwardToLeader(_)))) => {
            Err(ReadIndexError::Retry(not_leader(None)))
        }
        Ok(Err(RaftError::APIError(LinearizableReadError::QuorumNotEnough(e)))) => Err(ReadIndexError::Retry(
            BrokerError::NotLeader(format!("no leader confirmed: {e}")),
        )),
        Ok(Err(RaftError::Fatal(_))) => Err(ReadIndexError::Failed(BrokerError::ShuttingDown)),
        Err(_) => Err(ReadIndexError::Retry(BrokerError::NotLeader(format!(
            "no leader confirmed: the leader heard from no quorum within {} s",
            READ_INDEX_WAIT.as_secs()
        )))),
    }
}

/// The `Manage` RPC's answer to `GroupOp::ReadIndex` on the receiving broker.
pub(super) async fn serve_read_index(group: &Group) -> Result<u64, tonic::Status> {
    if !group.raft.is_leader() {
        return Err(tonic::Status::unavailable("not the leader of this group"));
    }
    leader_read_index(group).await.map_err(|err| match err {
        ReadIndexError::Retry(e) => tonic::Status::unavailable(e.to_string()),
        ReadIndexError::Failed(e) => tonic::Status::internal(e.to_string()),
        ReadIndexError::Unsupported => tonic::Status::internal("read index unsupported"),
    })
}
