//! Frame header, incremental frame decoding and gzip payloads (WIRE.md §2).
//!
//! ```text
//! offset 0  magic   u8   0xAF
//!        1  version u8   0x01
//!        2  opcode  u8
//!        3  flags   u8   bit 0 = binary (informational), bits 1-3 = compression code
//!        4  length  u32  payload length, big-endian, <= 32 MiB
//! ```

use std::io::Read;

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::error::{DecodeError, EncodeError, FrameError};

/// First header byte of every frame.
pub const MAGIC: u8 = 0xAF;
/// Protocol version carried in every header.
pub const VERSION: u8 = 1;
/// Size of the frame header in bytes.
pub const HEADER_LEN: usize = 8;
/// Largest payload either side accepts (32 MiB).
pub const MAX_PAYLOAD: usize = 32 * 1024 * 1024;
/// "Binary payload" flag; informational, set on every frame we send.
pub const FLAG_BINARY: u8 = 0x01;
/// Bits of the flags byte holding the compression code.
pub const COMPRESSION_MASK: u8 = 0x0E;
/// Compression code for a gzip payload.
pub const COMPRESSION_GZIP: u8 = 0x02;

/// Largest capacity [`Frame::decode`] reserves ahead of the bytes that arrived.
const MAX_EAGER_RESERVE: usize = 1024 * 1024;

/// One decoded frame: opcode, flags and the raw (possibly compressed) payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Opcode byte (not validated here; see [`crate::Opcode::from_u8`]).
    pub opcode: u8,
    /// Flags byte as received.
    pub flags: u8,
    /// Payload bytes exactly as received.
    pub payload: Bytes,
}

impl Frame {
    /// Incrementally decode one frame from the front of a read buffer.
    ///
    /// Returns `Ok(None)` when more bytes are needed (the buffer's bytes are
    /// left untouched; capacity for the rest of the frame is reserved, at most
    /// 1 MiB at a time so a header alone cannot make us allocate 32 MiB). The
    /// header is validated as soon as its 8 bytes are present, in the order
    /// magic, version, length, so an oversized length is rejected before its
    /// payload arrives. A [`FrameError`] is fatal: close the connection.
    /// The payload is split off the buffer without copying.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        if buf[0] != MAGIC {
            return Err(FrameError::BadMagic(buf[0]));
        }
        if buf[1] != VERSION {
            return Err(FrameError::BadVersion(buf[1]));
        }
        let len = u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]) as usize;
        if len > MAX_PAYLOAD {
            return Err(FrameError::TooLarge(len));
        }
        let total = HEADER_LEN + len;
        if buf.len() < total {
            buf.reserve((total - buf.len()).min(MAX_EAGER_RESERVE));
            return Ok(None);
        }
        let opcode = buf[2];
        let flags = buf[3];
        let mut frame = buf.split_to(total);
        frame.advance(HEADER_LEN);
        Ok(Some(Frame {
            opcode,
            flags,
            payload: frame.freeze(),
        }))
    }

    /// The compression code of this frame (`flags & 0x0E`).
    pub fn compression(&self) -> u8 {
        self.flags & COMPRESSION_MASK
    }

    /// The payload after decompression.
    ///
    /// Code 0 returns the payload as is (no copy); gzip (`0x02`) is
    /// decompressed with the output capped at [`MAX_PAYLOAD`]; any other code
    /// is [`DecodeError::UnsupportedCompression`]. These errors concern one
    /// request only: answer with an error frame and keep the connection.
    pub fn decompressed_payload(&self) -> Result<Bytes, DecodeError> {
        match self.compression() {
            0 => Ok(self.payload.clone()),
            COMPRESSION_GZIP => gzip_decompress(&self.payload).map(Bytes::from),
            other => Err(DecodeError::UnsupportedCompression(other)),
        }
    }
}

/// Append one frame (header + payload) to `out`.
///
/// The caller keeps `payload.len() <= MAX_PAYLOAD` (peers reject larger
/// frames); [`crate::Request::to_frame_bytes`] and
/// [`crate::Response::encode_frame`] check this for you.
pub fn encode_frame(opcode: u8, flags: u8, payload: &[u8], out: &mut bytes::BytesMut) {
    debug_assert!(payload.len() <= MAX_PAYLOAD, "frame payload above MAX_PAYLOAD");
    out.reserve(HEADER_LEN + payload.len());
    put_header(out, opcode, flags, payload.len() as u32);
    out.put_slice(payload);
}

