//! Decodes a request frame and routes it to its handler, through the
//! connection's `Sequencer` so requests take effect in the order sent.

use std::sync::Arc;

use bytes::BytesMut;
use flymq_proto::{Frame, Request, Response};
use futures::FutureExt;
use futures::future::BoxFuture;

use super::access::{AccessCheck, verify};
use super::connection::{ConnectionContext, Session};
use super::handlers::{
    acls, audit, auth, cluster, dlq, groups, produce, read, schemas, topics, transactions, unsupported, users,
};
use crate::core::{Broker, BrokerError};

/// The answer to one request.
pub enum Answer {
    Response(Response),
    /// An already encoded frame (FETCH encodes straight from storage).
    Encoded(BytesMut),
}

impl Answer {
    pub fn error(err: impl std::fmt::Display) -> Answer {
        Answer::Response(Response::error(err.to_string()))
    }

    pub fn from_result(result: Result<Response, BrokerError>) -> Answer {
        match result {
            Ok(response) => Answer::Response(response),
            Err(err) => Answer::error(err),
        }
    }
}

impl From<Response> for Answer {
    fn from(response: Response) -> Self {
        Answer::Response(response)
    }
}

/// The reply to one request: ready now, or once its work is done.
pub enum Reply {
    Ready(Answer),
    Pending(BoxFuture<'static, Answer>),
}

/// A reply tagged with the request's opcode (for metrics).
pub struct Outgoing {
    pub opcode: u8,
    pub reply: Reply,
}

pub fn dispatch(conn: &mut ConnectionContext, broker: &Arc<Broker>, frame: Frame) -> Outgoing {
    let opcode = frame.opcode;
    // Inflating a compressed payload is CPU work: keep it off the async
    // workers' queue (the broker runs a multi-threaded runtime).
    let multi_threaded = tokio::runtime::Handle::try_current()
        .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
    let payload = if frame.compression() != 0 && multi_threaded {
        tokio::task::block_in_place(|| frame.decompressed_payload())
    } else {
        frame.decompressed_payload()
    };
    let reply = match payload.and_then(|payload| Request::decode_bytes(opcode, payload)) {
        Ok(request) => route(conn, broker, request),
        // Decode errors keep the connection open (WIRE.md §3).
        Err(err) => Reply::Ready(Answer::error(err)),
    };
    Outgoing { opcode, reply }
}

fn route(conn: &mut ConnectionContext, broker: &Arc<Broker>, request: Request) -> Reply {
    let gate = AccessCheck::of(broker, &conn.session, &request);
    match request {
        Request::Produce(r) => produce::produce(conn, broker, r, gate),
        Request::ProduceBatch(r) => produce::produce_batch(conn, broker, r, gate),
        Request::ProduceWithTtl(r) => produce::produce_with_ttl(conn, broker, r, gate),
        Request::ProduceDelayed(r) => produce::produce_delayed(conn, broker, r, gate),
        Request::ProduceWithSchema(r) => produce::produce_with_schema(conn, broker, r, gate),
        Request::Commit(r) => groups::commit(conn, broker, r, gate),
        other => {
            let work = handle(conn.session.clone(), broker.clone(), other, gate);
            conn.sequencer.ordered(work)
        }
    }
}

/// Every request that is not a queued write; runs after the connection's
/// earlier requests have taken effect.
fn handle(
    session: Arc<Session>,
    broker: Arc<Broker>,
    request: Request,
    gate: Option<AccessCheck>,
) -> BoxFuture<'static, Answer> {
    async move {
        if let Err(denied) = verify(&gate, &broker) {
            return Answer::error(denied);
        }
        match request {
            Request::Consume(r) => read::consume(broker, r, false).await,
            Request::ConsumeZeroCopy(r) => read::consume(broker, r, true).await,
            Request::Fetch(r) => read::fetch(session.id, broker, r, false).await,
            Request::FetchBinary(r) => read::fetch(session.id, broker, r, true).await,
            Request::SeekToTimestamp(r) => read::seek_to_timestamp(broker, r).await,
            Request::CreateTopic(r) => topics::create(&session, broker, r).await,
            Request::DeleteTopic(r) => topics::delete(&session, broker, r).await,
            Request::ListTopics => topics::list(&broker),
            Request::MatchTopics(r) => topics::matching(&broker, r),
            Request::Subscribe(r) => groups::subscribe(&session, broker, r).await,
            Request::GetOffset(r) => groups::get_offset(broker, r).await,
            Request::ResetOffset(r) => groups::reset_offset(broker, r).await,
            Request::ListGroups => groups::list(broker).await,
            Request::DescribeGroup(r) => groups::describe(broker, r).await,
            Request::GetLag(r) => groups::lag(broker, r).await,
            Request::DeleteGroup(r) => groups::delete(broker, r).await,
            Request::JoinGroup(r) => groups::join(broker, r).await,
            Request::GroupHeartbeat(r) => groups::heartbeat(broker, r).await,
            Request::LeaveGroup(r) => groups::leave(broker, r).await,
            Request::CommitFenced(r) => groups::commit_fenced(broker, r).await,
            Request::ClusterMetadata(r) => cluster::metadata(&broker, r),
            Request::ClusterStatus => cluster::status(&broker),
            Request::ClusterJoin(_) | Request::ClusterLeave => cluster::membership_change(),
            Request::Auth(r) => auth::authenticate(&session, &broker, r).await,
            Request::Whoami => auth::whoami(&session, &broker),
            Request::PasswordChange(r) => auth::change_password(&session, &broker, r).await,
            Request::UserCreate(r) => users::create(&session, &broker, r).await,
            Request::UserUpdate(r) => users::update(&session, &broker, r).await,
            Request::UserDelete(r) => users::delete(&session, &broker, r).await,
            Request::UserGet(r) => users::get(&broker, r),
            Request::UserList => users::list(&broker),
            Request::RoleList => users::roles(&broker),
            Request::AclSet(r) => acls::set(&session, &broker, r).await,
            Request::AclGet(r) => acls::get(&broker, r),
            Request::AclDelete(r) => acls::delete(&session, &broker, r).await,
            Request::AclList => acls::list(&broker),
            Request::AuditQuery(r) => audit::query(broker, r, false).await,
            Request::AuditQueryAlt(r) => audit::query(broker, r, true).await,
            Request::AuditExport(r) => audit::export(broker, r, false).await,
            Request::AuditExportAlt(r) => audit::export(broker, r, true).await,
            Request::BeginTx => transactions::begin(&session, &broker),
            Request::ProduceTx(r) => transactions::produce(&session, broker, r).await,
            Request::CommitTx(r) => transactions::commit(&session, broker, r).await,
            Request::AbortTx(r) => transactions::abort(&session, &broker, r),
            Request::FetchDlq(r) => dlq::fetch(broker, r).await,
            Request::ReplayDlq(r) => dlq::replay(broker, r).await,
            Request::PurgeDlq(r) => dlq::purge(broker, r).await,
            Request::RejectRecord(r) => dlq::reject(broker, r).await,
            Request::RegisterSchema(r) => schemas::register(broker, r).await,
            Request::GetSchema(r) => schemas::get(broker, r).await,
            Request::ListSchemas(r) => schemas::list(broker, r).await,
            Request::ValidateSchema(r) => schemas::validate(broker, r).await,
            Request::DeleteSchema(r) => schemas::delete(broker, r).await,
            other => unsupported::not_supported(&other),
        }
    }
    .boxed()
}

/// Runs a blocking read (RocksDB I/O, filter scans) off the async workers.
pub async fn blocking(work: impl FnOnce() -> Answer + Send + 'static) -> Answer {
    tokio::task::spawn_blocking(work)
        .await
        .unwrap_or_else(|e| Answer::error(format!("internal error: read task failed: {e}")))
}
