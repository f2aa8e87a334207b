//! Decoding records without copying their keys and values.
//!
//! A follower receives thousands of records per replication request. Decoded
//! the usual way, every key and value becomes its own heap allocation (and,
//! once applied, its own free). Decoded inside [`decode_within`], a record's
//! bytes become a slice of the request's buffer instead: one reference-count
//! increment, no copy. The buffer stays alive while any slice of it does
//! (at most one request's worth beyond what the slices add up to).

use std::cell::RefCell;
use std::fmt;

use bytes::Bytes;
use serde::Deserializer;
use serde::de::{SeqAccess, Visitor};

thread_local! {
    /// The buffer being decoded on this thread, if any.
    static SOURCE: RefCell<Option<Bytes>> = const { RefCell::new(None) };
}

/// Runs `decode` on `source`'s bytes; fields deserialized with [`bytes`]
/// inside it borrow from `source` instead of copying.
pub fn decode_within<R>(source: &Bytes, decode: impl FnOnce(&[u8]) -> R) -> R {
    struct Reset(Option<Bytes>);
    impl Drop for Reset {
        fn drop(&mut self) {
            SOURCE.with(|s| *s.borrow_mut() = self.0.take());
        }
    }
    // Restores what was there before (nested decodes, or a panic in `decode`).
    let _reset = Reset(SOURCE.with(|s| s.borrow_mut().replace(source.clone())));
    decode(source)
}

/// A slice of the buffer being decoded when `bytes` lies inside it.
fn shared(bytes: &[u8]) -> Option<Bytes> {
    SOURCE.with(|s| {
        let source = s.borrow();
        let source = source.as_ref()?;
        let start = source.as_ptr() as usize;
        let at = bytes.as_ptr() as usize;
        let inside = !bytes.is_empty() && at >= start && at + bytes.len() <= start + source.len();
        inside.then(|| source.slice_ref(bytes))
    })
}

/// `#[serde(deserialize_with = ...)]` for a `Bytes` field: the same encoding
/// as `Bytes`'s own, zero-copy within [`decode_within`].
pub fn bytes<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Bytes, D::Error> {
    deserializer.deserialize_bytes(BytesVisitor)
}

struct BytesVisitor;

impl<'de> Visitor<'de> for BytesVisitor {
    type Value = Bytes;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a byte string")
    }

    fn visit_borrowed_bytes<E>(self, v: &'de [u8]) -> Result<Bytes, E> {
        Ok(shared(v).unwrap_or_else(|| Bytes::copy_from_slice(v)))
    }

    fn visit_bytes<E>(self, v: &[u8]) -> Result<Bytes, E> {
        Ok(Bytes::copy_from_slice(v))
    }

    fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Bytes, E> {
        Ok(Bytes::from(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Bytes, A::Error> {
        let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(4096));
        while let Some(byte) = seq.next_element::<u8>()? {
            out.push(byte);
        }
        Ok(Bytes::from(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Record {
        #[serde(deserialize_with = "bytes")]
        key: Bytes,
        #[serde(deserialize_with = "bytes")]
        value: Bytes,
    }

    fn record(key: &'static [u8], value: &'static [u8]) -> Record {
        Record {
            key: Bytes::from_static(key),
            value: Bytes::from_static(value),
        }
    }

    #[test]
    fn inside_decode_within_values_are_slices_of_the_source() {
        let records = vec![record(b"k1", b"value one"), record(b"", b"value two")];
        let source = Bytes::from(postcard::to_allocvec(&records).unwrap());
        let decoded: Vec<Record> = decode_within(&source, |b| postcard::from_bytes(b).unwrap());
        assert_eq!(decoded, records);
        let range = source.as_ptr() as usize..source.as_ptr() as usize + source.len();
        assert!(range.contains(&(decoded[0].value.as_ptr() as usize)));
        assert!(range.contains(&(decoded[1].value.as_ptr() as usize)));
        // The buffer outlives the source handle while a slice holds it.
        drop(source);
        assert_eq!(&decoded[1].value[..], b"value two");
    }

    #[test]
    fn outside_decode_within_values_are_copies_in_the_same_encoding() {
        let original = record(b"k", b"v");
        let encoded = postcard::to_allocvec(&original).unwrap();
        let decoded: Record = postcard::from_bytes(&encoded).unwrap();
        assert_eq!(decoded, original);
        let range = encoded.as_ptr() as usize..encoded.as_ptr() as usize + encoded.len();
        assert!(!range.contains(&(decoded.value.as_ptr() as usize)));
        // A plain `Bytes` field reads what these fields write and the other way round.
        let plain: (Bytes, Bytes) = postcard::from_bytes(&encoded).unwrap();
        assert_eq!(plain, (original.key.clone(), original.value.clone()));
        let back: Record = postcard::from_bytes(&postcard::to_allocvec(&plain).unwrap()).unwrap();
        assert_eq!(back, original);
    }

    #[test]
    fn the_source_is_cleared_after_decoding() {
        let source = Bytes::from(postcard::to_allocvec(&record(b"k", b"v")).unwrap());
        let _: Record = decode_within(&source, |b| postcard::from_bytes(b).unwrap());
        assert!(SOURCE.with(|s| s.borrow().is_none()));
        // A slice that is not inside the source is copied.
        let other = Bytes::from(postcard::to_allocvec(&record(b"a", b"b")).unwrap());
        let decoded: Record = decode_within(&source, |_| postcard::from_bytes(&other).unwrap());
        assert_eq!(decoded, record(b"a", b"b"));
    }
}
