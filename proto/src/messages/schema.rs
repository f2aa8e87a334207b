//! Schema registry operations (WIRE.md §10).

use bytes::{Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::wire::{Reader, Wire, wire_struct, write_bytes32, write_str16};

wire_struct! {
    /// REGISTER_SCHEMA (0x10): `str16 name | str8 type | bytes32 definition`.
    pub struct RegisterSchemaRequest {
        /// Schema name.
        pub name: String => str16,
        /// `json`, `avro`, `protobuf` or `proto`.
        pub schema_type: String => str8,
        /// Schema definition.
        pub definition: Bytes => bytes32,
    }
}

wire_struct! {
    /// GET_SCHEMA (0x11) and DELETE_SCHEMA (0x15): `str16 name | u32 version`
    /// (0 = latest for GET, all versions for DELETE).
    pub struct SchemaVersionRequest {
        /// Schema name.
        pub name: String => str16,
        /// Version, or 0.
        pub version: u32 => u32,
    }
}

/// LIST_SCHEMAS (0x12): `str16 filter`; an empty payload means an empty filter.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListSchemasRequest {
    /// Exact schema name to list; empty = all.
    pub filter: String,
}

impl Wire for ListSchemasRequest {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let filter = if r.is_empty() { String::new() } else { r.str16()? };
        Ok(ListSchemasRequest { filter })
    }

    fn write(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        write_str16(out, &self.filter)
    }
}

wire_struct! {
    /// VALIDATE_SCHEMA (0x13): `str16 name | bytes32 message`.
    pub struct ValidateSchemaRequest {
        /// Schema name.
        pub name: String => str16,
        /// Message to validate.
        pub message: Bytes => bytes32,
    }
}

/// PRODUCE_WITH_SCHEMA (0x14).
///
/// Encoded in the pyflymq/Java layout `str16 topic | bytes32 data | str16 schema_name`.
/// Decoding tries that layout first and accepts it only if it consumes the
/// payload exactly; otherwise it falls back to the Go layout
/// `str16 topic | str16 schema_name | bytes32 data` (trailing bytes ignored).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProduceWithSchemaRequest {
    /// Topic.
    pub topic: String,
    /// Record value.
    pub data: Bytes,
    /// Schema to validate against.
    pub schema_name: String,
}

impl ProduceWithSchemaRequest {
    fn read_pyflymq(r: &mut Reader) -> Result<Self, DecodeError> {
        let topic = r.str16()?;
        let data = r.bytes32()?;
        let schema_name = r.str16()?;
        if !r.is_empty() {
            return Err(DecodeError::InvalidFormat("trailing bytes".into()));
        }
        Ok(ProduceWithSchemaRequest {
            topic,
            data,
            schema_name,
        })
    }

    fn read_go(r: &mut Reader) -> Result<Self, DecodeError> {
        let topic = r.str16()?;
        let schema_name = r.str16()?;
        let data = r.bytes32()?;
        Ok(ProduceWithSchemaRequest {
            topic,
            data,
            schema_name,
        })
    }
}

impl Wire for ProduceWithSchemaRequest {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let mut attempt = r.clone();
        if let Ok(req) = Self::read_pyflymq(&mut attempt) {
            *r = attempt;
            return Ok(req);
        }
        Self::read_go(r)
    }

    fn write(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        write_str16(out, &self.topic)?;
        write_bytes32(out, &self.data)?;
        write_str16(out, &self.schema_name)
    }
}

wire_struct! {
    /// One schema version: `str16 name | str8 type | u32 version`. The
    /// REGISTER_SCHEMA reply, and the element of LIST_SCHEMAS / GET_SCHEMA replies.
    pub struct SchemaEntry {
        /// Schema name (plain, not `<name>-v<n>`).
        pub name: String => str16,
        /// Schema type.
        pub schema_type: String => str8,
        /// Version number.
        pub version: u32 => u32,
    }
}

wire_struct! {
    /// LIST_SCHEMAS (0x12) reply, also GET_SCHEMA (0x11) with one entry:
    /// `u32 count | count × schema entry`.
    pub struct SchemaListResponse {
        /// Schema versions.
        pub schemas: Vec<SchemaEntry> => list,
    }
}

wire_struct! {
    /// VALIDATE_SCHEMA (0x13) reply: `u8 valid | u32 count | count × str16 error`.
    pub struct ValidateSchemaResponse {
        /// Whether the message is valid.
        pub valid: bool => bool,
        /// Validation errors.
        pub errors: Vec<String> => str16_list,
    }
}
