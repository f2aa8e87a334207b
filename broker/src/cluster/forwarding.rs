//! Proposals sent to other brokers: from a follower replica to its group's
//! leader, and from a broker without a replica to one that has it. Both go
//! through one ordered queue per group, so a connection's commands keep
//! their order wherever they are sent from.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::async_runtime::WatchReceiver;
use tokio::sync::mpsc;

use super::node::{ClusterNode, Group};
use super::proposer::{Forwarding, LEADER_WAIT, Proposal, answer_all, answer_each, not_leader, take_batch};
use super::types::{CommandResults, NodeId, NodeInfo, decode, encode, from_wire};
use crate::core::command::{Applied, Command};
use crate::core::error::{BrokerError, BrokerResult};
use flymq_proto::grpc::cluster::ForwardRequest;

/// A forwarding queue with nothing to do for this long is closed.
const FORWARDER_IDLE: Duration = Duration::from_secs(30);
/// How long a forwarded write waits for this broker's replica to apply it.
const LOCAL_APPLY_WAIT: Duration = Duration::from_secs(5);
/// Prefix of the status a broker answers when it refused a forwarded batch
/// before proposing any of it (so resending it cannot duplicate anything).
const REFUSED: &str = "refused: ";

/// Forwarded results: one per command, and the leader's applied index once
/// they were all ready.
pub(super) struct Forwarded {
    pub results: CommandResults,
    pub applied_index: u64,
}

