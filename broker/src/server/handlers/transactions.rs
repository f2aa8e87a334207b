//! BEGIN_TX, PRODUCE_TX, COMMIT_TX and ABORT_TX (WIRE.md §9.11). A
//! transaction belongs to the connection that began it; failures are error
//! frames (pyflymq cannot see an in-band `success = 0`).

use std::sync::Arc;

use flymq_proto::{ProduceTxRequest, RecordMetadata, Response, TxRequest, TxResponse};

use crate::core::{Broker, now_ms};
use crate::server::connection::Session;
use crate::server::dispatch::Answer;

pub fn begin(session: &Session, broker: &Broker) -> Answer {
    match broker.begin_transaction(session.id) {
        Ok(txn_id) => Answer::Response(Response::BeginTx(TxResponse { txn_id, success: true })),
        Err(err) => Answer::error(err),
    }
}

/// Buffers the record; answers partition 0 and offset 0 (§9.11: the real
/// place is only known at COMMIT).
pub async fn produce(session: &Session, broker: Arc<Broker>, req: ProduceTxRequest) -> Answer {
    let value_size = req.data.len() as i32;
    match broker
        .produce_in_transaction(session.id, &req.txn_id, &req.topic, req.data)
        .await
    {
        Ok(()) => Answer::Response(Response::ProduceTx(RecordMetadata {
            topic: req.topic,
            partition: 0,
            offset: 0,
            timestamp: now_ms(),
            key_size: -1,
            value_size,
        })),
        Err(err) => Answer::error(err),
    }
}

pub async fn commit(session: &Session, broker: Arc<Broker>, req: TxRequest) -> Answer {
    match broker.commit_transaction(session.id, &req.txn_id).await {
        Ok(()) => Answer::Response(Response::CommitTx(TxResponse {
            txn_id: req.txn_id,
            success: true,
        })),
        Err(err) => Answer::error(err),
    }
}

pub fn abort(session: &Session, broker: &Broker, req: TxRequest) -> Answer {
    match broker.abort_transaction(session.id, &req.txn_id) {
        Ok(()) => Answer::Response(Response::AbortTx(TxResponse {
            txn_id: req.txn_id,
            success: true,
        })),
        Err(err) => Answer::error(err),
    }
}
