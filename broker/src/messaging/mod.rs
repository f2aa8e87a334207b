//! Messaging features on top of the log: server-side filters and the
//! schema formats of the registry (JSON Schema, Avro, Protobuf).

pub mod filter;
pub mod schema;
