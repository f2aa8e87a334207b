//! Opcodes of features that are not built yet answer a clear error frame,
//! plus the behaviour WIRE.md requires while DLQs are off.

use flymq_proto::{FetchDlqResponse, OkMessage, Request, Response};

use crate::core::BrokerError;
use crate::server::dispatch::Answer;

/// Dead-letter queues are not enabled: FETCH_DLQ returns no entries, as the Go
/// broker does with DLQs disabled (WIRE.md §11.1).
pub fn fetch_dlq_disabled() -> Answer {
    Answer::Response(Response::FetchDlq(FetchDlqResponse { entries: vec![] }))
}

/// PURGE_DLQ with DLQs disabled: `success 0` in-band, never an error frame (§11.3).
pub fn purge_dlq_disabled() -> Answer {
    Answer::Response(Response::PurgeDlq(OkMessage {
        success: false,
        message: "dead-letter queues are not enabled on this broker (not supported yet)".into(),
    }))
}

pub fn not_supported(request: &Request) -> Answer {
    let feature = match request {
        Request::RegisterSchema(_)
        | Request::GetSchema(_)
        | Request::ListSchemas(_)
        | Request::ValidateSchema(_)
        | Request::ProduceWithSchema(_)
        | Request::DeleteSchema(_) => "the schema registry",
        Request::ReplayDlq(_) => "dead-letter queues",
        Request::CancelDelayed(_) => "cancelling delayed messages",
        Request::Metadata(_) => {
            return Answer::error("METADATA (0x04) is not supported; use CLUSTER_METADATA (0x53)");
        }
        _ => "this operation",
    };
    Answer::error(BrokerError::NotSupported(feature))
}
