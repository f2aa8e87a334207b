//! Small layouts shared by several opcodes.

use crate::wire::wire_struct;

wire_struct! {
    /// A request carrying only a topic name: DELETE_TOPIC, METADATA,
    /// PURGE_DLQ, ACL_GET, ACL_DELETE.
    pub struct TopicRequest {
        /// Topic name.
        pub topic: String => str16,
    }
}

wire_struct! {
    /// `u8 success | str16 message` ("ok-msg", §12.1): DELETE_SCHEMA,
    /// PURGE_DLQ, USER_DELETE, USER_UPDATE, PASSWORD_CHANGE.
    pub struct OkMessage {
        /// Whether the operation succeeded.
        pub success: bool => bool,
        /// Human-readable detail.
        pub message: String => str16,
    }
}

impl OkMessage {
    /// A successful reply with `message`.
    pub fn ok(message: impl Into<String>) -> Self {
        OkMessage {
            success: true,
            message: message.into(),
        }
    }
}

/// An opaque payload, for reserved opcodes without a defined layout
/// (CANCEL_DELAYED 0x31). Reads everything that is left; writes it back verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RawPayload(pub bytes::Bytes);

impl crate::wire::Wire for RawPayload {
    fn read(r: &mut crate::wire::Reader) -> Result<Self, crate::DecodeError> {
        Ok(RawPayload(r.rest()))
    }

    fn write(&self, out: &mut bytes::BytesMut) -> Result<(), crate::EncodeError> {
        out.extend_from_slice(&self.0);
        Ok(())
    }
}
