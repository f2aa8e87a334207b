//! The broker core: state machine, group-commit writer, read catalog and the
//! `Broker` facade that request handlers call. Nothing here knows about frames.

pub mod broker;
pub mod catalog;
pub mod command;
pub mod error;
pub mod members;
pub mod names;
pub mod partitioner;
pub mod retention;
pub mod state_machine;
pub mod writer;

pub use broker::{Broker, BrokerSettings, ClusterMember, FetchLimits, GroupInfo, PartitionInfo, ProduceAck, TopicInfo};
pub use command::{Applied, Command, NewRecord};
pub use error::{BrokerError, BrokerResult};
pub use writer::Durability;
