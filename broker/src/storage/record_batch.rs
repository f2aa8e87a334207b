//! The value stored under one `log` key: a batch of consecutive records.
//!
//! Storing a produced batch as one RocksDB value (rather than one key per
//! record) keeps the write path at one key per partition per group commit and
//! lets a fetch decode many records from one block read. A record is found by
//! seeking to the last batch whose first offset is not after it.
//!
//! Layout (all big-endian):
//! ```text
//! u8  format (1)
//! u32 record count
//! i64 max timestamp (ms)   -- retention by time looks only at this
//! count x ( i64 timestamp | u8 flags | u32 key len | key | u32 value len | value )
//! ```
//!
//! Flag bits add 8-byte fields before the payload, in this order:
//! - bit 0, `FLAG_EXPIRES`: the i64 expiry time (ms since the epoch) of a
//!   record with a time to live;
//! - bit 1, `FLAG_DELAYED`: the i64 due time of a scheduled record (never
//!   returned to readers; a copy is appended when it is due);
//! - bit 2, `FLAG_RELEASED`: the u64 offset of the scheduled record this
//!   record is the delivered copy of;
//! - bit 3, `FLAG_TXN`: the u64 sequence number of the committed
//!   transaction whose records this record starts (first record of each
//!   partition's share of a multi-partition transaction).
//!
//! Readers see only the rest (`RecordRef::payload`).
//!
//! With encryption at rest (`storage::crypto`) the stored value is format 2:
//! the same 13-byte header (format byte 2), then the records sealed with
//! AES-256-GCM. The header stays readable (retention, time seeks); records
//! are parsed only from a format 1 value.

use thiserror::Error;

/// Format byte of a plaintext batch.
pub const FORMAT_PLAIN: u8 = 1;
/// Format byte of a stored batch whose records are encrypted.
pub const FORMAT_SEALED: u8 = 2;
const FORMAT_V1: u8 = FORMAT_PLAIN;
/// Bytes of the batch header (format, count, max timestamp).
pub const BATCH_HEADER_LEN: usize = 1 + 4 + 8;
const HEADER_LEN: usize = BATCH_HEADER_LEN;
/// Per-record framing bytes in a batch value.
pub const RECORD_OVERHEAD: usize = 8 + 1 + 4 + 4;

#[derive(Debug, Error, PartialEq, Eq)]
pub enum BatchError {
    #[error("record batch is corrupt: {0}")]
    Corrupt(&'static str),
    #[error("record batch has unknown format {0}")]
    UnknownFormat(u8),
}

/// Flags bit: the value starts with an 8-byte expiry time (TTL records).
pub const FLAG_EXPIRES: u8 = 0x01;
/// Flags bit: a scheduled (delayed) record; its field is the due time.
pub const FLAG_DELAYED: u8 = 0x02;
/// Flags bit: the delivered copy of a scheduled record; its field is the
/// scheduled record's offset.
pub const FLAG_RELEASED: u8 = 0x04;
/// Flags bit: the first record a committed transaction delivered to this
/// partition; its field is the transaction's sequence number.
pub const FLAG_TXN: u8 = 0x08;
/// Flags whose 8-byte field precedes the payload (in bit order).
const PREFIX_FLAGS: u8 = FLAG_EXPIRES | FLAG_DELAYED | FLAG_RELEASED | FLAG_TXN;
/// Bytes of the expiry prefix of a `FLAG_EXPIRES` value.
pub const EXPIRY_LEN: usize = 8;

/// Bytes of the fields before the payload for `flags`.
fn prefix_len(flags: u8) -> usize {
    8 * (flags & PREFIX_FLAGS).count_ones() as usize
}

/// The 8-byte field of `flag` in a stored value with `flags`, if present.
pub fn record_field(flags: u8, value: &[u8], flag: u8) -> Option<[u8; 8]> {
    if flags & flag == 0 {
        return None;
    }
    let at = prefix_len(flags & (flag - 1));
    value.get(at..at + 8)?.try_into().ok()
}

/// The stored value of a record with `flag`'s field `field`, prepended to
/// `value` (which may already carry the fields of higher flag bits).
pub fn with_field(field: [u8; 8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&field);
    out.extend_from_slice(value);
    out
}

/// `value` (stored with `flags`) with `flag`'s field inserted at its place
/// in bit order; returns the new flags and value.
pub fn insert_field(flags: u8, value: &[u8], flag: u8, field: [u8; 8]) -> (u8, Vec<u8>) {
    let at = prefix_len(flags & (flag - 1)).min(value.len());
    let mut out = Vec::with_capacity(8 + value.len());
    out.extend_from_slice(&value[..at]);
    out.extend_from_slice(&field);
    out.extend_from_slice(&value[at..]);
    (flags | flag, out)
}

/// The stored value of a record that expires at `expires_at_ms`.
pub fn expiring_value(expires_at_ms: i64, payload: &[u8]) -> Vec<u8> {
    let mut value = Vec::with_capacity(EXPIRY_LEN + payload.len());
    value.extend_from_slice(&expires_at_ms.to_be_bytes());
    value.extend_from_slice(payload);
    value
}

/// Builds one batch value incrementally.
#[derive(Debug)]
pub struct BatchBuilder {
    buf: Vec<u8>,
    count: u32,
    max_timestamp: i64,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    pub fn new() -> Self {
        let mut buf = Vec::with_capacity(4096);
        buf.push(FORMAT_V1);
        buf.extend_from_slice(&[0u8; 12]);
        Self {
            buf,
            count: 0,
            max_timestamp: i64::MIN,
        }
    }