impl ClusterNode {
    /// The ordered forwarding queue of a group this broker has no replica of.
    pub(super) fn forwarder(self: &Arc<Self>, group: u64) -> ForwarderHandle<'_> {
        ForwarderHandle { node: self, group }
    }

    async fn run_forwarder(self: Arc<Self>, group: u64, mut rx: mpsc::UnboundedReceiver<Proposal>) {
        let mut carry = None;
        loop {
            let first = match carry.take() {
                Some(p) => p,
                None => match tokio::time::timeout(FORWARDER_IDLE, rx.recv()).await {
                    Ok(Some(p)) => p,
                    Ok(None) => return,
                    Err(_) => {
                        // Idle: close, unless a proposal arrived meanwhile.
                        let mut forwarders = self.forwarders.lock();
                        match rx.try_recv() {
                            Ok(p) => p,
                            Err(_) => {
                                forwarders.remove(&group);
                                return;
                            }
                        }
                    }
                },
            };
            let (commands, replies) = take_batch(first, &mut rx, &mut carry);
            match self.forward_to_replicas(group, commands, 0).await {
                Ok(results) => answer_each(replies, results),
                Err(err) => answer_all(replies, Err(err.into_error())),
            }
        }
    }

    /// From a follower replica: sends a batch to the group's leader (waiting
    /// for an election in progress), then waits until this replica has
    /// applied it too, so the client reads its own writes here.
    pub(super) async fn forward_to_leader(&self, group: &Arc<Group>, commands: Vec<Command>) -> Forwarding {
        let deadline = Instant::now() + LEADER_WAIT;
        loop {
            if group.raft.is_leader() {
                return Forwarding::LeaderHere(commands);
            }
            let Some((leader, info)) = self.leader_of(group.id).filter(|(id, _)| *id != self.node_id()) else {
                if Instant::now() >= deadline {
                    return Forwarding::Failed(not_leader(None));
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            };
            match self.forward(leader, &info, group.id, commands.clone(), 0).await {
                Ok(forwarded) => {
                    let _ = group
                        .raft
                        .wait(Some(LOCAL_APPLY_WAIT))
                        .metrics(
                            |m| {
                                m.last_applied
                                    .as_ref()
                                    .is_some_and(|l| l.index >= forwarded.applied_index)
                            },
                            "forwarded write applied here",
                        )
                        .await;
                    // Committed: later reads here must see it (see
                    // `check_forwarded_applied`). Noted once applied here (or
                    // the wait gave up), not before: reads of other
                    // connections meanwhile need not wait for a write they
                    // were not answered.
                    self.note_forwarded(group.id, forwarded.applied_index);
                    return Forwarding::Done(forwarded.results);
                }
                // Refused before anything was proposed: resend to the new leader.
                Err(ForwardError::Refused(err)) => {
                    if Instant::now() >= deadline {
                        return Forwarding::Failed(err);
                    }
                    let _ = group
                        .raft
                        .wait(Some(Duration::from_millis(200)))
                        .metrics(|m| m.current_leader != Some(leader), "a new leader")
                        .await;
                }
                Err(ForwardError::Failed(err)) => return Forwarding::Failed(err),
            }
        }
    }

    pub(super) async fn forward(
        &self,
        target: NodeId,
        info: &NodeInfo,
        group: u64,
        commands: Vec<Command>,
        hops: u32,
    ) -> Result<Forwarded, ForwardError> {
        let failed = |e: String| ForwardError::Failed(BrokerError::Remote(e));
        let payload = encode(&commands).map_err(|e| failed(e.to_string()))?;
        let mut client = self.peers.client(&info.cluster_addr).map_err(failed)?;
        let mut request = tonic::Request::new(ForwardRequest {
            envelope: Some(self.peers.envelope(target, group)),
            commands: payload,
            hops: hops + 1,
        });
        request.set_timeout(Duration::from_secs(30));
        let reply = client.forward(request).await.map_err(|status| {
            let message = status.message();
            if let Some(reason) = message.strip_prefix(REFUSED) {
                ForwardError::Refused(BrokerError::NotLeader(
                    reason.trim_start_matches("not leader: ").to_owned(),
                ))
            } else if message.contains("tcp connect error") || message.contains("error trying to connect") {
                // The connection could not be made: nothing was sent.
                ForwardError::Refused(BrokerError::NotLeader(format!(
                    "leader node at {} is unreachable ({message})",
                    info.cluster_addr
                )))
            } else if message.starts_with("not leader") {
                // Not refused up front: the receiver may have proposed the
                // commands (its own forward failed), so they may still be
                // applied. Never worded as a redirect, which clients retry.
                ForwardError::Failed(BrokerError::OutcomeUnknown(format!(
                    "forwarded to node {target} at {}: {}",
                    info.cluster_addr,
                    message.replace("not leader", "no leader")
                )))
            } else {
                failed(format!(
                    "forwarding to node {target} at {} failed: {message}",
                    info.cluster_addr
                ))
            }
        })?;
        let reply = reply.into_inner();
        let results = decode(&reply.results).map_err(|e| failed(e.to_string()))?;
        Ok(Forwarded {
            results,
            applied_index: reply.applied_index,
        })
    }

    /// Sends commands of a group this broker has no replica of to one that has.
    pub(super) async fn forward_to_replicas(
        &self,
        group: u64,
        commands: Vec<Command>,
        hops: u32,
    ) -> Result<Vec<BrokerResult<Applied>>, ForwardError> {
        let replicas = self.replicas_of(group);
        if replicas.is_empty() {
            return Err(ForwardError::Refused(BrokerError::NotLeader(
                "no broker holds this partition yet".into(),
            )));
        }
        let deadline = Instant::now() + LEADER_WAIT;
        let mut last = None;
        loop {
            for id in &replicas {
                let Some(info) = self.node_info(*id) else { continue };
                match self.forward(*id, &info, group, commands.clone(), hops).await {
                    Ok(forwarded) => {
                        // A replica of this group may be created here later:
                        // its reads must include these writes.
                        self.note_forwarded(group, forwarded.applied_index);
                        return Ok(forwarded.results.into_iter().map(from_wire).collect());
                    }
                    Err(ForwardError::Refused(err)) => last = Some(err),
                    Err(failed) => return Err(failed),
                }
            }
            // Every replica refused (an election in progress): try again shortly.
            if Instant::now() >= deadline {
                return Err(ForwardError::Refused(last.unwrap_or_else(|| not_leader(None))));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Handles a forwarded batch: propose it here if this broker leads the
    /// group (or may still forward it once more), in the order received.
    /// Errors whose text starts with `REFUSED` mean nothing was proposed.
    pub(super) async fn handle_forward(
        self: &Arc<Self>,
        group: u64,
        commands: Vec<Command>,
        hops: u32,
    ) -> Result<Forwarded, String> {
        if let Some(g) = self.group(group) {
            if !g.raft.is_leader() && hops >= 2 {
                let hint = self.leader_of(group).filter(|(id, _)| *id != self.node_id());
                return Err(format!("{REFUSED}{}", not_leader(hint.as_ref().map(|(_, i)| i))));
            }
            let receivers: Vec<_> = commands.into_iter().map(|c| self.submit(group, c)).collect();
            let mut results = Vec::with_capacity(receivers.len());
            for rx in receivers {
                let result = rx.await.unwrap_or(Err(BrokerError::ShuttingDown));
                results.push(result.map_err(|e| e.to_string()));
            }
            // Every result is ready, so every entry holding these commands is
            // applied; the last log index is at least as far (a replica that
            // forwarded waits until it has applied that much). When this
            // broker forwarded them once more, the index it noted covers them.
            let applied_index = g
                .raft
                .metrics()
                .borrow_watched()
                .last_log_index
                .unwrap_or(0)
                .max(self.forwarded_index_of(group));
            return Ok(Forwarded { results, applied_index });
        }
        if hops >= 2 {
            return Err(format!("{REFUSED}{}", not_leader(None)));
        }
        // Refused everywhere: nothing was proposed, say so (the sender may
        // resend); otherwise the outcome is unknown.
        let results = self
            .forward_to_replicas(group, commands, hops)
            .await
            .map_err(|e| match e {
                ForwardError::Refused(err) => format!("{REFUSED}{err}"),
                ForwardError::Failed(err) => err.to_string(),
            })?;
        Ok(Forwarded {
            results: results.into_iter().map(|r| r.map_err(|e| e.to_string())).collect(),
            applied_index: 0,
        })
    }
}

/// Why a forward did not produce results.
pub(super) enum ForwardError {
    /// The receiver proposed nothing: safe to send again elsewhere.
    Refused(BrokerError),
    /// Unknown outcome (transport failure) or a definite error.
    Failed(BrokerError),
}

impl ForwardError {
    pub(super) fn into_error(self) -> BrokerError {
        match self {
            ForwardError::Refused(err) | ForwardError::Failed(err) => err,
        }
    }
}

/// Sends proposals into a group's ordered forwarding queue, starting the
/// queue's task when needed. Sending happens under the queue map's lock, so
/// an idle queue closing cannot lose a proposal.
pub(super) struct ForwarderHandle<'a> {
    node: &'a Arc<ClusterNode>,
    group: u64,
}

impl ForwarderHandle<'_> {
    pub fn send(self, proposal: Proposal) -> Result<(), mpsc::error::SendError<Proposal>> {
        let mut forwarders = self.node.forwarders.lock();
        if let Some(tx) = forwarders.get(&self.group) {
            return tx.send(proposal);
        }
        let (tx, rx) = mpsc::unbounded_channel();
        forwarders.insert(self.group, tx.clone());
        tokio::spawn(self.node.clone().run_forwarder(self.group, rx));
        tx.send(proposal)
    }
}
