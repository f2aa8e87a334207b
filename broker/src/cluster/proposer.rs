//! Proposals: commands queued for a group, batched into Raft entries on the
//! group's leader, or forwarded in order to the leader from a follower.
//!
//! Queueing is synchronous (`submit`), so the commands of one connection
//! reach their group in the order they were sent. Each group (and each group
//! this broker only forwards to) has one task that drains its queue: on the
//! leader it batches waiting commands into one entry, bounded by count and
//! bytes so an entry (and an AppendEntries) stays under the transport limit.

use std::sync::Arc;
use std::time::{Duration, Instant};

use openraft::OptionalSend;
use openraft::async_runtime::WatchReceiver;
use openraft::errors::ClientWriteError;
use openraft::raft::responder::Responder;
use tokio::sync::{mpsc, oneshot};

use super::node::{ClusterNode, Group};
use super::stages;
use super::types::{CommandBatch, CommandResults, NodeInfo, TypeConfig, from_wire};
use crate::core::command::{Applied, Command};
use crate::core::error::{BrokerError, BrokerResult};

/// Most commands in one Raft entry.
const MAX_BATCH_COMMANDS: usize = 4096;
/// Most payload bytes in one Raft entry; a single larger command (up to
/// `max_message_bytes`) still goes alone.
pub const MAX_ENTRY_BYTES: usize = 4 << 20;
/// Most Raft entries of one group waiting for commit at once.
const MAX_IN_FLIGHT_BATCHES: usize = 64;
/// How long a proposal waits for a group to elect a leader.
pub(super) const LEADER_WAIT: Duration = Duration::from_secs(8);

/// Where openraft completes a proposal (applied, or refused), the callback
/// answers it: no task sits between the apply and the client's reply.
pub struct CallbackResponder<T>(Box<dyn FnOnce(T) + Send>);

impl<T> CallbackResponder<T> {
    pub fn new(on_complete: impl FnOnce(T) + Send + 'static) -> Self {
        Self(Box::new(on_complete))
    }
}

impl<T: OptionalSend + 'static> Responder<TypeConfig, T> for CallbackResponder<T> {
    fn on_complete(self, result: T) {
        (self.0)(result)
    }
}

type WriteResult = Result<openraft::raft::ClientWriteResponse<TypeConfig>, ClientWriteError<TypeConfig>>;

pub struct Proposal {
    pub command: Command,
    pub reply: oneshot::Sender<BrokerResult<Applied>>,
}

pub(super) fn not_leader(leader: Option<&NodeInfo>) -> BrokerError {
    match leader {
        Some(info) => BrokerError::NotLeader(format!("leader_addr={}", info.client_addr)),
        None => BrokerError::NotLeader("no leader elected".into()),
    }
}

/// Takes the next batch from `rx`: `first` plus whatever is already
/// waiting, up to the count and byte limits. A command that would overflow
/// the batch is kept in `carry` for the next one.
pub(super) fn take_batch(
    first: Proposal,
    rx: &mut mpsc::UnboundedReceiver<Proposal>,
    carry: &mut Option<Proposal>,
) -> (Vec<Command>, Vec<oneshot::Sender<BrokerResult<Applied>>>) {
    let mut bytes = first.command.size_hint();
    let (mut commands, mut replies) = (vec![first.command], vec![first.reply]);
    while commands.len() < MAX_BATCH_COMMANDS {
        let Ok(next) = rx.try_recv() else { break };
        let size = next.command.size_hint();
        if bytes + size > MAX_ENTRY_BYTES {
            *carry = Some(next);
            break;
        }
        bytes += size;
        commands.push(next.command);
        replies.push(next.reply);
    }
    (commands, replies)
}

impl ClusterNode {
    /// Queues a command for `group`; queueing is synchronous so the commands
    /// of one connection keep their order.
    pub fn submit(self: &Arc<Self>, group: u64, command: Command) -> oneshot::Receiver<BrokerResult<Applied>> {
        let (reply, rx) = oneshot::channel();
        let proposal = Proposal { command, reply };
        let sent = match self.group(group) {
            Some(g) => {
                stages::mark("submitted", group, 0);
                g.proposals.send(proposal)
            }
            // Not a replica here: an ordered forwarder sends it to a broker that is.
            None => self.forwarder(group).send(proposal),
        };
        if let Err(err) = sent {
            let _ = err.0.reply.send(Err(BrokerError::ShuttingDown));
        }
        rx
    }

    pub async fn propose(self: &Arc<Self>, group: u64, command: Command) -> BrokerResult<Applied> {
        self.submit(group, command)
            .await
            .map_err(|_| BrokerError::ShuttingDown)?
    }

