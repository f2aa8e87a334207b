//! Decodes a request frame and routes it to its handler. Handlers run their
//! synchronous part (validation, reads, queueing writes) right here, in
//! arrival order; what must wait for a durable write is returned as a future.

use std::pin::Pin;
use std::sync::Arc;

use bytes::BytesMut;
use flymq_proto::{Frame, Request, Response};

use super::connection::ConnectionContext;
use super::handlers::{cluster, groups, produce, read, topics, unsupported};
use crate::core::{Broker, BrokerError};

pub type PendingResponse = Pin<Box<dyn Future<Output = Response> + Send + 'static>>;

/// The answer to one request.
pub enum Reply {
    Response(Response),
    /// An already encoded frame (FETCH encodes straight from storage).
    Encoded(BytesMut),
    /// Answered once a write is durable.
    Pending(PendingResponse),
}

impl Reply {
    pub fn error(err: impl std::fmt::Display) -> Reply {
        Reply::Response(Response::error(err.to_string()))
    }

    pub fn from_result(result: Result<Response, BrokerError>) -> Reply {
        match result {
            Ok(response) => Reply::Response(response),
            Err(err) => Reply::error(err),
        }
    }

    /// A reply that waits for `fut`.
    pub fn pending(fut: impl Future<Output = Result<Response, BrokerError>> + Send + 'static) -> Reply {
        Reply::Pending(Box::pin(async move {
            fut.await.unwrap_or_else(|e| Response::error(e.to_string()))
        }))
    }
}

/// A reply tagged with the request's opcode (for metrics).
pub struct Outgoing {
    pub opcode: u8,
    pub reply: Reply,
}

pub fn dispatch(conn: &mut ConnectionContext, broker: &Arc<Broker>, frame: Frame) -> Outgoing {
    let opcode = frame.opcode;
    let reply = match frame
        .decompressed_payload()
        .and_then(|payload| Request::decode_bytes(opcode, payload))
    {
        Ok(request) => route(conn, broker, request),
        // Decode errors keep the connection open (WIRE.md §3).
        Err(err) => Reply::error(err),
    };
    Outgoing { opcode, reply }
}

fn route(conn: &mut ConnectionContext, broker: &Arc<Broker>, request: Request) -> Reply {
    match request {
        Request::Produce(r) => produce::produce(broker, r),
        Request::ProduceBatch(r) => produce::produce_batch(broker, r),
        Request::Consume(r) => read::consume(broker, r, false),
        Request::ConsumeZeroCopy(r) => read::consume(broker, r, true),
        Request::Fetch(r) => read::fetch(broker, r, false),
        Request::FetchBinary(r) => read::fetch(broker, r, true),
        Request::SeekToTimestamp(r) => read::seek_to_timestamp(broker, r),
        Request::CreateTopic(r) => topics::create(broker, r),
        Request::DeleteTopic(r) => topics::delete(broker, r),
        Request::ListTopics => topics::list(broker),
        Request::Subscribe(r) => groups::subscribe(conn, broker, r),
        Request::Commit(r) => groups::commit(broker, r),
        Request::GetOffset(r) => groups::get_offset(broker, r),
        Request::ResetOffset(r) => groups::reset_offset(broker, r),
        Request::ListGroups => groups::list(broker),
        Request::DescribeGroup(r) => groups::describe(broker, r),
        Request::GetLag(r) => groups::lag(broker, r),
        Request::DeleteGroup(r) => groups::delete(broker, r),
        Request::ClusterMetadata(r) => cluster::metadata(broker, r),
        Request::ClusterStatus => cluster::status(broker),
        Request::ClusterJoin(_) | Request::ClusterLeave => cluster::membership_change(),
        Request::Auth(r) => unsupported::auth_disabled(conn, r),
        Request::Whoami => unsupported::whoami(conn),
        Request::FetchDlq(_) => unsupported::fetch_dlq_disabled(),
        Request::PurgeDlq(_) => unsupported::purge_dlq_disabled(),
        other => unsupported::not_supported(&other),
    }
}