/// Append a frame header.
pub(crate) fn put_header(out: &mut BytesMut, opcode: u8, flags: u8, len: u32) {
    out.put_u8(MAGIC);
    out.put_u8(VERSION);
    out.put_u8(opcode);
    out.put_u8(flags);
    out.put_u32(len);
}

/// Start a frame whose payload is written next; returns the header's start
/// offset for [`finish_frame`].
pub(crate) fn begin_frame(out: &mut BytesMut, opcode: u8, flags: u8) -> usize {
    let start = out.len();
    put_header(out, opcode, flags, 0);
    start
}

/// Patch the length of a frame started with [`begin_frame`].
pub(crate) fn finish_frame(out: &mut BytesMut, start: usize) -> Result<(), EncodeError> {
    let len = out.len() - start - HEADER_LEN;
    if len > MAX_PAYLOAD {
        return Err(EncodeError::PayloadTooLarge(len));
    }
    out[start + 4..start + HEADER_LEN].copy_from_slice(&(len as u32).to_be_bytes());
    Ok(())
}

/// Gzip-compress a payload (for senders setting [`COMPRESSION_GZIP`]).
pub fn gzip_compress(payload: &[u8]) -> Result<Vec<u8>, EncodeError> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(payload)
        .map_err(|e| EncodeError::Compression(e.to_string()))?;
    enc.finish().map_err(|e| EncodeError::Compression(e.to_string()))
}

/// Re-encodes one encoded frame (header + payload) with its payload
/// gzip-compressed and the gzip code set in its flags, when the payload is
/// at least `threshold` bytes and compressing makes it smaller; otherwise
/// returns the frame unchanged.
pub fn gzip_frame(frame: BytesMut, threshold: usize) -> Result<BytesMut, EncodeError> {
    if frame.len() < HEADER_LEN || frame.len() - HEADER_LEN < threshold || frame[3] & COMPRESSION_MASK != 0 {
        return Ok(frame);
    }
    let compressed = gzip_compress(&frame[HEADER_LEN..])?;
    if compressed.len() >= frame.len() - HEADER_LEN {
        return Ok(frame);
    }
    let mut out = BytesMut::with_capacity(HEADER_LEN + compressed.len());
    encode_frame(frame[2], frame[3] | COMPRESSION_GZIP, &compressed, &mut out);
    Ok(out)
}