    pub(super) async fn run_proposer(self: Arc<Self>, group: Arc<Group>, mut rx: mpsc::UnboundedReceiver<Proposal>) {
        let in_flight = Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT_BATCHES));
        // The term in which an entry of this broker was committed: until
        // then a new leader proposes one entry at a time (see `propose_first`).
        let mut writable_term = None;
        let mut carry = None;
        loop {
            let first = match carry.take() {
                Some(p) => p,
                None => match rx.recv().await {
                    Some(p) => p,
                    None => return,
                },
            };
            let (mut commands, replies) = take_batch(first, &mut rx, &mut carry);
            loop {
                if !group.raft.is_leader() && group.raft.metrics().borrow_watched().current_leader.is_none() {
                    let _ = group
                        .raft
                        .wait(Some(LEADER_WAIT))
                        .metrics(|m| m.current_leader.is_some(), "a leader is elected")
                        .await;
                }
                if group.raft.is_leader() {
                    let term = group.raft.metrics().borrow_watched().current_term;
                    if writable_term != Some(term) {
                        match self.propose_first(&group, commands).await {
                            First::Done(outcome) => {
                                if outcome.is_ok() {
                                    writable_term = Some(term);
                                }
                                answer(replies, outcome);
                                break;
                            }
                            First::NotLeader(back) => {
                                commands = back;
                                continue;
                            }
                        }
                    }
                    let Ok(permit) = in_flight.clone().acquire_owned().await else {
                        return;
                    };
                    self.propose_here(&group, commands, replies, permit).await;
                    break;
                }
                // Forward in order; the leader batches them again.
                match self.forward_to_leader(&group, commands).await {
                    Forwarding::Done(results) => {
                        answer_each(replies, results.into_iter().map(from_wire).collect());
                        break;
                    }
                    Forwarding::Failed(err) => {
                        answer_all(replies, Err(err));
                        break;
                    }
                    // This broker was elected meanwhile: propose here.
                    Forwarding::LeaderHere(back) => commands = back,
                }
            }
        }
    }

    /// The first entry of a new leader, alone: openraft refuses writes
    /// (before appending them) until the leader has heard from a quorum in
    /// its term, and a refused entry may be proposed again here because no
    /// later entry is in flight to overtake it. Retries for up to
    /// `LEADER_WAIT`; gives the commands back if this broker stops leading.
    async fn propose_first(self: &Arc<Self>, group: &Arc<Group>, commands: Vec<Command>) -> First {
        let deadline = Instant::now() + LEADER_WAIT;
        let commands = Arc::new(commands);
        loop {
            let (tx, done) = oneshot::channel::<WriteResult>();
            let responder = CallbackResponder::new(move |result| {
                let _ = tx.send(result);
            });
            stages::mark("proposed", group.id, 0);
            if group
                .raft
                .client_write_ff(CommandBatch(commands.clone()), Some(responder))
                .await
                .is_err()
            {
                return First::Done(Err(BrokerError::ShuttingDown));
            }
            let proposed = Instant::now();
            match done.await {
                Ok(Ok(response)) => {
                    stages::mark("responded", group.id, response.log_id.index);
                    self.metrics
                        .raft_commit_latency
                        .observe(proposed.elapsed().as_secs_f64());
                    return First::Done(Ok(response.data));
                }
                Ok(Err(ClientWriteError::ForwardToLeader(fwd))) => {
                    tracing::debug!(group = group.id, reason = ?fwd.reason, "first write of a new leader refused; retrying");
                    if !group.raft.is_leader() {
                        return First::NotLeader(Arc::try_unwrap(commands).unwrap_or_else(|c| (*c).clone()));
                    }
                    if Instant::now() >= deadline {
                        return First::Done(Err(not_leader(None)));
                    }
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                Ok(Err(other)) => return First::Done(Err(write_error(other))),
                Err(_) => return First::Done(Err(BrokerError::ShuttingDown)),
            }
        }
    }

    /// As the group's leader: proposes one entry; its replies are sent when
    /// it is committed and applied (or refused).
    async fn propose_here(
        self: &Arc<Self>,
        group: &Arc<Group>,
        commands: Vec<Command>,
        replies: Vec<oneshot::Sender<BrokerResult<Applied>>>,
        permit: tokio::sync::OwnedSemaphorePermit,
    ) {
        let node = self.clone();
        let group_id = group.id;
        let proposed = Instant::now();
        // Runs where openraft completes the entry: the replies go straight
        // to the connections waiting for them.
        stages::mark("proposed", group_id, 0);
        let responder = CallbackResponder::new(move |result: WriteResult| {
            if let Ok(response) = &result {
                stages::mark("responded", group_id, response.log_id.index);
                node.metrics
                    .raft_commit_latency
                    .observe(proposed.elapsed().as_secs_f64());
            }
            let outcome = match result {
                Ok(response) => Ok(response.data),
                Err(ClientWriteError::ForwardToLeader(fwd)) => {
                    // Refused before it was appended (not leader, leadership
                    // moving, or no recent quorum contact). Never point a
                    // client back at this broker: a leader that cannot take
                    // writes says no leader is known yet.
                    let me = node.node_id();
                    tracing::debug!(group = group_id, reason = ?fwd.reason, "write refused: forward to leader");
                    let hint = match (fwd.leader_id, fwd.leader_node) {
                        (Some(id), Some(info)) if id != me => Some(info),
                        _ => node.leader_of(group_id).filter(|(id, _)| *id != me).map(|(_, i)| i),
                    };
                    Err(not_leader(hint.as_ref()))
                }
                Err(other) => Err(write_error(other)),
            };
            answer(replies, outcome);
            drop(permit);
        });
        // A responder openraft never completes (it shut down) is dropped
        // with its replies, which tells their waiters the broker stopped.
        let _ = group
            .raft
            .client_write_ff(CommandBatch(Arc::new(commands)), Some(responder))
            .await;
    }
}

