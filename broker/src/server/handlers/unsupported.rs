//! Opcodes of features that are not built yet answer a clear error frame.

use flymq_proto::Request;

use crate::core::BrokerError;
use crate::server::dispatch::Answer;

pub fn not_supported(request: &Request) -> Answer {
    let feature = match request {
        Request::CancelDelayed(_) => "cancelling delayed messages",
        Request::Metadata(_) => {
            return Answer::error("METADATA (0x04) is not supported; use CLUSTER_METADATA (0x53)");
        }
        _ => "this operation",
    };
    Answer::error(BrokerError::NotSupported(feature))
}
