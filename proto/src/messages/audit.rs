//! Audit log queries (WIRE.md §12.3), Go layout, for both opcode pairs
//! 0x80/0x81 and 0xA0/0xA1.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::wire::{Reader, Wire, wire_struct, write_bool, write_len32, write_str16};

wire_struct! {
    /// AUDIT_QUERY request: `i64 start | i64 end | list32<str16> event_types |
    /// str16 user | str16 resource | str16 result | str16 search | i32 limit | i32 offset`.
    pub struct AuditQuery {
        /// Start, Unix seconds; 0 = unbounded.
        pub start: i64 => i64,
        /// End, Unix seconds; 0 = unbounded.
        pub end: i64 => i64,
        /// Event types to include; empty = all.
        pub event_types: Vec<String> => str16_list,
        /// User filter.
        pub user: String => str16,
        /// Resource filter.
        pub resource: String => str16,
        /// Result filter.
        pub result: String => str16,
        /// Free-text search.
        pub search: String => str16,
        /// Maximum events.
        pub limit: i32 => i32,
        /// Events to skip.
        pub offset: i32 => i32,
    }
}

/// AUDIT_EXPORT request: `u32 query_len | query | str16 format` (`json` or `csv`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditExportRequest {
    /// Which events to export.
    pub query: AuditQuery,
    /// `json` or `csv`.
    pub format: String,
}

impl Wire for AuditExportRequest {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let query_bytes = r.bytes32()?;
        let query = AuditQuery::read(&mut Reader::new(query_bytes))?;
        let format = r.str16()?;
        Ok(AuditExportRequest { query, format })
    }

    fn write(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        write_length_prefixed(out, &self.query)?;
        write_str16(out, &self.format)
    }
}

/// Write `u32 len | value` without a temporary buffer: reserve the prefix, then patch it.
fn write_length_prefixed<T: Wire>(out: &mut BytesMut, value: &T) -> Result<(), EncodeError> {
    let start = out.len();
    out.put_u32(0);
    value.write(out)?;
    let len = out.len() - start - 4;
    let len32 = u32::try_from(len).map_err(|_| EncodeError::LengthOverflow {
        what: "nested record",
        len,
    })?;
    out[start..start + 4].copy_from_slice(&len32.to_be_bytes());
    Ok(())
}

wire_struct! {
    /// One detail of an audit event: `str16 key | str16 value`.
    pub struct AuditDetail {
        /// Key.
        pub key: String => str16,
        /// Value.
        pub value: String => str16,
    }
}

wire_struct! {
    /// Audit event: `str16 id | i64 timestamp_ms | str16 type | str16 user |
    /// str16 client_ip | str16 resource | str16 action | str16 result |
    /// str16 node_id | u32 k × (str16 key | str16 value)`.
    pub struct AuditEvent {
        /// Event id.
        pub id: String => str16,
        /// Time, ms since the epoch.
        pub timestamp_ms: i64 => i64,
        /// Event type.
        pub event_type: String => str16,
        /// Acting user.
        pub user: String => str16,
        /// Client address.
        pub client_ip: String => str16,
        /// Resource acted on.
        pub resource: String => str16,
        /// Action.
        pub action: String => str16,
        /// Outcome.
        pub result: String => str16,
        /// Node that recorded it.
        pub node_id: String => str16,
        /// Extra key/value details.
        pub details: Vec<AuditDetail> => list,
    }
}

/// AUDIT_QUERY reply: `u32 count | count × (u32 event_len | event) | i32 total | u8 has_more`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuditQueryResponse {
    /// Events in this page.
    pub events: Vec<AuditEvent>,
    /// Total matching events.
    pub total: i32,
    /// Whether more pages follow.
    pub has_more: bool,
}

impl Wire for AuditQueryResponse {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let events = r.list32(|r| {
            let raw = r.bytes32()?;
            AuditEvent::read(&mut Reader::new(raw))
        })?;
        let total = r.i32()?;
        let has_more = r.bool()?;
        Ok(AuditQueryResponse {
            events,
            total,
            has_more,
        })
    }

    fn write(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        write_len32(out, self.events.len(), "audit event list")?;
        for event in &self.events {
            write_length_prefixed(out, event)?;
        }
        out.put_i32(self.total);
        write_bool(out, self.has_more);
        Ok(())
    }
}

wire_struct! {
    /// AUDIT_EXPORT reply: `str16 format | bytes32 data`.
    pub struct AuditExportResponse {
        /// `json` or `csv`.
        pub format: String => str16,
        /// Exported document.
        pub data: Bytes => bytes32,
    }
}