/// A write error other than a refusal before append. An entry discarded
/// when this broker adopted another leader's log may still be committed
/// through that leader: its outcome is unknown, and is said so (never as a
/// redirect, which SDKs follow by sending the write again).
fn write_error(err: ClientWriteError<TypeConfig>) -> BrokerError {
    match err {
        ClientWriteError::LogEntryDiscarded(_) => {
            BrokerError::OutcomeUnknown("this broker lost the leadership while the write was in flight".into())
        }
        other => BrokerError::Remote(other.to_string()),
    }
}

/// What the first proposal of a new leader came to.
enum First {
    Done(BrokerResult<CommandResults>),
    /// No longer the leader: the commands come back to be forwarded.
    NotLeader(Vec<Command>),
}

/// What forwarding a batch to the leader came to.
pub(super) enum Forwarding {
    Done(CommandResults),
    Failed(BrokerError),
    /// This broker leads the group now: the commands come back to be proposed here.
    LeaderHere(Vec<Command>),
}

pub(super) fn answer(replies: Vec<oneshot::Sender<BrokerResult<Applied>>>, outcome: BrokerResult<CommandResults>) {
    match outcome {
        Ok(results) => answer_each(replies, results.into_iter().map(from_wire).collect()),
        Err(err) => answer_all(replies, Err(err)),
    }
}

pub(super) fn answer_each(replies: Vec<oneshot::Sender<BrokerResult<Applied>>>, results: Vec<BrokerResult<Applied>>) {
    let mut results = results.into_iter();
    for reply in replies {
        let result = results.next().unwrap_or_else(|| {
            Err(BrokerError::Remote(
                "the leader returned fewer results than commands".into(),
            ))
        });
        let _ = reply.send(result);
    }
}

pub(super) fn answer_all(replies: Vec<oneshot::Sender<BrokerResult<Applied>>>, result: BrokerResult<Applied>) {
    for reply in replies {
        let _ = reply.send(result.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::command::NewRecord;
    use bytes::Bytes;

    fn append(bytes: usize) -> (Proposal, oneshot::Receiver<BrokerResult<Applied>>) {
        let (reply, rx) = oneshot::channel();
        let command = Command::Append {
            topic: "t".into(),
            partition: 0,
            timestamp_ms: 0,
            records: vec![NewRecord::new(Bytes::new(), Bytes::from(vec![0u8; bytes]))],
        };
        (Proposal { command, reply }, rx)
    }

    #[test]
    fn a_discarded_entry_is_an_unknown_outcome_not_a_redirect() {
        use openraft::errors::ForwardToLeader;
        let err = write_error(ClientWriteError::LogEntryDiscarded(ForwardToLeader::empty()));
        assert!(matches!(err, BrokerError::OutcomeUnknown(_)), "{err:?}");
        assert!(
            err.to_string().starts_with("the outcome of this write is unknown"),
            "{err}"
        );
    }

    #[test]
    fn batches_stay_under_the_entry_byte_limit() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let mut keep = Vec::new();
        for _ in 0..5 {
            let (p, r) = append(MAX_ENTRY_BYTES * 2 / 5);
            tx.send(p).unwrap();
            keep.push(r);
        }
        let mut carry = None;
        let first = rx.try_recv().unwrap();
        let (commands, _) = take_batch(first, &mut rx, &mut carry);
        assert_eq!(commands.len(), 2, "a third one would cross the limit");
        let (commands, _) = take_batch(carry.take().unwrap(), &mut rx, &mut carry);
        assert_eq!(commands.len(), 2);
        // A single command larger than the limit still makes progress alone.
        let (big, _r) = append(MAX_ENTRY_BYTES * 2);
        let (commands, _) = take_batch(big, &mut rx, &mut carry);
        assert_eq!(commands.len(), 1);
    }
}
