//! Controllers: `FlyMQCluster` ([`cluster`]) and the broker-side kinds
//! `Topic`, `User`, `ACL` ([`admin_object`]), which are kept in step through
//! the broker admin API.

pub mod admin_object;
pub mod cluster;
pub mod error;
#[cfg(test)]
pub(crate) mod mock;
pub mod status;

pub use error::Error;
