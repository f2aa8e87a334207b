//! CLUSTER_METADATA (0x53), CLUSTER_STATUS (0x52), CLUSTER_JOIN/LEAVE (0x50/0x51).

use flymq_proto::{
    ClusterMetadata, ClusterMetadataRequest, ClusterNode, ClusterStatus, PartitionMetadata, Response, TopicMetadata,
};

use crate::core::Broker;
use crate::server::dispatch::Answer;

pub fn metadata(broker: &Broker, req: ClusterMetadataRequest) -> Answer {
    Answer::from_result(broker.topic_metadata(&req.topic).map(|topics| {
        Response::ClusterMetadata(ClusterMetadata {
            cluster_id: broker.cluster_id().to_owned(),
            topics: topics
                .into_iter()
                .map(|t| TopicMetadata {
                    topic: t.name,
                    partitions: t
                        .partitions
                        .into_iter()
                        .map(|p| PartitionMetadata {
                            partition: p.partition as i32,
                            leader_id: p.leader_id,
                            leader_addr: p.leader_addr,
                            epoch: p.epoch,
                            state: p.state.to_owned(),
                            replicas: p.replicas,
                            isr: p.isr,
                        })
                        .collect(),
                })
                .collect(),
        })
    }))
}

pub fn status(broker: &Broker) -> Answer {
    let nodes = broker
        .cluster_members()
        .into_iter()
        .map(|m| ClusterNode {
            node_id: m.node_id,
            address: m.address,
            role: m.role.to_owned(),
            state: m.state.to_owned(),
        })
        .collect();
    Answer::Response(Response::ClusterStatus(ClusterStatus {
        cluster_id: broker.cluster_id().to_owned(),
        node_id: broker.node_id(),
        leader_id: broker.node_id(),
        nodes,
    }))
}

/// Membership is managed by the admin API and the operator, not by clients.
pub fn membership_change() -> Answer {
    Answer::error("cluster membership is managed by the operator and the admin API, not over the client protocol")
}