/// Decompress a gzip stream (multi-member allowed, like Go's reader),
/// refusing output above [`MAX_PAYLOAD`].
pub fn gzip_decompress(data: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let decoder = flate2::read::MultiGzDecoder::new(data);
    let mut out = Vec::new();
    decoder
        .take(MAX_PAYLOAD as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| DecodeError::Decompression(e.to_string()))?;
    if out.len() > MAX_PAYLOAD {
        return Err(DecodeError::DecompressedTooLarge);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(magic: u8, version: u8, len: u32) -> BytesMut {
        let mut b = BytesMut::new();
        b.put_u8(magic);
        b.put_u8(version);
        b.put_u8(1);
        b.put_u8(1);
        b.put_u32(len);
        b
    }

    #[test]
    fn bad_magic_is_fatal() {
        let mut b = header(0xAE, 1, 0);
        assert_eq!(Frame::decode(&mut b), Err(FrameError::BadMagic(0xAE)));
    }

    #[test]
    fn bad_version_is_fatal() {
        let mut b = header(MAGIC, 2, 0);
        assert_eq!(Frame::decode(&mut b), Err(FrameError::BadVersion(2)));
    }

    #[test]
    fn magic_is_checked_before_version_and_length() {
        let mut b = header(0x00, 9, u32::MAX);
        assert_eq!(Frame::decode(&mut b), Err(FrameError::BadMagic(0)));
        let mut b = header(MAGIC, 9, u32::MAX);
        assert_eq!(Frame::decode(&mut b), Err(FrameError::BadVersion(9)));
    }

    #[test]
    fn oversized_length_is_rejected_from_the_header_alone() {
        let mut b = header(MAGIC, 1, MAX_PAYLOAD as u32 + 1);
        assert_eq!(Frame::decode(&mut b), Err(FrameError::TooLarge(MAX_PAYLOAD + 1)));
        // Exactly the maximum is allowed: just waits for the payload.
        let mut b = header(MAGIC, 1, MAX_PAYLOAD as u32);
        assert_eq!(Frame::decode(&mut b), Ok(None));
    }

    #[test]
    fn partial_frames_return_none_and_keep_the_bytes() {
        let mut full = BytesMut::new();
        encode_frame(0x07, FLAG_BINARY, b"abcdef", &mut full);
        for cut in 0..full.len() {
            let mut b = BytesMut::from(&full[..cut]);
            assert_eq!(Frame::decode(&mut b), Ok(None), "cut at {cut}");
            assert_eq!(&b[..], &full[..cut]);
        }
        let mut b = full.clone();
        let f = Frame::decode(&mut b).unwrap().unwrap();
        assert_eq!(f.opcode, 0x07);
        assert_eq!(f.flags, FLAG_BINARY);
        assert_eq!(&f.payload[..], b"abcdef");
        assert!(b.is_empty());
    }

    #[test]
    fn two_frames_back_to_back() {
        let mut b = BytesMut::new();
        encode_frame(0x01, 1, b"one", &mut b);
        encode_frame(0x08, 0, b"", &mut b);
        b.extend_from_slice(&[MAGIC, VERSION]); // start of a third frame
        let f1 = Frame::decode(&mut b).unwrap().unwrap();
        let f2 = Frame::decode(&mut b).unwrap().unwrap();
        assert_eq!((f1.opcode, &f1.payload[..]), (0x01, &b"one"[..]));
        assert_eq!((f2.opcode, f2.flags, f2.payload.len()), (0x08, 0, 0));
        assert_eq!(Frame::decode(&mut b), Ok(None));
        assert_eq!(b.len(), 2);
    }

    #[test]
    fn large_frames_are_gzipped_small_ones_left_alone() {
        let payload = vec![b'a'; 4096];
        let mut plain = BytesMut::new();
        encode_frame(0x90, FLAG_BINARY, &payload, &mut plain);
        let small = gzip_frame(plain.clone(), 8192).unwrap();
        assert_eq!(small, plain, "under the threshold");
        let mut zipped = gzip_frame(plain.clone(), 1024).unwrap();
        assert!(zipped.len() < plain.len());
        let f = Frame::decode(&mut zipped).unwrap().unwrap();
        assert_eq!((f.opcode, f.compression()), (0x90, COMPRESSION_GZIP));
        assert_eq!(&f.decompressed_payload().unwrap()[..], &payload[..]);
        // Incompressible payloads stay as they are.
        // xorshift64: bytes gzip cannot shrink.
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let noise: Vec<u8> = (0..4096)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let mut raw = BytesMut::new();
        encode_frame(0x90, FLAG_BINARY, &noise, &mut raw);
        assert_eq!(gzip_frame(raw.clone(), 16).unwrap().len(), raw.len());
    }

    #[test]
    fn gzip_payload_is_decompressed() {
        let plain = b"hello hello hello hello".to_vec();
        let gz = gzip_compress(&plain).unwrap();
        let f = Frame {
            opcode: 1,
            flags: FLAG_BINARY | COMPRESSION_GZIP,
            payload: Bytes::from(gz),
        };
        assert_eq!(&f.decompressed_payload().unwrap()[..], &plain[..]);
        let broken = Frame {
            opcode: 1,
            flags: COMPRESSION_GZIP,
            payload: Bytes::from_static(b"not gzip"),
        };
        assert!(matches!(
            broken.decompressed_payload(),
            Err(DecodeError::Decompression(_))
        ));
    }

    #[test]
    fn other_compression_codes_are_rejected() {
        for code in [0x04u8, 0x06, 0x08, 0x0A, 0x0C, 0x0E] {
            let f = Frame {
                opcode: 1,
                flags: FLAG_BINARY | code,
                payload: Bytes::from_static(b"x"),
            };
            assert_eq!(f.decompressed_payload(), Err(DecodeError::UnsupportedCompression(code)));
        }
        let plain = Frame {
            opcode: 1,
            flags: 0xF1, // high bits and bit 0 are ignored
            payload: Bytes::from_static(b"x"),
        };
        assert_eq!(&plain.decompressed_payload().unwrap()[..], b"x");
    }

    #[test]
    fn gzip_bomb_is_capped() {
        let big = vec![0u8; MAX_PAYLOAD + 1];
        let gz = gzip_compress(&big).unwrap();
        assert_eq!(gzip_decompress(&gz), Err(DecodeError::DecompressedTooLarge));
    }
}
