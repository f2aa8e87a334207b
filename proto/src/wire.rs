//! Primitive encodings of WIRE.md §3: big-endian integers, `str8`, `str16`,
//! `bytes32` and `list32`.
//!
//! [`Reader`] never panics on short input: every read checks the remaining
//! length and returns [`DecodeError::BufferTooSmall`]. Byte fields are sliced
//! out of the underlying [`Bytes`] without copying.
//!
//! The `write_*` functions reject lengths their prefix cannot express
//! ([`EncodeError`]) instead of truncating them as the Go encoders do.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError};

/// Initial capacity cap for lists, so a forged count cannot make us allocate
/// gigabytes before the payload runs out.
const MAX_PREALLOC: usize = 1024;

/// A value with a fixed wire layout that can be read from and written to a payload.
pub trait Wire: Sized {
    /// Read one value, advancing the reader.
    fn read(r: &mut Reader) -> Result<Self, DecodeError>;
    /// Append the value's bytes to `out`.
    fn write(&self, out: &mut BytesMut) -> Result<(), EncodeError>;
}

/// Cursor over a payload. Byte fields are zero-copy slices of the payload.
#[derive(Debug, Clone)]
pub struct Reader {
    buf: Bytes,
    pos: usize,
}

impl Reader {
    /// Start reading at the beginning of `buf`.
    pub fn new(buf: Bytes) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Whether every byte has been read.
    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Look at the next `n` bytes without consuming them.
    pub fn peek(&self, n: usize) -> Result<&[u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::BufferTooSmall);
        }
        Ok(&self.buf[self.pos..self.pos + n])
    }

    fn take(&mut self, n: usize) -> Result<&[u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::BufferTooSmall);
        }
        let start = self.pos;
        self.pos += n;
        Ok(&self.buf[start..self.pos])
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut arr = [0u8; N];
        arr.copy_from_slice(self.take(N)?);
        Ok(arr)
    }

    /// Zero-copy slice of the next `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<Bytes, DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::BufferTooSmall);
        }
        let start = self.pos;
        self.pos += n;
        Ok(self.buf.slice(start..self.pos))
    }

    /// Everything not read yet (zero-copy).
    pub fn rest(&mut self) -> Bytes {
        let rest = self.buf.slice(self.pos..);
        self.pos = self.buf.len();
        rest
    }

    /// One byte.
    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take_array::<1>()?[0])
    }

    /// A boolean byte: `1` is true, anything else false (Go and pyflymq test `== 1`).
    pub fn bool(&mut self) -> Result<bool, DecodeError> {
        Ok(self.u8()? == 1)
    }

    /// Big-endian u16.
    pub fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take_array()?))
    }

    /// Big-endian u32.
    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take_array()?))
    }

    /// Big-endian i32.
    pub fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(i32::from_be_bytes(self.take_array()?))
    }

    /// Big-endian u64.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.take_array()?))
    }

    /// Big-endian i64.
    pub fn i64(&mut self) -> Result<i64, DecodeError> {
        Ok(i64::from_be_bytes(self.take_array()?))
    }

    fn string(&mut self, len: usize, field: &'static str) -> Result<String, DecodeError> {
        let raw = self.take(len)?;
        std::str::from_utf8(raw)
            .map(str::to_owned)
            .map_err(|_| DecodeError::InvalidUtf8 { field })
    }

    /// `str16`: u16 length + UTF-8 bytes.
    pub fn str16(&mut self) -> Result<String, DecodeError> {
        let len = self.u16()? as usize;
        self.string(len, "str16")
    }

    /// `str8`: u8 length + UTF-8 bytes.
    pub fn str8(&mut self) -> Result<String, DecodeError> {
        let len = self.u8()? as usize;
        self.string(len, "str8")
    }

    /// `bytes32`: u32 length + raw bytes (zero-copy).
    pub fn bytes32(&mut self) -> Result<Bytes, DecodeError> {
        let len = self.u32()? as usize;
        self.bytes(len)
    }

    /// `list32<T>`: u32 count + `count` elements read by `item`.
    pub fn list32<T>(
        &mut self,
        mut item: impl FnMut(&mut Reader) -> Result<T, DecodeError>,
    ) -> Result<Vec<T>, DecodeError> {
        let count = self.u32()? as usize;
        let mut items = Vec::with_capacity(count.min(MAX_PREALLOC));
        for _ in 0..count {
            items.push(item(self)?);
        }
        Ok(items)
    }

    /// `list32<str16>`.
    pub fn str16_list(&mut self) -> Result<Vec<String>, DecodeError> {
        self.list32(Reader::str16)
    }

    /// `list32<str8>`.
    pub fn str8_list(&mut self) -> Result<Vec<String>, DecodeError> {
        self.list32(Reader::str8)
    }

    /// `list32<i32>`.
    pub fn i32_list(&mut self) -> Result<Vec<i32>, DecodeError> {
        self.list32(Reader::i32)
    }

    /// `list32<T>` for a [`Wire`] element type.
    pub fn list<T: Wire>(&mut self) -> Result<Vec<T>, DecodeError> {
        self.list32(T::read)
    }

    /// One nested [`Wire`] value.
    pub fn wire<T: Wire>(&mut self) -> Result<T, DecodeError> {
        T::read(self)
    }
}

