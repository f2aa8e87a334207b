//! Core topic and message operations (WIRE.md §8, §9.9, §9.10) and the
//! FlyMQ extensions SEEK_TO_TIMESTAMP (0x66) and PRODUCE_BATCH (0x90).

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};
use crate::wire::{Reader, Wire, wire_struct, write_len32, write_str16, write_wire_list};

wire_struct! {
    /// PRODUCE (0x01): `str16 topic | bytes32 key | bytes32 value | i32 partition`.
    pub struct ProduceRequest {
        /// Topic (auto-created by the server if missing).
        pub topic: String => str16,
        /// Record key; empty = no key.
        pub key: Bytes => bytes32,
        /// Record value.
        pub value: Bytes => bytes32,
        /// Target partition; -1 = let the server choose.
        pub partition: i32 => i32,
    }
}

wire_struct! {
    /// CONSUME (0x02) and CONSUME_ZERO_COPY (0x0A): `str16 topic | i32 partition | u64 offset`.
    pub struct ConsumeRequest {
        /// Topic.
        pub topic: String => str16,
        /// Partition.
        pub partition: i32 => i32,
        /// Offset of the record to read.
        pub offset: u64 => u64,
    }
}

wire_struct! {
    /// CREATE_TOPIC (0x03): `str16 topic | i32 partitions` (0 means 1).
    pub struct CreateTopicRequest {
        /// Topic.
        pub topic: String => str16,
        /// Partition count; 0 = 1, negative is an error.
        pub partitions: i32 => i32,
    }
}

/// FETCH (0x07) and FETCH_BINARY (0x0B):
/// `str16 topic | i32 partition | u64 offset | i32 max_messages | [str16 filter]`.
/// The filter is optional on decode (absent = empty) and always encoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchRequest {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// First offset to read.
    pub offset: u64,
    /// Maximum records to return; <= 0 means 10.
    pub max_messages: i32,
    /// Record filter (JSON path, substring or regex); empty = none.
    pub filter: String,
}

impl Wire for FetchRequest {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let topic = r.str16()?;
        let partition = r.i32()?;
        let offset = r.u64()?;
        let max_messages = r.i32()?;
        let filter = if r.remaining() >= 2 { r.str16()? } else { String::new() };
        Ok(FetchRequest {
            topic,
            partition,
            offset,
            max_messages,
            filter,
        })
    }

    fn write(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        write_str16(out, &self.topic)?;
        out.put_i32(self.partition);
        out.put_u64(self.offset);
        out.put_i32(self.max_messages);
        write_str16(out, &self.filter)
    }
}

wire_struct! {
    /// PRODUCE_DELAYED (0x30): `str16 topic | bytes32 data | u64 delay_ms`.
    pub struct ProduceDelayedRequest {
        /// Topic.
        pub topic: String => str16,
        /// Record value.
        pub data: Bytes => bytes32,
        /// Delay before the record becomes visible, in milliseconds.
        pub delay_ms: u64 => u64,
    }
}

wire_struct! {
    /// PRODUCE_WITH_TTL (0x35): `str16 topic | bytes32 data | u64 ttl_ms`.
    pub struct ProduceWithTtlRequest {
        /// Topic.
        pub topic: String => str16,
        /// Record value.
        pub data: Bytes => bytes32,
        /// Time to live in milliseconds.
        pub ttl_ms: u64 => u64,
    }
}

wire_struct! {
    /// SEEK_TO_TIMESTAMP (0x66, FlyMQ extension):
    /// `str16 topic | i32 partition | i64 timestamp_ms`.
    pub struct SeekToTimestampRequest {
        /// Topic.
        pub topic: String => str16,
        /// Partition.
        pub partition: i32 => i32,
        /// Timestamp in milliseconds since the epoch.
        pub timestamp_ms: i64 => i64,
    }
}

wire_struct! {
    /// One record of a PRODUCE_BATCH request: `bytes32 key | bytes32 value`.
    pub struct BatchRecord {
        /// Key; empty = no key.
        pub key: Bytes => bytes32,
        /// Value.
        pub value: Bytes => bytes32,
    }
}

/// PRODUCE_BATCH (0x90, FlyMQ extension):
/// `str16 topic | i32 partition | u32 count | count × (bytes32 key | bytes32 value)`.
///
/// All records go to one partition (`-1` = the server chooses one for the
/// whole batch). `count` must be at least 1 and must match the payload
/// exactly (no trailing bytes), otherwise decoding fails.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ProduceBatchRequest {
    /// Topic.
    pub topic: String,
    /// Partition, or -1.
    pub partition: i32,
    /// Records, in order.
    pub records: Vec<BatchRecord>,
}

/// Smallest encoded record: two empty `bytes32`.
const MIN_BATCH_RECORD_LEN: usize = 8;

impl Wire for ProduceBatchRequest {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let topic = r.str16()?;
        let partition = r.i32()?;
        let count = r.u32()? as usize;
        let mismatch = || DecodeError::InvalidFormat(format!("PRODUCE_BATCH count {count} does not match the payload"));
        if count == 0 {
            return Err(DecodeError::InvalidFormat(
                "PRODUCE_BATCH needs at least one record".into(),
            ));
        }
        if count > r.remaining() / MIN_BATCH_RECORD_LEN {
            return Err(mismatch());
        }
        let mut records = Vec::with_capacity(count);
        for _ in 0..count {
            records.push(BatchRecord::read(r).map_err(|_| mismatch())?);
        }
        if !r.is_empty() {
            return Err(mismatch());
        }
        Ok(ProduceBatchRequest {
            topic,
            partition,
            records,
        })
    }

    fn write(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        if self.records.is_empty() {
            return Err(EncodeError::InvalidValue(
                "PRODUCE_BATCH needs at least one record".into(),
            ));
        }
        write_str16(out, &self.topic)?;
        out.put_i32(self.partition);
        write_wire_list(out, &self.records)
    }
}

