//! The openraft type configuration shared by every Raft group of a broker,
//! and the group-id scheme.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::core::command::{Applied, Command};
use crate::core::error::BrokerError;

/// A member's id in every group: broker id (the StatefulSet ordinal) in the
/// high 32 bits, the data directory's incarnation in the low 32 (`identity`).
pub type NodeId = u64;

/// Group id of the metadata group (topics, assignments, offsets).
pub const META_GROUP: u64 = 0;

/// Group id of one partition: topic id in the high half, partition in the low.
pub fn partition_group(topic_id: u32, partition: u32) -> u64 {
    (u64::from(topic_id) << 32) | u64::from(partition)
}

/// `(topic id, partition)` of a partition group; `None` for the metadata group.
pub fn split_group(group: u64) -> Option<(u32, u32)> {
    (group != META_GROUP).then_some(((group >> 32) as u32, group as u32))
}

/// How to reach a broker; stored in every group's membership.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NodeInfo {
    /// `host:port` of the cluster (Raft) listener.
    pub cluster_addr: String,
    /// `host:port` clients connect to.
    pub client_addr: String,
    /// `host:port` of the admin gRPC API.
    pub admin_addr: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.cluster_addr)
    }
}

/// The payload of one Raft entry: many client commands batched together, so
/// one replication round and one log sync carry many produces. Shared, so
/// the log cache, replication and the state machine never copy it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandBatch(pub std::sync::Arc<Vec<Command>>);

impl fmt::Display for CommandBatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CommandBatch({} commands)", self.0.len())
    }
}

/// The outcome of each command of a batch. Errors travel as their text, which
/// is what clients see anyway.
pub type CommandResults = Vec<Result<Applied, String>>;

/// Converts a result that crossed a Raft apply or the network back.
pub fn from_wire(result: Result<Applied, String>) -> Result<Applied, BrokerError> {
    result.map_err(BrokerError::Remote)
}

/// FlyMQ's Raft types: u64 node ids, batches of commands as entries, and
/// callback responders (openraft's defaults otherwise).
#[derive(Debug, Clone, Copy, Default, Eq, PartialEq, Ord, PartialOrd)]
pub struct TypeConfig {}

impl openraft::RaftTypeConfig for TypeConfig {
    type D = CommandBatch;
    type R = CommandResults;
    type NodeId = NodeId;
    type Node = NodeInfo;
    type Term = u64;
    type LeaderId = openraft::impls::leader_id_adv::LeaderId<u64, NodeId>;
    type Vote = openraft::impls::Vote<Self::LeaderId>;
    type Payload = openraft::EntryPayload<CommandBatch, NodeId, NodeInfo>;
    type Entry = openraft::Entry<<Self::LeaderId as openraft::vote::RaftLeaderId>::Committed, Self::Payload>;
    type AsyncRuntime = openraft::impls::TokioRuntime;
    type Responder<T>
        = super::proposer::CallbackResponder<T>
    where
        T: openraft::OptionalSend + 'static;
    type Batch<T>
        = openraft::impls::InlineBatch<T>
    where
        T: openraft::OptionalSend + 'static;
    type ErrorSource = openraft::impls::BoxedErrorSource;
}

/// Snapshots are streamed, never held whole in memory (`snapshot.rs`).
pub use super::snapshot::SnapshotData;

pub type Raft = openraft::Raft<TypeConfig, super::state_machine::GroupStateMachine>;
pub type RaftMetrics = openraft::RaftMetrics<TypeConfig>;
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
pub type Snapshot = openraft::alias::SnapshotOf<TypeConfig, SnapshotData>;

/// postcard encoding for everything stored in Raft column families or sent between brokers.
pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, std::io::Error> {
    encode_into(value, Vec::new())
}

/// `encode` into a buffer allocated for about `capacity` bytes: entries and
/// AppendEntries requests run to MiBs, and a buffer grown from empty would
/// copy them again at every doubling.
pub fn encode_with_capacity<T: Serialize>(value: &T, capacity: usize) -> Result<Vec<u8>, std::io::Error> {
    encode_into(value, Vec::with_capacity(capacity))
}

fn encode_into<T: Serialize>(value: &T, buffer: Vec<u8>) -> Result<Vec<u8>, std::io::Error> {
    postcard::serialize_with_flavor(value, Buffer(buffer))
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// postcard's output into a given `Vec` (its own `AllocVec` always starts empty).
struct Buffer(Vec<u8>);

impl postcard::ser_flavors::Flavor for Buffer {
    type Output = Vec<u8>;

    fn try_extend(&mut self, data: &[u8]) -> postcard::Result<()> {
        self.0.extend_from_slice(data);
        Ok(())
    }

    fn try_push(&mut self, data: u8) -> postcard::Result<()> {
        self.0.push(data);
        Ok(())
    }

    fn finalize(self) -> postcard::Result<Vec<u8>> {
        Ok(self.0)
    }
}

/// About the encoded size of an entry: its commands' payload plus a margin
/// for their fields (an estimate, never a limit).
pub fn entry_size(entry: &Entry) -> usize {
    match &entry.payload {
        openraft::EntryPayload::Normal(batch) => {
            let payload = batch.0.iter().map(|c| c.size_hint()).sum::<usize>();
            64 + payload + payload / 8
        }
        _ => 256,
    }
}

pub fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8]) -> Result<T, std::io::Error> {
    postcard::from_bytes(bytes).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// `decode`, with the records' keys and values as slices of `bytes`
/// instead of copies (`core::shared_bytes`).
pub fn decode_shared<T: serde::de::DeserializeOwned>(bytes: &bytes::Bytes) -> Result<T, std::io::Error> {
    crate::core::shared_bytes::decode_within(bytes, |b| decode(b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::command::{Command, NewRecord};
    use bytes::Bytes;

    #[test]
    fn an_entry_encodes_the_same_whatever_the_capacity_and_decodes_back() {
        let records = (0..100)
            .map(|i| NewRecord::new(Bytes::from(format!("k{i}")), Bytes::from(vec![i as u8; 100])))
            .collect();
        let append = Command::Append {
            topic: "orders".into(),
            partition: 0,
            timestamp_ms: 7,
            records,
        };
        let entry = Entry {
            log_id: openraft::testing::log_id::<TypeConfig>(3, 1, 42),
            payload: openraft::EntryPayload::Normal(CommandBatch(std::sync::Arc::new(vec![append]))),
        };
        let plain = postcard::to_stdvec(&entry).unwrap();
        assert!(entry_size(&entry) >= plain.len(), "the estimate covers the encoding");
        for capacity in [0, 10, entry_size(&entry), 1 << 20] {
            assert_eq!(encode_with_capacity(&entry, capacity).unwrap(), plain);
        }
        let back: Entry = decode(&plain).unwrap();
        assert_eq!(back.log_id, entry.log_id);
        assert_eq!(encode(&back).unwrap(), plain);
    }
}
