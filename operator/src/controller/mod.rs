//! Controllers. Only `FlyMQCluster` is reconciled: `Topic`, `User` and `ACL`
//! need the broker admin API, which does not exist yet.

pub mod cluster;
pub mod error;
pub mod status;

pub use error::Error;