/// Append a boolean as exactly `0` or `1`.
pub fn write_bool(out: &mut BytesMut, v: bool) {
    out.put_u8(u8::from(v));
}

/// Append a `u32` length prefix, rejecting lengths above `u32::MAX`.
pub fn write_len32(out: &mut BytesMut, len: usize, what: &'static str) -> Result<(), EncodeError> {
    let len32 = u32::try_from(len).map_err(|_| EncodeError::LengthOverflow { what, len })?;
    out.put_u32(len32);
    Ok(())
}

/// Append a `str16`; strings above 65 535 bytes are rejected.
pub fn write_str16(out: &mut BytesMut, s: &str) -> Result<(), EncodeError> {
    let len = u16::try_from(s.len()).map_err(|_| EncodeError::StringTooLong {
        kind: "str16",
        len: s.len(),
        max: u16::MAX as usize,
    })?;
    out.put_u16(len);
    out.put_slice(s.as_bytes());
    Ok(())
}

/// Append a `str8`; strings above 255 bytes are rejected.
pub fn write_str8(out: &mut BytesMut, s: &str) -> Result<(), EncodeError> {
    let len = u8::try_from(s.len()).map_err(|_| EncodeError::StringTooLong {
        kind: "str8",
        len: s.len(),
        max: u8::MAX as usize,
    })?;
    out.put_u8(len);
    out.put_slice(s.as_bytes());
    Ok(())
}

/// Append a `bytes32`.
pub fn write_bytes32(out: &mut BytesMut, b: &[u8]) -> Result<(), EncodeError> {
    write_len32(out, b.len(), "bytes32 field")?;
    out.put_slice(b);
    Ok(())
}

/// Append a `list32<T>`, writing each element with `item`.
pub fn write_list32<T>(
    out: &mut BytesMut,
    items: &[T],
    mut item: impl FnMut(&mut BytesMut, &T) -> Result<(), EncodeError>,
) -> Result<(), EncodeError> {
    write_len32(out, items.len(), "list")?;
    for it in items {
        item(out, it)?;
    }
    Ok(())
}

/// Append a `list32<str16>`.
pub fn write_str16_list(out: &mut BytesMut, items: &[String]) -> Result<(), EncodeError> {
    write_list32(out, items, |o, s| write_str16(o, s))
}

/// Append a `list32<T>` of [`Wire`] elements.
pub fn write_wire_list<T: Wire>(out: &mut BytesMut, items: &[T]) -> Result<(), EncodeError> {
    write_list32(out, items, |o, it| it.write(o))
}

/// Field writers with one uniform signature, named like the [`Reader`]
/// methods, so the `wire_struct!` macro can pair them.
pub mod put {
    use super::*;

    /// `u8`.
    pub fn u8(out: &mut BytesMut, v: &u8) -> Result<(), EncodeError> {
        out.put_u8(*v);
        Ok(())
    }
    /// `bool` as 0/1.
    pub fn bool(out: &mut BytesMut, v: &bool) -> Result<(), EncodeError> {
        write_bool(out, *v);
        Ok(())
    }
    /// `i32`.
    pub fn i32(out: &mut BytesMut, v: &i32) -> Result<(), EncodeError> {
        out.put_i32(*v);
        Ok(())
    }
    /// `u32`.
    pub fn u32(out: &mut BytesMut, v: &u32) -> Result<(), EncodeError> {
        out.put_u32(*v);
        Ok(())
    }
    /// `i64`.
    pub fn i64(out: &mut BytesMut, v: &i64) -> Result<(), EncodeError> {
        out.put_i64(*v);
        Ok(())
    }
    /// `u64`.
    pub fn u64(out: &mut BytesMut, v: &u64) -> Result<(), EncodeError> {
        out.put_u64(*v);
        Ok(())
    }
    /// `str16`.
    pub fn str16(out: &mut BytesMut, v: &str) -> Result<(), EncodeError> {
        write_str16(out, v)
    }
    /// `str8`.
    pub fn str8(out: &mut BytesMut, v: &str) -> Result<(), EncodeError> {
        write_str8(out, v)
    }
    /// `bytes32`.
    pub fn bytes32(out: &mut BytesMut, v: &[u8]) -> Result<(), EncodeError> {
        write_bytes32(out, v)
    }
    /// `list32<str16>`.
    pub fn str16_list(out: &mut BytesMut, v: &[String]) -> Result<(), EncodeError> {
        write_str16_list(out, v)
    }
    /// `list32<str8>`.
    pub fn str8_list(out: &mut BytesMut, v: &[String]) -> Result<(), EncodeError> {
        write_list32(out, v, |o, s| write_str8(o, s))
    }
    /// `list32<i32>`.
    pub fn i32_list(out: &mut BytesMut, v: &[i32]) -> Result<(), EncodeError> {
        write_list32(out, v, |o, n| {
            o.put_i32(*n);
            Ok(())
        })
    }
    /// `list32<T>`.
    pub fn list<T: Wire>(out: &mut BytesMut, v: &[T]) -> Result<(), EncodeError> {
        write_wire_list(out, v)
    }
    /// A nested value.
    pub fn wire<T: Wire>(out: &mut BytesMut, v: &T) -> Result<(), EncodeError> {
        v.write(out)
    }
}

