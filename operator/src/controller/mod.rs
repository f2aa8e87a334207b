//! Controllers: `FlyMQCluster` ([`cluster`]) and the broker-side kinds
//! `Topic`, `User`, `ACL` ([`admin_object`]), which report that the broker
//! admin API is not available yet.

pub mod admin_object;
pub mod cluster;
pub mod error;
#[cfg(test)]
pub(crate) mod mock;
pub mod status;

pub use error::Error;
