//! FlyMQ binary client protocol (protocol version 1): framing, opcodes,
//! and typed requests and responses, byte-compatible with the FlyMQ SDKs.
//!
//! The layouts follow `shared/protocol/WIRE.md`; section numbers in the docs
//! (`§8.1`) refer to it. The FlyMQ extensions (SEEK_TO_TIMESTAMP 0x66,
//! CLUSTER_STATUS 0x52, PRODUCE_BATCH 0x90) are described in the crate README.
//!
//! Typical server loop:
//!
//! ```
//! use bytes::BytesMut;
//! use flymq_proto::{Frame, ProduceRequest, Request, Response, RecordMetadata};
//!
//! // What a client sends...
//! let req = Request::Produce(ProduceRequest {
//!     topic: "t1".into(),
//!     value: "hi".into(),
//!     partition: -1,
//!     ..Default::default()
//! });
//! let mut read_buf = req.to_frame_bytes().unwrap();
//!
//! // ...and how the server reads and answers it.
//! let frame = Frame::decode(&mut read_buf).unwrap().expect("a whole frame");
//! let reply = match Request::decode_frame(&frame) {
//!     Ok(Request::Produce(p)) => Response::Produce(RecordMetadata::new(
//!         p.topic, 0, 7, 1_700_000_000_000, &p.key, &p.value,
//!     )),
//!     Ok(other) => Response::error(format!("not handled: {}", other.opcode())),
//!     Err(e) => Response::error(e.to_string()),
//! };
//! let mut write_buf = BytesMut::new();
//! reply.encode_frame(&mut write_buf).unwrap();
//! assert_eq!(write_buf[2], 0x01);
//! ```

pub mod error;
pub mod fetch_writer;
pub mod frame;
pub mod grpc;
pub mod messages;
pub mod opcode;
pub mod request;
pub mod response;
pub mod schema_type;
pub mod wire;

pub use error::{DecodeError, EncodeError, FrameError};
pub use fetch_writer::FetchResponseWriter;
pub use frame::{
    COMPRESSION_GZIP, COMPRESSION_MASK, FLAG_BINARY, Frame, HEADER_LEN, MAGIC, MAX_PAYLOAD, VERSION, encode_frame,
    gzip_compress, gzip_decompress, gzip_frame,
};
pub use messages::audit::*;
pub use messages::auth::*;
pub use messages::cluster::*;
pub use messages::common::*;
pub use messages::core::*;
pub use messages::dlq::*;
pub use messages::groups::*;
pub use messages::schema::*;
pub use messages::tx::*;
pub use opcode::Opcode;
pub use request::Request;
pub use response::{ErrorResponse, Response};
pub use schema_type::{SchemaType, UnknownSchemaType};
pub use wire::Wire;

#[cfg(test)]
mod tests;
