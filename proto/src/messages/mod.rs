//! Typed payloads, grouped by protocol area. Each type implements
//! [`Wire`](crate::wire::Wire); the [`Request`](crate::Request) and
//! [`Response`](crate::Response) enums pick the type for an opcode.

pub mod audit;
pub mod auth;
pub mod cluster;
pub mod common;
pub mod core;
pub mod dlq;
pub mod groups;
pub mod schema;
pub mod tx;
