//! gRPC services generated from `proto/grpc/*.proto`: the inter-broker
//! `Cluster` service (Raft RPCs, forwarding, join; port 9093) and the `Admin`
//! service (port 9096) used by the operator and `flymq-cli`.

/// Inter-broker service: Raft for every group, forwarding, join.
pub mod cluster {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("flymq.cluster.v1");
}

/// Admin API: topics, cluster membership, users and ACLs.
pub mod admin {
    #![allow(clippy::all, clippy::pedantic, missing_docs)]
    tonic::include_proto!("flymq.admin.v1");
}
