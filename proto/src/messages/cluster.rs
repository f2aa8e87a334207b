//! Cluster operations (WIRE.md §11.4, §11.5) and the CLUSTER_STATUS extension.

use bytes::BytesMut;

use crate::error::{DecodeError, EncodeError};
use crate::wire::{Reader, Wire, wire_struct, write_str16};

wire_struct! {
    /// CLUSTER_JOIN (0x50): `str16 peer_address`.
    pub struct ClusterJoinRequest {
        /// Peer to join.
        pub peer_address: String => str16,
    }
}

/// CLUSTER_METADATA (0x53): `str16 topic`; an empty payload means all topics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterMetadataRequest {
    /// Topic; empty = all topics.
    pub topic: String,
}

impl Wire for ClusterMetadataRequest {
    fn read(r: &mut Reader) -> Result<Self, DecodeError> {
        let topic = if r.is_empty() { String::new() } else { r.str16()? };
        Ok(ClusterMetadataRequest { topic })
    }

    fn write(&self, out: &mut BytesMut) -> Result<(), EncodeError> {
        write_str16(out, &self.topic)
    }
}

wire_struct! {
    /// One partition in CLUSTER_METADATA: `i32 partition | str16 leader_id |
    /// str16 leader_addr | u64 epoch | str16 state | list32<str16> replicas | list32<str16> isr`.
    pub struct PartitionMetadata {
        /// Partition id.
        pub partition: i32 => i32,
        /// Leader node id.
        pub leader_id: String => str16,
        /// Leader client address (`host:port`).
        pub leader_addr: String => str16,
        /// Leader epoch.
        pub epoch: u64 => u64,
        /// `online`, `offline`, `reassigning` or `syncing`.
        pub state: String => str16,
        /// Replica node ids.
        pub replicas: Vec<String> => str16_list,
        /// In-sync replica node ids.
        pub isr: Vec<String> => str16_list,
    }
}

wire_struct! {
    /// One topic in CLUSTER_METADATA: `str16 topic | u32 n × partition`.
    pub struct TopicMetadata {
        /// Topic.
        pub topic: String => str16,
        /// Partitions, ascending.
        pub partitions: Vec<PartitionMetadata> => list,
    }
}

wire_struct! {
    /// CLUSTER_METADATA (0x53) reply: `str16 cluster_id | u32 n × topic`.
    pub struct ClusterMetadata {
        /// Cluster id (`standalone` for a single node).
        pub cluster_id: String => str16,
        /// Topics.
        pub topics: Vec<TopicMetadata> => list,
    }
}

wire_struct! {
    /// One node in CLUSTER_STATUS: `str16 node_id | str16 address | str16 role | str16 state`.
    pub struct ClusterNode {
        /// Node id.
        pub node_id: String => str16,
        /// Client address.
        pub address: String => str16,
        /// Role, e.g. `leader`, `follower`.
        pub role: String => str16,
        /// State, e.g. `alive`, `suspect`, `dead`.
        pub state: String => str16,
    }
}

wire_struct! {
    /// CLUSTER_STATUS (0x52, FlyMQ extension) reply:
    /// `str16 cluster_id | str16 node_id | str16 leader_id | u32 n × node`.
    pub struct ClusterStatus {
        /// Cluster id.
        pub cluster_id: String => str16,
        /// Id of the node answering.
        pub node_id: String => str16,
        /// Id of the controller/leader node; empty if none.
        pub leader_id: String => str16,
        /// Known nodes.
        pub nodes: Vec<ClusterNode> => list,
    }
}