/// Define a struct whose fields are laid out on the wire in declaration
/// order, each with a named primitive encoding (`str16`, `u64`, `list`, ...),
/// and derive its [`Wire`] implementation.
macro_rules! wire_struct {
    (
        $(#[$meta:meta])*
        pub struct $name:ident {
            $( $(#[$fmeta:meta])* pub $field:ident : $ty:ty => $kind:ident ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Default)]
        pub struct $name {
            $( $(#[$fmeta])* pub $field: $ty, )*
        }

        impl $crate::wire::Wire for $name {
            fn read(r: &mut $crate::wire::Reader) -> Result<Self, $crate::DecodeError> {
                Ok($name { $( $field: r.$kind()?, )* })
            }

            fn write(&self, out: &mut ::bytes::BytesMut) -> Result<(), $crate::EncodeError> {
                $( $crate::wire::put::$kind(out, &self.$field)?; )*
                Ok(())
            }
        }
    };
}

pub(crate) use wire_struct;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reader_reports_short_input() {
        let mut r = Reader::new(Bytes::from_static(&[0, 5, b'a']));
        assert_eq!(r.str16(), Err(DecodeError::BufferTooSmall));
        let mut r = Reader::new(Bytes::from_static(&[0, 0, 0]));
        assert_eq!(r.u32(), Err(DecodeError::BufferTooSmall));
        assert_eq!(r.u64(), Err(DecodeError::BufferTooSmall));
        assert_eq!(r.bytes32(), Err(DecodeError::BufferTooSmall));
        assert_eq!(DecodeError::BufferTooSmall.to_string(), "buffer too small");
    }

    #[test]
    fn primitives_round_trip() {
        let mut out = BytesMut::new();
        out.put_u8(7);
        write_bool(&mut out, true);
        out.put_i32(-2);
        out.put_u64(u64::MAX);
        out.put_i64(-9);
        write_str16(&mut out, "héllo").unwrap();
        write_str8(&mut out, "x").unwrap();
        write_bytes32(&mut out, b"\x00\x01").unwrap();
        write_str16_list(&mut out, &["a".into(), "bc".into()]).unwrap();
        let mut r = Reader::new(out.freeze());
        assert_eq!(r.u8().unwrap(), 7);
        assert!(r.bool().unwrap());
        assert_eq!(r.i32().unwrap(), -2);
        assert_eq!(r.u64().unwrap(), u64::MAX);
        assert_eq!(r.i64().unwrap(), -9);
        assert_eq!(r.str16().unwrap(), "héllo");
        assert_eq!(r.str8().unwrap(), "x");
        assert_eq!(&r.bytes32().unwrap()[..], b"\x00\x01");
        assert_eq!(r.str16_list().unwrap(), vec!["a", "bc"]);
        assert!(r.is_empty());
    }

    #[test]
    fn long_strings_are_rejected_not_truncated() {
        let mut out = BytesMut::new();
        let s16 = "a".repeat(65_536);
        assert_eq!(
            write_str16(&mut out, &s16),
            Err(EncodeError::StringTooLong {
                kind: "str16",
                len: 65_536,
                max: 65_535
            })
        );
        assert!(write_str16(&mut out, &s16[..65_535]).is_ok());
        let s8 = "b".repeat(256);
        assert!(matches!(
            write_str8(&mut out, &s8),
            Err(EncodeError::StringTooLong { kind: "str8", .. })
        ));
        assert!(write_str8(&mut out, &s8[..255]).is_ok());
    }

    #[test]
    fn invalid_utf8_is_an_error() {
        let mut r = Reader::new(Bytes::from_static(&[0, 1, 0xff]));
        assert_eq!(r.str16(), Err(DecodeError::InvalidUtf8 { field: "str16" }));
    }

    #[test]
    fn forged_list_count_does_not_allocate_or_panic() {
        let mut r = Reader::new(Bytes::from_static(&[0xff, 0xff, 0xff, 0xff, 0, 0]));
        assert_eq!(r.str16_list(), Err(DecodeError::BufferTooSmall));
    }
}