wire_struct! {
    /// RecordMetadata (§8.1), the success reply of PRODUCE and of
    /// PRODUCE_WITH_SCHEMA, PRODUCE_DELAYED, PRODUCE_WITH_TTL, PRODUCE_TX.
    pub struct RecordMetadata {
        /// Topic written.
        pub topic: String => str16,
        /// Partition written.
        pub partition: i32 => i32,
        /// Offset assigned.
        pub offset: u64 => u64,
        /// Server wall clock, ms since the epoch.
        pub timestamp: i64 => i64,
        /// -1 when the key is empty, else the key length.
        pub key_size: i32 => i32,
        /// Value length.
        pub value_size: i32 => i32,
    }
}

impl RecordMetadata {
    /// Metadata for a record with this key and value (`key_size` is -1 for an empty key).
    pub fn new(
        topic: impl Into<String>,
        partition: i32,
        offset: u64,
        timestamp: i64,
        key: &[u8],
        value: &[u8],
    ) -> Self {
        RecordMetadata {
            topic: topic.into(),
            partition,
            offset,
            timestamp,
            key_size: if key.is_empty() { -1 } else { saturating_i32(key.len()) },
            value_size: saturating_i32(value.len()),
        }
    }
}

fn saturating_i32(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

wire_struct! {
    /// CONSUME / CONSUME_ZERO_COPY reply: `bytes32 key | bytes32 value`.
    pub struct ConsumeResponse {
        /// Key; empty = none.
        pub key: Bytes => bytes32,
        /// Value.
        pub value: Bytes => bytes32,
    }
}

wire_struct! {
    /// One record in a FETCH reply: `u64 offset | bytes32 key | bytes32 value`.
    pub struct FetchedRecord {
        /// Offset of the record.
        pub offset: u64 => u64,
        /// Key; empty = none.
        pub key: Bytes => bytes32,
        /// Value.
        pub value: Bytes => bytes32,
    }
}

/// FETCH / FETCH_BINARY reply: `u32 count | u64 next_offset | count × record`.
///
/// To encode a reply straight from storage without building this struct,
/// use [`FetchResponseWriter`](crate::FetchResponseWriter).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FetchResponse {
    /// Offset to fetch next.
    pub next_offset: u64,
    /// Records returned.
    pub records: Vec<FetchedRecord>,
}

impl Wire for FetchResponse {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let count = r.u32()? as usize;
        let next_offset = r.u64()?;
        let mut records = Vec::with_capacity(count.min(r.remaining() / 16));
        for _ in 0..count {
            records.push(FetchedRecord::read(r)?);
        }
        Ok(FetchResponse { next_offset, records })
    }

    fn write(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        write_len32(out, self.records.len(), "fetch record list")?;
        out.put_u64(self.next_offset);
        for rec in &self.records {
            rec.write(out)?;
        }
        Ok(())
    }
}

wire_struct! {
    /// LIST_TOPICS reply: `list32<str16>`.
    pub struct ListTopicsResponse {
        /// Topic names, sorted, without internal `__*` topics.
        pub topics: Vec<String> => str16_list,
    }
}

wire_struct! {
    /// One partition in the METADATA (0x04) reply (Go's unused codec).
    pub struct PartitionInfo {
        /// Partition id.
        pub id: i32 => i32,
        /// Leader broker id.
        pub leader: i32 => i32,
        /// Oldest retained offset.
        pub oldest_offset: u64 => u64,
        /// Newest offset.
        pub newest_offset: u64 => u64,
    }
}

wire_struct! {
    /// METADATA (0x04) reply: `str16 topic | list32<i32 id, i32 leader, u64 oldest, u64 newest>`.
    pub struct MetadataResponse {
        /// Topic.
        pub topic: String => str16,
        /// Partitions.
        pub partitions: Vec<PartitionInfo> => list,
    }
}

wire_struct! {
    /// A reply carrying one `u64` offset: SUBSCRIBE (start offset),
    /// GET_OFFSET (committed offset), SEEK_TO_TIMESTAMP (first offset whose
    /// timestamp is >= the requested one, or the log end).
    pub struct OffsetResponse {
        /// The offset.
        pub offset: u64 => u64,
    }
}

wire_struct! {
    /// PRODUCE_BATCH (0x90) reply:
    /// `str16 topic | i32 partition | u64 base_offset | u32 count | i64 timestamp`.
    /// Records got offsets `base_offset .. base_offset + count - 1`.
    pub struct ProduceBatchResponse {
        /// Topic.
        pub topic: String => str16,
        /// Partition written.
        pub partition: i32 => i32,
        /// Offset of the first record.
        pub base_offset: u64 => u64,
        /// Number of records written.
        pub count: u32 => u32,
        /// Server wall clock, ms since the epoch.
        pub timestamp: i64 => i64,
    }
}
