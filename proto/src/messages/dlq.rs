//! Dead-letter queue operations (WIRE.md §11.1–§11.3).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::wire::{Reader, Wire, wire_struct, write_bool, write_bytes32, write_str16};

wire_struct! {
    /// FETCH_DLQ (0x20): `str16 topic | i32 max_messages`.
    pub struct FetchDlqRequest {
        /// Original topic (its DLQ is `<topic>.dlq`).
        pub topic: String => str16,
        /// Maximum entries to return.
        pub max_messages: i32 => i32,
    }
}

/// Which DLQ entry a REPLAY_DLQ request designates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DlqTarget {
    /// By entry id: `str16 message_id` (pyflymq `replay_dlq`, Go, Java).
    MessageId(String),
    /// By DLQ record offset: `u64 offset` (pyflymq `re_inject_dlq`, Java `reInjectDLQ`).
    Offset(u64),
}

impl Default for DlqTarget {
    fn default() -> Self {
        DlqTarget::MessageId(String::new())
    }
}

/// REPLAY_DLQ (0x21): `str16 topic` then either `str16 message_id` or `u64 offset`.
///
/// Shape rule (§11.2): after the topic, exactly 8 remaining bytes whose first
/// u16 is not 6 are the offset form; anything else is the id form. An offset
/// whose top 16 bits equal 6 would be read back as an id, so encoding one is
/// refused.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplayDlqRequest {
    /// Original topic.
    pub topic: String,
    /// Entry to re-publish.
    pub target: DlqTarget,
}

impl Wire for ReplayDlqRequest {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let topic = r.str16()?;
        let is_offset_form = r.remaining() == 8 && r.peek(2)? != [0, 6];
        let target = if is_offset_form {
            DlqTarget::Offset(r.u64()?)
        } else {
            DlqTarget::MessageId(r.str16()?)
        };
        Ok(ReplayDlqRequest { topic, target })
    }

    fn write(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        write_str16(out, &self.topic)?;
        match &self.target {
            DlqTarget::MessageId(id) => write_str16(out, id),
            DlqTarget::Offset(offset) => {
                if offset >> 48 == 6 {
                    return Err(EncodeError::InvalidValue(format!(
                        "DLQ offset {offset} cannot be told apart from a message id on the wire"
                    )));
                }
                out.put_u64(*offset);
                Ok(())
            }
        }
    }
}

wire_struct! {
    /// One DLQ entry: `str16 id | bytes32 data | str16 error | i32 retries`.
    pub struct DlqEntry {
        /// Entry id.
        pub id: String => str16,
        /// Original payload.
        pub data: Bytes => bytes32,
        /// Why the message was dead-lettered.
        pub error: String => str16,
        /// Delivery attempts.
        pub retries: i32 => i32,
    }
}

wire_struct! {
    /// FETCH_DLQ (0x20) reply: `u32 count | count × entry`.
    pub struct FetchDlqResponse {
        /// Entries; empty when the topic has no DLQ.
        pub entries: Vec<DlqEntry> => list,
    }
}

/// REPLAY_DLQ (0x21) reply: `u8 success | u32 msg_len | msg` (u32 length, as
/// pyflymq's `re_inject_dlq` reads it).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ReplayDlqResponse {
    /// Whether the entry was re-published.
    pub success: bool,
    /// Detail.
    pub message: String,
}

impl Wire for ReplayDlqResponse {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let success = r.bool()?;
        let raw = r.bytes32()?;
        let message = String::from_utf8(raw.to_vec()).map_err(|_| DecodeError::InvalidUtf8 { field: "bytes32" })?;
        Ok(ReplayDlqResponse { success, message })
    }

    fn write(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        write_bool(out, self.success);
        write_bytes32(out, self.message.as_bytes())
    }
}

wire_struct! {
    /// REJECT_RECORD (0x96, FlyMQ extension): `str16 topic | str16 group_id |
    /// i32 partition | u64 offset | str16 reason`. Moves the record to the
    /// topic's dead-letter queue; reply `u8 success | str16 message`.
    pub struct RejectRecordRequest {
        /// Topic.
        pub topic: String => str16,
        /// The rejecting consumer group.
        pub group_id: String => str16,
        /// Partition.
        pub partition: i32 => i32,
        /// Offset of the rejected record.
        pub offset: u64 => u64,
        /// Why (stored as the dead letter's error).
        pub reason: String => str16,
    }
}
