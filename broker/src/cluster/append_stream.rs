//! Pipelined replication: one `AppendStream` gRPC call per group and
//! follower for as long as openraft keeps a replication session open.
//!
//! The leader sends AppendEntries requests as openraft produces them,
//! without waiting for each answer; the follower hands the stream to
//! openraft's `Raft::stream_append`, which stores the requests in order and
//! answers each once it is flushed. Compared with one unary call per
//! request, the follower's disk write of one batch overlaps the transfer of
//! the next, and no HTTP/2 stream is opened per request.
//!
//! A peer of an older version answers `Unimplemented`; replication to it
//! then uses one call per request for a while (a rolling upgrade).

use std::collections::VecDeque;
use std::future::ready;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use flymq_proto::grpc::cluster::{AppendMessage, RaftReply};
use futures::{Stream, StreamExt};
use openraft::base::BoxStream;
use openraft::errors::{NetworkError, RPCError, Unreachable};
use openraft::network::RPCOption;
use openraft::raft::{AppendEntriesRequest, StreamAppendResult};
use tonic::{Status, Streaming};

use super::network::{MAX_APPEND_BYTES, Peers, entries_within};
use super::node::Group;
use super::stages;
use super::types::{NodeId, TypeConfig, decode, decode_shared, encode, encode_with_capacity};

type Request = AppendEntriesRequest<TypeConfig>;
type Answer = Result<StreamAppendResult<TypeConfig>, RPCError<TypeConfig>>;

/// What the follower's side of a stream yields to tonic.
pub type Replies = Pin<Box<dyn Stream<Item = Result<RaftReply, Status>> + Send + 'static>>;

/// Splits a request whose entries exceed `limit` bytes into consecutive
/// requests, each answered on its own: a far-behind follower or a very
/// large record never makes a message over the transport limit. A piece
/// holds at least one entry. Each piece comes with its entries' estimated
/// encoded size.
pub(super) fn split(mut request: Request, limit: usize) -> Vec<(Request, usize)> {
    let mut pieces = Vec::new();
    loop {
        let (keep, bytes) = entries_within(&request.entries, limit);
        if keep == request.entries.len() {
            pieces.push((request, bytes));
            return pieces;
        }
        let rest = AppendEntriesRequest {
            vote: request.vote,
            prev_log_id: request.entries.get(keep - 1).map(|e| e.log_id),
            leader_commit: request.leader_commit,
            entries: request.entries.split_off(keep),
        };
        pieces.push((request, bytes));
        request = rest;
    }
}

/// Send times of the requests not answered yet, oldest first, shared by the
/// sending and the answering half of one call.
#[derive(Default)]
struct InFlight {
    sent: parking_lot::Mutex<VecDeque<Instant>>,
    /// Wakes the answering half when a request is sent while none was out.
    first_sent: tokio::sync::Notify,
}

impl InFlight {
    fn sent(&self) {
        let mut sent = self.sent.lock();
        sent.push_back(Instant::now());
        if sent.len() == 1 {
            self.first_sent.notify_one();
        }
    }

    fn answered(&self) {
        self.sent.lock().pop_front();
    }

    /// When the call has made no progress for `limit`: `limit` after the
    /// oldest unanswered request was sent or the last answer came, whichever
    /// is later. `None` with nothing in flight.
    fn deadline(&self, last_answer: Instant, limit: Duration) -> Option<Instant> {
        self.sent.lock().front().map(|&sent| sent.max(last_answer) + limit)
    }
}

