//! Controllers: `FlyMQCluster` ([`cluster`]) and the broker-side kinds
//! `Topic`, `User`, `ACL` ([`admin_object`]), which are kept in step through
//! the broker admin API.

pub mod admin_object;
pub mod admin_users;
pub mod backoff;
pub mod cluster;
pub mod decommission;
pub mod discovery;
pub mod encryption;
pub mod error;
pub mod guard;
#[cfg(test)]
pub(crate) mod mock;
pub mod rejoin;
pub mod roll;
pub mod status;
pub mod tls;
pub mod user;

pub use error::Error;
