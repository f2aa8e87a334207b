//! Cluster mode: Raft replication with openraft on the broker's RocksDB.
//!
//! - `types`: the openraft type configuration and group ids.
//! - `log_store`: the Raft log of every group (`raft_log`, `raft_meta`).
//! - `state_machine`: a group's state machine over the shared `StateMachine`.
//! - `network` / `service`: Raft RPCs over one gRPC service (port 9093).
//! - `node`: groups, proposals and forwarding, joining, reassignment.
//! - `admin`: the admin gRPC API (port 9096).

pub mod admin;
pub mod log_store;
pub mod network;
pub mod node;
pub mod service;
pub mod state_machine;
pub mod types;

pub use node::{ClusterNode, ClusterSettings};
pub use state_machine::SharedState;

use std::sync::Arc;

use flymq_proto::grpc::admin::admin_server::AdminServer;
use flymq_proto::grpc::cluster::cluster_server::ClusterServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

use crate::core::Broker;
use crate::shutdown::Shutdown;

/// Largest gRPC message between brokers (snapshot chunks, big append batches).
const MAX_GRPC_MESSAGE: usize = 64 << 20;

/// Serves the admin gRPC API until shutdown.
pub async fn serve_admin(listener: TcpListener, broker: Arc<Broker>, mut shutdown: Shutdown) {
    let service = AdminServer::new(admin::AdminService { broker });
    let result = tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move { shutdown.recv().await })
        .await;
    if let Err(err) = result {
        tracing::error!(error = %err, "admin API stopped");
    }
}

/// Serves the inter-broker service until shutdown.
pub async fn serve_cluster(listener: TcpListener, node: Arc<ClusterNode>, mut shutdown: Shutdown) {
    let service = ClusterServer::new(service::ClusterService { node })
        .max_decoding_message_size(MAX_GRPC_MESSAGE)
        .max_encoding_message_size(MAX_GRPC_MESSAGE);
    let result = tonic::transport::Server::builder()
        .tcp_nodelay(true)
        .add_service(service)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move { shutdown.recv().await })
        .await;
    if let Err(err) = result {
        tracing::error!(error = %err, "cluster listener stopped");
    }
}