/// The leader's side: sends `input` to `target` over one call and returns
/// the follower's answers, in order. Fails when no answer comes for
/// `option.hard_ttl()` while requests are in flight (a stopped or cut-off
/// follower), as a unary call would.
pub(super) async fn send<S>(
    peers: Arc<Peers>,
    target: NodeId,
    group: u64,
    addr: String,
    mut input: S,
    option: RPCOption,
) -> Result<BoxStream<'static, Answer>, RPCError<TypeConfig>>
where
    S: Stream<Item = Request> + Send + Unpin + 'static,
{
    let limit = option.hard_ttl();
    // The call starts with the first request, so a peer that cannot take
    // it (another cluster, no such group) answers at once.
    let Some(first) = input.next().await else {
        return Ok(Box::pin(futures::stream::empty()));
    };
    let in_flight = Arc::new(InFlight::default());
    let outbound = {
        let in_flight = in_flight.clone();
        let mut envelope = Some(peers.envelope(target, group));
        futures::stream::once(ready(first))
            .chain(input)
            .flat_map(|request| futures::stream::iter(split(request, MAX_APPEND_BYTES)))
            .map(move |(request, bytes)| {
                let index = request.entries.last().map_or(0, |e| e.log_id.index);
                let payload = encode_with_capacity(&request, 256 + bytes)
                    .inspect_err(|e| tracing::error!(error = %e, "cannot encode an AppendEntries request"))
                    .ok()?;
                stages::mark("append_sent", group, index);
                in_flight.sent();
                Some(AppendMessage {
                    envelope: envelope.take(),
                    payload: payload.into(),
                })
            })
            // An unencodable request ends the stream: the follower would
            // refuse the next one as out of order anyway.
            .take_while(|message| ready(message.is_some()))
            .filter_map(ready)
    };
    let mut client = peers
        .client(&addr)
        .map_err(|e| RPCError::Unreachable(Unreachable::from_string(e)))?;
    let call = client.append_stream(tonic::Request::new(outbound));
    let inbound = match tokio::time::timeout(limit, call).await {
        Err(_) => {
            return Err(RPCError::Network(NetworkError::from_string(format!(
                "node {target} at {addr}: no answer to an AppendEntries stream within {limit:?}"
            ))));
        }
        Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => {
            peers.note_no_append_stream(&addr);
            return Err(RPCError::Unreachable(Unreachable::from_string(format!(
                "node {target} at {addr} does not take AppendEntries streams (an older version): \
                 sending one request at a time"
            ))));
        }
        Ok(Err(status)) => return Err(status_error(target, &addr, &status)),
        Ok(Ok(response)) => response.into_inner(),
    };
    let answers = Answers {
        inbound,
        in_flight,
        last_answer: Instant::now(),
        limit,
        target,
        addr,
        group,
    };
    Ok(Box::pin(futures::stream::unfold(Some(answers), |answers| async move {
        let mut answers = answers?;
        match answers.next().await? {
            Ok(answer) => Some((Ok(answer), Some(answers))),
            // An error ends the stream; openraft starts a new session.
            Err(err) => Some((Err(err), None)),
        }
    })))
}

fn status_error(target: NodeId, addr: &str, status: &Status) -> RPCError<TypeConfig> {
    let msg = format!("node {target} at {addr}: {}", status.message());
    match status.code() {
        tonic::Code::DeadlineExceeded | tonic::Code::Internal => RPCError::Network(NetworkError::from_string(msg)),
        _ => RPCError::Unreachable(Unreachable::from_string(msg)),
    }
}

/// The answering half of one call on the leader.
struct Answers {
    inbound: Streaming<RaftReply>,
    in_flight: Arc<InFlight>,
    last_answer: Instant,
    limit: Duration,
    target: NodeId,
    addr: String,
    group: u64,
}

impl Answers {
    /// The next answer; `None` when the follower ended the stream (after the
    /// last request was answered).
    async fn next(&mut self) -> Option<Answer> {
        let message = loop {
            match self.in_flight.deadline(self.last_answer, self.limit) {
                Some(deadline) => tokio::select! {
                    message = self.inbound.message() => break message,
                    () = tokio::time::sleep_until(deadline.into()) => {
                        return Some(Err(RPCError::Network(NetworkError::from_string(format!(
                            "node {} at {}: no AppendEntries answer for {:?}",
                            self.target, self.addr, self.limit
                        )))));
                    }
                },
                None => tokio::select! {
                    message = self.inbound.message() => break message,
                    () = self.in_flight.first_sent.notified() => continue,
                },
            }
        };
        match message {
            Ok(Some(reply)) => {
                self.in_flight.answered();
                self.last_answer = Instant::now();
                let answer: StreamAppendResult<TypeConfig> = match decode(&reply.payload) {
                    Ok(answer) => answer,
                    Err(e) => return Some(Err(RPCError::Network(NetworkError::new(&e)))),
                };
                if let Ok(Some(log_id)) = &answer {
                    stages::mark("append_replied", self.group, log_id.index);
                }
                Some(Ok(answer))
            }
            Ok(None) => None,
            Err(status) => Some(Err(status_error(self.target, &self.addr, &status))),
        }
    }
}

