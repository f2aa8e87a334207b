//! Error types of the codec.
//!
//! Three kinds, because the broker must react differently to each:
//! - [`FrameError`]: the byte stream itself is broken (bad magic, bad version,
//!   oversized length). Fatal: the server closes the connection without an
//!   error frame (WIRE.md §1, §15 row 25).
//! - [`DecodeError`]: one request (or response) payload is malformed. Per
//!   request: the server answers with an error frame and keeps the connection.
//! - [`EncodeError`]: a value cannot be represented on the wire (a string
//!   longer than its length prefix allows, a frame above 32 MiB). Encoders
//!   never truncate silently.

use crate::frame::MAX_PAYLOAD;

/// A fatal framing error: the connection cannot be resynchronised and must be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The first header byte is not [`crate::MAGIC`].
    #[error("invalid magic byte 0x{0:02x} (expected 0xaf); the peer does not speak the FlyMQ protocol")]
    BadMagic(u8),
    /// The protocol version byte is not [`crate::VERSION`].
    #[error("unsupported protocol version {0} (only version 1 is supported)")]
    BadVersion(u8),
    /// The header announces a payload above [`MAX_PAYLOAD`].
    #[error("message too large: payload length {0} exceeds the maximum of {max} bytes", max = MAX_PAYLOAD)]
    TooLarge(usize),
}

/// A malformed payload. Reported to the peer as an error frame; the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The payload ended before a field it must contain (Go wording).
    #[error("buffer too small")]
    BufferTooSmall,
    /// The opcode is not one this codec knows (Go wording).
    #[error("unknown opcode: {0}")]
    UnknownOpcode(u8),
    /// The payload is structurally wrong in a way other than being short.
    #[error("invalid binary format: {0}")]
    InvalidFormat(String),
    /// A string field is not valid UTF-8.
    #[error("invalid binary format: {field} is not valid UTF-8")]
    InvalidUtf8 {
        /// Which kind of field (`str16`, `str8`).
        field: &'static str,
    },
    /// The frame uses a compression code other than none or gzip.
    #[error(
        "unsupported compression code 0x{0:02x} in frame flags; only gzip (0x02) is supported, send the payload uncompressed or gzip-compressed"
    )]
    UnsupportedCompression(u8),
    /// The gzip stream could not be decompressed.
    #[error("invalid gzip payload: {0}")]
    Decompression(String),
    /// The decompressed payload would exceed [`MAX_PAYLOAD`].
    #[error("message too large: decompressed payload exceeds the maximum of {max} bytes", max = MAX_PAYLOAD)]
    DecompressedTooLarge,
}

/// A value that cannot be encoded without losing information.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// A string is longer than its length prefix (`str8`: 255, `str16`: 65 535 bytes).
    #[error("string of {len} bytes is too long for a {kind} field (maximum {max} bytes); shorten it")]
    StringTooLong {
        /// `str8` or `str16`.
        kind: &'static str,
        /// Actual byte length.
        len: usize,
        /// Largest length the prefix can express.
        max: usize,
    },
    /// A byte field, list or nested record has more elements/bytes than a u32 prefix can express.
    #[error("{what} of length {len} does not fit a u32 length prefix")]
    LengthOverflow {
        /// What was being encoded.
        what: &'static str,
        /// Actual length.
        len: usize,
    },
    /// The encoded payload is above [`MAX_PAYLOAD`].
    #[error("message too large: payload of {0} bytes exceeds the maximum of {max} bytes", max = MAX_PAYLOAD)]
    PayloadTooLarge(usize),
    /// A field holds a value the layout cannot carry unambiguously.
    #[error("invalid value: {0}")]
    InvalidValue(String),
    /// Compressing the payload failed.
    #[error("gzip compression failed: {0}")]
    Compression(String),
}