    /// Makes room for `bytes` more of records (`RECORD_OVERHEAD` each included).
    pub fn reserve(&mut self, bytes: usize) {
        self.buf.reserve(bytes);
    }

    pub fn push(&mut self, timestamp: i64, flags: u8, key: &[u8], value: &[u8]) {
        self.buf.reserve(RECORD_OVERHEAD + key.len() + value.len());
        self.buf.extend_from_slice(&timestamp.to_be_bytes());
        self.buf.push(flags);
        self.buf.extend_from_slice(&(key.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(key);
        self.buf.extend_from_slice(&(value.len() as u32).to_be_bytes());
        self.buf.extend_from_slice(value);
        self.count += 1;
        self.max_timestamp = self.max_timestamp.max(timestamp);
    }

    pub fn len(&self) -> u32 {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn finish(mut self) -> Vec<u8> {
        self.buf[1..5].copy_from_slice(&self.count.to_be_bytes());
        self.buf[5..13].copy_from_slice(&self.max_timestamp.to_be_bytes());
        self.buf
    }
}

/// One record read from a batch; borrows from the batch value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    pub timestamp: i64,
    pub flags: u8,
    pub key: &'a [u8],
    pub value: &'a [u8],
}

impl<'a> RecordRef<'a> {
    /// The 8-byte field of `flag`, when the record has it.
    fn field(&self, flag: u8) -> Option<[u8; 8]> {
        record_field(self.flags, self.value, flag)
    }

    /// When the record expires (ms since the epoch), for TTL records.
    pub fn expires_at(&self) -> Option<i64> {
        self.field(FLAG_EXPIRES).map(i64::from_be_bytes)
    }

    /// When a scheduled record is due (ms since the epoch).
    pub fn due_at(&self) -> Option<i64> {
        self.field(FLAG_DELAYED).map(i64::from_be_bytes)
    }

    /// The offset of the scheduled record this record delivers.
    pub fn released_from(&self) -> Option<u64> {
        self.field(FLAG_RELEASED).map(u64::from_be_bytes)
    }

    /// The sequence number of the transaction this record's share starts with.
    pub fn txn_seq(&self) -> Option<u64> {
        self.field(FLAG_TXN).map(u64::from_be_bytes)
    }

    /// A scheduled record: never returned to readers (its copy is).
    pub fn is_scheduled(&self) -> bool {
        self.flags & FLAG_DELAYED != 0
    }

    /// Whether the record has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at().is_some_and(|at| at <= now_ms)
    }

    /// The value the producer sent (without the expiry prefix).
    pub fn payload(&self) -> &'a [u8] {
        self.value.get(prefix_len(self.flags)..).unwrap_or(&[])
    }
}

/// Header fields of a batch value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub count: u32,
    pub max_timestamp: i64,
}

pub fn read_header(value: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = value.get(..HEADER_LEN).ok_or(BatchError::Corrupt("short header"))?;
    if header[0] != FORMAT_V1 && header[0] != FORMAT_SEALED {
        return Err(BatchError::UnknownFormat(header[0]));
    }
    let count = u32::from_be_bytes(header[1..5].try_into().map_err(|_| BatchError::Corrupt("count"))?);
    let max_timestamp = i64::from_be_bytes(header[5..13].try_into().map_err(|_| BatchError::Corrupt("timestamp"))?);
    Ok(BatchHeader { count, max_timestamp })
}

/// Iterates the records of a batch value in offset order.
pub struct BatchReader<'a> {
    rest: &'a [u8],
    remaining: u32,
}

impl<'a> BatchReader<'a> {
    pub fn new(value: &'a [u8]) -> Result<(BatchHeader, Self), BatchError> {
        let header = read_header(value)?;
        if value[0] != FORMAT_V1 {
            return Err(BatchError::UnknownFormat(value[0]));
        }
        Ok((
            header,
            Self {
                rest: &value[HEADER_LEN..],
                remaining: header.count,
            },
        ))
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], BatchError> {
        if self.rest.len() < n {
            return Err(BatchError::Corrupt("truncated record"));
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    fn take_u32(&mut self) -> Result<usize, BatchError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]) as usize)
    }
}

