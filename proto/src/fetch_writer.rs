//! Encode a FETCH reply frame straight from storage, without building a
//! `Vec` of owned records first (the broker's read hot path).

use bytes::{BufMut, BytesMut};

use crate::frame::{FLAG_BINARY, HEADER_LEN, MAX_PAYLOAD, begin_frame};
use crate::opcode::Opcode;

/// Bytes of a FETCH payload before the first record: `u32 count | u64 next_offset`.
const FETCH_PREFIX_LEN: usize = 12;
/// Per-record overhead: `u64 offset | u32 key_len | u32 value_len`.
const RECORD_OVERHEAD: usize = 16;

/// Writes one FETCH (or FETCH_BINARY) reply frame into a buffer, record by record.
///
/// ```
/// use bytes::BytesMut;
/// use flymq_proto::{FetchResponseWriter, Frame, Response};
///
/// let mut out = BytesMut::new();
/// let mut w = FetchResponseWriter::new(&mut out);
/// assert!(w.push(7, b"", b"hello"));
/// w.finish(8);
///
/// let frame = Frame::decode(&mut out).unwrap().unwrap();
/// let Response::Fetch(fetch) = Response::decode_bytes(frame.opcode, frame.payload).unwrap() else {
///     panic!("not a fetch reply");
/// };
/// assert_eq!(fetch.next_offset, 8);
/// assert_eq!(&fetch.records[0].value[..], b"hello");
/// ```
///
/// The frame is only valid after [`finish`](Self::finish); a writer
/// dropped without it leaves an incomplete frame in the buffer.
#[derive(Debug)]
pub struct FetchResponseWriter<'a> {
    out: &'a mut BytesMut,
    start: usize,
    count: u32,
    max_payload: usize,
}

impl<'a> FetchResponseWriter<'a> {
    /// Start a FETCH (0x07) reply frame at the end of `out`.
    pub fn new(out: &'a mut BytesMut) -> Self {
        Self::with_opcode(out, Opcode::Fetch)
    }

    /// Start a reply frame with another opcode using the FETCH layout
    /// (FETCH_BINARY, 0x0B).
    pub fn with_opcode(out: &'a mut BytesMut, opcode: Opcode) -> Self {
        let start = begin_frame(out, opcode.code(), FLAG_BINARY);
        out.put_u32(0); // count, patched by finish
        out.put_u64(0); // next_offset, patched by finish
        FetchResponseWriter {
            out,
            start,
            count: 0,
            max_payload: MAX_PAYLOAD,
        }
    }

    /// Lower the payload budget below 32 MiB (values above it are clamped).
    pub fn with_max_payload(mut self, max_payload: usize) -> Self {
        self.max_payload = max_payload.clamp(FETCH_PREFIX_LEN, MAX_PAYLOAD);
        self
    }

    /// Current payload length in bytes.
    pub fn payload_len(&self) -> usize {
        self.out.len() - self.start - HEADER_LEN
    }

    /// Records written so far.
    pub fn count(&self) -> u32 {
        self.count
    }

    /// Append one record. Returns `false`, writing nothing, when the record
    /// would push the payload over the budget: stop there and call
    /// [`finish`](Self::finish) with the offset of the record not written.
    pub fn push(&mut self, offset: u64, key: &[u8], value: &[u8]) -> bool {
        let needed = RECORD_OVERHEAD + key.len() + value.len();
        if self.count == u32::MAX || self.payload_len() + needed > self.max_payload {
            return false;
        }
        // Both lengths fit u32: they are bounded by max_payload <= 32 MiB.
        self.out.reserve(needed);
        self.out.put_u64(offset);
        self.out.put_u32(key.len() as u32);
        self.out.put_slice(key);
        self.out.put_u32(value.len() as u32);
        self.out.put_slice(value);
        self.count += 1;
        true
    }

    /// Complete the frame: patch the record count, `next_offset` and the frame length.
    pub fn finish(self, next_offset: u64) {
        let len = self.payload_len() as u32;
        let s = self.start;
        self.out[s + 4..s + HEADER_LEN].copy_from_slice(&len.to_be_bytes());
        let p = s + HEADER_LEN;
        self.out[p..p + 4].copy_from_slice(&self.count.to_be_bytes());
        self.out[p + 4..p + FETCH_PREFIX_LEN].copy_from_slice(&next_offset.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::{FetchResponse, FetchedRecord, Frame, Response};

    #[test]
    fn writer_output_equals_the_generic_encoder() {
        let records = vec![
            FetchedRecord {
                offset: 3,
                key: Bytes::from_static(b"k"),
                value: Bytes::from_static(b"v1"),
            },
            FetchedRecord {
                offset: 5,
                key: Bytes::new(),
                value: Bytes::from_static(b"value-2"),
            },
        ];
        let mut via_writer = BytesMut::from(&b"prefix"[..]);
        let mut w = FetchResponseWriter::new(&mut via_writer);
        for r in &records {
            assert!(w.push(r.offset, &r.key, &r.value));
        }
        assert_eq!(w.count(), 2);
        w.finish(6);

        let mut via_enum = BytesMut::from(&b"prefix"[..]);
        Response::Fetch(FetchResponse {
            next_offset: 6,
            records,
        })
        .encode_frame(&mut via_enum)
        .unwrap();
        assert_eq!(via_writer, via_enum);
    }

    #[test]
    fn empty_reply_and_binary_opcode() {
        let mut out = BytesMut::new();
        FetchResponseWriter::with_opcode(&mut out, Opcode::FetchBinary).finish(42);
        let f = Frame::decode(&mut out).unwrap().unwrap();
        assert_eq!(f.opcode, 0x0B);
        assert_eq!(
            Response::decode_bytes(f.opcode, f.payload).unwrap(),
            Response::FetchBinary(FetchResponse {
                next_offset: 42,
                records: vec![],
            })
        );
    }

    #[test]
    fn push_refuses_records_over_the_budget() {
        let mut out = BytesMut::new();
        let mut w = FetchResponseWriter::new(&mut out).with_max_payload(12 + 16 + 10);
        assert!(w.push(0, b"", &[1u8; 10]));
        assert!(!w.push(1, b"", b"x"));
        assert_eq!(w.count(), 1);
        w.finish(1);
        let f = Frame::decode(&mut out).unwrap().unwrap();
        assert_eq!(f.payload.len(), 38);

        // The real 32 MiB budget.
        let mut out = BytesMut::new();
        let mut w = FetchResponseWriter::new(&mut out);
        let big = vec![0u8; MAX_PAYLOAD / 2];
        assert!(w.push(0, b"", &big));
        assert!(!w.push(1, b"", &big));
        w.finish(1);
        let f = Frame::decode(&mut out).unwrap().unwrap();
        assert!(f.payload.len() <= MAX_PAYLOAD);
    }
}
