//! The broker core: state machine, group-commit writer, read catalog and the
//! `Broker` facade that request handlers call. Nothing here knows about
//! frames, and nothing here knows about Raft: commands go to a `Replicator`.

pub mod broker;
pub mod catalog;
pub mod command;
pub mod delayed;
pub mod dlq;
pub mod error;
pub mod groups;
pub mod local;
pub mod members;
pub mod membership;
pub mod names;
pub mod partitioner;
pub mod produce;
pub mod read;
pub mod replicator;
pub mod retention;
pub mod schemas;
pub mod shared_bytes;
pub mod state_machine;
pub mod topic_trie;
pub mod topics;
pub mod transactions;
pub mod ttl;
pub mod writer;

pub use broker::{Broker, BrokerSettings, now_ms};
pub use command::{Applied, Command, NewRecord};
pub use error::{BrokerError, BrokerResult};
pub use groups::{GroupInfo, Lag};
pub use produce::ProduceAck;
pub use read::FetchLimits;
pub use replicator::{ClusterMember, Placement, Replicator};
pub use topics::{PartitionInfo, TopicInfo};
pub use writer::Durability;