impl<'a> Iterator for BatchReader<'a> {
    type Item = Result<RecordRef<'a>, BatchError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        let mut read = || -> Result<RecordRef<'a>, BatchError> {
            let ts = self.take(8)?;
            let timestamp = i64::from_be_bytes(ts.try_into().map_err(|_| BatchError::Corrupt("ts"))?);
            let flags = self.take(1)?[0];
            let key_len = self.take_u32()?;
            let key = self.take(key_len)?;
            let value_len = self.take_u32()?;
            let value = self.take(value_len)?;
            Ok(RecordRef {
                timestamp,
                flags,
                key,
                value,
            })
        };
        let record = read();
        if record.is_err() {
            self.remaining = 0;
        }
        Some(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiring_records_show_their_payload_and_expiry() {
        let mut builder = BatchBuilder::new();
        builder.push(10, FLAG_EXPIRES, b"k", &expiring_value(1_000, b"soon gone"));
        builder.push(11, 0, b"", b"plain");
        let value = builder.finish();
        let (_, reader) = BatchReader::new(&value).unwrap();
        let records: Vec<_> = reader.map(Result::unwrap).collect();
        assert_eq!(records[0].payload(), b"soon gone");
        assert_eq!(records[0].expires_at(), Some(1_000));
        assert!(!records[0].is_expired(999));
        assert!(records[0].is_expired(1_000));
        assert_eq!(records[1].payload(), b"plain");
        assert_eq!(records[1].expires_at(), None);
        assert!(!records[1].is_expired(i64::MAX));
    }

    #[test]
    fn fields_stack_in_flag_order_before_the_payload() {
        let scheduled = with_field(5_000i64.to_be_bytes(), b"later");
        let copy = with_field(9_000i64.to_be_bytes(), &with_field(42u64.to_be_bytes(), b"later"));
        let mut builder = BatchBuilder::new();
        builder.push(1, FLAG_DELAYED, b"", &scheduled);
        builder.push(2, FLAG_EXPIRES | FLAG_RELEASED, b"", &copy);
        let value = builder.finish();
        let (_, reader) = BatchReader::new(&value).unwrap();
        let records: Vec<_> = reader.map(Result::unwrap).collect();
        assert!(records[0].is_scheduled());
        assert_eq!(records[0].due_at(), Some(5_000));
        assert_eq!(records[0].payload(), b"later");
        assert!(!records[1].is_scheduled());
        assert_eq!(records[1].expires_at(), Some(9_000));
        assert_eq!(records[1].released_from(), Some(42));
        assert_eq!(records[1].payload(), b"later");
    }

    #[test]
    fn an_inserted_transaction_field_goes_after_the_expiry_and_before_the_payload() {
        let expiring = expiring_value(7_000, b"paid");
        let (flags, value) = insert_field(FLAG_EXPIRES, &expiring, FLAG_TXN, 3u64.to_be_bytes());
        let mut builder = BatchBuilder::new();
        builder.push(1, flags, b"", &value);
        let (plain_flags, plain) = insert_field(0, b"plain", FLAG_TXN, 4u64.to_be_bytes());
        builder.push(2, plain_flags, b"", &plain);
        let value = builder.finish();
        let (_, reader) = BatchReader::new(&value).unwrap();
        let records: Vec<_> = reader.map(Result::unwrap).collect();
        assert_eq!(records[0].expires_at(), Some(7_000));
        assert_eq!(records[0].txn_seq(), Some(3));
        assert_eq!(records[0].payload(), b"paid");
        assert_eq!(records[1].txn_seq(), Some(4));
        assert_eq!(records[1].payload(), b"plain");
    }

    #[test]
    fn batch_round_trips() {
        let mut builder = BatchBuilder::new();
        builder.push(10, 0, b"", b"first");
        builder.push(12, 1, b"k", b"");
        builder.push(11, 0, b"key", b"third");
        let value = builder.finish();
        let (header, reader) = BatchReader::new(&value).unwrap();
        assert_eq!(
            header,
            BatchHeader {
                count: 3,
                max_timestamp: 12
            }
        );
        let records: Vec<_> = reader.map(Result::unwrap).collect();
        assert_eq!(records.len(), 3);
        assert_eq!(
            records[0],
            RecordRef {
                timestamp: 10,
                flags: 0,
                key: b"",
                value: b"first"
            }
        );
        assert_eq!(records[1].key, b"k");
        assert_eq!(records[2].value, b"third");
    }

    #[test]
    fn corrupt_batches_are_errors_not_panics() {
        let mut builder = BatchBuilder::new();
        builder.push(1, 0, b"key", b"value");
        let value = builder.finish();
        for cut in 0..value.len() {
            match BatchReader::new(&value[..cut]) {
                Err(_) => {}
                Ok((_, reader)) => assert!(reader.into_iter().any(|r| r.is_err())),
            }
        }
        let mut wrong = value.clone();
        wrong[0] = 9;
        assert_eq!(read_header(&wrong).unwrap_err(), BatchError::UnknownFormat(9));
    }
}