/// The follower's side: `first` (already checked for its envelope) and the
/// rest of `inbound` go to the group's Raft, which answers each request in
/// order. An undecodable request ends the stream with an error after the
/// answers to the requests before it.
pub(super) fn serve(group: Arc<Group>, first: Request, inbound: Streaming<AppendMessage>) -> Replies {
    let group_id = group.id;
    let failure = Arc::new(parking_lot::Mutex::new(None::<Status>));
    let rest = {
        let failure = failure.clone();
        futures::stream::unfold(inbound, move |mut inbound| {
            let failure = failure.clone();
            async move {
                let message = match inbound.message().await {
                    Ok(Some(message)) => message,
                    Ok(None) => return None,
                    Err(status) => {
                        *failure.lock() = Some(status);
                        return None;
                    }
                };
                match decode_shared::<Request>(&message.payload) {
                    Ok(request) => {
                        received(group_id, &request);
                        Some((request, inbound))
                    }
                    Err(e) => {
                        *failure.lock() = Some(Status::invalid_argument(format!("undecodable payload: {e}")));
                        None
                    }
                }
            }
        })
    };
    received(group_id, &first);
    let answers = group
        .raft
        .stream_append(futures::stream::once(ready(first)).chain(rest))
        .map(move |answer| match answer {
            Ok(answer) => {
                if let Ok(Some(log_id)) = &answer {
                    stages::mark("append_answered", group_id, log_id.index);
                }
                let payload = encode(&answer).map_err(|e| Status::internal(e.to_string()))?;
                Ok(RaftReply { payload })
            }
            Err(fatal) => Err(Status::unavailable(fatal.to_string())),
        });
    let failed = futures::stream::once(async move { failure.lock().take().map(Err) }).filter_map(ready);
    Box::pin(answers.chain(failed))
}

fn received(group: u64, request: &Request) {
    stages::mark(
        "append_received",
        group,
        request.entries.last().map_or(0, |e| e.log_id.index),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::types::{LogId, Vote};

    fn log_id(index: u64) -> LogId {
        openraft::testing::log_id::<TypeConfig>(1, 0, index)
    }

    fn request(indexes: std::ops::RangeInclusive<u64>) -> Request {
        AppendEntriesRequest {
            vote: Vote::new(1, 0),
            prev_log_id: Some(log_id(indexes.start() - 1)),
            leader_commit: Some(log_id(3)),
            entries: indexes
                .map(|i| openraft::testing::blank_ent::<TypeConfig>(1, 0, i))
                .collect(),
        }
    }

    #[test]
    fn a_request_within_the_limit_is_sent_whole() {
        let pieces = split(request(5..=9), 1 << 20);
        assert_eq!(pieces.len(), 1);
        assert_eq!(pieces[0].0.prev_log_id, Some(log_id(4)));
        assert_eq!(pieces[0].0.entries, request(5..=9).entries);
    }

    #[test]
    fn an_oversized_request_is_cut_into_consecutive_requests() {
        // A blank entry is estimated at 256 bytes: two fit in 600.
        let pieces: Vec<Request> = split(request(5..=9), 600).into_iter().map(|(r, _)| r).collect();
        let ranges: Vec<(Option<u64>, Vec<u64>)> = pieces
            .iter()
            .map(|r| {
                (
                    r.prev_log_id.map(|id| id.index),
                    r.entries.iter().map(|e| e.log_id.index).collect(),
                )
            })
            .collect();
        assert_eq!(
            ranges,
            vec![(Some(4), vec![5, 6]), (Some(6), vec![7, 8]), (Some(8), vec![9])]
        );
        assert!(
            pieces
                .iter()
                .all(|r| r.vote == Vote::new(1, 0) && r.leader_commit == Some(log_id(3)))
        );
    }

    #[test]
    fn one_entry_over_the_limit_still_goes() {
        let pieces = split(request(5..=6), 10);
        assert_eq!(pieces.len(), 2);
        assert_eq!(pieces[1].0.entries.len(), 1);
    }
}
