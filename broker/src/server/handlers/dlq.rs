//! FETCH_DLQ (0x20), REPLAY_DLQ (0x21, both request shapes) and PURGE_DLQ
//! (0x22), WIRE.md §11. A topic without a dead-letter queue has an empty
//! one: FETCH_DLQ answers no entries and PURGE_DLQ succeeds.

use std::sync::Arc;

use flymq_proto::{
    DlqEntry, DlqTarget, FetchDlqRequest, FetchDlqResponse, OkMessage, RejectRecordRequest, ReplayDlqRequest,
    ReplayDlqResponse, Response, TopicRequest,
};

use crate::core::Broker;
use crate::core::dlq;
use crate::server::dispatch::{Answer, blocking};

pub async fn fetch(broker: Arc<Broker>, req: FetchDlqRequest) -> Answer {
    blocking(move || {
        Answer::from_result(broker.fetch_dlq(&req.topic, req.max_messages).map(|entries| {
            Response::FetchDlq(FetchDlqResponse {
                entries: entries
                    .into_iter()
                    .map(|e| DlqEntry {
                        id: e.id(),
                        error: e.header.as_ref().map(|h| h.error.clone()).unwrap_or_default(),
                        retries: e.header.as_ref().map_or(0, |h| h.retries as i32),
                        data: e.payload,
                    })
                    .collect(),
            })
        }))
    })
    .await
}

/// Not found is answered in-band (`success 0`), as WIRE.md §11.2 allows.
pub async fn replay(broker: Arc<Broker>, req: ReplayDlqRequest) -> Answer {
    let target = match req.target {
        DlqTarget::MessageId(id) => dlq::DlqTarget::Id(id),
        DlqTarget::Offset(offset) => dlq::DlqTarget::Offset(offset),
    };
    let shown = format!("{target:?}");
    match broker.replay_dead_letter(&req.topic, target).await {
        Ok(Some(message)) => Answer::Response(Response::ReplayDlq(ReplayDlqResponse { success: true, message })),
        Ok(None) => Answer::Response(Response::ReplayDlq(ReplayDlqResponse {
            success: false,
            message: format!("message not found in the dead-letter queue of '{}': {shown}", req.topic),
        })),
        Err(err) => Answer::error(err),
    }
}

pub async fn purge(broker: Arc<Broker>, req: TopicRequest) -> Answer {
    match broker.purge_dlq(&req.topic).await {
        Ok(existed) => Answer::Response(Response::PurgeDlq(OkMessage {
            success: true,
            message: if existed {
                format!("dead-letter queue '{}' deleted", dlq::dlq_topic(&req.topic))
            } else {
                format!("'{}' has no dead-letter queue; nothing to purge", req.topic)
            },
        })),
        Err(err) => Answer::error(err),
    }
}

/// REJECT_RECORD (FlyMQ extension).
pub async fn reject(broker: Arc<Broker>, req: RejectRecordRequest) -> Answer {
    match broker
        .reject_record(&req.topic, &req.group_id, req.partition, req.offset, &req.reason)
        .await
    {
        Ok(id) => Answer::Response(Response::RejectRecord(OkMessage::ok(format!(
            "moved to {} as {id}",
            dlq::dlq_topic(&req.topic)
        )))),
        Err(err) => Answer::error(err),
    }
}
